//! Workload identity end to end: X.509-SVIDs over mTLS and JWT-SVID bearer tokens in, a minted
//! token out to the upstream, checked by an independent verifier (PyJWT) that is given only the
//! gateway's JWKS URL. Every SVID and token is made here with rcgen / jsonwebtoken, not by the
//! code under test.

use rustls_pki_types::pem::PemObject;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, SanType,
};
use serde_json::{json, Value};

use crate::support::*;

const TD: &str = "corp.example";
const CALLER: &str = "spiffe://corp.example/ns/payments/sa/batch";
const ISSUER_URL: &str = "https://portcullis.corp.example";

/// A SPIFFE CA for one trust domain.
pub(crate) struct SpiffeCa {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl SpiffeCa {
    pub(crate) fn new(td: &str) -> SpiffeCa {
        let mut p = CertificateParams::default();
        p.distinguished_name
            .push(DnType::CommonName, format!("{td} CA"));
        p.subject_alt_names = vec![SanType::URI(format!("spiffe://{td}").try_into().unwrap())];
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        SpiffeCa {
            issuer: CertifiedIssuer::self_signed(p, KeyPair::generate().unwrap()).unwrap(),
        }
    }

    pub(crate) fn pem(&self) -> String {
        self.issuer.pem()
    }

    /// A leaf; `edit` breaks it in the way a test needs.
    pub(crate) fn leaf(
        &self,
        uris: &[&str],
        edit: impl FnOnce(&mut CertificateParams),
    ) -> (String, String) {
        let mut p = CertificateParams::default();
        p.distinguished_name.push(DnType::CommonName, "workload");
        p.subject_alt_names = uris
            .iter()
            .map(|u| SanType::URI((*u).try_into().unwrap()))
            .collect();
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        edit(&mut p);
        let key = KeyPair::generate().unwrap();
        let cert = p.signed_by(&key, &self.issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    }
}

/// An ES256 JWT-SVID signer with its JWK.
pub(crate) struct Signer {
    kid: String,
    der: Vec<u8>,
    jwk: Value,
}

impl Signer {
    pub(crate) fn new(kid: &str) -> Signer {
        let key = KeyPair::generate().unwrap();
        let der = key.serialize_der();
        let sk = portcullis::token::SigningKey::from_pkcs8_der(&der, "test").unwrap();
        let mut jwk = serde_json::to_value(sk.public_jwk()).unwrap();
        jwk["kid"] = json!(kid);
        Signer {
            kid: kid.into(),
            der,
            jwk,
        }
    }

    pub(crate) fn sign(&self, header: Header, claims: &Value) -> String {
        portcullis::spiffe::install_jwt_crypto();
        // Low-S, as the gateway requires (ECDSA signers may emit either form).
        portcullis::low_s::normalize_jws(
            &jsonwebtoken::encode(&header, claims, &EncodingKey::from_ec_der(&self.der)).unwrap(),
        )
    }

