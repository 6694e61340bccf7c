//! Migration phases never open a door: the phase × credential-kind table of `docs/migration.md`
//! walked end to end (before observe, observe, bridge, enforce, exception × legacy key, wrong key,
//! workload identity, anonymous), `observe` adding nothing to a request, revocation in every
//! form, and the config checks around plans (exception without bridge, in-memory revocations,
//! colliding audiences, `inject` with observe).

use rustls_pki_types::pem::PemObject;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use portcullis::clock::FakeClock;
use serde_json::Value;

use crate::support::*;

const KEY: &str = "pcs_phases_test_key_0123456789abcdef";
/// A key of a partner that `allow` does not list.
const OTHER_KEY: &str = "pcs_phases_other_key_0123456789abcd";
const GWCICS_PW: &str = "gwcics-upstream-secret";
/// The key of `ops-keys` (a second api-key credential, header `X-Ops-Key`, on `/full/` only).
const OPS_KEY: &str = "pcs_phases_ops_key_0123456789abcdef0";
const STRIPE_SECRET: &str = "whsec_phases_test_secret";

fn day(unix_days: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(unix_days * 86400 + 12 * 3600)
}

// 2026-11-01 = day 20758; 2026-12-01 = 20788; 2027-03-01 = 20878; 2027-05-01 = 20939.
const BEFORE_OBSERVE: u64 = 20741; // 2026-10-15
const OBSERVE: u64 = 20765; // 2026-11-08
const TODAY: u64 = 20792; // 2026-12-05 (bridge)
const ENFORCE: u64 = 20882; // 2027-03-05

fn plan(name: &str, creds: &str, phases: &str, tail: &str) -> String {
    format!(
        "name = \"{name}\"\nowner = \"team-mf\"\ndocs = \"https://wiki.corp.example/m/{name}\"\nlegacy_credentials = [{creds}]\n[phases]\n{phases}\n{tail}\n"
    )
}

const EXIT: &str = "[exit_criteria]\nmax_legacy_share = 0.01\nwindow = \"14d\"";

/// Plans: `full` (observe 2026-11-01, bridge 2026-12-01, enforce 2027-03-01), `late` (observe
/// 2027-05-01), `mf` (observe 2026-11-01, bridge 2027-02-01), `exc` (an exception in bridge).
fn write_plans(dir: &std::path::Path) {
    let plans = dir.join("plans");
    std::fs::create_dir_all(&plans).unwrap();
    let creds = "\"partner-keys\"";
    for (name, phases, tail) in [
        (
            "full",
            "observe = 2026-11-01\nbridge = 2026-12-01\nenforce = 2027-03-01",
            EXIT,
        ),
        ("late", "observe = 2027-05-01", EXIT),
        ("mf", "observe = 2026-11-01\nbridge = 2027-02-01", EXIT),
        (
            "exc",
            "observe = 2026-11-01\nbridge = 2026-11-15",
            "[exception]\nreason = \"a SaaS\"\nreview_by = 2027-06-01",
        ),
    ] {
        std::fs::write(
            plans.join(format!("{name}.toml")),
            plan(name, creds, phases, tail),
        )
        .unwrap();
    }
    // Stripe: a standing exception, in bridge from 2026-11-15 (observe before).
    std::fs::write(
        plans.join("hooks.toml"),
        plan(
            "hooks",
            "\"stripe\"",
            "observe = 2026-11-01\nbridge = 2026-11-15",
            "[exception]\nreason = \"Stripe cannot present a workload identity\"\nreview_by = 2027-06-01",
        ),
    )
    .unwrap();
}

