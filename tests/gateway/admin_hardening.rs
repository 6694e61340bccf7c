//! The admin surface and ops features (docs/security.md, "The admin surface and ops features"):
//! revocations apply to the admin listener too, URL-signed webhooks are checked against the
//! configured public URL, `policy suggest` cannot be steered by the callers it describes, and
//! policies that read `path`/`time` through any spelling see them.

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::admin::mtls_client;
use crate::support::*;

use crate::shared_state::redis_server::RedisServer;

const API: &str = "spiffe://corp.example/ns/payments/sa/api";
const WEB: &str = "spiffe://corp.example/ns/payments/sa/web";

/// Data listener with mTLS callers on `/payments/`, admin over mTLS for `ns/payments/*`,
/// and the given extra sections (`[state]`).
fn payments_admin_config(pki: &Pki, up: &Upstream, extra: &str) -> String {
    let d = pki.dir.path().display();
    format!(
        r#"version = 1
[listen]
addr = "127.0.0.1:0"
{tls}
[admin]
addr = "127.0.0.1:0"
allow = ["spiffe://corp.example/ns/payments/*"]
[audit]
sink = "{d}/audit.jsonl"
[trust."corp.example"]
x509_bundle = "{d}/ca.pem"
{extra}
[credentials.workload-mtls]
kind = "mtls"
trust_domains = ["corp.example"]
{route}"#,
        tls = pki.tls_section(),
        route = RouteToml::new("payments", "/payments/", &up.url())
            .accept(&["workload-mtls"])
            .allow(&["spiffe://corp.example/ns/payments/*"])
            .upstream_key("token_header = \"none\""),
    )
}

fn write_svid(pki: &Pki, name: &str, id: &str) {
    let svid = pki.ca.svid(id).unwrap();
    let dir = pki.dir.path();
    std::fs::write(dir.join(format!("{name}.pem")), &svid.cert_pem).unwrap();
    std::fs::write(dir.join(format!("{name}.key")), &svid.key_pem).unwrap();
}

async fn status(c: &reqwest::Client, url: String) -> u16 {
    c.get(url).send().await.unwrap().status().as_u16()
}

