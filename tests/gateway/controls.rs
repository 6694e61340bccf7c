//! Compensating controls through the whole gateway, driven by a fake clock where time matters:
//! per-identity rate limits (429 with `Retry-After` and RateLimit headers), the route concurrency
//! limit against a slow upstream (503 `overloaded`), request validation (JSON Schema pointer in
//! the 422, deep JSON, billion laughs, XXE), shadow policies (audited, never enforced), policy hot
//! reload (a good file takes effect, a bad one keeps the old policy), per-source throttling of
//! failed authentication, and credential injection towards a legacy upstream.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use base64::Engine as _;
use portcullis::clock::FakeClock;
use serde_json::Value;

use crate::support::*;

const ACME: &str = "pcs_ctl_acme_6d0c3f9a1b2e4d5f8a7b6c5d4e3f2a1b";
const GLOBEX: &str = "pcs_ctl_globex_1a2b3c4d5e6f7a8b9c0d1e2f3a4b5c6d";
const INJECTED_PASSWORD: &str = "legacy-upstream-pw-7Hq2";
const INJECTED_TOKEN: &str = "mainframe-shared-token-Zx81";

fn keys_file(dir: &std::path::Path) {
    write_api_keys(
        dir,
        &[
            ("acme", "spiffe://corp.example/partner/acme", ACME),
            ("globex", "spiffe://corp.example/partner/globex", GLOBEX),
        ],
    );
}

const PERMIT_ACME: &str = r#"
@id("acme-only")
permit (principal, action, resource) when { principal.id == "spiffe://corp.example/partner/acme" };
"#;

const PERMIT_BOTH: &str = r#"
@id("partners")
permit (principal, action, resource) when { principal.id like "spiffe://corp.example/partner/*" };
"#;

const SCHEMA: &str = r#"{
  "$schema": "https://json-schema.org/draft/2020-12/schema",
  "type": "object",
  "required": ["amount", "currency"],
  "properties": {
    "amount": { "type": "integer", "minimum": 1 },
    "currency": { "type": "string", "pattern": "^[A-Z]{3}$" }
  }
}"#;

/// A gateway with one route per control. `listen_extra` goes into `[listen]`.
async fn gateway(
    pki: &Pki,
    up: &Upstream,
    clock: Arc<FakeClock>,
    listen_extra: &str,
) -> portcullis::server::Running {
    let dir = pki.dir.path();
    keys_file(dir);
    std::fs::write(dir.join("hot.cedar"), PERMIT_ACME).unwrap();
    std::fs::write(
        dir.join("next.cedar"),
        r#"
@id("partners")
permit (principal, action, resource) when { principal.id like "spiffe://corp.example/partner/*" };
@id("globex-leaves")
forbid (principal, action, resource) when { principal.principal == "globex" };
"#,
    )
    .unwrap();
    std::fs::write(dir.join("payment.json"), SCHEMA).unwrap();
    std::fs::write(dir.join("upstream-pw"), format!("{INJECTED_PASSWORD}\n")).unwrap();
    std::fs::write(dir.join("upstream-token"), INJECTED_TOKEN).unwrap();
    let d = dir.display();
    let u = up.url();
    let routes = [
        partner_route(
            "rated",
            r#"path_prefix = "/rated/""#,
            ALLOW_PARTNERS,
            &u,
            "",
            "[routes.limits]\nrate = \"2/s\"\nburst = 2",
        ),
        partner_route(
            "slow",
            r#"path_prefix = "/slow/""#,
            ALLOW_PARTNERS,
            &u,
            "",
            "[routes.limits]\nconcurrency = 1",
        ),
        partner_route(
            "orders",
            r#"path_prefix = "/orders/", methods = ["POST"]"#,
            ALLOW_PARTNERS,
            &u,
            "",
            &format!("[routes.validate]\njson_schema = \"{d}/payment.json\"\nmax_json_depth = 16"),
        ),
        partner_route(
            "soap",
            r#"path_prefix = "/soap/", methods = ["POST"]"#,
            ALLOW_PARTNERS,
            &u,
            "",
            "[routes.validate]\ncontent_types = [\"text/xml\", \"application/soap+xml\"]\nxml = { max_depth = 16 }",
        ),
        partner_route(
            "shadowed",
            r#"path_prefix = "/shadowed/""#,
            &format!("{ALLOW_PARTNERS}\nshadow_policy = \"{d}/next.cedar\""),
            &u,
            "",
            "",
        ),
        partner_route(
            "hot",
            r#"path_prefix = "/hot/""#,
            &format!("policy = \"{d}/hot.cedar\""),
            &u,
            "",
            "",
        ),
        partner_route(
            "mainframe",
            r#"path_prefix = "/mainframe/""#,
            ALLOW_PARTNERS,
            &u,
            &format!("token_header = \"x-identity-token\"\ninject = {{ kind = \"basic\", username = \"GWCICS\", password_file = \"{d}/upstream-pw\" }}"),
            "",
        ),
        partner_route(
            "batch",
            r#"path_prefix = "/batch/""#,
            ALLOW_PARTNERS,
            &u,
            &format!("token_header = \"none\"\ninject = {{ kind = \"header\", name = \"X-Shared-Token\", value_file = \"{d}/upstream-token\" }}"),
            "",
        ),
    ];
    let extra = format!("{ISSUER}{}{}", partner_keys(dir), routes.concat());
    let path = dir.join("portcullis.toml");
    std::fs::write(
        &path,
        base_config(dir, listen_extra, &pki.tls_section(), &extra),
    )
    .unwrap();
    let cfg = portcullis::config::load(&path).unwrap_or_else(|e| panic!("config invalid:\n{e}"));
    portcullis::server::start(cfg, portcullis::server::Options { clock })
        .await
        .unwrap()
}