fn config(pki: &Pki, up: &Upstream, state: &str) -> String {
    let dir = pki.dir.path();
    write_plans(dir);
    write_api_keys(
        dir,
        &[
            (
                "acme",
                "spiffe://corp.example/ns/payments/partner-acme",
                KEY,
            ),
            ("other", "spiffe://corp.example/partner/other", OTHER_KEY),
        ],
    );
    std::fs::write(dir.join("upstream-pw"), GWCICS_PW).unwrap();
    std::fs::write(dir.join("stripe-secrets"), format!("{STRIPE_SECRET}\n")).unwrap();
    {
        use sha2::Digest as _;
        let sha = hex::encode(sha2::Sha256::digest(OPS_KEY.as_bytes()));
        std::fs::write(
            dir.join("ops-keys.toml"),
            format!("[[keys]]\nid = \"ops\"\nsha256 = \"{sha}\"\nidentity = \"spiffe://corp.example/ns/payments/ops\"\n"),
        )
        .unwrap();
    }
    let u = up.url();
    let mut routes = String::new();
    for (name, plan, accept) in [
        (
            "full",
            Some("full"),
            &["workload-mtls", "partner-keys", "ops-keys"][..],
        ),
        ("late", Some("late"), &["workload-mtls", "partner-keys"][..]),
        ("plain", None, &["workload-mtls", "partner-keys"][..]),
        ("exc", Some("exc"), &["workload-mtls", "partner-keys"][..]),
    ] {
        let route = RouteToml::new(name, &format!("/{name}/"), &u)
            .accept(accept)
            .allow(&["spiffe://corp.example/ns/payments/*"])
            .audience(name);
        let route = match plan {
            Some(p) => route.key(&format!("plan = {p:?}")),
            None => route,
        };
        routes.push_str(&route.to_string());
    }
    let hooks = RouteToml::new("hooks", "/hooks/", &u)
        .accept(&["stripe"])
        .allow(&["spiffe://corp.example/saas/stripe"])
        .key("plan = \"hooks\"")
        .audience("hooks");
    let mf = RouteToml::new("mf", "/mf/", &u)
        .accept(&["workload-mtls", "partner-keys"])
        .allow(&["spiffe://corp.example/ns/payments/*"])
        .key("plan = \"mf\"")
        .audience("mf")
        .upstream_key("token_header = \"x-identity-token\"")
        .upstream_key(&format!(
            "inject = {{ kind = \"basic\", username = \"GWCICS\", password_file = {:?} }}",
            dir.join("upstream-pw").display().to_string()
        ));
    let keys_credential = partner_keys(dir);
    let extra = format!(
        r#"{ISSUER}{state}
[migration]
plans_dir = "{d}/plans"
[trust."corp.example"]
x509_bundle = "{d}/ca.pem"
[credentials.workload-mtls]
kind = "mtls"
trust_domains = ["corp.example"]
{keys_credential}{stripe}{hooks}[credentials.ops-keys]
kind = "api-key"
header = "X-Ops-Key"
keys_file = "{d}/ops-keys.toml"
{routes}{mf}"#,
        d = dir.display(),
        stripe = webhook_credential(
            "stripe",
            "stripe",
            &dir.join("stripe-secrets"),
            "spiffe://corp.example/saas/stripe"
        ),
    );
    base_config(dir, "", &pki.tls_section(), &extra)
}

async fn start(
    pki: &Pki,
    up: &Upstream,
    clock: Arc<FakeClock>,
    state: &str,
) -> portcullis::server::Running {
    let path = pki.dir.path().join("portcullis.toml");
    std::fs::write(&path, config(pki, up, state)).unwrap();
    portcullis::server::install_crypto();
    let cfg = portcullis::config::load(&path).unwrap_or_else(|e| panic!("{e}"));
    portcullis::server::start(cfg, portcullis::server::Options { clock })
        .await
        .unwrap()
}

/// A client trusting the test CA, presenting an X.509-SVID for `spiffe_id` when given.
fn client(pki: &Pki, spiffe_id: Option<&str>) -> reqwest::Client {
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls_pki_types::CertificateDer::pem_slice_iter(pki.ca.cert_pem().as_bytes()) {
        roots.add(c.unwrap()).unwrap();
    }
    let b = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots);
    let cfg = match spiffe_id {
        None => b.with_no_client_auth(),
        Some(id) => {
            let svid = pki.ca.svid(id).unwrap();
            let chain = rustls_pki_types::CertificateDer::pem_slice_iter(svid.cert_pem.as_bytes())
                .collect::<Result<Vec<_>, _>>()
                .unwrap();
            let key =
                rustls_pki_types::PrivateKeyDer::from_pem_slice(svid.key_pem.as_bytes()).unwrap();
            b.with_client_auth_cert(chain, key).unwrap()
        }
    };
    reqwest::Client::builder()
        .use_preconfigured_tls(cfg)
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

