//! The ops surface against a running gateway with known traffic: the policy suggestion API (and
//! its result fed back through `portcullis check`), the admin API's browser defences, the
//! migration gauges, the CLI's tables and `--json` (the built binary), and the dashboard as
//! rendered by a headless Chromium.

use std::path::Path;
use std::process::Output;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use portcullis::clock::FakeClock;
use serde_json::Value;

use crate::support::*;

const KEY: &str = "pcs_ops_test_key_0123456789abcdef0123";
/// A key whose identity the route's `allow` does not cover.
const OTHER_KEY: &str = "pcs_ops_test_key_other_456789abcdef0123";
const OTHER: &str = "spiffe://corp.example/elsewhere/other";
const IDENTITY: &str = "spiffe://corp.example/partner/acme";
/// 2026-12-08, 12:00 UTC: the plan below is in `bridge`.
const TODAY: u64 = 20795;
/// 2026-11-08: `observe`.
const OBSERVE_DAY: u64 = 20765;

fn config(dir: &Path, up: &Upstream, tls: &str, rules: &str) -> String {
    let keys_credential = partner_keys(dir);
    let extra = format!(
        r#"{ISSUER}[state]
path = "{d}/state.db"
flush_every = "1s"
[migration]
plans_dir = "{d}/plans"
{keys_credential}{route}"#,
        d = dir.display(),
        route = RouteToml::new("partner", "/partner/", &up.url())
            .accept(&["partner-keys"])
            .key(rules)
            .key("plan = \"partner-api\"")
            .audience("partner-api"),
    );
    base_config(dir, "", tls, &extra)
}

struct Env {
    pki: Pki,
    _up: Upstream,
    gw: portcullis::server::Running,
    admin: String,
}

/// A gateway in `bridge` for the partner-api plan, after 3 legacy requests from partner-acme.
async fn start_with_traffic() -> Env {
    start_on(TODAY).await
}

async fn start_on(day: u64) -> Env {
    let pki = Pki::new();
    let up = Upstream::start().await;
    let dir = pki.dir.path();
    write_partner_plan(dir);
    write_api_keys(
        dir,
        &[
            ("partner-acme", IDENTITY, KEY),
            ("partner-other", OTHER, OTHER_KEY),
        ],
    );
    let toml = config(
        dir,
        &up,
        &pki.tls_section(),
        "allow = [\"spiffe://corp.example/partner/*\"]",
    );
    let path = dir.join("portcullis.toml");
    std::fs::write(&path, toml).unwrap();
    portcullis::server::install_crypto();
    let cfg = portcullis::config::load(&path).unwrap_or_else(|e| panic!("{e}"));
    let clock = Arc::new(FakeClock::new(
        UNIX_EPOCH + Duration::from_secs(day * 86400 + 12 * 3600),
    ));
    let gw = portcullis::server::start(cfg, portcullis::server::Options { clock })
        .await
        .unwrap();
    let client = pki.client(false);
    let base = format!("https://127.0.0.1:{}", gw.data_addr.port());
    for (m, p) in [
        ("GET", "/partner/orders/42"),
        ("GET", "/partner/orders/43"),
        ("POST", "/partner/orders"),
    ] {
        let r = client
            .request(m.parse().unwrap(), format!("{base}{p}"))
            .header("x-api-key", KEY)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{m} {p}");
    }
    // Refused traffic (or, in `observe`, traffic the policy would refuse) is not observed access.
    let r = client
        .get(format!("{base}/partner/secret"))
        .header("x-api-key", "pcs_wrong_key_000000000000000000000")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), if day == TODAY { 401 } else { 200 });
    let r = client
        .get(format!("{base}/partner/other"))
        .header("x-api-key", OTHER_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), if day == TODAY { 403 } else { 200 });
    let admin = format!("http://{}", gw.admin_addr);
    Env {
        pki,
        _up: up,
        gw,
        admin,
    }
}

