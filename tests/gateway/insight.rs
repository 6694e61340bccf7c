//! Migration insight against a running gateway: one API key used from several sources (client
//! sockets bound to 127.0.0.2–4, two User-Agents) is flagged `shared_suspected`, in embedded state
//! and across two replicas sharing a real `redis-server`; two plans sharing a principal show
//! exact per-plan figures in the admin API, the CLI's `--json` and the dashboard's DOM (headless
//! Chromium); a `[[grace]]` lets one named principal through `enforce` until its date (fake clock),
//! with its own `Sunset` and the audit reason `grace`; `check` refuses a grace without a reason or
//! longer than `[migration] max_grace`.

use std::net::IpAddr;
use std::path::Path;
use std::process::Output;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use portcullis::clock::FakeClock;
use portcullis::time::Date;
use serde_json::Value;

use crate::shared_state::redis_server::RedisServer;
use crate::support::*;

/// Shared by several services.
const ACME: &str = "pcs_insight_acme_key_0123456789abcdef0123";
/// Used by one batch job.
const SOLO: &str = "pcs_insight_solo_key_0123456789abcdef0123";
const UA1: &str = "batch-runner/1.0";
const UA2: &str = "report-svc/2.3 (+cron)";

/// 12:00 UTC on `y-m-d`.
fn noon(y: i64, m: u32, d: u32) -> SystemTime {
    Date::from_ymd(y, m, d).unwrap().midnight() + Duration::from_secs(12 * 3600)
}

/// Two plans retiring `partner-keys`: `plan-a` for route `a`, `plan-b` for route `b`; `extra`
/// is appended to `plan-b` (a `[[grace]]`).
fn write_plans(dir: &Path, grace: &str) {
    std::fs::create_dir_all(dir.join("plans")).unwrap();
    for (name, extra) in [("plan-a", ""), ("plan-b", grace)] {
        std::fs::write(
            dir.join(format!("plans/{name}.toml")),
            format!(
                r#"name = "{name}"
owner = "team-{name} <{name}@corp.example>"
docs = "https://wiki.corp.example/migrations/{name}"
legacy_credentials = ["partner-keys"]
[phases]
observe = 2026-11-01
bridge = 2026-12-01
enforce = 2027-03-01
[exit_criteria]
max_legacy_share = 0.01
window = "14d"
{extra}"#
            ),
        )
        .unwrap();
    }
}

/// The gateway's config: routes `a` (`/a/`, plan-a) and `b` (`/b/`, plan-b), both accepting
/// `partner-keys`; `state` is the `[state]` section; `migration` more `[migration]` keys.
fn config(
    dir: &Path,
    keys_dir: &Path,
    up: &Upstream,
    tls: &str,
    state: &str,
    migration: &str,
) -> String {
    let mut routes = String::new();
    for r in ["a", "b"] {
        routes.push_str(&format!(
            "\n[[routes]]\nname = \"{r}\"\nmatch = {{ path_prefix = \"/{r}/\" }}\naccept = [\"partner-keys\"]\n{ALLOW_PARTNERS}\nplan = \"plan-{r}\"\n[routes.upstream]\nurl = \"{}\"\naudience = \"{r}\"\n",
            up.url()
        ));
    }
    let extra = format!(
        "{ISSUER}{state}\n[migration]\nplans_dir = \"{k}/plans\"\n{migration}\n{keys}{routes}",
        k = keys_dir.display(),
        keys = partner_keys(keys_dir),
    );
    base_config(dir, "", tls, &extra)
}

fn write_keys(dir: &Path) {
    write_api_keys(
        dir,
        &[
            ("acme", "spiffe://corp.example/partner/acme", ACME),
            ("solo", "spiffe://corp.example/partner/solo", SOLO),
        ],
    );
}

async fn start(dir: &Path, toml: &str, clock: Arc<FakeClock>) -> portcullis::server::Running {
    portcullis::server::install_crypto();
    let path = dir.join("portcullis.toml");
    std::fs::write(&path, toml).unwrap();
    let cfg = portcullis::config::load(&path).unwrap_or_else(|e| panic!("{e}"));
    portcullis::server::start(cfg, portcullis::server::Options { clock })
        .await
        .unwrap()
}