/// Who calls, in the table's columns.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Who {
    /// A valid key of a caller `allow` lists.
    Legacy,
    /// A valid key of a caller `allow` does not list.
    LegacyRefused,
    /// A key the gateway does not know.
    WrongKey,
    /// An X.509-SVID `allow` lists.
    Workload,
    /// An X.509-SVID `allow` does not list.
    WorkloadRefused,
    /// No credential at all.
    Anonymous,
    /// Basic credentials the route does not accept (`curl -u nobody:wrong`).
    ForeignBasic,
}

struct Env {
    base: String,
    plain: reqwest::Client,
    payments: reqwest::Client,
    stranger: reqwest::Client,
}

impl Env {
    fn new(pki: &Pki, gw: &portcullis::server::Running) -> Env {
        Env {
            base: format!("https://127.0.0.1:{}", gw.data_addr.port()),
            plain: client(pki, None),
            payments: client(pki, Some("spiffe://corp.example/ns/payments/sa/api")),
            stranger: client(pki, Some("spiffe://corp.example/ns/other/sa/api")),
        }
    }

    async fn call(&self, who: Who, path: &str) -> reqwest::Response {
        let url = format!("{}{path}", self.base);
        let req = match who {
            Who::Legacy => self.plain.get(url).header("x-api-key", KEY),
            Who::LegacyRefused => self.plain.get(url).header("x-api-key", OTHER_KEY),
            Who::WrongKey => self.plain.get(url).header("x-api-key", "pcs_wrong"),
            Who::Workload => self.payments.get(url),
            Who::WorkloadRefused => self.stranger.get(url),
            Who::Anonymous => self.plain.get(url),
            Who::ForeignBasic => self.plain.get(url).basic_auth("nobody", Some("wrong")),
        };
        req.send().await.unwrap()
    }
}

fn problem_type(v: &Value) -> &str {
    v["type"].as_str().unwrap_or("")
}

/// What the upstream must have seen for a translated request: no key, a minted token.
fn assert_translated(up: &Upstream, what: &str) {
    let seen = up.last();
    assert!(seen.headers.get("x-api-key").is_none(), "{what}: key kept");
    let auth = seen.headers["authorization"].to_str().unwrap();
    assert!(auth.starts_with("Bearer "), "{what}: {auth}");
}

/// What the upstream must have seen for an observed request: exactly the caller's credentials.
fn assert_unchanged(up: &Upstream, key: &str, what: &str) {
    let seen = up.last();
    assert_eq!(seen.headers["x-api-key"], key, "{what}");
    assert!(seen.headers.get("authorization").is_none(), "{what}");
    assert!(seen.headers.get("x-identity-token").is_none(), "{what}");
}

/// One cell of the table: the status, and for refusals the problem type.
async fn cell(env: &Env, up: &Upstream, who: Who, path: &str, status: u16, typ: Option<&str>) {
    let before = up.count();
    let r = env.call(who, path).await;
    let got = r.status().as_u16();
    let body = r.text().await.unwrap();
    assert_eq!(got, status, "{who:?} on {path}: {body}");
    if let Some(t) = typ {
        let v: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(problem_type(&v), format!("urn:portcullis:{t}"), "{who:?}");
        assert_eq!(up.count(), before, "{who:?} on {path} reached the upstream");
    }
}

