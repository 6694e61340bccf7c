//! Tokens and lineage: a token the gateway minted or exchanged carries its root credential, and
//! whatever finishes the root (revocation, the plan's `enforce`, the bound certificate) finishes
//! every token derived from it; audiences go only to callers some route would let in; several
//! `jwt-svid` credentials in one accept list each get their chance; `exp` horizon and high-S twins
//! ECDSA signatures are refused.

use rustls_pki_types::pem::PemObject;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use portcullis::clock::FakeClock;
use serde_json::{json, Value};

use crate::identity::{write_jwks, Signer};
use crate::support::*;

const ISSUER_URL: &str = "https://portcullis.corp.example";
const GRANT: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
const JWT_TYPE: &str = "urn:ietf:params:oauth:token-type:jwt";
const ACME_KEY: &str = "pcs_lineage_acme_key_0123456789abcdef";
const BETA_KEY: &str = "pcs_lineage_beta_key_0123456789abcdef";
const PAYER: &str = "spiffe://corp.example/ns/payments/sa/batch";

fn day(unix_days: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(unix_days * 86400 + 12 * 3600)
}
/// 2026-12-08: the partner plan is in `bridge`.
const BRIDGE_DAY: u64 = 20795;
/// 2027-03-01, the partner plan's `enforce` date.
const ENFORCE_DAY: u64 = 20878;

struct Lab {
    pki: Pki,
    up: Upstream,
    gw: portcullis::server::Running,
    clock: Arc<FakeClock>,
    corp_jwt: Signer,
    other_jwt: Signer,
}

async fn lab(at: SystemTime) -> Lab {
    let pki = Pki::new();
    let dir = pki.dir.path();
    write_partner_plan(dir);
    write_api_keys(
        dir,
        &[
            (
                "partner-acme",
                "spiffe://corp.example/partner/acme",
                ACME_KEY,
            ),
            (
                "partner-beta",
                "spiffe://corp.example/partner/beta",
                BETA_KEY,
            ),
        ],
    );
    let corp_jwt = Signer::new("corp-1");
    let other_jwt = Signer::new("other-1");
    write_jwks(&dir.join("corp-jwt.json"), &[&corp_jwt]);
    write_jwks(&dir.join("other-jwt.json"), &[&other_jwt]);
    let up = Upstream::start().await;
    let keys_credential = partner_keys(dir);
    let u = up.url();
    let partner = RouteToml::new("partner", "/partner/", &u)
        .accept(&["exchanged", "partner-keys"])
        .allow(&["spiffe://corp.example/partner/*"])
        .key("plan = \"partner-api\"")
        .audience("partner-api")
        .upstream_key("timeout = \"2s\"");
    let payments = RouteToml::new("payments", "/payments/", &u)
        .accept(&["exchanged", "workload-mtls"])
        .allow(&["spiffe://corp.example/ns/payments/*"])
        .audience("payments")
        .upstream_key("timeout = \"2s\"");
    let two = RouteToml::new("two", "/two/", &u)
        .accept(&["jwt-alpha", "jwt-beta"])
        .allow(&["spiffe://corp.example/*", "spiffe://other.example/*"])
        .audience("two")
        .upstream_key("timeout = \"2s\"");
    let extra = format!(
        r#"
[issuer]
url = "{ISSUER_URL}"
spiffe_id = "spiffe://corp.example/portcullis"
ttl = "5m"
[migration]
plans_dir = "{d}/plans"

[trust."corp.example"]
x509_bundle = "{d}/ca.pem"
jwt_bundle = "{d}/corp-jwt.json"
[trust."other.example"]
jwt_bundle = "{d}/other-jwt.json"

{keys_credential}[credentials.workload-mtls]
kind = "mtls"
trust_domains = ["corp.example"]
[credentials.exchanged]
kind = "jwt-svid"
trust_domains = ["corp.example"]
audience = "{ISSUER_URL}"
trust_issuer = true
[credentials.jwt-alpha]
kind = "jwt-svid"
trust_domains = ["corp.example"]
audience = "alpha"
[credentials.jwt-beta]
kind = "jwt-svid"
trust_domains = ["other.example"]
audience = "beta"

[token_exchange]
accept = ["partner-keys", "workload-mtls", "exchanged"]
audiences = ["{ISSUER_URL}", "payments", "partner-api", {{ audience = "reports", allow = ["spiffe://corp.example/partner/acme"] }}]

{partner}{payments}{two}"#,
        d = dir.display(),
    );
    let path = dir.join("portcullis.toml");
    std::fs::write(&path, base_config(dir, "", &pki.tls_section(), &extra)).unwrap();
    portcullis::server::install_crypto();
    let cfg = portcullis::config::load(&path).unwrap_or_else(|e| panic!("{e}"));
    let clock = Arc::new(FakeClock::new(at));
    let gw = portcullis::server::start(
        cfg,
        portcullis::server::Options {
            clock: clock.clone(),
        },
    )
    .await
    .unwrap();
    Lab {
        pki,
        up,
        gw,
        clock,
        corp_jwt,
        other_jwt,
    }
}