async fn revocation(c: &reqwest::Client, method: reqwest::Method, url: &str, id: &str) -> u16 {
    c.request(method, url)
        .header("content-type", "application/json")
        .body(format!(r#"{{"identity":"{id}","reason":"compromised"}}"#))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// Finding: a revoked operator kept the admin API and could lift their own revocation.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoked_operator_loses_the_admin_api() {
    let pki = Pki::new();
    let up = Upstream::start().await;
    write_svid(&pki, "api", API);
    write_svid(&pki, "web", WEB);
    let gw = start_in_process(pki.dir.path(), &payments_admin_config(&pki, &up, "")).await;
    let admin = format!("https://127.0.0.1:{}", gw.admin_addr.port());
    let data = format!("https://127.0.0.1:{}/payments/x", gw.data_addr.port());
    let revocations = format!("{admin}/admin/v1/revocations");
    // One client (and so one kept-alive connection) for `api` across the revocation.
    let api = mtls_client(&pki, Some("api"));
    let web = mtls_client(&pki, Some("web"));
    assert_eq!(status(&api, data.clone()).await, 200);
    assert_eq!(
        status(&api, format!("{admin}/admin/v1/inventory")).await,
        200
    );

    assert_eq!(
        revocation(&web, reqwest::Method::POST, &revocations, API).await,
        201
    );
    assert_eq!(status(&api, data.clone()).await, 401, "data plane");
    for path in [
        "/admin/v1/revocations",
        "/admin/v1/inventory",
        "/admin/v1/migration",
        "/admin/v1/policy/suggest?route=payments",
        "/",
    ] {
        let r = api.get(format!("{admin}{path}")).send().await.unwrap();
        assert_eq!(r.status(), 401, "{path} on the kept-alive connection");
        let p: Value = r.json().await.unwrap();
        assert_eq!(p["type"], "urn:portcullis:invalid-credential", "{path}");
    }
    // Lifting its own revocation: refused, and the revocation stands.
    assert_eq!(
        revocation(&api, reqwest::Method::DELETE, &revocations, API).await,
        401
    );
    // Another path to the same identity: a freshly issued SVID, on a new connection.
    write_svid(&pki, "api2", API);
    let api2 = mtls_client(&pki, Some("api2"));
    assert_eq!(
        revocation(&api2, reqwest::Method::DELETE, &revocations, API).await,
        401
    );
    assert_eq!(
        status(&api2, format!("{admin}/admin/v1/inventory")).await,
        401
    );
    assert_eq!(status(&api2, data.clone()).await, 401);
    // Probes and metrics stay open (machines read them); other operators keep the API.
    for path in ["/healthz", "/readyz", "/metrics"] {
        assert_eq!(status(&api, format!("{admin}{path}")).await, 200, "{path}");
    }
    let list: Value = web
        .get(&revocations)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(list.to_string().contains(API), "{list}");
    // Lifted by someone else, the operator is back.
    assert_eq!(
        revocation(&web, reqwest::Method::DELETE, &revocations, API).await,
        200
    );
    assert_eq!(
        status(&api, format!("{admin}/admin/v1/inventory")).await,
        200
    );
    assert_eq!(status(&api, data).await, 200);
    gw.stop().await;
}

/// Without its shared state backend the admin listener cannot vouch for its revocation set:
/// the ops API and the dashboard answer 503 (like the data plane), probes stay open.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_api_fails_closed_without_its_state_backend() {
    let mut redis = RedisServer::start();
    let pki = Pki::new();
    let up = Upstream::start().await;
    write_svid(&pki, "web", WEB);
    let state = format!(
        "[state]\nbackend = \"redis\"\nurl = \"{}\"\nprefix = \"admin-test:\"\nflush_every = \"200ms\"\n",
        redis.url()
    );
    let gw = start_in_process(pki.dir.path(), &payments_admin_config(&pki, &up, &state)).await;
    let admin = format!("https://127.0.0.1:{}", gw.admin_addr.port());
    let web = mtls_client(&pki, Some("web"));
    assert_eq!(status(&web, format!("{admin}/")).await, 200);
    redis.stop();
    let start = Instant::now();
    while status(&web, format!("{admin}/readyz")).await != 503 {
        assert!(start.elapsed() < Duration::from_secs(5), "never noticed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for path in ["/", "/admin/v1/revocations"] {
        let r = web.get(format!("{admin}{path}")).send().await.unwrap();
        assert_eq!(r.status(), 503, "{path}");
        assert!(r.headers().contains_key("retry-after"), "{path}");
        let p: Value = r.json().await.unwrap();
        assert_eq!(p["type"], "urn:portcullis:directory-unavailable", "{path}");
    }
    assert_eq!(status(&web, format!("{admin}/healthz")).await, 200);
    assert_eq!(status(&web, format!("{admin}/metrics")).await, 200);
    gw.stop().await;
}

const KEY: &str = "pcs_admin_hardening_key_0123456789abcdef";
const PARTNER: &str = "spiffe://corp.example/partner/acme";

/// A plain-HTTP gateway with API keys for `PARTNER` and one route `name` on `prefix`, with
/// `extra` (its policy, …) in the route.
async fn keyed_gateway(
    dir: &std::path::Path,
    up: &Upstream,
    prefix: &str,
    extra: &str,
) -> portcullis::server::Running {
    write_api_keys(dir, &[("partner-acme", PARTNER, KEY)]);
    let keys_credential = partner_keys(dir);
    let route = RouteToml::new("esc", prefix, &up.url())
        .accept(&["partner-keys"])
        .key("dangerous_allow_plaintext_credentials = true")
        .key(extra)
        .upstream_key("token_header = \"none\"");
    let routes = format!("{keys_credential}{route}");
    start_in_process(dir, &base_config(dir, "", "", &routes)).await
}

/// Finding: a policy reading `path` through an escaped attribute name passed `check` but was
/// evaluated with an empty path (the decision cache looked for the word in the policy text).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn escaped_path_and_time_reads_are_evaluated() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let up = Upstream::start().await;
    let soon = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 2;
    std::fs::write(
        d.join("esc.cedar"),
        format!(
            r#"permit (principal, action, resource);
forbid (principal, action, resource) when {{ resource["p\u{{61}}th"] like "/esc/admin*" }};
forbid (principal, action, resource) when {{ resource has "p\u{{61}}th" && resource["\u{{70}}ath"] == "/esc/other" }};
forbid (principal, action == Action::"POST", resource) when {{ context["t\u{{69}}me"] >= {soon} }};
"#
        ),
    )
    .unwrap();
    let gw = keyed_gateway(
        d,
        &up,
        "/esc/",
        &format!("policy = \"{}\"", d.join("esc.cedar").display()),
    )
    .await;
    let c = reqwest::Client::new();
    let url = |p: &str| format!("http://{}{p}", gw.data_addr);
    let send = |m: reqwest::Method, p: &str| c.request(m, url(p)).header("x-api-key", KEY).send();
    // Warm any cache with allowed requests first.
    assert_eq!(
        send(reqwest::Method::GET, "/esc/ok")
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        send(reqwest::Method::POST, "/esc/ok")
            .await
            .unwrap()
            .status(),
        200
    );
    let hits = up.count();
    for p in ["/esc/admin", "/esc/admin/users", "/esc/other"] {
        let r = send(reqwest::Method::GET, p).await.unwrap();
        assert_eq!(r.status(), 403, "{p}");
    }
    assert_eq!(up.count(), hits, "nothing forbidden reached the upstream");
    // `time` read through an escape: the POST allowed a moment ago is refused once it passes.
    while std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        < soon
    {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        send(reqwest::Method::POST, "/esc/ok")
            .await
            .unwrap()
            .status(),
        403
    );
    assert_eq!(
        send(reqwest::Method::GET, "/esc/ok")
            .await
            .unwrap()
            .status(),
        200
    );
    gw.stop().await;
}

const TWILIO_TOKEN: &str = "twilio-auth-token-0123456789abcdef";
const PUBLIC_URL: &str = "https://sms.corp.example/twilio/sms";

/// Twilio's signature: base64 HMAC-SHA1 of the URL followed by the form parameters sorted by
/// name, each as name then value.
fn twilio_sig(url: &str, params: &[(&str, &str)]) -> String {
    use base64::Engine as _;
    use hmac::Mac as _;
    let mut sorted = params.to_vec();
    sorted.sort();
    let mut mac = hmac::Hmac::<sha1::Sha1>::new_from_slice(TWILIO_TOKEN.as_bytes()).unwrap();
    mac.update(url.as_bytes());
    for (k, v) in sorted {
        mac.update(k.as_bytes());
        mac.update(v.as_bytes());
    }
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// A gateway with a Twilio credential (`cred_extra` added to it) on a POST route `/twilio/`
/// (`match_extra` added to its matcher).
fn twilio_config(
    dir: &std::path::Path,
    up: &Upstream,
    cred_extra: &str,
    match_extra: &str,
) -> String {
    std::fs::write(dir.join("twilio-token"), format!("{TWILIO_TOKEN}\n")).unwrap();
    let credential = webhook_credential(
        "sms",
        "twilio",
        &dir.join("twilio-token"),
        "spiffe://corp.example/external/twilio",
    );
    let route = RouteToml::new("sms", "/twilio/", &up.url())
        .methods(&["POST"])
        .accept(&["sms"])
        .allow(&["spiffe://corp.example/external/twilio"])
        .upstream_key("token_header = \"none\"");
    let route = match match_extra {
        "" => route,
        m => route.matcher(m),
    };
    let routes = format!("{credential}{cred_extra}\n{route}");
    base_config(dir, "", "", &routes)
}

/// Post a form delivery to `path` with `Host: host`, signed for `signed_for`.
async fn deliver(
    gw: &portcullis::server::Running,
    host: &str,
    path: &str,
    signed_for: &str,
    body: &[(&str, &str)],
) -> u16 {
    let form: String = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(body.iter())
        .finish();
    reqwest::Client::new()
        .post(format!("http://{}{path}", gw.data_addr))
        .header("host", host)
        .header("content-type", "application/x-www-form-urlencoded")
        .header("x-twilio-signature", twilio_sig(signed_for, body))
        .body(form)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// Finding: Twilio's signed URL was rebuilt from the attacker's `Host`, so a delivery signed for
/// another application of the same Twilio account was accepted. With `public_url`, the URL is
/// the configured one, whatever the request says.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twilio_deliveries_are_checked_against_the_public_url() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let up = Upstream::start().await;
    let toml = twilio_config(d, &up, &format!("public_url = \"{PUBLIC_URL}\""), "");
    let gw = start_in_process(d, &toml).await;
    let msg = |n: &'static str| [("From", "+15550001"), ("Body", n)];
    let other = "https://other-app.example/twilio/sms";
    // Signed for another app of the same account, sent with its Host: refused.
    assert_eq!(
        deliver(&gw, "other-app.example", "/twilio/sms", other, &msg("a")).await,
        401
    );
    // The same, with our Host, or with a Host naming no one.
    assert_eq!(
        deliver(&gw, "sms.corp.example", "/twilio/sms", other, &msg("a")).await,
        401
    );
    assert_eq!(
        deliver(&gw, "127.0.0.1", "/twilio/sms", other, &msg("a")).await,
        401
    );
    // Other spellings of our URL than the configured one: scheme, port, path, case.
    for wrong in [
        "http://sms.corp.example/twilio/sms",
        "https://sms.corp.example:443/twilio/sms",
        "https://sms.corp.example/twilio/sms/",
        "https://SMS.corp.example/twilio/sms",
    ] {
        assert_eq!(
            deliver(&gw, "sms.corp.example", "/twilio/sms", wrong, &msg("b")).await,
            401,
            "{wrong}"
        );
    }
    assert_eq!(up.count(), 0, "nothing reached the upstream");
    // Signed for the configured URL: accepted whatever Host the load balancer passes on, once.
    assert_eq!(
        deliver(&gw, "127.0.0.1", "/twilio/sms", PUBLIC_URL, &msg("c")).await,
        200
    );
    assert_eq!(
        deliver(
            &gw,
            "sms.corp.example",
            "/twilio/sms",
            PUBLIC_URL,
            &msg("c")
        )
        .await,
        401,
        "replay"
    );
    // The query string Twilio called with is part of the signed URL.
    let with_query = format!("{PUBLIC_URL}?tenant=acme");
    assert_eq!(
        deliver(
            &gw,
            "x.example",
            "/twilio/sms?tenant=acme",
            &with_query,
            &msg("d")
        )
        .await,
        200
    );
    assert_eq!(
        deliver(
            &gw,
            "x.example",
            "/twilio/sms?tenant=evil",
            &with_query,
            &msg("e")
        )
        .await,
        401
    );
    assert_eq!(up.count(), 2);
    gw.stop().await;
}

/// Without `public_url`, a route accepting a URL-signed webhook must pin the host (exact match),
/// so the Host the URL is rebuilt from is the one the provider called; `check` warns either way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn url_signed_webhook_routes_need_a_host_or_a_public_url() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let up = Upstream::start().await;
    let path = d.join("portcullis.toml");
    for match_extra in ["", "host = \"*.corp.example\""] {
        std::fs::write(&path, twilio_config(d, &up, "", match_extra)).unwrap();
        let err = portcullis::config::load(&path).err().map(|e| e.to_string());
        let err =
            err.unwrap_or_else(|| panic!("accepted a Twilio route without host ({match_extra:?})"));
        assert!(
            err.contains("routes[0]") && err.contains("public_url"),
            "{err}"
        );
    }
    // A public_url only makes sense for adapters that sign the URL.
    let stripe = twilio_config(d, &up, "public_url = \"https://sms.corp.example/x\"", "")
        .replace("adapter = \"twilio\"", "adapter = \"stripe\"");
    std::fs::write(&path, stripe).unwrap();
    let err = portcullis::config::load(&path)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(err.contains("credentials.sms.public_url"), "{err}");
    for bad in [
        "sms.corp.example/twilio",
        "https://sms.corp.example/t?x=1",
        "https://u@sms.corp.example/t",
        "ftp://sms.corp.example/t",
    ] {
        std::fs::write(
            &path,
            twilio_config(d, &up, &format!("public_url = \"{bad}\""), ""),
        )
        .unwrap();
        let err = portcullis::config::load(&path)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("credentials.sms.public_url"), "{bad}: {err}");
    }

    let toml = twilio_config(d, &up, "", "host = \"sms.corp.example\"");
    std::fs::write(&path, &toml).unwrap();
    let cfg = portcullis::config::load(&path).unwrap();
    assert!(
        cfg.warnings.iter().any(|w| w.contains("public_url")),
        "{:?}",
        cfg.warnings
    );
    let gw = start_in_process(d, &toml).await;
    let msg = [("From", "+15550001"), ("Body", "hi")];
    let other = "http://other-app.example/twilio/sms";
    assert_eq!(
        deliver(&gw, "other-app.example", "/twilio/sms", other, &msg).await,
        404
    );
    let ours = "http://sms.corp.example/twilio/sms";
    assert_eq!(
        deliver(&gw, "sms.corp.example", "/twilio/sms", other, &msg).await,
        401
    );
    assert_eq!(
        deliver(&gw, "sms.corp.example", "/twilio/sms", ours, &msg).await,
        200
    );
    gw.stop().await;
}