/// Finding 2 and the class: the table, walked through every phase of one plan (`/full/`),
/// against the same route without a plan (`/plain/`) as the reference.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_phase_table_end_to_end() {
    let pki = Pki::new();
    let up = Upstream::start().await;
    let clock = Arc::new(FakeClock::new(day(BEFORE_OBSERVE)));
    let gw = start(&pki, &up, clock.clone(), "").await;
    let env = Env::new(&pki, &gw);
    let unauth = Some("unauthenticated");
    let invalid = Some("invalid-credential");
    let forbidden = Some("forbidden");

    // Every phase: workload callers, strangers and anonymous callers get the full pipeline,
    // exactly as on the route without a plan.
    for (d, phase) in [
        (BEFORE_OBSERVE, "before observe"),
        (OBSERVE, "observe"),
        (TODAY, "bridge"),
        (ENFORCE, "enforce"),
    ] {
        clock.set(day(d));
        for path in ["/full/x", "/plain/x", "/exc/x"] {
            cell(&env, &up, Who::Workload, path, 200, None).await;
            assert_translated(&up, phase);
            cell(&env, &up, Who::WorkloadRefused, path, 403, forbidden).await;
            cell(&env, &up, Who::Anonymous, path, 401, unauth).await;
            cell(&env, &up, Who::ForeignBasic, path, 401, unauth).await;
        }
    }

    // Before observe: the plan changes nothing.
    clock.set(day(BEFORE_OBSERVE));
    for path in ["/full/x", "/plain/x"] {
        cell(&env, &up, Who::Legacy, path, 200, None).await;
        assert_translated(&up, "before observe");
        cell(&env, &up, Who::LegacyRefused, path, 403, forbidden).await;
        cell(&env, &up, Who::WrongKey, path, 401, invalid).await;
    }

    // observe: listed legacy credentials are never blocked and go upstream as sent.
    clock.set(day(OBSERVE));
    cell(&env, &up, Who::Legacy, "/full/x", 200, None).await;
    assert_unchanged(&up, KEY, "observe, legacy");
    cell(&env, &up, Who::LegacyRefused, "/full/x", 200, None).await;
    assert_unchanged(&up, OTHER_KEY, "observe, legacy refused by policy");
    cell(&env, &up, Who::WrongKey, "/full/x", 200, None).await;
    assert_unchanged(&up, "pcs_wrong", "observe, wrong key");
    // The exception is in observe until its bridge date, like any plan.
    cell(&env, &up, Who::Legacy, "/exc/x", 200, None).await;
    assert_unchanged(&up, KEY, "exception in observe, legacy");

    // bridge: translated, sunset announced; wrong keys refused.
    clock.set(day(TODAY));
    let r = env.call(Who::Legacy, "/full/x").await;
    assert_eq!(r.status(), 200);
    assert!(r.headers().get("sunset").is_some());
    assert_translated(&up, "bridge, legacy");
    cell(&env, &up, Who::LegacyRefused, "/full/x", 403, forbidden).await;
    cell(&env, &up, Who::WrongKey, "/full/x", 401, invalid).await;
    // An exception stays in bridge: translated, controls enforced, never retired.
    cell(&env, &up, Who::Legacy, "/exc/x", 200, None).await;
    assert_translated(&up, "exception, legacy");
    cell(&env, &up, Who::WrongKey, "/exc/x", 401, invalid).await;
    cell(&env, &up, Who::Anonymous, "/exc/x", 401, unauth).await;

    // enforce: retired.
    clock.set(day(ENFORCE));
    cell(
        &env,
        &up,
        Who::Legacy,
        "/full/x",
        401,
        Some("legacy-credential-retired"),
    )
    .await;
    cell(&env, &up, Who::WrongKey, "/full/x", 401, invalid).await;
    cell(&env, &up, Who::Legacy, "/exc/x", 200, None).await;

    let audit = audit_lines(pki.dir.path(), 10).await;
    let before: Vec<&Value> = audit
        .iter()
        .filter(|l| l["route"] == "full" && l["status"] == 401)
        .collect();
    assert!(!before.is_empty());
    gw.stop().await;
}