fn clock() -> Arc<FakeClock> {
    Arc::new(FakeClock::new(
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_790_000_000),
    ))
}

struct Client {
    http: reqwest::Client,
    base: String,
}

impl Client {
    fn new(pki: &Pki, gw: &portcullis::server::Running) -> Client {
        Client {
            http: pki.client(false),
            base: format!("https://127.0.0.1:{}", gw.data_addr.port()),
        }
    }

    async fn get(&self, path: &str, key: &str) -> reqwest::Response {
        self.http
            .get(format!("{}{path}", self.base))
            .header("x-api-key", key)
            .send()
            .await
            .unwrap()
    }

    async fn post(&self, path: &str, key: &str, ct: &str, body: &str) -> reqwest::Response {
        self.http
            .post(format!("{}{path}", self.base))
            .header("x-api-key", key)
            .header("content-type", ct)
            .body(body.to_owned())
            .send()
            .await
            .unwrap()
    }
}

fn header(r: &reqwest::Response, name: &str) -> String {
    r.headers()
        .get(name)
        .unwrap_or_else(|| panic!("no {name} header"))
        .to_str()
        .unwrap()
        .to_owned()
}

async fn problem(r: reqwest::Response, status: u16, code: &str) -> Value {
    assert_eq!(r.status(), status);
    assert_eq!(header(&r, "content-type"), "application/problem+json");
    let p: Value = r.json().await.unwrap();
    assert_eq!(p["type"], format!("urn:portcullis:{code}"), "{p}");
    p
}