    pub(crate) fn header(&self) -> Header {
        let mut h = Header::new(Algorithm::ES256);
        h.kid = Some(self.kid.clone());
        h.typ = Some("JWT".into());
        h
    }
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn claims(sub: &str, aud: &str) -> Value {
    json!({"sub": sub, "aud": [aud], "exp": now() + 300, "iat": now()})
}

struct Env {
    pki: Pki,
    corp: SpiffeCa,
    other: SpiffeCa,
    jwt: Signer,
    other_jwt: Signer,
    up: Upstream,
    gw: portcullis::server::Running,
}

pub(crate) fn write_jwks(path: &Path, keys: &[&Signer]) {
    let jwks = json!({"keys": keys.iter().map(|k| k.jwk.clone()).collect::<Vec<_>>()});
    std::fs::write(path, jwks.to_string()).unwrap();
}

async fn env(issuer_keys: &[&str]) -> Env {
    let pki = Pki::new();
    let dir = pki.dir.path();
    let corp = SpiffeCa::new(TD);
    let other = SpiffeCa::new("other.example");
    std::fs::write(dir.join("corp.pem"), corp.pem()).unwrap();
    std::fs::write(dir.join("other.pem"), other.pem()).unwrap();
    let jwt = Signer::new("corp-1");
    let other_jwt = Signer::new("other-1");
    write_jwks(&dir.join("corp-jwt.json"), &[&jwt]);
    write_jwks(&dir.join("other-jwt.json"), &[&other_jwt]);
    let up = Upstream::start().await;
    let keys = issuer_keys
        .iter()
        .map(|k| format!("\"{}\"", dir.join(k).display()))
        .collect::<Vec<_>>()
        .join(", ");
    let extra = format!(
        r#"
[issuer]
url = "{ISSUER_URL}"
spiffe_id = "spiffe://corp.example/portcullis"
well_known_hosts = ["127.0.0.1", "localhost"]
keys = [{keys}]
ttl = "5m"

[trust."corp.example"]
x509_bundle = "{d}/corp.pem"
jwt_bundle = "{d}/corp-jwt.json"
[trust."other.example"]
x509_bundle = "{d}/other.pem"
jwt_bundle = "{d}/other-jwt.json"

[credentials.workload-mtls]
kind = "mtls"
trust_domains = ["corp.example"]

[credentials.workload-jwt]
kind = "jwt-svid"
trust_domains = ["corp.example"]
audience = "portcullis"

{route}"#,
        d = dir.display(),
        route = RouteToml::new("payments", "/payments/", &up.url())
            .accept(&["workload-mtls", "workload-jwt"])
            .allow(&["spiffe://corp.example/ns/payments/*"])
            .audience("cics-payments")
            .upstream_key("timeout = \"2s\""),
    );
    let toml = base_config(dir, "", &pki.tls_section(), &extra);
    let gw = start_in_process(dir, &toml).await;
    Env {
        pki,
        corp,
        other,
        jwt,
        other_jwt,
        up,
        gw,
    }
}

fn generate_key(path: &Path) {
    let out = Command::new(bin())
        .args(["keys", "generate", "--alg", "es256", "--out"])
        .arg(path)
        .output()
        .unwrap();
    assert!(out.status.success());
}

impl Env {
    fn client(&self, cert: Option<&(String, String)>) -> reqwest::Client {
        let mut roots = rustls::RootCertStore::empty();
        for c in rustls_pki_types::CertificateDer::pem_slice_iter(self.pki.ca.cert_pem().as_bytes())
        {
            roots.add(c.unwrap()).unwrap();
        }
        let b = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
        let cfg = match cert {
            None => b.with_no_client_auth(),
            Some((cert, key)) => {
                let chain = rustls_pki_types::CertificateDer::pem_slice_iter(cert.as_bytes())
                    .map(|c| c.unwrap())
                    .collect();
                let key = rustls_pki_types::PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap();
                b.with_client_auth_cert(chain, key).unwrap()
            }
        };
        reqwest::Client::builder()
            .use_preconfigured_tls(cfg)
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap()
    }

    fn url(&self, path: &str) -> String {
        format!("https://127.0.0.1:{}{path}", self.gw.data_addr.port())
    }

    /// Status of a GET with a client certificate; `None` when the handshake was refused.
    async fn get_with_cert(&self, cert: &(String, String)) -> Option<u16> {
        self.client(Some(cert))
            .get(self.url("/payments/x"))
            .send()
            .await
            .ok()
            .map(|r| r.status().as_u16())
    }