/// Finding 2: a plan whose observe date is months away does not open the route.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plan_before_its_observe_date_changes_nothing() {
    let pki = Pki::new();
    let up = Upstream::start().await;
    let clock = Arc::new(FakeClock::new(day(TODAY)));
    let gw = start(&pki, &up, clock, "").await;
    let env = Env::new(&pki, &gw);
    for path in ["/late/accounts", "/plain/accounts"] {
        cell(
            &env,
            &up,
            Who::Anonymous,
            path,
            401,
            Some("unauthenticated"),
        )
        .await;
        cell(
            &env,
            &up,
            Who::WorkloadRefused,
            path,
            403,
            Some("forbidden"),
        )
        .await;
        cell(&env, &up, Who::LegacyRefused, path, 403, Some("forbidden")).await;
        cell(
            &env,
            &up,
            Who::WrongKey,
            path,
            401,
            Some("invalid-credential"),
        )
        .await;
        cell(&env, &up, Who::Legacy, path, 200, None).await;
        assert_translated(&up, path);
    }
    // The audit does not claim a phase the plan is not in yet.
    let audit = audit_lines(pki.dir.path(), 10).await;
    for l in audit.iter().filter(|l| l["route"] == "late") {
        assert_ne!(l["phase"], "observe", "{l}");
    }
    gw.stop().await;
}

/// Finding 1: in observe, nothing is added to a request; anonymous and foreign callers are
/// refused; from bridge on, the injected credential goes only with authenticated callers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn observe_never_adds_the_injected_credential() {
    let pki = Pki::new();
    let up = Upstream::start().await;
    let clock = Arc::new(FakeClock::new(day(TODAY)));
    let gw = start(&pki, &up, clock.clone(), "").await;
    let env = Env::new(&pki, &gw);
    let gwcics = format!(
        "Basic {}",
        base64_of(&format!("GWCICS:{GWCICS_PW}").into_bytes())
    );

    cell(
        &env,
        &up,
        Who::Anonymous,
        "/mf/accounts",
        401,
        Some("unauthenticated"),
    )
    .await;
    cell(
        &env,
        &up,
        Who::ForeignBasic,
        "/mf/accounts",
        401,
        Some("unauthenticated"),
    )
    .await;
    // Wrong and right keys: never blocked, forwarded exactly as sent.
    cell(&env, &up, Who::WrongKey, "/mf/accounts", 200, None).await;
    assert_unchanged(&up, "pcs_wrong", "wrong key");
    cell(&env, &up, Who::Legacy, "/mf/accounts", 200, None).await;
    assert_unchanged(&up, KEY, "legacy");
    // The caller's own Authorization is kept, not overwritten with the service credential.
    let r = env
        .plain
        .get(format!("{}/mf/accounts", env.base))
        .header("x-api-key", KEY)
        .basic_auth("nobody", Some("wrong"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let seen = up.last();
    assert_ne!(seen.headers["authorization"], gwcics.as_str());
    assert!(seen.headers.get("x-identity-token").is_none());
    // A workload caller gets the full pipeline, and the injected credential with it.
    cell(&env, &up, Who::Workload, "/mf/accounts", 200, None).await;
    assert_eq!(up.last().headers["authorization"], gwcics.as_str());
    cell(
        &env,
        &up,
        Who::WorkloadRefused,
        "/mf/accounts",
        403,
        Some("forbidden"),
    )
    .await;

    // bridge: translated, the injected credential added for authenticated callers only.
    clock.set(day(20852)); // 2027-02-03
    cell(&env, &up, Who::Legacy, "/mf/accounts", 200, None).await;
    let seen = up.last();
    assert_eq!(seen.headers["authorization"], gwcics.as_str());
    assert!(seen.headers.get("x-api-key").is_none());
    assert!(seen.headers.get("x-identity-token").is_some());
    cell(
        &env,
        &up,
        Who::Anonymous,
        "/mf/accounts",
        401,
        Some("unauthenticated"),
    )
    .await;
    cell(
        &env,
        &up,
        Who::ForeignBasic,
        "/mf/accounts",
        401,
        Some("unauthenticated"),
    )
    .await;
    cell(
        &env,
        &up,
        Who::WrongKey,
        "/mf/accounts",
        401,
        Some("invalid-credential"),
    )
    .await;

    // The audit of the observed requests says observe / shadow-deny, never allow.
    let audit = audit_lines(pki.dir.path(), 8).await;
    let wrong = audit
        .iter()
        .find(|l| l["route"] == "mf" && l["status"] == 200)
        .unwrap();
    assert_eq!(wrong["decision"], "shadow-deny");
    assert_eq!(wrong["phase"], "observe");
    gw.stop().await;
}

fn base64_of(b: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(b)
}

/// Finding 2 (revocation): in observe a revoked key is refused in every form it can take, also
/// forms the route does not read (the upstream would still accept the static secret).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_key_is_refused_in_observe_in_every_form() {
    let pki = Pki::new();
    let up = Upstream::start().await;
    let clock = Arc::new(FakeClock::new(day(OBSERVE)));
    let gw = start(&pki, &up, clock, "").await;
    let env = Env::new(&pki, &gw);
    let admin = format!("http://{}", gw.admin_addr);
    let r = reqwest::Client::new()
        .post(format!("{admin}/admin/v1/revocations"))
        .header("content-type", "application/json")
        .body(r#"{"credential":"partner-keys:acme","reason":"offboarded"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let before = up.count();
    let url = |q: &str| format!("{}/full/accounts{q}", env.base);
    let tries = [
        env.plain.get(url("")).header("x-api-key", KEY),
        env.plain.get(url(&format!("?api_key={KEY}"))),
        env.plain.get(url(&format!("?API.KEY={KEY}"))),
        env.plain.get(url(&format!("?apikey={KEY}&x=1"))),
        env.plain
            .get(url(""))
            .header("authorization", format!("Bearer {KEY}")),
    ];
    for (i, req) in tries.into_iter().enumerate() {
        let r = req.send().await.unwrap();
        assert_eq!(r.status(), 401, "form {i}");
    }
    assert_eq!(up.count(), before, "a revoked key reached the upstream");
    gw.stop().await;
}

/// `Stripe-Signature` for `body` at `t` with `secret`.
fn stripe_signature(secret: &str, t: u64, body: &str) -> String {
    use hmac::Mac as _;
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("{t}.{body}").as_bytes());
    format!("t={t},v1={}", hex::encode(mac.finalize().into_bytes()))
}