const OTHER_KEY: &str = "pcs_admin_hardening_other_0123456789abcd";
const OTHER: &str = "spiffe://corp.example/partner/other";

/// A plain-HTTP gateway keeping state in `dir` (flushed often), API keys for `PARTNER` and
/// `OTHER`, and a route `partners` on `/partners/` with `rules`.
async fn partners_gateway(
    dir: &std::path::Path,
    up: &Upstream,
    rules: &str,
) -> portcullis::server::Running {
    write_api_keys(
        dir,
        &[
            ("partner-acme", PARTNER, KEY),
            ("partner-other", OTHER, OTHER_KEY),
        ],
    );
    let keys_credential = partner_keys(dir);
    let routes = format!(
        r#"[state]
path = "{d}/state.db"
flush_every = "100ms"
{keys_credential}{route}"#,
        d = dir.display(),
        route = RouteToml::new("partners", "/partners/", &up.url())
            .accept(&["partner-keys"])
            .key("dangerous_allow_plaintext_credentials = true")
            .key(rules)
            .upstream_key("token_header = \"none\""),
    );
    start_in_process(dir, &base_config(dir, "", "", &routes)).await
}

/// Finding: `policy suggest` could be steered by the caller it describes: a literal `*` path
/// segment became a wildcard, requests the upstream answered 404 counted as allowed traffic, and
/// one caller could fill the route's recorded rows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policy_suggestion_cannot_be_steered_by_its_callers() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let up = Upstream::start().await;
    let gw = partners_gateway(d, &up, "allow = [\"spiffe://corp.example/partner/*\"]").await;
    let c = reqwest::Client::new();
    let send = |m: &str, p: &str, key: &str| {
        c.request(m.parse().unwrap(), format!("http://{}{p}", gw.data_addr))
            .header("x-api-key", key)
            .send()
    };
    let ok = [
        ("GET", "/partners/orders"),
        ("GET", "/partners/orders/42"),
        ("POST", "/partners/orders"),
    ];
    for (m, p) in ok {
        assert_eq!(send(m, p, KEY).await.unwrap().status(), 200, "{m} {p}");
    }
    assert_eq!(
        send("GET", "/partners/orders", OTHER_KEY)
            .await
            .unwrap()
            .status(),
        200
    );
    // The steering: a literal `*` (answered), and identifier-like paths the upstream refused.
    for (m, p, want) in [
        ("DELETE", "/partners/*", 200),
        ("PUT", "/partners/*/x", 200),
        ("PUT", "/partners/12345?status=404", 404),
        ("DELETE", "/partners/12345?status=405", 405),
        ("PATCH", "/partners/12345?status=500", 500),
        // `%2A` is not decoded by normalization: a literal segment, which stays literal.
        ("DELETE", "/partners/%2A", 200),
    ] {
        assert_eq!(send(m, p, KEY).await.unwrap().status(), want, "{m} {p}");
    }
    // One caller walking many distinct operations gets at most its share of the rows.
    let cap = portcullis::state::MAX_ACCESS_ROWS_PER_IDENTITY;
    for i in 0..cap + 20 {
        let p = format!("/partners/walk{i}x");
        assert_eq!(send("GET", &p, KEY).await.unwrap().status(), 200);
    }
    assert_eq!(
        send("GET", "/partners/late", OTHER_KEY)
            .await
            .unwrap()
            .status(),
        200
    );

    let admin = format!(
        "http://{}/admin/v1/policy/suggest?route=partners",
        gw.admin_addr
    );
    let start = Instant::now();
    let policy = loop {
        let v: Value = reqwest::get(&admin).await.unwrap().json().await.unwrap();
        let p = v["policy"].as_str().unwrap().to_owned();
        if p.contains("/partners/late") {
            break p;
        }
        assert!(start.elapsed() < Duration::from_secs(5), "{p}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let walked = policy.matches("/partners/walk").count();
    assert!(
        walked < cap,
        "{walked} walked rows of a {cap}-row share:\n{policy}"
    );
    // The one DELETE answered on a literal segment stays that literal.
    assert_eq!(policy.matches("DELETE").count(), 1, "{policy}");
    assert!(
        policy.contains(r#"resource.path == "/partners/%2A""#),
        "{policy}"
    );
    assert!(!policy.contains("PUT"), "{policy}");
    assert!(!policy.contains("PATCH"), "{policy}");
    gw.stop().await;

    // The suggestion as the route's policy: what was answered is allowed, nothing else.
    let dir2 = tempfile::tempdir().unwrap();
    let d2 = dir2.path();
    std::fs::write(d2.join("suggested.cedar"), &policy).unwrap();
    let gw = partners_gateway(
        d2,
        &up,
        &format!("policy = \"{}\"", d2.join("suggested.cedar").display()),
    )
    .await;
    let send = |m: &str, p: &str, key: &str| {
        c.request(m.parse().unwrap(), format!("http://{}{p}", gw.data_addr))
            .header("x-api-key", key)
            .send()
    };
    // Including the walker's first rows: long suggestions are split into evaluable permits.
    for (m, p) in ok
        .into_iter()
        .chain([("DELETE", "/partners/%2A"), ("GET", "/partners/walk0x")])
    {
        assert_eq!(send(m, p, KEY).await.unwrap().status(), 200, "{m} {p}");
    }
    for (m, p) in [
        ("DELETE", "/partners/victim"),
        ("DELETE", "/partners/*"),
        ("PUT", "/partners/victim/x"),
        ("PUT", "/partners/12345"),
        ("DELETE", "/partners/12345"),
        ("PATCH", "/partners/12345"),
    ] {
        assert_eq!(send(m, p, KEY).await.unwrap().status(), 403, "{m} {p}");
    }
    gw.stop().await;
}