    async fn bearer(&self, token: &str) -> (u16, Value) {
        let r = self
            .client(None)
            .get(self.url("/payments/x"))
            .header("authorization", format!("Bearer {token}"))
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }
}

fn pyjwt_verify(ca: &Path, jwks_url: &str, token: &str, expect: &Value) {
    let script = r#"
import json, sys, time, jwt
url, token, expect = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
key = jwt.PyJWKClient(url).get_signing_key_from_jwt(token)
header = jwt.get_unverified_header(token)
assert set(header) == {"alg", "kid", "typ"} and header["alg"] == "ES256" and header["typ"] == "JWT", header
c = jwt.decode(token, key.key, algorithms=["ES256"], audience=expect["aud"], issuer=expect["iss"],
               options={"require": ["exp", "iat", "nbf", "jti", "sub", "aud", "iss"]})
for k in ("sub", "amr", "act"):
    assert c[k] == expect[k], (k, c)
assert ("cnf" in c) == ("cnf" in expect) and c.get("cnf") == expect.get("cnf"), c
assert "legacy" not in c, c
assert 0 < c["exp"] - c["iat"] <= 300 and c["nbf"] <= time.time() + 1, c
print("pyjwt-ok")
"#;
    let out = Command::new("python3")
        .env("SSL_CERT_FILE", ca)
        .args(["-c", script, jwks_url, token, &expect.to_string()])
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("pyjwt-ok"),
        "PyJWT refused the minted token:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn bearer_of(seen: &Seen) -> String {
    seen.headers["authorization"]
        .to_str()
        .unwrap()
        .strip_prefix("Bearer ")
        .unwrap()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mtls_caller_gets_a_minted_token_bound_to_its_certificate() {
    let e = env(&[]).await;
    let svid = e.corp.leaf(&[CALLER], |_| {});
    let r = e
        .client(Some(&svid))
        .get(e.url("/payments/batch?x=1"))
        .header("x-forwarded-client-cert", "By=spiffe://corp.example/admin")
        .header("x-portcullis-identity", "spiffe://corp.example/admin")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let seen = e.up.last();
    assert!(seen.headers.get("x-forwarded-client-cert").is_none());
    assert!(seen.headers.get("x-portcullis-identity").is_none());
    let token = bearer_of(&seen);
    let der = rustls_pki_types::CertificateDer::pem_slice_iter(svid.0.as_bytes())
        .next()
        .unwrap()
        .unwrap();
    use sha2::Digest as _;
    let x5t = URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(der.as_ref()));
    let expect = json!({
        "iss": ISSUER_URL, "aud": "cics-payments", "sub": CALLER, "amr": ["mtls"],
        "act": {"sub": "spiffe://corp.example/portcullis",
                "lineage": {"credential": "workload-mtls", "kind": "mtls"}},
        "cnf": {"x5t#S256": x5t},
    });
    let ca = e.pki.path("ca.pem");
    let jwks = e.url("/.well-known/jwks.json");
    tokio::task::spawn_blocking(move || pyjwt_verify(&ca, &jwks, &token, &expect))
        .await
        .unwrap();

    // The same caller again: the cached token is handed out, not a new one.
    let r = e
        .client(Some(&svid))
        .get(e.url("/payments/batch"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(bearer_of(&e.up.last()), bearer_of(&seen));
    let audit = audit_lines(e.pki.dir.path(), 2).await;
    let line = &audit[0];
    assert_eq!(line["identity"], CALLER);
    assert_eq!(line["kind"], "mtls");
    assert_eq!(line["credential"], "workload-mtls");
    assert!(line["jti"].as_str().is_some_and(|j| !j.is_empty()));

    // Another identity of the trust domain, outside the allow pattern: 403.
    let stranger = e
        .corp
        .leaf(&["spiffe://corp.example/ns/paymentsx/sa/a"], |_| {});
    assert_eq!(e.get_with_cert(&stranger).await, Some(403));
    // No certificate at all: 401.
    let r = e
        .client(None)
        .get(e.url("/payments/x"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
}

/// The thumbprint a token is bound to is worked out once per connection and kept: two
/// connections of the same identity with two different certificates, their requests taking
/// turns, each get tokens bound to their own certificate, never the other's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_connection_gets_tokens_bound_to_its_own_certificate() {
    let e = env(&[]).await;
    let first = e.corp.leaf(&[CALLER], |_| {});
    let second = e.corp.leaf(&[CALLER], |_| {});
    let x5t_of = |svid: &(String, String)| {
        use sha2::Digest as _;
        let der = rustls_pki_types::CertificateDer::pem_slice_iter(svid.0.as_bytes())
            .next()
            .unwrap()
            .unwrap();
        URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(der.as_ref()))
    };
    let cnf_of = |token: &str| -> String {
        let payload = token.split('.').nth(1).unwrap();
        let claims: Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap();
        claims["cnf"]["x5t#S256"].as_str().unwrap().to_string()
    };
    let (want_first, want_second) = (x5t_of(&first), x5t_of(&second));
    assert_ne!(want_first, want_second);
    // One client each: each keeps its own keep-alive connection.
    let (a, b) = (e.client(Some(&first)), e.client(Some(&second)));
    for round in 0..3 {
        for (client, want) in [(&a, &want_first), (&b, &want_second)] {
            let r = client.get(e.url("/payments/batch")).send().await.unwrap();
            assert_eq!(r.status(), 200, "round {round}");
            assert_eq!(&cnf_of(&bearer_of(&e.up.last())), want, "round {round}");
        }
    }
    // The certificate's expiry, also worked out once per connection, reaches the inventory.
    let der = rustls_pki_types::CertificateDer::pem_slice_iter(second.0.as_bytes())
        .next()
        .unwrap()
        .unwrap();
    let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref()).unwrap();
    let secs = u64::try_from(cert.validity().not_after.timestamp()).unwrap();
    let expiry = humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(secs));
    let inv: Value = reqwest::get(format!("http://{}/admin/v1/inventory", e.gw.admin_addr))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let row = inv["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["kind"] == "mtls" && r["identity"] == CALLER)
        .unwrap_or_else(|| panic!("no mtls row: {inv}"));
    assert_eq!(row["cert_not_after"], expiry.to_string(), "{row}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_x509_svid_rule_is_enforced() {
    let e = env(&[]).await;
    let hits = || e.up.count();
    let cases: Vec<(&str, (String, String))> = vec![
        (
            "CA certificate as leaf",
            e.corp.leaf(&[CALLER], |p| {
                p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
                p.key_usages = vec![
                    KeyUsagePurpose::DigitalSignature,
                    KeyUsagePurpose::KeyCertSign,
                ];
            }),
        ),
        (
            "two URI SANs",
            e.corp.leaf(
                &[CALLER, "spiffe://corp.example/ns/payments/sa/other"],
                |_| {},
            ),
        ),
        (
            "no URI SAN",
            e.corp.leaf(&[], |p| {
                p.subject_alt_names = vec![SanType::DnsName("workload".try_into().unwrap())]
            }),
        ),
        (
            "not a SPIFFE ID",
            e.corp.leaf(&["spiffe://corp.example/ns/../admin"], |_| {}),
        ),
        (
            "https URI instead of spiffe",
            e.corp
                .leaf(&["https://corp.example/ns/payments/sa/batch"], |_| {}),
        ),
        (
            "signed by another trust domain's CA",
            e.other.leaf(&[CALLER], |_| {}),
        ),
        (
            "expired",
            e.corp.leaf(&[CALLER], |p| {
                p.not_before = rcgen::date_time_ymd(2020, 1, 1);
                p.not_after = rcgen::date_time_ymd(2021, 1, 1);
            }),
        ),
        (
            "keyCertSign on a leaf",
            e.corp.leaf(&[CALLER], |p| {
                p.key_usages = vec![
                    KeyUsagePurpose::DigitalSignature,
                    KeyUsagePurpose::KeyCertSign,
                ]
            }),
        ),
        (
            "no digitalSignature",
            e.corp.leaf(&[CALLER], |p| {
                p.key_usages = vec![KeyUsagePurpose::KeyEncipherment]
            }),
        ),
        (
            "valid SVID of a trust domain this credential does not accept",
            e.other
                .leaf(&["spiffe://other.example/ns/payments/sa/batch"], |_| {}),
        ),
    ];
    let before = hits();
    for (what, cert) in &cases {
        let status = e.get_with_cert(cert).await;
        assert!(
            matches!(status, None | Some(401)),
            "{what}: expected a refused handshake or 401, got {status:?}"
        );
    }
    assert_eq!(hits(), before, "no refused SVID may reach the upstream");
    // And the valid one passes, with its ID as `sub`.
    assert_eq!(
        e.get_with_cert(&e.corp.leaf(&[CALLER], |_| {})).await,
        Some(200)
    );
    let token = bearer_of(&e.up.last());
    let claims: Value = serde_json::from_slice(
        &URL_SAFE_NO_PAD
            .decode(token.split('.').nth(1).unwrap())
            .unwrap(),
    )
    .unwrap();
    assert_eq!(claims["sub"], CALLER);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwt_svid_attacks_are_refused_with_invalid_credential() {
    let e = env(&[]).await;
    let good = e.jwt.sign(e.jwt.header(), &claims(CALLER, "portcullis"));
    let (status, _) = e.bearer(&good).await;
    assert_eq!(status, 200);
    let seen = e.up.last();
    let minted = bearer_of(&seen);
    assert_ne!(
        minted, good,
        "the caller's JWT-SVID must never reach the upstream"
    );

    let b64 = |v: &Value| URL_SAFE_NO_PAD.encode(v.to_string());
    let c = claims(CALLER, "portcullis");
    let alg_none = format!(
        "{}.{}.",
        b64(&json!({"alg": "none", "kid": "corp-1", "typ": "JWT"})),
        b64(&c)
    );
    let alg_none_sig = format!(
        "{}.{}.{}",
        b64(&json!({"alg": "none", "kid": "corp-1"})),
        b64(&c),
        URL_SAFE_NO_PAD.encode(b"x")
    );
    // HS256 "signed" with the bundle's public key material as the HMAC secret.
    let mut hs = Header::new(Algorithm::HS256);
    hs.kid = Some("corp-1".into());
    let public_bytes = e.jwt.jwk.to_string();
    let hs256 =
        jsonwebtoken::encode(&hs, &c, &EncodingKey::from_secret(public_bytes.as_bytes())).unwrap();
    let x_bytes = URL_SAFE_NO_PAD
        .decode(e.jwt.jwk["x"].as_str().unwrap())
        .unwrap();
    let hs256_x = jsonwebtoken::encode(&hs, &c, &EncodingKey::from_secret(&x_bytes)).unwrap();
    let mut unknown_kid = e.jwt.header();
    unknown_kid.kid = Some("nope".into());
    // A key of another trust domain, with that domain's kid, claiming a corp.example ID.
    let other_td = e.other_jwt.sign(e.other_jwt.header(), &c);
    // …and with the corp kid (the kid exists in corp's bundle, the signature does not match).
    let mut other_with_corp_kid = e.other_jwt.header();
    other_with_corp_kid.kid = Some("corp-1".into());
    let mut jku = e.jwt.header();
    jku.kid = Some("attacker".into());
    jku.jku = Some("https://attacker.example/jwks.json".into());
    let jwk_header = Signer::new("attacker");
    let mut embedded = jwk_header.header();
    embedded.jwk = Some(serde_json::from_value(jwk_header.jwk.clone()).unwrap());
    let huge_sub = format!("{CALLER}/{}", "a".repeat(9000));

    let cases: Vec<(&str, String)> = vec![
        ("alg none", alg_none),
        ("alg none with a signature", alg_none_sig),
        ("HS256 keyed with the public JWK", hs256),
        ("HS256 keyed with the public key x coordinate", hs256_x),
        ("unknown kid", e.jwt.sign(unknown_kid, &c)),
        ("key from another trust domain", other_td),
        ("another domain's key under our kid", e.other_jwt.sign(other_with_corp_kid, &c)),
        (
            "expired",
            e.jwt.sign(
                e.jwt.header(),
                &json!({"sub": CALLER, "aud": "portcullis", "exp": now() - 3600}),
            ),
        ),
        (
            "nbf in the future",
            e.jwt.sign(
                e.jwt.header(),
                &json!({"sub": CALLER, "aud": "portcullis", "exp": now() + 7200, "nbf": now() + 3600}),
            ),
        ),
        ("no exp", e.jwt.sign(e.jwt.header(), &json!({"sub": CALLER, "aud": "portcullis"}))),
        ("wrong aud", e.jwt.sign(e.jwt.header(), &claims(CALLER, "someone-else"))),
        ("sub not a SPIFFE ID", e.jwt.sign(e.jwt.header(), &claims("batch01", "portcullis"))),
        (
            "sub of another trust domain",
            e.jwt.sign(e.jwt.header(), &claims("spiffe://other.example/ns/payments/sa/batch", "portcullis")),
        ),
        ("jku pointing elsewhere", jwk_header.sign(jku, &c)),
        ("embedded jwk", jwk_header.sign(embedded, &c)),
        ("tampered payload", {
            let mut p: Vec<String> = good.split('.').map(String::from).collect();
            p[1] = b64(&claims("spiffe://corp.example/ns/payments/sa/admin", "portcullis"));
            p.join(".")
        }),
        ("a 9 KiB token", e.jwt.sign(e.jwt.header(), &claims(&huge_sub, "portcullis"))),
    ];
    let before = e.up.count();
    for (what, token) in &cases {
        let (status, body) = e.bearer(token).await;
        assert_eq!(status, 401, "{what}: {body}");
        assert_eq!(
            body["type"], "urn:portcullis:invalid-credential",
            "{what}: {body}"
        );
        assert!(
            !body.to_string().contains(token.as_str()),
            "{what}: token echoed"
        );
    }
    assert_eq!(
        e.up.count(),
        before,
        "no refused token may reach the upstream"
    );

    // A 1 MB token never gets as far as the authenticator: the head limit refuses it first.
    let megabyte = "a".repeat(1024 * 1024);
    let r = e
        .client(None)
        .get(e.url("/payments/x"))
        .header("authorization", format!("Bearer {megabyte}"))
        .send()
        .await;
    if let Ok(r) = r {
        assert_eq!(r.status(), 431);
    }
    assert_eq!(e.up.count(), before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issuer_key_rotation_keeps_old_tokens_valid_while_listed() {
    // Start with one key, get a token minted with it.
    let dir = tempfile::tempdir().unwrap();
    let old = dir.path().join("old.pem");
    let new = dir.path().join("new.pem");
    generate_key(&old);
    generate_key(&new);
    let e = env(&[old.to_str().unwrap()]).await;
    let svid = e.corp.leaf(&[CALLER], |_| {});
    assert_eq!(e.get_with_cert(&svid).await, Some(200));
    let token = bearer_of(&e.up.last());
    let inspect = |jwks: String, token: String| {
        Command::new(bin())
            .env("SSL_CERT_FILE", e.pki.path("ca.pem"))
            .args(["token", "inspect", &token, "--jwks-file", &jwks])
            .output()
            .unwrap()
            .status
            .code()
    };
    let fetch = |gw: &portcullis::server::Running, pki: &Pki| {
        let url = format!(
            "https://127.0.0.1:{}/.well-known/jwks.json",
            gw.data_addr.port()
        );
        let client = pki.client(true);
        async move { client.get(url).send().await.unwrap().text().await.unwrap() }
    };
    let jwks_path = dir.path().join("jwks.json");
    std::fs::write(&jwks_path, fetch(&e.gw, &e.pki).await).unwrap();
    let j = jwks_path.to_str().unwrap().to_owned();
    assert_eq!(inspect(j.clone(), token.clone()), Some(0));

    // Rotate: the new key signs, the old one is still published → the old token verifies.
    let e2 = env(&[new.to_str().unwrap(), old.to_str().unwrap()]).await;
    let published = fetch(&e2.gw, &e2.pki).await;
    let keys: Value = serde_json::from_str(&published).unwrap();
    assert_eq!(keys["keys"].as_array().unwrap().len(), 2);
    std::fs::write(&jwks_path, &published).unwrap();
    assert_eq!(inspect(j.clone(), token.clone()), Some(0));
    // New tokens are signed by the new key.
    assert_eq!(
        e2.get_with_cert(&e2.corp.leaf(&[CALLER], |_| {})).await,
        Some(200)
    );
    let fresh = bearer_of(&e2.up.last());
    let kid = |t: &str| -> Value {
        serde_json::from_slice(
            &URL_SAFE_NO_PAD
                .decode(t.split('.').next().unwrap())
                .unwrap(),
        )
        .unwrap()
    };
    assert_eq!(kid(&fresh)["kid"], keys["keys"][0]["kid"]);
    assert_ne!(kid(&fresh)["kid"], kid(&token)["kid"]);

    // The old key removed: its tokens no longer verify.
    let e3 = env(&[new.to_str().unwrap()]).await;
    std::fs::write(&jwks_path, fetch(&e3.gw, &e3.pki).await).unwrap();
    assert_eq!(inspect(j, token), Some(1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_exchange_round_trip_then_the_token_is_accepted_on_a_route() {
    // The route's jwt-svid credential trusts the gateway's own issuer keys (`trust_issuer = true`)
    // with the issuer URL as audience: exchanged tokens are accepted there.
    let pki = Pki::new();
    let dir = pki.dir.path();
    let corp = SpiffeCa::new(TD);
    std::fs::write(dir.join("corp.pem"), corp.pem()).unwrap();
    let jwt = Signer::new("corp-1");
    write_jwks(&dir.join("corp-jwt.json"), &[&jwt]);
    let up = Upstream::start().await;
    let extra = format!(
        r#"
[issuer]
url = "{ISSUER_URL}"
spiffe_id = "spiffe://corp.example/portcullis"
well_known_hosts = ["127.0.0.1", "localhost"]

[trust."corp.example"]
x509_bundle = "{d}/corp.pem"
jwt_bundle = "{d}/corp-jwt.json"

[credentials.workload-mtls]
kind = "mtls"
trust_domains = ["corp.example"]

[credentials.workload-jwt]
kind = "jwt-svid"
trust_domains = ["corp.example"]
audience = "portcullis"

[credentials.exchanged]
kind = "jwt-svid"
trust_domains = ["corp.example"]
audience = "{ISSUER_URL}"
trust_issuer = true

[token_exchange]
accept = ["workload-mtls", "workload-jwt"]

{route}"#,
        d = dir.display(),
        route = RouteToml::new("payments", "/payments/", &up.url())
            .accept(&["exchanged"])
            .allow(&["spiffe://corp.example/ns/payments/*"])
            .audience("cics-payments"),
    );
    let toml = base_config(dir, "", &pki.tls_section(), &extra);
    let gw = start_in_process(dir, &toml).await;
    let e = Env {
        pki,
        other: SpiffeCa::new("unused.example"),
        other_jwt: Signer::new("unused"),
        corp,
        jwt,
        up,
        gw,
    };
    let grant = "urn:ietf:params:oauth:grant-type:token-exchange";

    // 1. mTLS caller exchanges its certificate for a token.
    let svid = e.corp.leaf(&[CALLER], |_| {});
    let r = e
        .client(Some(&svid))
        .post(e.url("/oauth2/token"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("grant_type={}", urlencode(grant)))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["cache-control"], "no-store");
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(
        body["issued_token_type"],
        "urn:ietf:params:oauth:token-type:jwt"
    );
    let exp_in = body["expires_in"].as_u64().unwrap();
    assert!(exp_in > 0 && exp_in <= 300, "{body}");
    let token = body["access_token"].as_str().unwrap().to_string();

    // 2. The token is accepted on the route, over a connection with the certificate it is bound
    // to (`cnf`); without it, it is refused.
    let bound = |token: String| {
        let c = e.client(Some(&svid));
        let url = e.url("/payments/x");
        async move {
            let r = c
                .get(url)
                .header("authorization", format!("Bearer {token}"))
                .send()
                .await
                .unwrap();
            r.status().as_u16()
        }
    };
    assert_eq!(bound(token.clone()).await, 200);
    assert_eq!(e.bearer(&token).await.0, 401);
    let seen = e.up.last();
    assert_ne!(
        bearer_of(&seen),
        token,
        "the upstream gets its own audience's token"
    );
    let audit = audit_lines(e.pki.dir.path(), 2).await;
    assert!(audit
        .iter()
        .any(|l| l["credential"] == "exchanged" && l["identity"] == CALLER));

    // Revoking the token by its jti refuses it at once, though it has not expired.
    let jti = {
        use base64::Engine as _;
        let payload = token.split('.').nth(1).unwrap();
        let c: Value = serde_json::from_slice(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(payload)
                .unwrap(),
        )
        .unwrap();
        c["jti"].as_str().unwrap().to_string()
    };
    let r = reqwest::Client::new()
        .post(format!("http://{}/admin/v1/revocations", e.gw.admin_addr))
        .header("content-type", "application/json")
        .body(json!({"jti": jti, "reason": "token leaked in a log"}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(bound(token.clone()).await, 401);

    // 3. A JWT-SVID as subject_token works too.
    let svid_jwt = e.jwt.sign(e.jwt.header(), &claims(CALLER, "portcullis"));
    let form = format!(
        "grant_type={}&subject_token={svid_jwt}&subject_token_type={}",
        urlencode(grant),
        urlencode("urn:ietf:params:oauth:token-type:jwt")
    );
    let r = e
        .client(None)
        .post(e.url("/oauth2/token"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let t2: Value = r.json().await.unwrap();
    assert_eq!(e.bearer(t2["access_token"].as_str().unwrap()).await.0, 200);

    // Refusals: nothing presented, a forged subject token, a wrong grant, a foreign audience,
    // the wrong content type, GET.
    let post = |body: String, ct: &'static str| {
        let c = e.client(None);
        let url = e.url("/oauth2/token");
        async move {
            let r = c
                .post(url)
                .header("content-type", ct)
                .body(body)
                .send()
                .await
                .unwrap();
            r.status().as_u16()
        }
    };
    let form_ct = "application/x-www-form-urlencoded";
    assert_eq!(
        post(format!("grant_type={}", urlencode(grant)), form_ct).await,
        401
    );
    let forged = form.replace(&svid_jwt[svid_jwt.len() - 10..], "AAAAAAAAAA");
    assert_eq!(post(forged, form_ct).await, 401);
    assert_eq!(post("grant_type=password".into(), form_ct).await, 400);
    assert_eq!(
        post(format!("{form}&audience=elsewhere"), form_ct).await,
        400
    );
    assert_eq!(post(format!("{form}&grant_type=x"), form_ct).await, 400);
    assert_eq!(post(form.clone(), "application/json").await, 415);
    let r = e
        .client(None)
        .get(e.url("/oauth2/token"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 405);
    // trust_issuer adds the gateway's keys, it does not replace the trust domain's own bundle.
    let direct = e.jwt.sign(e.jwt.header(), &claims(CALLER, ISSUER_URL));
    assert_eq!(
        e.bearer(&direct).await.0,
        200,
        "corp's own JWT-SVID bundle still applies"
    );
}

fn urlencode(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}