/// A client whose connections come from `ip` (a loopback address other than 127.0.0.1).
fn client_from(pki: &Pki, ip: &str) -> reqwest::Client {
    let mut cfg = pki.client_config();
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    reqwest::Client::builder()
        .use_preconfigured_tls(cfg)
        .local_address(ip.parse::<IpAddr>().unwrap())
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

/// `GET base+path` with `key` and `agent`; the status.
async fn call(c: &reqwest::Client, base: &str, path: &str, key: &str, agent: &str) -> u16 {
    c.get(format!("{base}{path}"))
        .header("x-api-key", key)
        .header("user-agent", agent)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

async fn get_json(url: &str) -> Value {
    let r = reqwest::get(url).await.unwrap();
    assert_eq!(r.status(), 200, "{url}");
    r.json().await.unwrap()
}

/// The inventory row of `principal`.
fn row<'a>(inv: &'a Value, principal: &str) -> &'a Value {
    inv["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["principal"] == principal)
        .unwrap_or_else(|| panic!("no {principal} in {inv}"))
}

/// The plan `name` in a migration report.
fn plan<'a>(m: &'a Value, name: &str) -> &'a Value {
    m["plans"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == name)
        .unwrap_or_else(|| panic!("no {name} in {m}"))
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

fn cli_json(o: &Output) -> Value {
    assert!(o.status.success(), "{o:?}");
    serde_json::from_slice(&o.stdout).unwrap()
}