type Cert = portcullis::devcert::Issued;

impl Lab {
    fn url(&self, path: &str) -> String {
        format!("https://127.0.0.1:{}{path}", self.gw.data_addr.port())
    }

    fn client(&self, cert: Option<&Cert>) -> reqwest::Client {
        let b = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap();
        let mut roots = rustls::RootCertStore::empty();
        for c in rustls_pki_types::CertificateDer::pem_slice_iter(self.pki.ca.cert_pem().as_bytes())
        {
            roots.add(c.unwrap()).unwrap();
        }
        let b = b.with_root_certificates(roots);
        let cfg = match cert {
            None => b.with_no_client_auth(),
            Some(c) => {
                let chain = rustls_pki_types::CertificateDer::pem_slice_iter(c.cert_pem.as_bytes())
                    .map(|c| c.unwrap())
                    .collect();
                let key =
                    rustls_pki_types::PrivateKeyDer::from_pem_slice(c.key_pem.as_bytes()).unwrap();
                b.with_client_auth_cert(chain, key).unwrap()
            }
        };
        reqwest::Client::builder()
            .use_preconfigured_tls(cfg)
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap()
    }

    /// `POST /oauth2/token` with `form`, one extra header and an optional client certificate;
    /// status and JSON body.
    async fn exchange(
        &self,
        form: &str,
        header: Option<(&str, &str)>,
        cert: Option<&Cert>,
    ) -> (u16, Value) {
        let mut r = self
            .client(cert)
            .post(self.url("/oauth2/token"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form.to_owned());
        if let Some((k, v)) = header {
            r = r.header(k, v);
        }
        let r = r.send().await.unwrap();
        (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
    }

    /// Exchange an API key for a token of `audience` (default when `None`).
    async fn exchange_key(&self, key: &str, audience: Option<&str>) -> (u16, Value) {
        let form = match audience {
            Some(a) => format!("grant_type={}&audience={}", enc(GRANT), enc(a)),
            None => format!("grant_type={}", enc(GRANT)),
        };
        self.exchange(&form, Some(("x-api-key", key)), None).await
    }

    /// Exchange a token (`subject_token`) for a new one.
    async fn reexchange(&self, token: &str, cert: Option<&Cert>) -> (u16, Value) {
        let form = format!(
            "grant_type={}&subject_token={token}&subject_token_type={}",
            enc(GRANT),
            enc(JWT_TYPE)
        );
        self.exchange(&form, None, cert).await
    }

    /// GET `path` with `Authorization: Bearer <token>`.
    async fn bearer(&self, path: &str, token: &str, cert: Option<&Cert>) -> (u16, Value) {
        let r = self
            .client(cert)
            .get(self.url(path))
            .header("authorization", format!("Bearer {token}"))
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
    }

    async fn revoke(&self, body: Value) {
        let r = reqwest::Client::new()
            .post(format!(
                "http://{}/admin/v1/revocations",
                self.gw.admin_addr
            ))
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
    }

    fn now(&self) -> i64 {
        use portcullis::clock::Clock as _;
        self.clock
            .now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64
    }
}

fn enc(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

fn claims_of(token: &str) -> Value {
    let payload = token.split('.').nth(1).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
}

fn token_of(body: &Value) -> String {
    body["access_token"].as_str().unwrap().to_owned()
}

fn upstream_token(up: &Upstream) -> String {
    let seen = up.last();
    seen.headers["authorization"]
        .to_str()
        .unwrap()
        .strip_prefix("Bearer ")
        .unwrap()
        .to_owned()
}

/// Finding 1a: re-exchanging a token keeps its lineage (the `legacy` claim) and never outlives
/// the root token; the chain ends when the root token expires.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reexchange_keeps_lineage_and_never_outlives_the_root() {
    let lab = lab(day(BRIDGE_DAY)).await;
    let (status, body) = lab.exchange_key(ACME_KEY, None).await;
    assert_eq!(status, 200, "{body}");
    let root = token_of(&body);
    let root_claims = claims_of(&root);
    assert_eq!(root_claims["legacy"]["credential"], "partner-keys");
    assert_eq!(root_claims["legacy"]["principal"], "partner-acme");
    let root_exp = root_claims["exp"].as_i64().unwrap();

    lab.clock.advance(Duration::from_secs(240));
    let (status, body) = lab.reexchange(&root, None).await;
    assert_eq!(status, 200, "{body}");
    let second = token_of(&body);
    let c = claims_of(&second);
    assert_eq!(c["legacy"], root_claims["legacy"], "{c}");
    assert!(c["exp"].as_i64().unwrap() <= root_exp, "{c}");
    assert!(body["expires_in"].as_i64().unwrap() <= root_exp - lab.now());
    assert_eq!(c["act"]["lineage"]["jti"], root_claims["jti"], "{c}");
    assert_eq!(c["act"]["lineage"]["credential"], "partner-keys", "{c}");
    // The token for the upstream, minted for the re-exchanged token, says the same.
    assert_eq!(lab.bearer("/partner/x", &second, None).await.0, 200);
    let minted = claims_of(&upstream_token(&lab.up));
    assert_eq!(minted["legacy"], root_claims["legacy"], "{minted}");
    assert!(minted["exp"].as_i64().unwrap() <= root_exp, "{minted}");

    // Keep re-exchanging before each expiry: once the root has expired, nothing derived from it
    // is accepted, however fresh.
    let mut last = second;
    for _ in 0..3 {
        lab.clock.advance(Duration::from_secs(240));
        let (status, body) = lab.reexchange(&last, None).await;
        if status == 200 {
            last = token_of(&body);
        }
    }
    assert!(lab.now() > root_exp + 60);
    assert_eq!(lab.reexchange(&last, None).await.0, 401);
    assert_eq!(lab.bearer("/partner/x", &last, None).await.0, 401);
}

/// Finding 1a: revoking the root credential, or the root token's jti, finishes every token
/// derived from it, on the routes and at the token endpoint.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoking_the_root_finishes_the_whole_lineage() {
    let lab = lab(day(BRIDGE_DAY)).await;
    let (_, body) = lab.exchange_key(ACME_KEY, None).await;
    let root = token_of(&body);
    let (status, body) = lab.reexchange(&root, None).await;
    assert_eq!(status, 200, "{body}");
    let child = token_of(&body);
    let (status, body) = lab.reexchange(&child, None).await;
    assert_eq!(status, 200, "{body}");
    let grandchild = token_of(&body);
    assert_eq!(lab.bearer("/partner/x", &grandchild, None).await.0, 200);

    lab.revoke(json!({"credential": "partner-keys:partner-acme", "reason": "offboarded"}))
        .await;
    for t in [&root, &child, &grandchild] {
        assert_eq!(lab.bearer("/partner/x", t, None).await.0, 401);
        assert_eq!(lab.reexchange(t, None).await.0, 401);
    }
    assert_eq!(lab.exchange_key(ACME_KEY, None).await.0, 401);

    // Hostile twin: the root token's jti revoked, the key itself not.
    let (_, body) = lab.exchange_key(BETA_KEY, None).await;
    let root = token_of(&body);
    let (_, body) = lab.reexchange(&root, None).await;
    let child = token_of(&body);
    let (_, body) = lab.reexchange(&child, None).await;
    let grandchild = token_of(&body);
    // The middle of the chain: revoking the child's jti finishes the grandchild.
    lab.revoke(json!({"jti": claims_of(&child)["jti"], "reason": "leaked"}))
        .await;
    assert_eq!(lab.bearer("/partner/x", &grandchild, None).await.0, 401);
    assert_eq!(lab.reexchange(&grandchild, None).await.0, 401);
    assert_eq!(lab.bearer("/partner/x", &root, None).await.0, 200);
    lab.revoke(json!({"jti": claims_of(&root)["jti"], "reason": "leaked"}))
        .await;
    assert_eq!(lab.bearer("/partner/x", &root, None).await.0, 401);
}

/// Finding 1b: the plan's `enforce` applies to the root credential of an exchanged token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retired_credential_cannot_be_laundered_through_exchange() {
    // Two minutes before the partner plan's enforce date: bridge.
    let lab = lab(day(ENFORCE_DAY) - Duration::from_secs(12 * 3600 + 120)).await;
    let (status, body) = lab.exchange_key(ACME_KEY, None).await;
    assert_eq!(status, 200, "{body}");
    let token = token_of(&body);
    let (status, body) = lab.reexchange(&token, None).await;
    assert_eq!(status, 200, "{body}");
    let child = token_of(&body);
    assert_eq!(lab.bearer("/partner/x", &token, None).await.0, 200);