/// Ask `GET path` with `key` until the status is `want` (a reload or a released slot takes a
/// moment); returns the last status.
async fn eventually(c: &Client, path: &str, key: &str, want: u16) -> u16 {
    let mut status = 0;
    for _ in 0..100 {
        status = c.get(path, key).await.status().as_u16();
        if status == want {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    status
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limit_is_exact_under_a_fake_clock_and_says_so_in_headers() {
    let pki = Pki::new();
    let up = Upstream::start().await;
    let clock = clock();
    let gw = gateway(&pki, &up, clock.clone(), "").await;
    let c = Client::new(&pki, &gw);

    // Burst 2: two requests pass and say how much is left.
    for left in [1, 0] {
        let r = c.get("/rated/x", ACME).await;
        assert_eq!(r.status(), 200);
        assert_eq!(header(&r, "ratelimit-policy"), "\"identity\";q=2;w=1");
        let now = header(&r, "ratelimit");
        assert!(
            now.starts_with(&format!("\"identity\";r={left};t=")),
            "{now}"
        );
    }
    // The third, at the same instant, is refused before the upstream.
    let hits = up.count();
    let r = c.get("/rated/x", ACME).await;
    assert_eq!(header(&r, "retry-after"), "1");
    assert_eq!(header(&r, "ratelimit-policy"), "\"identity\";q=2;w=1");
    assert!(header(&r, "ratelimit").starts_with("\"identity\";r=0;t="));
    problem(r, 429, "rate-limited").await;
    assert_eq!(up.count(), hits);
    // Limits are per identity: another caller is not affected.
    assert_eq!(c.get("/rated/x", GLOBEX).await.status(), 200);

    // 2/s: one request's worth comes back every 500 ms, exactly.
    clock.advance(Duration::from_millis(499));
    assert_eq!(c.get("/rated/x", ACME).await.status(), 429);
    clock.advance(Duration::from_millis(1));
    assert_eq!(c.get("/rated/x", ACME).await.status(), 200);
    assert_eq!(c.get("/rated/x", ACME).await.status(), 429);

    let m = scrape(&gw).await;
    assert!(
        m.contains("portcullis_rate_limited_total{route=\"rated\"} 3"),
        "{m}"
    );
    let audit = audit_lines(pki.dir.path(), 7).await;
    let limited: Vec<&Value> = audit
        .iter()
        .filter(|l| l["reason"] == "rate-limited")
        .collect();
    assert_eq!(limited.len(), 3);
    assert!(limited
        .iter()
        .all(|l| l["decision"] == "deny" && l["status"] == 429 && l["principal"] == "acme"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrency_limit_sheds_load_while_a_slow_request_is_in_flight() {
    let pki = Pki::new();
    let up = Upstream::start().await;
    let gw = gateway(&pki, &up, clock(), "").await;
    let c = Arc::new(Client::new(&pki, &gw));

    let slow = {
        let c = c.clone();
        tokio::spawn(async move {
            let r = c.get("/slow/work?sleep_ms=1500", ACME).await;
            let status = r.status();
            r.bytes().await.unwrap();
            status
        })
    };
    for _ in 0..200 {
        if up.count() == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(up.count(), 1, "the slow request never reached the upstream");
    let r = c.get("/slow/work", GLOBEX).await;
    assert_eq!(header(&r, "retry-after"), "1");
    problem(r, 503, "overloaded").await;
    assert_eq!(up.count(), 1);
    assert_eq!(slow.await.unwrap(), 200);
    // The slot is given back when the response is done (the gateway lets go of the response
    // body just after the caller has read it, hence the short wait).
    assert_eq!(eventually(&c, "/slow/work", GLOBEX, 200).await, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_are_validated_before_the_upstream_sees_them() {
    let pki = Pki::new();
    let up = Upstream::start().await;
    let gw = gateway(&pki, &up, clock(), "").await;
    let c = Client::new(&pki, &gw);
    let json = "application/json";

    let r = c
        .post(
            "/orders/new",
            ACME,
            json,
            r#"{"amount":12,"currency":"EUR"}"#,
        )
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(up.last().body_bytes, 30);
    let hits = up.count();

    let r = c
        .post(
            "/orders/new",
            ACME,
            json,
            r#"{"amount":-5,"currency":"EUR"}"#,
        )
        .await;
    let p = problem(r, 422, "schema-violation").await;
    assert!(p["detail"].as_str().unwrap().contains("/amount"), "{p}");
    let r = c
        .post(
            "/orders/new",
            ACME,
            json,
            r#"{"amount":5,"currency":"euro"}"#,
        )
        .await;
    let p = problem(r, 422, "schema-violation").await;
    assert!(p["detail"].as_str().unwrap().contains("/currency"), "{p}");

    // Nesting beyond max_json_depth is refused before any schema runs.
    let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
    problem(
        c.post("/orders/new", ACME, json, &deep).await,
        400,
        "invalid-request",
    )
    .await;
    problem(
        c.post("/orders/new", ACME, "text/plain", "amount=5").await,
        415,
        "unsupported-media-type",
    )
    .await;

    // XML: a well-formed envelope passes; entity tricks are refused without being expanded.
    let envelope = r#"<?xml version="1.0"?><soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body><pay amount="5"/></soap:Body></soap:Envelope>"#;
    assert_eq!(
        c.post("/soap/pay", ACME, "text/xml", envelope)
            .await
            .status(),
        200
    );
    let hits = hits + 1;
    let laughs = r#"<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
 <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
 <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
 <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
 <!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
 <!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]>
<lolz>&lol9;</lolz>"#;
    let xxe =
        r#"<?xml version="1.0"?><!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]><r>&x;</r>"#;
    for evil in [laughs, xxe] {
        let started = std::time::Instant::now();
        let p = problem(
            c.post("/soap/pay", ACME, "text/xml", evil).await,
            400,
            "invalid-request",
        )
        .await;
        assert!(started.elapsed() < Duration::from_secs(2));
        assert!(!p.to_string().contains("root:"), "{p}");
    }
    let deep_xml = format!("{}{}", "<a>".repeat(100), "</a>".repeat(100));
    problem(
        c.post("/soap/pay", ACME, "text/xml", &deep_xml).await,
        400,
        "invalid-request",
    )
    .await;
    assert_eq!(up.count(), hits, "a refused body reached the upstream");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shadow_policy_denials_are_audited_but_not_enforced() {
    let pki = Pki::new();
    let up = Upstream::start().await;
    let gw = gateway(&pki, &up, clock(), "").await;
    let c = Client::new(&pki, &gw);

    assert_eq!(c.get("/shadowed/a", ACME).await.status(), 200);
    assert_eq!(c.get("/shadowed/b", GLOBEX).await.status(), 200);
    assert_eq!(up.count(), 2);
    let audit = audit_lines(pki.dir.path(), 2).await;
    let by = |p: &str| {
        audit
            .iter()
            .find(|l| l["principal"] == p)
            .unwrap_or_else(|| panic!("no audit line for {p}"))
            .clone()
    };
    assert_eq!(by("acme")["decision"], "allow");
    let g = by("globex");
    assert_eq!(g["decision"], "shadow-deny");
    assert_eq!(g["status"], 200);
    assert_eq!(g["upstream_status"], 200);
    let m = scrape(&gw).await;
    assert!(
        m.contains("portcullis_requests_total{route=\"shadowed\",decision=\"shadow-deny\",kind=\"api-key\",code=\"2xx\"} 1"),
        "{m}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policy_files_are_reloaded_and_a_bad_edit_keeps_the_old_policy() {
    let pki = Pki::new();
    let up = Upstream::start().await;
    let gw = gateway(&pki, &up, clock(), "").await;
    let c = Client::new(&pki, &gw);
    let file = pki.dir.path().join("hot.cedar");

    assert_eq!(c.get("/hot/x", ACME).await.status(), 200);
    let p = problem(c.get("/hot/x", GLOBEX).await, 403, "forbidden").await;
    assert!(!p["detail"].as_str().unwrap_or("").contains("acme"));

    // A good edit takes effect without a restart.
    std::fs::write(&file, PERMIT_BOTH).unwrap();
    assert_eq!(
        eventually(&c, "/hot/x", GLOBEX, 200).await,
        200,
        "the new policy was not loaded"
    );

    // A broken edit is reported and the policy in force stays.
    std::fs::write(
        &file,
        "permit (principal, action, resource) when { principal.no_such_attribute };",
    )
    .unwrap();
    let mut errors = false;
    for _ in 0..100 {
        if scrape(&gw)
            .await
            .contains("portcullis_config_reloads_total{result=\"error\"} 1")
        {
            errors = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(errors, "the bad policy file was not reported");
    assert_eq!(c.get("/hot/x", GLOBEX).await.status(), 200);
    assert_eq!(c.get("/hot/x", ACME).await.status(), 200);

    // Fixed again: back to acme only.
    std::fs::write(&file, PERMIT_ACME).unwrap();
    assert_eq!(eventually(&c, "/hot/x", GLOBEX, 403).await, 403);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_source_guessing_credentials_is_throttled_before_they_are_checked() {
    let pki = Pki::new();
    let up = Upstream::start().await;
    let clock = clock();
    let gw = gateway(&pki, &up, clock.clone(), "max_auth_failures = \"3/m\"").await;
    let c = Client::new(&pki, &gw);

    // Missing credentials are not charged.
    for _ in 0..5 {
        let r = c
            .http
            .get(format!("{}/rated/x", c.base))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401);
    }
    for i in 0..3 {
        let r = c.get("/rated/x", &format!("pcs_guess_{i}")).await;
        problem(r, 401, "invalid-credential").await;
    }
    // The budget is spent: refused before the key is even looked at, a right one included.
    let r = c.get("/rated/x", "pcs_guess_3").await;
    let retry: u64 = header(&r, "retry-after").parse().unwrap();
    assert!((1..=20).contains(&retry), "{retry}");
    assert!(r.headers().get("ratelimit-policy").is_none());
    problem(r, 429, "rate-limited").await;
    problem(c.get("/rated/x", ACME).await, 429, "rate-limited").await;
    assert_eq!(up.count(), 0);

    // 3/m: one attempt comes back every 20 s.
    clock.advance(Duration::from_secs(20));
    assert_eq!(c.get("/rated/x", ACME).await.status(), 200);
    // A success costs nothing.
    assert_eq!(c.get("/rated/x", ACME).await.status(), 200);
    problem(
        c.get("/rated/x", "pcs_guess_4").await,
        401,
        "invalid-credential",
    )
    .await;
    problem(c.get("/rated/x", ACME).await, 429, "rate-limited").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn legacy_upstream_credentials_are_injected_and_never_logged() {
    logs::capture();
    let pki = Pki::new();
    let up = Upstream::start().await;
    let gw = gateway(&pki, &up, clock(), "").await;
    let c = Client::new(&pki, &gw);

    // A caller trying to smuggle its own upstream credentials gets them replaced.
    let r = c
        .http
        .get(format!("{}/mainframe/accounts", c.base))
        .header("x-api-key", ACME)
        .header("x-identity-token", "forged")
        .header("x-shared-token", "forged")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let seen = up.last();
    let basic =
        base64::engine::general_purpose::STANDARD.encode(format!("GWCICS:{INJECTED_PASSWORD}"));
    assert_eq!(
        seen.headers["authorization"],
        format!("Basic {basic}").as_str()
    );
    assert!(seen.headers.get("x-api-key").is_none());
    let token = seen.headers["x-identity-token"].to_str().unwrap();
    assert_eq!(token.split('.').count(), 3, "not the minted token: {token}");
    assert_eq!(seen.headers.get_all("x-shared-token").iter().count(), 1);
    assert_eq!(seen.headers["x-shared-token"], "forged");

    let r = c
        .http
        .get(format!("{}/batch/run", c.base))
        .header("x-api-key", GLOBEX)
        .header("x-shared-token", "forged")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let seen = up.last();
    assert_eq!(seen.headers.get_all("x-shared-token").iter().count(), 1);
    assert_eq!(seen.headers["x-shared-token"], INJECTED_TOKEN);
    assert!(seen.headers.get("x-api-key").is_none());

    // Both requests' lines are written (the writer drains asynchronously) before looking.
    audit_lines(pki.dir.path(), 2).await;
    let audit = std::fs::read_to_string(pki.dir.path().join("audit.jsonl")).unwrap();
    for secret in [INJECTED_PASSWORD, INJECTED_TOKEN, &basic, ACME, GLOBEX] {
        assert!(!audit.contains(secret), "{secret} reached the audit log");
    }
    logs::assert_absent(&[INJECTED_PASSWORD, INJECTED_TOKEN, &basic, ACME, GLOBEX]);
}