/// The shared key from three sources, the solo key from one, and their hostile twins: a header
/// a legacy app would trust for the client address, a control character in the User-Agent, a
/// wrong key from yet another address.
async fn shared_and_solo_traffic(pki: &Pki, bases: &[String]) {
    let from2 = client_from(pki, "127.0.0.2");
    let from3 = client_from(pki, "127.0.0.3");
    let from4 = client_from(pki, "127.0.0.4");
    let from5 = client_from(pki, "127.0.0.5");
    let from6 = client_from(pki, "127.0.0.6");
    let base = |i: usize| bases[i % bases.len()].as_str();
    for (i, (c, agent)) in [(&from2, UA1), (&from3, UA2), (&from4, UA1), (&from2, UA1)]
        .into_iter()
        .enumerate()
    {
        assert_eq!(call(c, base(i), "/a/orders", ACME, agent).await, 200);
    }
    for i in 0..3 {
        let r = from5
            .get(format!("{}/a/orders", base(i)))
            .header("x-api-key", SOLO)
            .header("user-agent", "solo-batch/1.0")
            // Spoofed client addresses: the source is the connection's, never a header.
            .header("x-forwarded-for", format!("10.9.9.{i}"))
            .header("x-real-ip", format!("10.8.8.{i}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    // Refused: counted for nobody.
    assert_eq!(
        call(
            &from6,
            base(0),
            "/a/orders",
            "pcs_insight_wrong_key_000000000000000",
            UA1
        )
        .await,
        401
    );
}

async fn assert_shared_flags(admin: &str) {
    let inv = get_json(&format!("{admin}/admin/v1/inventory")).await;
    let acme = row(&inv, "acme");
    assert_eq!(acme["distinct_sources"], 3, "{acme}");
    assert_eq!(acme["shared_suspected"], true, "{acme}");
    assert_eq!(acme["sources_capped"], false);
    assert_eq!(acme["count"], 4);
    assert_eq!(
        acme["plans"][0]["owner"],
        "team-plan-a <plan-a@corp.example>"
    );
    let solo = row(&inv, "solo");
    assert_eq!(solo["distinct_sources"], 1, "{solo}");
    assert_eq!(solo["shared_suspected"], false, "{solo}");
    assert_eq!(inv["entries"].as_array().unwrap().len(), 2, "{inv}");

    // The plan card lists the sources: split before enforce.
    let m = get_json(&format!("{admin}/admin/v1/migration")).await;
    let a = plan(&m, "plan-a");
    let shared = a["shared_credentials"].as_array().unwrap();
    assert_eq!(shared.len(), 1, "{a}");
    assert_eq!(shared[0]["principal"], "partner-keys:acme");
    let mut seen: Vec<(String, String, u64)> = shared[0]["sources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["ip"].as_str().unwrap().to_owned(),
                s["user_agent"].as_str().unwrap().to_owned(),
                s["requests"].as_u64().unwrap(),
            )
        })
        .collect();
    seen.sort();
    assert_eq!(
        seen,
        [
            ("127.0.0.2".to_owned(), UA1.to_owned(), 2),
            ("127.0.0.3".to_owned(), UA2.to_owned(), 1),
            ("127.0.0.4".to_owned(), UA1.to_owned(), 1),
        ]
    );
    assert!(
        a["reasons"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r == "split before enforce: partner-keys:acme is used from 3 sources"),
        "{a}"
    );
    let solo_seen = a["active_legacy_principals"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["principal"] == "solo")
        .unwrap();
    assert_eq!(solo_seen["sources"][0]["ip"], "127.0.0.5");
    assert_eq!(solo_seen["shared_suspected"], false);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_key_from_three_sources_is_shared_one_source_is_not() {
    let pki = Pki::new();
    let up = Upstream::start().await;
    let dir = pki.dir.path();
    write_keys(dir);
    write_plans(dir, "");
    let state = format!(
        "[state]\npath = \"{}/state.db\"\nflush_every = \"1s\"",
        dir.display()
    );
    let toml = config(dir, dir, &up, &pki.tls_section(), &state, "");
    let clock = Arc::new(FakeClock::new(noon(2026, 12, 8)));
    let gw = start(dir, &toml, clock).await;
    let base = format!("https://127.0.0.1:{}", gw.data_addr.port());
    shared_and_solo_traffic(&pki, std::slice::from_ref(&base)).await;
    let admin = format!("http://{}", gw.admin_addr);
    assert_shared_flags(&admin).await;

    // A User-Agent with a control (tab) and a bidi character is stored cleaned, never as sent.
    let from7 = client_from(&pki, "127.0.0.7");
    let r = from7
        .get(format!("{base}/a/x"))
        .header("x-api-key", SOLO)
        .header(
            "user-agent",
            reqwest::header::HeaderValue::from_bytes(b"evil\t[2J\xe2\x80\xae<script>").unwrap(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let m = get_json(&format!("{admin}/admin/v1/migration")).await;
    let text = m.to_string();
    assert!(
        !text.contains('\u{1b}') && !text.contains('\u{202e}'),
        "{text}"
    );
    assert!(text.contains("evil?[2J?<script>"), "{text}");

    // `policy suggest` proposes one identity per source of the shared key, none for the other.
    let o = cli(&[
        "policy", "suggest", "--route", "a", "--json", "--admin", &admin,
    ])
    .await;
    let v = cli_json(&o);
    assert_eq!(v["split"].as_array().unwrap().len(), 1, "{v}");
    assert_eq!(v["split"][0]["principal"], "partner-keys:acme");
    let proposed: Vec<(&str, &str)> = v["split"][0]["proposed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["ip"].as_str().unwrap(), p["identity"].as_str().unwrap()))
        .collect();
    assert_eq!(
        proposed,
        [
            (
                "127.0.0.2",
                "spiffe://corp.example/partner/acme/batch-runner"
            ),
            ("127.0.0.3", "spiffe://corp.example/partner/acme/report-svc"),
            (
                "127.0.0.4",
                "spiffe://corp.example/partner/acme/batch-runner-2"
            ),
        ]
    );
    let policy = v["policy"].as_str().unwrap();
    assert!(
        policy.contains("//   127.0.0.3 \"report-svc/2.3 (+cron)\" (1 requests) -> spiffe://corp.example/partner/acme/report-svc"),
        "{policy}"
    );
    // The comments keep the policy valid Cedar; the text output is the same policy.
    policy.parse::<cedar_policy::PolicySet>().unwrap();
    let o = cli(&["policy", "suggest", "--route", "a", "--admin", &admin]).await;
    assert!(o.status.success());
    assert_eq!(
        String::from_utf8_lossy(&o.stdout).trim_end(),
        policy.trim_end()
    );

    // The CLI shows the same figures.
    let o = cli(&["inventory", "--json", "--admin", &admin]).await;
    let inv = cli_json(&o);
    assert_eq!(row(&inv, "acme")["distinct_sources"], 3);
    assert_eq!(row(&inv, "acme")["shared_suspected"], true);
    assert_eq!(row(&inv, "solo")["distinct_sources"], 2);
    let o = cli(&["migration", "status", "--admin", &admin]).await;
    assert!(o.status.success(), "{o:?}");
    let table = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(
        table.contains("plan-a: split before enforce: partner-keys:acme is used from 3 sources"),
        "{table}"
    );
    assert!(
        table.contains(&format!("  127.0.0.3  {UA2}  1 request(s)")),
        "{table}"
    );
    assert!(
        table.contains("plan-a: contact team-plan-a <plan-a@corp.example> · https://wiki.corp.example/migrations/plan-a"),
        "{table}"
    );
    assert!(!table.contains('\u{1b}'), "{table}");

    // The dashboard flags it on the plan card, with its sources, and on the inventory row.
    let dom = dashboard_dom(&admin).await;
    let a = card(&dom, "plan-a");
    assert!(
        a.contains("Split before enforce: partner-keys:acme is used from 3 sources"),
        "{a}"
    );
    assert!(
        a.contains(&format!("<li>127.0.0.3 · {} · 1 request(s)</li>", UA2)),
        "{a}"
    );
    assert!(
        a.contains(r#"<span class="tag shared">shared</span>partner-keys:acme"#),
        "{a}"
    );
    assert!(
        !a.contains(r#"<span class="tag shared">shared</span>partner-keys:solo"#),
        "{a}"
    );
    assert!(
        !a.contains("<script>"),
        "a User-Agent is text, never markup"
    );
    assert!(
        dom.contains(r#"<td class="num">4</td><td class="num">3</td><td>team-plan-a &lt;plan-a@corp.example&gt; (plan-a); team-plan-b &lt;plan-b@corp.example&gt; (plan-b)</td><td><span class="tag shared">shared: split before enforce</span></td>"#),
        "{dom}"
    );
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shared_key_is_flagged_across_two_redis_replicas() {
    let redis = RedisServer::start();
    let pki = Pki::new();
    let up = Upstream::start().await;
    let shared = pki.dir.path();
    write_keys(shared);
    write_plans(shared, "");
    let state = format!(
        "[state]\nbackend = \"redis\"\nurl = \"{}\"\nprefix = \"insight-test:\"\nflush_every = \"200ms\"",
        redis.url()
    );
    let mut gws = Vec::new();
    for n in 1..=2 {
        let dir = shared.join(format!("gw{n}"));
        std::fs::create_dir_all(&dir).unwrap();
        let toml = config(&dir, shared, &up, &pki.tls_section(), &state, "");
        let clock = Arc::new(FakeClock::new(noon(2026, 12, 8)));
        gws.push(start(&dir, &toml, clock).await);
    }
    let bases: Vec<String> = gws
        .iter()
        .map(|g| format!("https://127.0.0.1:{}", g.data_addr.port()))
        .collect();
    // Requests alternate between the replicas: no replica saw three sources on its own.
    shared_and_solo_traffic(&pki, &bases).await;
    // Replica 1's counts reach Redis on its next flush (every 200 ms); replica 2 answers.
    let admin2 = format!("http://{}", gws[1].admin_addr);
    let started = std::time::Instant::now();
    loop {
        let inv = get_json(&format!("{admin2}/admin/v1/inventory")).await;
        let done = inv["entries"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["count"].as_u64().unwrap())
            .sum::<u64>()
            == 7;
        if done {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "{inv}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_shared_flags(&admin2).await;
    for g in gws {
        g.stop().await;
    }
}

/// The DOM of the dashboard at `admin`, as headless Chromium renders it.
async fn dashboard_dom(admin: &str) -> String {
    let url = format!("{admin}/");
    tokio::task::spawn_blocking(move || {
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
    .unwrap()
}

/// The part of `dom` that is plan `name`'s card.
fn card<'a>(dom: &'a str, name: &str) -> &'a str {
    let start = dom
        .find(&format!("data-plan=\"{name}\""))
        .unwrap_or_else(|| panic!("no card for {name}: {dom}"));
    let rest = &dom[start..];
    let end = rest.find("</article>").unwrap();
    &rest[..end]
}

/// The figures of one plan, the same in the API and the CLI's `--json`.
fn assert_plan_figures(m: &Value, name: &str, legacy: u64, principals: &[(&str, u64)]) {
    let p = plan(m, name);
    assert_eq!(p["window"]["legacy_requests"], legacy, "{p}");
    assert_eq!(p["window"]["total_requests"], legacy, "{p}");
    let day = p["window"]["daily"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["day"] == "2026-12-08")
        .unwrap();
    assert_eq!(day["legacy_requests"], legacy);
    let mut got: Vec<(String, u64)> = p["active_legacy_principals"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            assert_eq!(a["distinct_sources"], 1, "{a}");
            assert_eq!(a["last_seen"], "2026-12-08T12:00:00Z", "{a}");
            (
                a["principal"].as_str().unwrap().to_owned(),
                a["count"].as_u64().unwrap(),
            )
        })
        .collect();
    got.sort();
    let want: Vec<(String, u64)> = principals
        .iter()
        .map(|(p, n)| ((*p).to_owned(), *n))
        .collect();
    assert_eq!(got, want, "{name}");
    let w = &p["what_if_enforced"];
    assert_eq!(w["refused_requests"], legacy);
    assert_eq!(w["refused_callers"], principals.len());
    let labels: Vec<String> = principals
        .iter()
        .map(|(p, _)| format!("partner-keys:{p}"))
        .collect();
    assert_eq!(w["principals"], serde_json::json!(labels));
    assert_eq!(p["shared_credentials"], serde_json::json!([]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_plans_sharing_a_principal_count_only_their_routes() {
    let pki = Pki::new();
    let up = Upstream::start().await;
    let dir = pki.dir.path();
    write_keys(dir);
    write_plans(dir, "");
    let state = format!(
        "[state]\npath = \"{}/state.db\"\nflush_every = \"1s\"",
        dir.display()
    );
    let toml = config(dir, dir, &up, &pki.tls_section(), &state, "");
    let clock = Arc::new(FakeClock::new(noon(2026, 12, 8)));
    let gw = start(dir, &toml, clock).await;
    let base = format!("https://127.0.0.1:{}", gw.data_addr.port());
    let c = client_from(&pki, "127.0.0.2");
    for _ in 0..3 {
        assert_eq!(call(&c, &base, "/a/orders", ACME, UA1).await, 200);
    }
    for _ in 0..5 {
        assert_eq!(call(&c, &base, "/b/orders", ACME, UA1).await, 200);
    }
    for _ in 0..2 {
        assert_eq!(call(&c, &base, "/b/orders", SOLO, UA2).await, 200);
    }
    let admin = format!("http://{}", gw.admin_addr);

    let api = get_json(&format!("{admin}/admin/v1/migration")).await;
    let o = cli(&["migration", "status", "--json", "--admin", &admin]).await;
    let json = cli_json(&o);
    for m in [&api, &json] {
        assert_plan_figures(m, "plan-a", 3, &[("acme", 3)]);
        assert_plan_figures(m, "plan-b", 7, &[("acme", 5), ("solo", 2)]);
    }
    // The inventory stays all-time, across routes.
    let inv = get_json(&format!("{admin}/admin/v1/inventory")).await;
    assert_eq!(row(&inv, "acme")["count"], 8);
    assert_eq!(row(&inv, "acme")["routes"], serde_json::json!(["a", "b"]));
    let owners: Vec<&str> = row(&inv, "acme")["plans"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["plan"].as_str().unwrap())
        .collect();
    assert_eq!(owners, ["plan-a", "plan-b"]);

    let dom = dashboard_dom(&admin).await;
    let a = card(&dom, "plan-a");
    assert!(
        a.contains("<b>3</b><span>legacy of 3 requests</span>"),
        "{a}"
    );
    assert!(
        a.contains("<b>1</b><span>legacy principals active</span>"),
        "{a}"
    );
    assert!(
        a.contains(r#"partner-keys:acme</td><td class="mono">spiffe://corp.example/partner/acme</td><td>2026-12-08 12:00:00 UTC</td><td class="num">3</td><td class="num">1</td>"#),
        "{a}"
    );
    assert!(!a.contains("partner-keys:solo"), "{a}");
    assert!(
        a.contains("Enforcing today would refuse 3 request(s) from 1 caller(s)."),
        "{a}"
    );
    assert!(
        a.contains("Contact: team-plan-a &lt;plan-a@corp.example&gt; · https://wiki.corp.example/migrations/plan-a"),
        "{a}"
    );
    let b = card(&dom, "plan-b");
    assert!(
        b.contains("<b>7</b><span>legacy of 7 requests</span>"),
        "{b}"
    );
    assert!(
        b.contains("<b>2</b><span>legacy principals active</span>"),
        "{b}"
    );
    assert!(
        b.contains(r#"partner-keys:acme</td><td class="mono">spiffe://corp.example/partner/acme</td><td>2026-12-08 12:00:00 UTC</td><td class="num">5</td><td class="num">1</td>"#),
        "{b}"
    );
    assert!(
        b.contains(r#"partner-keys:solo</td><td class="mono">spiffe://corp.example/partner/solo</td><td>2026-12-08 12:00:00 UTC</td><td class="num">2</td><td class="num">1</td>"#),
        "{b}"
    );
    assert!(
        b.contains("Enforcing today would refuse 7 request(s) from 2 caller(s)."),
        "{b}"
    );
    // The inventory row names whom to call.
    assert!(
        dom.contains("<td>team-plan-a &lt;plan-a@corp.example&gt; (plan-a); team-plan-b &lt;plan-b@corp.example&gt; (plan-b)</td>"),
        "{dom}"
    );
    gw.stop().await;
}

const GRACE: &str = r#"
[[grace]]
principal = "partner-keys:acme"
until = 2027-03-15
reason = "vendor release in March"
"#;

/// `GET base+path` with `key`: status, headers, body.
async fn fetch(
    c: &reqwest::Client,
    base: &str,
    path: &str,
    key: &str,
) -> (u16, reqwest::header::HeaderMap, Value) {
    let r = c
        .get(format!("{base}{path}"))
        .header("x-api-key", key)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    let body = r.bytes().await.unwrap();
    (
        status,
        headers,
        serde_json::from_slice(&body).unwrap_or(Value::Null),
    )
}

fn assert_retired(got: &(u16, reqwest::header::HeaderMap, Value)) {
    assert_eq!(got.0, 401, "{got:?}");
    assert_eq!(
        got.2["type"], "urn:portcullis:legacy-credential-retired",
        "{got:?}"
    );
}

/// The reason of the last audit line once there are `n`.
async fn audit_reason(dir: &Path, n: usize) -> (String, String) {
    let lines = audit_lines(dir, n).await;
    let last = &lines[n - 1];
    (
        last["reason"].as_str().unwrap().to_owned(),
        last["principal"].as_str().unwrap_or("-").to_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grace_bridges_one_principal_until_its_date() {
    let pki = Pki::new();
    let up = Upstream::start().await;
    let dir = pki.dir.path();
    write_keys(dir);
    write_plans(dir, GRACE);
    // Tokens for route b's audience are exchanged only for callers route b would let in.
    let state = format!(
        "[state]\npath = \"{}/state.db\"\nflush_every = \"1s\"\n[token_exchange]\naccept = [\"partner-keys\"]\naudiences = [\"b\"]",
        dir.display()
    );
    let toml = config(dir, dir, &up, &pki.tls_section(), &state, "");
    // plan-b has been in enforce since 2027-03-01.
    let clock = Arc::new(FakeClock::new(noon(2027, 3, 5)));
    let gw = start(dir, &toml, clock.clone()).await;
    let base = format!("https://127.0.0.1:{}", gw.data_addr.port());
    let c = pki.client(false);

    // The graced principal: bridged, with its own Sunset, audited `grace`.
    let got = fetch(&c, &base, "/b/orders", ACME).await;
    assert_eq!(got.0, 200, "{got:?}");
    assert_eq!(got.1["sunset"], "Mon, 15 Mar 2027 00:00:00 GMT");
    assert_eq!(got.1["deprecation"], "@1796083200");
    assert_eq!(
        got.1["link"],
        "<https://wiki.corp.example/migrations/plan-b>; rel=\"sunset\""
    );
    let seen = up.last();
    assert!(
        seen.headers.get("x-api-key").is_none(),
        "the static secret is stripped"
    );
    assert!(
        seen.headers["authorization"]
            .to_str()
            .unwrap()
            .starts_with("Bearer "),
        "a minted token replaces it"
    );
    assert_eq!(audit_reason(dir, 1).await, ("grace".into(), "acme".into()));

    // Another principal of the same credential: retired on the plan's date.
    assert_retired(&fetch(&c, &base, "/b/orders", SOLO).await);
    assert_eq!(
        audit_reason(dir, 2).await,
        ("legacy-credential-retired".into(), "solo".into())
    );
    // The same principal on another plan's route: the grace is plan-b's only.
    assert_retired(&fetch(&c, &base, "/a/orders", ACME).await);
    assert_eq!(
        audit_reason(dir, 3).await,
        ("legacy-credential-retired".into(), "acme".into())
    );

    // The exchange judges as the route does: a token for the graced principal, none for another.
    let exchange = |key: &'static str| {
        c.post(format!("{base}/oauth2/token"))
            .header("x-api-key", key)
            .header("content-type", "application/x-www-form-urlencoded")
            .body("grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Atoken-exchange&audience=b")
            .send()
    };
    assert_eq!(exchange(ACME).await.unwrap().status(), 200);
    let r = exchange(SOLO).await.unwrap();
    assert_eq!(r.status(), 401);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["type"], "urn:portcullis:legacy-credential-retired");
    // A grace never outranks a revocation.
    let admin = format!("http://{}", gw.admin_addr);
    let revocations = format!("{admin}/admin/v1/revocations");
    let target = serde_json::json!({"credential": "partner-keys:acme", "reason": "leaked"});
    let http = reqwest::Client::new();
    let r = http.post(&revocations).json(&target).send().await.unwrap();
    assert_eq!(r.status(), 201);
    let got = fetch(&c, &base, "/b/orders", ACME).await;
    assert_eq!(got.0, 401, "{got:?}");
    assert_eq!(got.2["type"], "urn:portcullis:invalid-credential");
    let undo = serde_json::json!({"credential": "partner-keys:acme"});
    let r = http.delete(&revocations).json(&undo).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let audited = audit_lines(dir, 6).await.len();

    let m = get_json(&format!("{admin}/admin/v1/migration")).await;
    let b = plan(&m, "plan-b");
    assert_eq!(
        b["graces"],
        serde_json::json!([{
            "principal": "partner-keys:acme",
            "until": "2027-03-15",
            "reason": "vendor release in March",
            "days_left": 10,
            "expired": false,
            "seen": true
        }])
    );
    // Only solo's request since the enforce date was refused; acme's was let through.
    assert_eq!(b["status"], "overdue");
    assert_eq!(
        b["reasons"][0],
        "1 legacy request(s) since the enforce date (refused)"
    );
    assert_eq!(b["window"]["legacy_requests"], 2);
    assert_eq!(
        b["what_if_enforced"]["graced"],
        serde_json::json!(["partner-keys:acme"])
    );
    let o = cli(&["migration", "status", "--admin", &admin]).await;
    let table = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(
        table.contains(
            "plan-b: grace for partner-keys:acme until 2027-03-15 (10 days left): vendor release in March"
        ),
        "{table}"
    );

    let dom = dashboard_dom(&admin).await;
    let b = card(&dom, "plan-b");
    assert!(
        b.contains(r#"<li data-principal="partner-keys:acme">partner-keys:acme until 2027-03-15: vendor release in March (10 d left)</li>"#),
        "{b}"
    );
    assert!(
        b.contains(r#"<span class="tag grace">grace until 2027-03-15</span>partner-keys:acme"#),
        "{b}"
    );

    // The last second of the grace, then its date: refused.
    clock.set(Date::from_ymd(2027, 3, 15).unwrap().midnight() - Duration::from_secs(1));
    assert_eq!(fetch(&c, &base, "/b/orders", ACME).await.0, 200);
    assert_eq!(audit_reason(dir, audited + 1).await.0, "grace");
    clock.set(Date::from_ymd(2027, 3, 15).unwrap().midnight());
    let hits = up.count();
    assert_retired(&fetch(&c, &base, "/b/orders", ACME).await);
    assert_eq!(up.count(), hits, "nothing reached the upstream");
    assert_eq!(
        audit_reason(dir, audited + 2).await,
        ("legacy-credential-retired".into(), "acme".into())
    );
    assert_eq!(exchange(ACME).await.unwrap().status(), 401);
    let m = get_json(&format!("{admin}/admin/v1/migration")).await;
    let b = plan(&m, "plan-b");
    assert_eq!(b["graces"][0]["expired"], true);
    assert!(
        b["reasons"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r == "grace for partner-keys:acme expired on 2027-03-15: it is refused"),
        "{b}"
    );
    let o = cli(&["migration", "status", "--admin", &admin]).await;
    let table = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(
        table.contains("plan-b: grace for partner-keys:acme until 2027-03-15 (EXPIRED, refused)"),
        "{table}"
    );
    gw.stop().await;
}

/// `portcullis check` on the config with `grace` in plan-b: exit code and output.
fn check_with(grace: &str, migration: &str) -> (i32, String) {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write_keys(d);
    write_plans(d, grace);
    let up_url = "http://127.0.0.1:9";
    let mut routes = String::new();
    for r in ["a", "b"] {
        routes.push_str(&format!(
            "\n[[routes]]\nname = \"{r}\"\nmatch = {{ path_prefix = \"/{r}/\" }}\naccept = [\"partner-keys\"]\ndangerous_allow_plaintext_credentials = true\n{ALLOW_PARTNERS}\nplan = \"plan-{r}\"\n[routes.upstream]\nurl = \"{up_url}\"\naudience = \"{r}\"\n"
        ));
    }
    let toml = format!(
        "version = 1\n[listen]\naddr = \"127.0.0.1:0\"\n{ISSUER}\n[migration]\nplans_dir = \"{p}/plans\"\n{migration}\n{keys}{routes}",
        p = d.display(),
        keys = partner_keys(d),
    );
    let path = d.join("portcullis.toml");
    std::fs::write(&path, toml).unwrap();
    let out = std::process::Command::new(bin())
        .arg("check")
        .arg("-c")
        .arg(&path)
        .output()
        .unwrap();
    (
        out.status.code().unwrap(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[test]
fn check_refuses_a_grace_without_reason_or_too_long() {
    let (code, out) = check_with(GRACE, "");
    assert_eq!(code, 0, "{out}");

    let (code, out) = check_with(
        "[[grace]]\nprincipal = \"partner-keys:acme\"\nuntil = 2027-03-15\nreason = \"  \"\n",
        "",
    );
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains("plan-b.toml: grace[0].reason: required"),
        "{out}"
    );

    // 2027-03-01 + 91 days = 2027-05-31: one day longer than the default 90.
    let long =
        "[[grace]]\nprincipal = \"partner-keys:acme\"\nuntil = 2027-05-31\nreason = \"vendor\"\n";
    let (code, out) = check_with(long, "");
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains("grace[0].until: 2027-05-31: 91 days after the enforce date (2027-03-01), longer than [migration] max_grace (90d)"),
        "{out}"
    );
    let (code, out) = check_with(
        "[[grace]]\nprincipal = \"partner-keys:acme\"\nuntil = 2027-05-30\nreason = \"vendor\"\n",
        "",
    );
    assert_eq!(code, 0, "90 days is allowed: {out}");
    let (code, out) = check_with(long, "max_grace = \"120d\"");
    assert_eq!(code, 0, "{out}");

    // Other spellings that could never do what they say.
    for (grace, key, says) in [
        (
            "principal = \"acme\"\nuntil = 2027-03-15\nreason = \"r\"",
            "grace[0].principal",
            "CREDENTIAL:PRINCIPAL",
        ),
        (
            "principal = \"other-keys:acme\"\nuntil = 2027-03-15\nreason = \"r\"",
            "grace[0].principal",
            "not retired by this plan",
        ),
        (
            "principal = \"partner-keys:acme\"\nuntil = 2027-02-15\nreason = \"r\"",
            "grace[0].until",
            "not after the enforce date",
        ),
        (
            "principal = \"partner-keys:acme\"\nreason = \"r\"",
            "grace[0].until",
            "required",
        ),
        (
            "principal = \"partner-keys:acme\"\nuntil = 2027-03-15T00:00:00Z\nreason = \"r\"",
            "grace[0].until",
            "plain date",
        ),
    ] {
        let (code, out) = check_with(&format!("[[grace]]\n{grace}\n"), "");
        assert_eq!(code, 2, "{grace}: {out}");
        assert!(
            out.contains(&format!("plan-b.toml: {key}: ")) && out.contains(says),
            "{grace}: {out}"
        );
    }
    let twice = format!("{GRACE}{GRACE}");
    let (code, out) = check_with(&twice, "");
    assert_eq!(code, 2);
    assert!(
        out.contains("grace[1].principal: \"partner-keys:acme\" has two graces"),
        "{out}"
    );
    let (code, out) = check_with("", "shared_threshold = 1\nmax_grace = \"2w 3h\"");
    assert_eq!(code, 2);
    assert!(
        out.contains("migration.shared_threshold") && out.contains("migration.max_grace"),
        "{out}"
    );
}