    lab.clock.advance(Duration::from_secs(180)); // enforce
    for t in [&token, &child] {
        let (status, body) = lab.bearer("/partner/x", t, None).await;
        assert_eq!(status, 401, "{body}");
        assert_eq!(body["type"], "urn:portcullis:legacy-credential-retired");
    }
    // The key itself, as before.
    let r = lab
        .client(None)
        .get(lab.url("/partner/x"))
        .header("x-api-key", ACME_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    // Exchange refuses too: every route that takes gateway tokens and would let this caller in
    // refuses the key as retired.
    let (status, body) = lab.exchange_key(ACME_KEY, None).await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["type"], "urn:portcullis:legacy-credential-retired");
    let (status, body) = lab.reexchange(&child, None).await;
    assert_eq!(status, 401, "{body}");
}

/// Finding 1c: a token bound to a certificate (`cnf.x5t#S256`) needs that certificate on the
/// connection, on the routes and at the token endpoint; the binding survives re-exchange.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_bound_token_needs_that_certificate() {
    let lab = lab(day(BRIDGE_DAY)).await;
    let svid = lab.pki.ca.svid(PAYER).unwrap();
    let twin = lab.pki.ca.svid(PAYER).unwrap(); // same SPIFFE ID, another key
    let form = format!("grant_type={}&audience={}", enc(GRANT), enc(ISSUER_URL));
    let (status, body) = lab.exchange(&form, None, Some(&svid)).await;
    assert_eq!(status, 200, "{body}");
    let token = token_of(&body);
    let cnf = claims_of(&token)["cnf"]["x5t#S256"].clone();
    assert!(cnf.is_string());

    assert_eq!(lab.bearer("/payments/x", &token, None).await.0, 401);
    assert_eq!(lab.bearer("/payments/x", &token, Some(&twin)).await.0, 401);
    assert_eq!(lab.bearer("/payments/x", &token, Some(&svid)).await.0, 200);
    assert_eq!(claims_of(&upstream_token(&lab.up))["cnf"]["x5t#S256"], cnf);

    assert_eq!(lab.reexchange(&token, None).await.0, 401);
    assert_eq!(lab.reexchange(&token, Some(&twin)).await.0, 401);
    let (status, body) = lab.reexchange(&token, Some(&svid)).await;
    assert_eq!(status, 200, "{body}");
    let child = token_of(&body);
    assert_eq!(claims_of(&child)["cnf"]["x5t#S256"], cnf);
    assert_eq!(lab.bearer("/payments/x", &child, None).await.0, 401);
    assert_eq!(lab.bearer("/payments/x", &child, Some(&svid)).await.0, 200);

    // A foreign JWT-SVID with a cnf is held to it as well.
    let mut claims = json!({"sub": PAYER, "aud": "alpha", "exp": lab.now() + 300});
    claims["cnf"] = json!({"x5t#S256": cnf});
    let bound = lab.corp_jwt.sign(lab.corp_jwt.header(), &claims);
    assert_eq!(lab.bearer("/two/x", &bound, None).await.0, 401);
    assert_eq!(lab.bearer("/two/x", &bound, Some(&twin)).await.0, 401);
    assert_eq!(lab.bearer("/two/x", &bound, Some(&svid)).await.0, 200);
}