/// Finding 3, end to end: a webhook exception in bridge refuses unsigned and forged deliveries;
/// in observe (before its bridge date) an unsigned delivery is anonymous and refused too, and a
/// forged one goes upstream as sent, nothing added.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_exception_verifies_signatures() {
    let pki = Pki::new();
    let up = Upstream::start().await;
    let clock = Arc::new(FakeClock::new(day(TODAY)));
    let gw = start(&pki, &up, clock.clone(), "").await;
    let env = Env::new(&pki, &gw);
    let url = format!("{}/hooks/stripe", env.base);
    let body = r#"{"id":"evt_1","type":"charge.succeeded"}"#;
    let post = |sig: Option<String>| {
        let r = env
            .plain
            .post(&url)
            .header("content-type", "application/json")
            .body(body);
        match sig {
            Some(s) => r.header("stripe-signature", s),
            None => r,
        }
    };
    let t = |c: &FakeClock| {
        use portcullis::clock::Clock as _;
        c.now().duration_since(UNIX_EPOCH).unwrap().as_secs()
    };
    let before = up.count();
    assert_eq!(post(None).send().await.unwrap().status(), 401);
    let forged = stripe_signature("whsec_other", t(&clock), body);
    assert_eq!(post(Some(forged)).send().await.unwrap().status(), 401);
    assert_eq!(
        up.count(),
        before,
        "an unverified delivery reached the upstream"
    );
    let good = stripe_signature(STRIPE_SECRET, t(&clock), body);
    assert_eq!(post(Some(good.clone())).send().await.unwrap().status(), 200);
    assert_translated(&up, "exception");
    // Replayed: refused.
    assert_eq!(post(Some(good)).send().await.unwrap().status(), 401);

    // observe (2026-11-08): unsigned is anonymous (401); forged is observed, forwarded as sent.
    clock.set(day(OBSERVE));
    assert_eq!(post(None).send().await.unwrap().status(), 401);
    let forged = stripe_signature("whsec_other", t(&clock), body);
    assert_eq!(
        post(Some(forged.clone())).send().await.unwrap().status(),
        200
    );
    let seen = up.last();
    assert_eq!(seen.headers["stripe-signature"], forged.as_str());
    assert!(seen.headers.get("authorization").is_none());
    gw.stop().await;
}