/// Run the built binary (off the runtime's worker threads).
async fn cli(args: &[&str]) -> Output {
    let args: Vec<String> = args.iter().map(|s| (*s).to_owned()).collect();
    tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_portcullis"))
            .args(&args)
            .env("RUST_LOG", "warn")
            .output()
            .unwrap()
    })
    .await
    .unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policy_suggestion_guards_and_gauges() {
    let env = start_with_traffic().await;
    let http = reqwest::Client::new();
    let admin = &env.admin;

    let r = http
        .get(format!(
            "{admin}/admin/v1/policy/suggest?route=partner&since=7d"
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["route"], "partner");
    assert_eq!(v["since"], "2026-12-01");
    assert_eq!(v["requests"], 3);
    let policy = v["policy"].as_str().unwrap();
    assert!(policy.contains(IDENTITY), "{policy}");
    assert!(policy.contains("/partner/orders/*"), "{policy}");
    assert!(!policy.contains("/partner/secret"), "{policy}");

    let r = http
        .get(format!("{admin}/admin/v1/policy/suggest?route=nope"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(r.headers()["content-type"], "application/problem+json");
    assert_eq!(
        r.json::<Value>().await.unwrap()["type"],
        "urn:portcullis:no-route"
    );
    let r = http
        .get(format!(
            "{admin}/admin/v1/policy/suggest?route=partner&since=soon"
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);

    // The suggestion, as the route's policy, is a valid config.
    let dir = env.pki.dir.path();
    std::fs::write(dir.join("suggested.cedar"), policy).unwrap();
    let toml = config(
        dir,
        &env._up,
        &env.pki.tls_section(),
        &format!("policy = \"{}\"", dir.join("suggested.cedar").display()),
    );
    std::fs::write(dir.join("suggested.toml"), toml).unwrap();
    let o = cli(&["check", "-c", dir.join("suggested.toml").to_str().unwrap()]).await;
    assert!(
        o.status.success(),
        "{}{}",
        stdout(&o),
        String::from_utf8_lossy(&o.stderr)
    );

    // DNS rebinding: a page whose name points at loopback still sends its own Host.
    let r = http
        .get(format!("{admin}/admin/v1/inventory"))
        .header("host", "evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let r = http
        .get(format!("{admin}/"))
        .header("host", "rebound.evil.example:9090")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let r = http
        .get(format!("{admin}/admin/v1/inventory"))
        .header("host", format!("localhost:{}", env.gw.admin_addr.port()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // Probes and metrics stay reachable by name (scrapers, kubelet).
    let r = http
        .get(format!("{admin}/healthz"))
        .header("host", "portcullis.internal")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // Cross-site forms: no JSON content type, no change.
    let body = r#"{"credential":"partner-keys:partner-acme","reason":"csrf"}"#;
    for ct in [
        None,
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
    ] {
        for method in [reqwest::Method::POST, reqwest::Method::DELETE] {
            let mut b = http
                .request(method.clone(), format!("{admin}/admin/v1/revocations"))
                .body(body);
            if let Some(ct) = ct {
                b = b.header("content-type", ct);
            }
            let r = b.send().await.unwrap();
            assert_eq!(r.status(), 415, "{method} {ct:?}");
        }
    }
    let revs: Value = http
        .get(format!("{admin}/admin/v1/revocations"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(revs["revocations"], serde_json::json!([]));
    // A preflight is never answered with CORS headers.
    let r = http
        .request(
            reqwest::Method::OPTIONS,
            format!("{admin}/admin/v1/revocations"),
        )
        .header("origin", "https://evil.example")
        .header("access-control-request-method", "POST")
        .send()
        .await
        .unwrap();
    assert!(!r.status().is_success());
    assert!(r.headers().get("access-control-allow-origin").is_none());

    // Every admin error is problem+json, like the data plane's (docs/http.md).
    let json_body = |method: reqwest::Method, path: &str, body: String| {
        http.request(method, format!("{admin}{path}"))
            .header("content-type", "application/json")
            .body(body)
    };
    let cases = [
        (
            json_body(reqwest::Method::POST, "/admin/v1/revocations", "{".into()),
            400,
            "invalid-request",
        ),
        (
            json_body(
                reqwest::Method::POST,
                "/admin/v1/revocations",
                r#"{"identity":"not-a-spiffe-id","reason":"x"}"#.into(),
            ),
            400,
            "invalid-request",
        ),
        (
            json_body(
                reqwest::Method::DELETE,
                "/admin/v1/revocations",
                r#"{"jti":"never-revoked"}"#.into(),
            ),
            404,
            "not-found",
        ),
        (
            json_body(
                reqwest::Method::POST,
                "/admin/v1/revocations",
                "x".repeat(65 * 1024),
            ),
            413,
            "payload-too-large",
        ),
        (
            http.get(format!("{admin}/admin/v1/nothing-here")),
            404,
            "not-found",
        ),
        (http.get(format!("{admin}/nothing-here")), 404, "not-found"),
        (
            json_body(reqwest::Method::PUT, "/admin/v1/revocations", "{}".into()),
            405,
            "method-not-allowed",
        ),
        (
            json_body(reqwest::Method::POST, "/admin/v1/inventory", "{}".into()),
            405,
            "method-not-allowed",
        ),
    ];
    for (request, status, code) in cases {
        let r = request.send().await.unwrap();
        assert_eq!(r.status(), status, "{code}");
        assert_eq!(
            r.headers()["content-type"],
            "application/problem+json",
            "{code}"
        );
        if status == 405 {
            assert!(r.headers().contains_key("allow"), "{code}");
        }
        let p: Value = r.json().await.unwrap();
        assert_eq!(p["type"], format!("urn:portcullis:{code}"));
        assert_eq!(p["status"], status);
        assert!(p["detail"].as_str().is_some_and(|d| !d.is_empty()), "{p}");
    }

    let metrics = http
        .get(format!("{admin}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for line in [
        "portcullis_migration_phase{plan=\"partner-api\",phase=\"bridge\"} 1",
        "portcullis_migration_phase{plan=\"partner-api\",phase=\"observe\"} 0",
        "portcullis_migration_phase{plan=\"partner-api\",phase=\"enforce\"} 0",
        "portcullis_migration_ready{plan=\"partner-api\"} 0",
    ] {
        assert!(metrics.contains(line), "{line} missing in\n{metrics}");
    }
    env.gw.stop().await;
}

/// `observe` forwards everything, but only what the policy would allow counts as access.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn observe_records_only_what_would_be_allowed() {
    let env = start_on(OBSERVE_DAY).await;
    let v: Value = reqwest::get(format!(
        "{}/admin/v1/policy/suggest?route=partner&since=30d",
        env.admin
    ))
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    assert_eq!(v["requests"], 3, "{v}");
    let policy = v["policy"].as_str().unwrap();
    assert!(policy.contains(IDENTITY), "{policy}");
    assert!(!policy.contains(OTHER), "{policy}");
    env.gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_tables_json_and_revocation() {
    let env = start_with_traffic().await;
    let admin = env.admin.as_str();

    let o = cli(&["migration", "status", "--admin", admin]).await;
    assert!(o.status.success(), "{o:?}");
    let table = stdout(&o);
    let lines: Vec<&str> = table.lines().collect();
    assert!(lines[0].starts_with("PLAN  "), "{table}");
    let row: Vec<&str> = lines[1].split_whitespace().collect();
    assert_eq!(
        &row[..4],
        ["partner-api", "bridge", "enforce", "2027-03-01"],
        "{table}"
    );
    assert!(lines[1].ends_with("not ready"), "{table}");
    assert!(
        table.contains(
            "enforcing today would refuse 4 request(s) from 2 caller(s): partner-keys:partner-acme, partner-keys:partner-other"
        ),
        "{table}"
    );

    let o = cli(&["migration", "status", "--json", "--admin", admin]).await;
    assert!(o.status.success());
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["plans"][0]["name"], "partner-api");
    assert_eq!(v["plans"][0]["phase"], "bridge");
    // The 403 of partner-other was still a legacy-credential request.
    assert_eq!(v["plans"][0]["window"]["legacy_requests"], 4);
    let principals: Vec<&str> = v["plans"][0]["active_legacy_principals"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["principal"].as_str().unwrap())
        .collect();
    assert_eq!(principals.len(), 2);
    assert!(principals.contains(&"partner-acme"), "{principals:?}");

    let o = cli(&["inventory", "--admin", admin]).await;
    assert!(o.status.success());
    let table = stdout(&o);
    let row = table.lines().find(|l| l.contains("partner-acme")).unwrap();
    let cells: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(
        &cells[..5],
        [
            "api-key",
            "partner-keys",
            "partner-acme",
            IDENTITY,
            "partner"
        ],
        "{table}"
    );
    assert!(!row.contains("revoked"), "{row}");

    let o = cli(&["policy", "suggest", "--route", "partner", "--admin", admin]).await;
    assert!(o.status.success());
    assert!(stdout(&o).contains("permit ("), "{}", stdout(&o));
    let o = cli(&[
        "policy", "suggest", "--route", "partner", "--json", "--admin", admin,
    ])
    .await;
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["requests"], 3);

    // Revoke, then the inventory shows it; the default admin URL comes from the config.
    let dir = env.pki.dir.path();
    let toml = std::fs::read_to_string(dir.join("portcullis.toml"))
        .unwrap()
        .replace(
            "[admin]\naddr = \"127.0.0.1:0\"",
            &format!("[admin]\naddr = \"{}\"", env.gw.admin_addr),
        );
    std::fs::write(dir.join("cli.toml"), toml).unwrap();
    let cfg = dir.join("cli.toml");
    let cfg = cfg.to_str().unwrap();
    let o = cli(&[
        "revoke",
        "--credential",
        "partner-keys:partner-acme",
        "--reason",
        "offboarded",
        "-c",
        cfg,
    ])
    .await;
    assert!(o.status.success(), "{o:?}");
    assert_eq!(
        stdout(&o),
        "revoked credential:partner-keys:partner-acme: refused from now on\n"
    );
    let o = cli(&["inventory", "-c", cfg]).await;
    let table = stdout(&o);
    let row = table.lines().find(|l| l.contains("partner-acme")).unwrap();
    assert!(row.contains("revoked"), "{table}");
    let o = cli(&["inventory", "--json", "--admin", admin]).await;
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    let revoked: Vec<(&str, bool)> = v["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["principal"].as_str().unwrap(),
                e["revoked"].as_bool().unwrap(),
            )
        })
        .collect();
    assert!(revoked.contains(&("partner-acme", true)), "{revoked:?}");
    assert!(revoked.contains(&("partner-other", false)), "{revoked:?}");
    let o = cli(&[
        "revoke",
        "--delete",
        "--credential",
        "partner-keys:partner-acme",
        "--admin",
        admin,
    ])
    .await;
    assert!(o.status.success(), "{o:?}");
    let o = cli(&[
        "revoke",
        "--delete",
        "--credential",
        "partner-keys:partner-acme",
        "--admin",
        admin,
    ])
    .await;
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("no such revocation"));

    // Exit codes: 2 for bad usage, 1 (naming the URL) when the admin API is not there.
    for args in [
        &["revoke", "--reason", "x", "--admin", admin][..],
        &[
            "revoke",
            "--identity",
            "not-spiffe",
            "--reason",
            "x",
            "--admin",
            admin,
        ],
        &["policy", "suggest", "--admin", admin],
        &["inventory", "--admin", "ftp://127.0.0.1:1"],
    ] {
        assert_eq!(cli(args).await.status.code(), Some(2), "{args:?}");
    }
    let gone = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let o = cli(&["inventory", "--admin", &format!("http://{gone}")]).await;
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains(&format!("http://{gone}")), "{err}");
    env.gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_renders_in_headless_chromium() {
    let env = start_with_traffic().await;
    let admin = env.admin.as_str();
    let r = reqwest::get(format!("{admin}/")).await.unwrap();
    assert_eq!(r.status(), 200);
    let csp = r.headers()["content-security-policy"].to_str().unwrap();
    assert!(csp.starts_with("default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; frame-ancestors 'none'"), "{csp}");
    let html = r.text().await.unwrap();
    assert!(
        !html.contains("<script>") && !html.contains("style="),
        "no inline script or style"
    );
    for (p, ct) in [
        ("/dashboard.js", "text/javascript; charset=utf-8"),
        ("/dashboard.css", "text/css; charset=utf-8"),
    ] {
        let r = reqwest::get(format!("{admin}{p}")).await.unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["content-type"], ct);
    }
    let js = reqwest::get(format!("{admin}/dashboard.js"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!js.contains("innerHTML"), "data is never parsed as HTML");

    let url = format!("{admin}/");
    let dom = tokio::task::spawn_blocking(move || {
        let out = std::process::Command::new("chromium")
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--virtual-time-budget=5000",
                "--dump-dom",
                &url,
            ])
            .output()
            .unwrap_or_else(|e| panic!("chromium not runnable ({e}); scripts/test installs it"));
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    })
    .await
    .unwrap();
    // The plan card: name, phase, status, the legacy principal still active, the sunset.
    assert!(dom.contains(r#"data-plan="partner-api""#), "{dom}");
    assert!(
        dom.contains(r#"<span class="phase bridge">bridge</span>"#),
        "{dom}"
    );
    assert!(
        dom.contains(r#"<span class="badge not-ready">not ready</span>"#),
        "{dom}"
    );
    assert!(dom.contains("partner-keys:partner-acme"), "{dom}");
    assert!(dom.contains("83 d</b><span>to sunset"), "{dom}");
    assert!(dom.contains("today 2026-12-08"), "{dom}");
    // The inventory row.
    assert!(
        dom.contains(&format!(
            "<td>api-key</td><td>partner-keys</td><td>partner-acme</td><td class=\"mono\">{IDENTITY}</td><td>partner</td>"
        )),
        "{dom}"
    );
    assert!(dom.contains("2 entries<"), "{dom}");

    // To look at it: PORTCULLIS_DASHBOARD_PNG=/tmp/dashboard.png cargo test --test gateway dashboard
    if let Some(png) = std::env::var_os("PORTCULLIS_DASHBOARD_PNG") {
        let mut shot = std::ffi::OsString::from("--screenshot=");
        shot.push(&png);
        let url = format!("{admin}/");
        let st = tokio::task::spawn_blocking(move || {
            std::process::Command::new("chromium")
                .arg("--headless")
                .arg("--no-sandbox")
                .arg("--disable-gpu")
                .arg("--virtual-time-budget=5000")
                .arg(shot)
                .arg("--window-size=1280,900")
                .arg(url)
                .status()
                .unwrap()
        })
        .await
        .unwrap();
        assert!(st.success());
    }
    env.gw.stop().await;
}