/// Finding 1d: an audience is issued only to a caller that some route with that audience (or,
/// for the gateway's own, some route accepting gateway tokens) would allow.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audiences_go_only_to_callers_a_route_would_allow() {
    let lab = lab(day(BRIDGE_DAY)).await;
    let (status, body) = lab.exchange_key(ACME_KEY, Some("payments")).await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["type"], "urn:portcullis:forbidden");
    assert_eq!(lab.exchange_key(ACME_KEY, Some("partner-api")).await.0, 200);
    assert_eq!(lab.exchange_key(ACME_KEY, Some(ISSUER_URL)).await.0, 200);

    let payer = lab.pki.ca.svid(PAYER).unwrap();
    let stranger = lab
        .pki
        .ca
        .svid("spiffe://corp.example/ns/other/sa/x")
        .unwrap();
    let form = |aud: &str| format!("grant_type={}&audience={}", enc(GRANT), enc(aud));
    assert_eq!(
        lab.exchange(&form("payments"), None, Some(&payer)).await.0,
        200
    );
    assert_eq!(
        lab.exchange(&form("partner-api"), None, Some(&payer))
            .await
            .0,
        403
    );
    // The gateway's own audience: no route accepting gateway tokens lets the stranger in.
    assert_eq!(
        lab.exchange(&form(ISSUER_URL), None, Some(&stranger))
            .await
            .0,
        403
    );
    assert_eq!(
        lab.exchange(&format!("grant_type={}", enc(GRANT)), None, Some(&stranger))
            .await
            .0,
        403
    );
    // An explicit rule decides for its audience (no route takes "reports").
    assert_eq!(lab.exchange_key(ACME_KEY, Some("reports")).await.0, 200);
    assert_eq!(lab.exchange_key(BETA_KEY, Some("reports")).await.0, 403);
    assert_eq!(
        lab.exchange(&form("reports"), None, Some(&payer)).await.0,
        403
    );
    // Re-exchange is held to the same rule.
    let (_, body) = lab.exchange_key(ACME_KEY, None).await;
    let t = token_of(&body);
    let form = format!(
        "grant_type={}&subject_token={t}&subject_token_type={}&audience=payments",
        enc(GRANT),
        enc(JWT_TYPE)
    );
    assert_eq!(lab.exchange(&form, None, None).await.0, 403);
}