/// The hostile twin of observe's "forwarded unchanged": a request carries a valid listed key and a
/// second credential the route accepts. The upstream receives both, so the second one is checked
/// too: revoked, or wrong and not relaxed by the plan, refuses the request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn observe_checks_every_credential_it_forwards() {
    let pki = Pki::new();
    let up = Upstream::start().await;
    let clock = Arc::new(FakeClock::new(day(OBSERVE)));
    let gw = start(&pki, &up, clock, "").await;
    let env = Env::new(&pki, &gw);
    let url = format!("{}/full/accounts", env.base);
    let both = |ops: &str| {
        env.plain
            .get(&url)
            .header("x-api-key", KEY)
            .header("x-ops-key", ops.to_string())
    };
    // Both valid: observed, both forwarded as sent.
    let r = both(OPS_KEY).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(up.last().headers["x-ops-key"], OPS_KEY);
    // ops-keys is not in the plan: a wrong one is refused, as in every phase.
    let r = both("pcs_wrong_ops").send().await.unwrap();
    assert_eq!(r.status(), 401);
    // Revoked: refused, though the first key is good.
    let admin = format!("http://{}", gw.admin_addr);
    let r = reqwest::Client::new()
        .post(format!("{admin}/admin/v1/revocations"))
        .header("content-type", "application/json")
        .body(r#"{"credential":"ops-keys:ops","reason":"offboarded"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let before = up.count();
    let r = both(OPS_KEY).send().await.unwrap();
    assert_eq!(r.status(), 401);
    let r = env
        .plain
        .get(&url)
        .header("x-ops-key", OPS_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    // And the other way round: a revoked listed key next to a good one of another credential.
    let r = reqwest::Client::new()
        .post(format!("{admin}/admin/v1/revocations"))
        .header("content-type", "application/json")
        .body(r#"{"credential":"partner-keys:acme","reason":"offboarded"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let r = env
        .plain
        .get(&url)
        .header("x-api-key", KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(
        up.count(),
        before,
        "a revoked credential reached the upstream"
    );
    gw.stop().await;
}

/// Finding 4: without `[state] path`, revocations last until restart, and the gateway says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_memory_revocations_say_they_end_at_restart() {
    let pki = Pki::new();
    let up = Upstream::start().await;
    let path = pki.dir.path().join("portcullis.toml");
    std::fs::write(&path, config(&pki, &up, "")).unwrap();
    portcullis::server::install_crypto();
    let cfg = portcullis::config::load(&path).unwrap();
    assert!(
        cfg.warnings
            .iter()
            .any(|w| w.contains("[state] path") && w.contains("restart")),
        "{:?}",
        cfg.warnings
    );
    let clock = Arc::new(FakeClock::new(day(TODAY)));
    let gw = portcullis::server::start(cfg, portcullis::server::Options { clock })
        .await
        .unwrap();
    let admin = format!("http://{}", gw.admin_addr);
    let r = reqwest::Client::new()
        .post(format!("{admin}/admin/v1/revocations"))
        .header("content-type", "application/json")
        .body(r#"{"credential":"partner-keys:acme","reason":"offboarded"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["lasts"], "until-restart", "{v}");
    // The CLI says it too.
    let out = std::process::Command::new(bin())
        .args([
            "revoke",
            "--credential",
            "partner-keys:other",
            "--reason",
            "gone",
        ])
        .args(["--admin", &admin])
        .arg("-c")
        .arg(&path)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("until the gateway restarts"), "{text}");
    gw.stop().await;

    // With a path it is durable, and nothing is said.
    let state = format!("[state]\npath = \"{}/state.db\"", pki.dir.path().display());
    std::fs::write(&path, config(&pki, &up, &state)).unwrap();
    let cfg = portcullis::config::load(&path).unwrap();
    assert!(!cfg.warnings.iter().any(|w| w.contains("[state] path")));
    let clock = Arc::new(FakeClock::new(day(TODAY)));
    let gw = portcullis::server::start(cfg, portcullis::server::Options { clock })
        .await
        .unwrap();
    let r = reqwest::Client::new()
        .post(format!("http://{}/admin/v1/revocations", gw.admin_addr))
        .header("content-type", "application/json")
        .body(r#"{"credential":"partner-keys:acme","reason":"offboarded"}"#)
        .send()
        .await
        .unwrap();
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["lasts"], "until-deleted", "{v}");
    gw.stop().await;
}

/// `portcullis check` on a config variant: the problems (or warnings) as text.
fn check(
    pki: &Pki,
    up: &Upstream,
    edit: impl FnOnce(&str) -> String,
) -> Result<Vec<String>, String> {
    let path = pki.dir.path().join("portcullis.toml");
    std::fs::write(&path, edit(&config(pki, up, ""))).unwrap();
    portcullis::config::load(&path)
        .map(|c| c.warnings.clone())
        .map_err(|e| e.to_string())
}

/// Finding 3: an `[exception]` without a bridge date would stay in observe forever.
#[tokio::test]
async fn an_exception_needs_a_bridge_date() {
    let pki = Pki::new();
    let up = Upstream::start().await;
    let err = check(&pki, &up, |c| c.to_string()).map(|_| ());
    assert!(err.is_ok(), "{err:?}");
    let exc = pki.dir.path().join("plans/exc.toml");
    std::fs::write(
        &exc,
        plan(
            "exc",
            "\"partner-keys\"",
            "observe = 2026-11-01",
            "[exception]\nreason = \"a SaaS\"\nreview_by = 2027-06-01",
        ),
    )
    .unwrap();
    // (`check` above wrote the config and the other plans.)
    let path = pki.dir.path().join("portcullis.toml");
    let err = portcullis::config::load(&path)
        .map(|_| ())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("phases.bridge") && err.contains("exception"),
        "{err}"
    );
}

/// Finding 5: a route's upstream audience must not be one the gateway accepts as a caller's.
#[tokio::test]
async fn audiences_must_not_collide() {
    let pki = Pki::new();
    let up = Upstream::start().await;
    let jwt = |aud: &str, trust_issuer: bool| {
        let aud = aud.to_string();
        move |c: &str| {
            c.replace(
                "[credentials.partner-keys]",
                &format!("[credentials.workload-jwt]\nkind = \"jwt-svid\"\ntrust_domains = [\"corp.example\"]\naudience = \"{aud}\"\ntrust_issuer = {trust_issuer}\n[credentials.partner-keys]"),
            )
        }
    };
    std::fs::write(pki.dir.path().join("jwks.json"), r#"{"keys":[]}"#).unwrap();
    let with_bundle = |c: String| {
        c.replace(
            "x509_bundle = ",
            &format!(
                "jwt_bundle = \"{}/jwks.json\"\nx509_bundle = ",
                pki.dir.path().display()
            ),
        )
    };
    for trust_issuer in [true, false] {
        let f = jwt("mf", trust_issuer);
        let err = check(&pki, &up, |c| with_bundle(f(c))).unwrap_err();
        assert!(
            err.contains("audience") && err.contains("workload-jwt"),
            "{err}"
        );
        let f = jwt("portcullis", trust_issuer);
        let ok = check(&pki, &up, |c| with_bundle(f(c)));
        assert!(ok.is_ok(), "{ok:?}");
    }
}

/// Finding 1 (check): `inject` on a pass-through route or on a route with a plan is warned about.
#[tokio::test]
async fn check_warns_about_inject_with_observe_or_without_credentials() {
    let pki = Pki::new();
    let up = Upstream::start().await;
    let warnings = check(&pki, &up, |c| c.to_string()).unwrap();
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("upstream.inject: route \"mf\"") && w.contains("observe")),
        "{warnings:?}"
    );
    let warnings = check(&pki, &up, |c| {
        c.replace(
            "accept = [\"workload-mtls\", \"partner-keys\"]\nallow = [\"spiffe://corp.example/ns/payments/*\"]\nplan = \"mf\"",
            "",
        )
        .replace("audience = \"mf\"\ntoken_header = \"x-identity-token\"\n", "")
    })
    .unwrap();
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("upstream.inject: route \"mf\"") && w.contains("no credentials")),
        "{warnings:?}"
    );
}