/// Finding 2: with two `jwt-svid` credentials in one accept list, a token addressed to the second
/// (its audience, its trust domain) is checked there; a token for neither fails on both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_second_jwt_svid_credential_gets_its_chance() {
    let lab = lab(day(BRIDGE_DAY)).await;
    let exp = lab.now() + 300;
    let corp = |aud: &str| {
        lab.corp_jwt.sign(
            lab.corp_jwt.header(),
            &json!({"sub": "spiffe://corp.example/a", "aud": aud, "exp": exp}),
        )
    };
    let other = |aud: &str| {
        lab.other_jwt.sign(
            lab.other_jwt.header(),
            &json!({"sub": "spiffe://other.example/b", "aud": aud, "exp": exp}),
        )
    };
    assert_eq!(lab.bearer("/two/x", &corp("alpha"), None).await.0, 200);
    let (status, body) = lab.bearer("/two/x", &other("beta"), None).await;
    assert_eq!(status, 200, "{body}");
    let audit = audit_lines(lab.pki.dir.path(), 2).await;
    assert!(audit
        .iter()
        .any(|l| l["credential"] == "jwt-beta" && l["identity"] == "spiffe://other.example/b"));
    // For neither: refused (not "unauthenticated"), whichever mismatches.
    for t in [corp("beta"), other("alpha"), corp("gamma"), other("gamma")] {
        let (status, body) = lab.bearer("/two/x", &t, None).await;
        assert_eq!(status, 401);
        assert_eq!(body["type"], "urn:portcullis:invalid-credential");
    }
    // Signed by the wrong trust domain's key: no second chance makes it valid.
    let forged = lab.corp_jwt.sign(
        lab.corp_jwt.header(),
        &json!({"sub": "spiffe://other.example/b", "aud": "beta", "exp": exp}),
    );
    assert_eq!(lab.bearer("/two/x", &forged, None).await.0, 401);
    // A mismatch still never falls through to another kind: the partner route's API key is not
    // consulted once a Bearer token was refused.
    let r = lab
        .client(None)
        .get(lab.url("/partner/x"))
        .header("authorization", format!("Bearer {}", corp("alpha")))
        .header("x-api-key", ACME_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
}

/// P-256 group order.
const P256_N: [u8; 32] = [
    0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    0xbc, 0xe6, 0xfa, 0xad, 0xa7, 0x17, 0x9e, 0x84, 0xf3, 0xb9, 0xca, 0xc2, 0xfc, 0x63, 0x25, 0x51,
];

/// The same ES256 token with `s` replaced by `n - s` (the other valid signature).
fn flip_s(token: &str) -> String {
    let (signed, sig) = token.rsplit_once('.').unwrap();
    let mut sig = URL_SAFE_NO_PAD.decode(sig).unwrap();
    assert_eq!(sig.len(), 64);
    let s = &mut sig[32..];
    let mut borrow = 0i16;
    for i in (0..32).rev() {
        let d = i16::from(P256_N[i]) - i16::from(s[i]) - borrow;
        borrow = i16::from(d < 0);
        s[i] = (d + 256 * borrow) as u8;
    }
    format!("{signed}.{}", URL_SAFE_NO_PAD.encode(sig))
}

/// Finding 3: `exp` beyond the horizon or not a whole number is refused; the high-S twin of a
/// valid ES256 signature is read as the same token (one revocation finishes both), for
/// JWT-SVIDs and for the gateway's own tokens.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn far_exp_is_refused_and_high_s_is_the_same_token() {
    let lab = lab(day(BRIDGE_DAY)).await;
    let sign = |exp: Value| {
        lab.corp_jwt.sign(
            lab.corp_jwt.header(),
            &json!({"sub": "spiffe://corp.example/a", "aud": "alpha", "exp": exp}),
        )
    };
    assert_eq!(
        lab.bearer("/two/x", &sign(json!(lab.now() + 300)), None)
            .await
            .0,
        200
    );
    for exp in [
        json!(1e300),
        json!(lab.now() + 10 * 365 * 86400),
        json!(u64::MAX),
        json!(lab.now() as f64 + 300.5),
        json!("9999999999"),
    ] {
        let (status, body) = lab.bearer("/two/x", &sign(exp.clone()), None).await;
        assert_eq!(status, 401, "exp {exp}: {body}");
    }

    // High-S: both encodings of one signature verify mathematically. The gateway reads both as
    // one token (the low-S form): accepted alike, and a revocation of its jti finishes both,
    // whichever was seen first. (SPIRE signs with Go's crypto/ecdsa, which does not normalize.)
    let sign_jti = |jti: &str| {
        lab.corp_jwt.sign(
            lab.corp_jwt.header(),
            &json!({"sub": "spiffe://corp.example/a", "aud": "alpha",
                    "exp": lab.now() + 301, "jti": jti}),
        )
    };
    let good = sign_jti("svid-1");
    let twin = flip_s(&good);
    assert_ne!(good, twin);
    assert_eq!(lab.bearer("/two/x", &twin, None).await.0, 200);
    assert_eq!(lab.bearer("/two/x", &good, None).await.0, 200);
    lab.revoke(json!({"jti": "svid-1", "reason": "leaked"}))
        .await;
    assert_eq!(lab.bearer("/two/x", &good, None).await.0, 401);
    assert_eq!(lab.bearer("/two/x", &twin, None).await.0, 401);
    // The gateway's own tokens are minted low-S; their high-S twin is the same token, and it is
    // finished by the same revocation.
    for round in 0..4 {
        let (status, body) = lab.exchange_key(ACME_KEY, None).await;
        assert_eq!(status, 200, "{body}");
        let own = token_of(&body);
        assert_eq!(lab.bearer("/partner/x", &own, None).await.0, 200);
        assert_eq!(lab.bearer("/partner/x", &flip_s(&own), None).await.0, 200);
        if round == 3 {
            lab.revoke(json!({"jti": claims_of(&own)["jti"], "reason": "leaked"}))
                .await;
            assert_eq!(lab.bearer("/partner/x", &flip_s(&own), None).await.0, 401);
            assert_eq!(lab.bearer("/partner/x", &own, None).await.0, 401);
        }
        lab.clock.advance(Duration::from_secs(300));
    }
}
