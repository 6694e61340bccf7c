//! Three gateway processes (the real binary) on one real `redis-server`: a route limited with
//! `scope = "cluster"` admits one budget in total, under uneven load, and falls back to its
//! per-replica share while Redis is down; a password spray spread across the replicas trips the
//! shared failed-authentication throttle.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::shared_state::redis_server::RedisServer;
use crate::support::*;

/// The cluster-wide limit under test, and a small burst so the measurement is mostly rate.
const RATE: u64 = 100;
const BURST: u64 = 10;

fn replica(
    dir: &std::path::Path,
    n: u32,
    redis: &RedisServer,
    routes: &str,
    (listen, tls): (&str, &str),
) -> Proc {
    let dir = dir.join(format!("gw{n}"));
    std::fs::create_dir_all(&dir).unwrap();
    let state = format!(
        "\n[state]\nbackend = \"redis\"\nurl = \"{}\"\nprefix = \"cluster-test:\"\nflush_every = \"200ms\"\n",
        redis.url()
    );
    Proc::spawn(
        &dir,
        &base_config(&dir, listen, tls, &format!("{state}{routes}")),
    )
}

/// Per replica: requests sent, admitted (200) and refused (429); anything else is a failure.
#[derive(Default)]
struct Tally {
    sent: AtomicU64,
    ok: AtomicU64,
    limited: AtomicU64,
    other: AtomicU64,
}

/// Send `per_sec` requests a second to `url` for `secs`, paced (not as fast as possible: the
/// machine is shared), each on its own task so a slow answer does not slow the pacing.
async fn load(client: reqwest::Client, url: String, per_sec: u64, secs: f64, t: Arc<Tally>) {
    let mut tick = tokio::time::interval(Duration::from_nanos(1_000_000_000 / per_sec));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let end = Instant::now() + Duration::from_secs_f64(secs);
    let mut tasks = tokio::task::JoinSet::new();
    while Instant::now() < end {
        tick.tick().await;
        let (client, url, t) = (client.clone(), url.clone(), t.clone());
        t.sent.fetch_add(1, Ordering::Relaxed);
        tasks.spawn(async move {
            match client.get(&url).send().await.map(|r| r.status().as_u16()) {
                Ok(200) => t.ok.fetch_add(1, Ordering::Relaxed),
                Ok(429) => t.limited.fetch_add(1, Ordering::Relaxed),
                _ => t.other.fetch_add(1, Ordering::Relaxed),
            };
        });
    }
    while tasks.join_next().await.is_some() {}
}

/// ~600 requests a second for `secs`, split 50/30/20 over the three replicas; returns the
/// admitted count per replica and the time the run took.
async fn uneven_run(client: &reqwest::Client, gws: &[Proc], secs: f64) -> (Vec<u64>, f64) {
    let shares = [300, 180, 120];
    let tallies: Vec<Arc<Tally>> = (0..3).map(|_| Arc::new(Tally::default())).collect();
    let start = Instant::now();
    let mut runs = Vec::new();
    for ((gw, share), t) in gws.iter().zip(shares).zip(&tallies) {
        let url = format!("http://{}/api/x", gw.data_addr);
        runs.push(tokio::spawn(load(
            client.clone(),
            url,
            share,
            secs,
            t.clone(),
        )));
    }
    for r in runs {
        r.await.unwrap();
    }
    let took = start.elapsed().as_secs_f64();
    for t in &tallies {
        assert_eq!(
            t.other.load(Ordering::Relaxed),
            0,
            "only 200 or 429 expected"
        );
        assert_eq!(
            t.sent.load(Ordering::Relaxed),
            t.ok.load(Ordering::Relaxed) + t.limited.load(Ordering::Relaxed)
        );
    }
    let sent: u64 = tallies.iter().map(|t| t.sent.load(Ordering::Relaxed)).sum();
    // The offered load must really exceed the limit several times over, or the test proves nothing.
    assert!(
        sent as f64 > 4.0 * RATE as f64 * secs,
        "load generator too slow: {sent} requests in {secs}s"
    );
    (
        tallies
            .iter()
            .map(|t| t.ok.load(Ordering::Relaxed))
            .collect(),
        took,
    )
}

async fn get_text(client: &reqwest::Client, url: String) -> String {
    client.get(url).send().await.unwrap().text().await.unwrap()
}

/// `portcullis_rate_limit_fallback{route="api"}` on one replica.
async fn fallback_gauge(client: &reqwest::Client, gw: &Proc) -> Option<f64> {
    let m = get_text(client, format!("http://{}/metrics", gw.admin_addr)).await;
    m.lines()
        .find(|l| l.starts_with("portcullis_rate_limit_fallback{route=\"api\"}"))
        .and_then(|l| l.split_whitespace().last())
        .and_then(|v| v.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_share_one_budget_and_fall_back_while_redis_is_down() {
    portcullis::server::install_crypto();
    let mut redis = RedisServer::start();
    let up = Upstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let routes = route(
        "api",
        "/api",
        &up.url(),
        &format!("[routes.limits]\ntotal_rate = \"{RATE}/s\"\ntotal_burst = {BURST}\nscope = \"cluster\"\nexpected_replicas = 3"),
    );
    let gws: Vec<Proc> = (1..=3)
        .map(|n| replica(dir.path(), n, &redis, &routes, ("", "")))
        .collect();
    let client = reqwest::Client::builder()
        .http1_only()
        .pool_max_idle_per_host(64)
        .build()
        .unwrap();

    // A key's first request is decided locally (its lease is still on the way: the request
    // never waits for Redis), and its headers say so; once leased, they describe the shared budget.
    let first = client
        .get(format!("http://{}/api/x", gws[0].data_addr))
        .send()
        .await
        .unwrap();
    assert_eq!(first.headers()["ratelimit-policy"], "\"route\";q=3;w=1");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let r = client
        .get(format!("http://{}/api/x", gws[0].data_addr))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.headers()["ratelimit-policy"],
        format!("\"route\";q={BURST};w=1").as_str()
    );
    tokio::time::sleep(Duration::from_millis(500)).await;

    // 1. Shared budget: ~600 req/s, uneven, for 10 s → 100/s ±10% admitted in total.
    let (ok, secs) = uneven_run(&client, &gws, 10.0).await;
    let total: u64 = ok.iter().sum();
    let expected = RATE as f64 * secs + BURST as f64;
    eprintln!("shared: admitted {ok:?} = {total} in {secs:.2}s (expected {expected:.0})");
    assert!(
        (total as f64 - expected).abs() <= 0.10 * expected,
        "admitted {total}, expected {expected:.0} ±10%"
    );
    // Uneven load, one budget: no replica is starved of it (each offers more than the whole
    // rate, so each gets a fair part of it, as its leases compete every tick).
    assert!(ok.iter().all(|n| *n as f64 > 0.15 * total as f64), "{ok:?}");

    // 2. Redis down: every replica falls back to its share (100/s ÷ 3), so the total holds.
    redis.stop();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        // Traffic makes the replicas notice (they only call Redis when they need quota).
        for gw in &gws {
            let _ = client
                .get(format!("http://{}/api/x", gw.data_addr))
                .send()
                .await;
        }
        let mut all = true;
        for gw in &gws {
            all &= fallback_gauge(&client, gw).await == Some(1.0);
        }
        if all {
            break;
        }
        assert!(Instant::now() < deadline, "replicas did not fall back");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let ready = get_text(&client, format!("http://{}/readyz", gws[0].admin_addr)).await;
    assert!(
        ready.contains("local fallback") && ready.contains("api"),
        "{ready}"
    );
    let r = client
        .get(format!("http://{}/api/x", gws[1].data_addr))
        .send()
        .await
        .unwrap();
    // The headers describe what limits now: this replica's share.
    assert_eq!(r.headers()["ratelimit-policy"], "\"route\";q=3;w=1");
    let (ok, secs) = uneven_run(&client, &gws, 5.0).await;
    let total: u64 = ok.iter().sum();
    // Each replica: 100/3 per second plus a burst of 3 (and its leftover lease, at most 1).
    let per_replica = RATE as f64 / 3.0 * secs;
    eprintln!("fallback: admitted {ok:?} = {total} in {secs:.2}s (each ≈ {per_replica:.0})");
    for n in &ok {
        assert!(
            (*n as f64 - per_replica).abs() <= 0.15 * per_replica + 4.0,
            "replica admitted {n}, expected ≈ {per_replica:.0}: {ok:?}"
        );
    }

    // 3. Redis back: the shared budget resumes.
    redis.restart();
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        for gw in &gws {
            let _ = client
                .get(format!("http://{}/api/x", gw.data_addr))
                .send()
                .await;
        }
        let mut all = true;
        for gw in &gws {
            all &= fallback_gauge(&client, gw).await == Some(0.0);
        }
        if all {
            break;
        }
        assert!(Instant::now() < deadline, "shared budget did not resume");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The state store re-reads its revocations on its own schedule: wait for it too, then
    // /readyz no longer mentions the fallback.
    loop {
        let r = get_text(&client, format!("http://{}/readyz", gws[0].admin_addr)).await;
        if r == "ready\n" {
            break;
        }
        assert!(!r.contains("fallback"), "{r}");
        assert!(Instant::now() < deadline, "not ready: {r}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (ok, secs) = uneven_run(&client, &gws, 5.0).await;
    let total: u64 = ok.iter().sum();
    let expected = RATE as f64 * secs + BURST as f64;
    eprintln!("resumed: admitted {ok:?} = {total} in {secs:.2}s (expected {expected:.0})");
    assert!(
        (total as f64 - expected).abs() <= 0.10 * expected,
        "admitted {total}, expected {expected:.0} ±10%"
    );
}

const GOOD_KEY: &str = "pcs_cluster_spray_test_key_0123456789abcdef";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_password_spray_across_replicas_trips_the_shared_throttle() {
    portcullis::server::install_crypto();
    let redis = RedisServer::start();
    let up = Upstream::start().await;
    let pki = Pki::new();
    let dir = &pki.dir;
    write_api_keys(
        dir.path(),
        &[(
            "partner-acme",
            "spiffe://corp.example/partner/acme",
            GOOD_KEY,
        )],
    );
    let routes = format!(
        "{ISSUER}{}{}",
        partner_keys(dir.path()),
        partner_route(
            "partner",
            "path_prefix = \"/partner/\"",
            ALLOW_PARTNERS,
            &up.url(),
            "",
            ""
        )
    );
    // 5 failures a minute per source: each replica alone would allow 5, the three together 15.
    let gws: Vec<Proc> = (1..=3)
        .map(|n| {
            let listen = "max_auth_failures = \"5/m\"";
            replica(dir.path(), n, &redis, &routes, (listen, &pki.tls_section()))
        })
        .collect();
    let client = pki.client(true);
    let send = |gw: &Proc, key: &str| {
        client
            .get(format!(
                "https://localhost:{}/partner/x",
                gw.data_addr.port()
            ))
            .header("x-api-key", key)
            .send()
    };
    // Works before the spray.
    assert_eq!(send(&gws[0], GOOD_KEY).await.unwrap().status(), 200);

    // The spray: one wrong key after another, round robin over the replicas, at the pace of a
    // careful attacker (a few a second, so each replica's own count stays far below its limit).
    let mut rejected = 0;
    let mut throttled_at = None;
    for i in 0..30 {
        let gw = &gws[i % 3];
        let status = send(gw, &format!("pcs_spray_guess_{i}"))
            .await
            .unwrap()
            .status();
        match status.as_u16() {
            401 => rejected += 1,
            429 => {
                throttled_at.get_or_insert(i);
            }
            s => panic!("unexpected status {s}"),
        }
        tokio::time::sleep(Duration::from_millis(60)).await;
    }
    eprintln!("spray: {rejected} guesses checked, throttled from attempt {throttled_at:?}");
    // The shared budget (5) is caught as one: not 15 guesses, at most one more per replica
    // while the last reports are in flight.
    assert!(
        (5..=8).contains(&rejected),
        "{rejected} guesses were checked"
    );
    // Every replica now refuses the source before looking at the key, the right one included
    // (through each replica: the same credential via another path).
    for gw in &gws {
        let r = send(gw, GOOD_KEY).await.unwrap();
        assert_eq!(r.status(), 429);
        let retry: u64 = r.headers()["retry-after"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!((1..=60).contains(&retry), "{retry}");
    }
    assert_eq!(
        redis
            .cmd(&["EXISTS", "cluster-test:rl:authfail:127.0.0.1"])
            .trim(),
        ":1"
    );
}

/// The config's problems, as `key: message` lines.
fn check(extra: &str, limits: &str) -> Result<portcullis::config::Config, String> {
    let text = format!(
        "version = 1\n[listen]\naddr = \"127.0.0.1:0\"\n[admin]\naddr = \"127.0.0.1:0\"\n{extra}\n[[routes]]\nname = \"api\"\nmatch = {{ path_prefix = \"/api\" }}\n[routes.upstream]\nurl = \"http://127.0.0.1:9\"\n[routes.limits]\n{limits}\n"
    );
    portcullis::config::from_toml_str(&text, std::path::Path::new("/nonexistent/p.toml")).map_err(
        |e| {
            e.0.iter()
                .map(|p| format!("{}: {}", p.key, p.message))
                .collect::<Vec<_>>()
                .join("\n")
        },
    )
}

#[test]
fn cluster_scope_needs_redis_and_says_so() {
    let redis = "[state]\nbackend = \"redis\"\nurl = \"redis://127.0.0.1:6379\"";
    // Without a shared backend there is nothing to share the budget through: refused, clearly.
    let e = check("", "total_rate = \"100/s\"\nscope = \"cluster\"").unwrap_err();
    assert!(
        e.contains("routes.api.limits.scope") && e.contains("backend = \"redis\""),
        "{e}"
    );
    // Defaults: replica scope; cluster scope expects three replicas.
    let c = check("", "total_rate = \"100/s\"").unwrap();
    assert!(!c.routes[0].limits.cluster);
    let c = check(redis, "total_rate = \"100/s\"\nscope = \"cluster\"").unwrap();
    assert!(c.routes[0].limits.cluster);
    assert_eq!(c.routes[0].limits.expected_replicas, 3);
    // Other spellings and out-of-range values are refused, not guessed at.
    for (limits, key) in [
        ("scope = \"Cluster\"", "limits.scope"),
        ("scope = \"global\"", "limits.scope"),
        (
            "scope = \"cluster\"\nexpected_replicas = 0",
            "limits.expected_replicas",
        ),
        ("expected_replicas = 2", "limits.expected_replicas"),
    ] {
        let e = check(redis, &format!("total_rate = \"100/s\"\n{limits}")).unwrap_err();
        assert!(e.contains(key), "{limits}: {e}");
    }
}

/// The pid of the redis-server this test process started on `port` (its child, found by its
/// command line), to pause it.
fn redis_pid(port: u16) -> u32 {
    let me = std::process::id().to_string();
    // redis-server rewrites its command line to `redis-server 127.0.0.1:PORT`.
    let needle = format!(":{port}");
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let ppid = stat
            .rsplit(')')
            .next()
            .and_then(|s| s.split_whitespace().nth(1));
        let cmdline = String::from_utf8_lossy(&cmdline);
        if cmdline.starts_with("redis-server")
            && cmdline.contains(&needle)
            && ppid == Some(me.as_str())
        {
            return pid;
        }
    }
    panic!("redis-server on port {port} not found");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_redis_never_holds_a_request() {
    // The hostile twin of "Redis down": Redis accepts the connection but never answers
    // (SIGSTOP). Requests must keep being answered promptly from the local fallback.
    portcullis::server::install_crypto();
    let redis = RedisServer::start();
    let up = Upstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let routes = route(
        "api",
        "/api",
        &up.url(),
        "[routes.limits]\ntotal_rate = \"1000/s\"\nscope = \"cluster\"\nexpected_replicas = 2",
    );
    let gw = replica(dir.path(), 1, &redis, &routes, ("", ""));
    let client = reqwest::Client::new();
    let url = format!("http://{}/api/x", gw.data_addr);
    for _ in 0..20 {
        assert_eq!(client.get(&url).send().await.unwrap().status(), 200);
    }
    let pid = redis_pid(redis.port).to_string();
    let signal = |sig: &str| {
        assert!(std::process::Command::new("kill")
            .args([sig, &pid])
            .status()
            .unwrap()
            .success());
    };
    signal("-STOP");
    let start = Instant::now();
    let mut slowest = Duration::ZERO;
    while start.elapsed() < Duration::from_secs(3) {
        let t = Instant::now();
        let status = client.get(&url).send().await.unwrap().status();
        slowest = slowest.max(t.elapsed());
        assert_eq!(status, 200);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let on_fallback = fallback_gauge(&client, &gw).await;
    signal("-CONT");
    eprintln!("hung redis: slowest request {slowest:?}");
    assert!(slowest < Duration::from_millis(200), "{slowest:?}");
    assert_eq!(on_fallback, Some(1.0));
    // Redis answers again: the shared budget resumes.
    let deadline = Instant::now() + Duration::from_secs(10);
    while fallback_gauge(&client, &gw).await != Some(0.0) {
        let _ = client.get(&url).send().await;
        assert!(Instant::now() < deadline, "shared budget did not resume");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ldap_failures_spread_over_replicas_are_counted_as_one() {
    use crate::ldap::slapd::Slapd;
    use base64::Engine as _;
    portcullis::server::install_crypto();
    let ldap = tokio::task::spawn_blocking(Slapd::start).await.unwrap();
    let redis = RedisServer::start();
    let up = Upstream::start().await;
    let pki = Pki::new();
    let dir = pki.dir.path();
    let routes = format!(
        r#"{ISSUER}
[credentials.racf]
kind = "ldap"
adapter = "zos-racf"
url = "{url}"
base_dn = "profiletype=user,cn=RACF"
identity = "spiffe://corp.example/legacy/racf/{{user}}"
max_failures = "3/15m"
connect_timeout = "1s"
timeout = "2s"
[[routes]]
name = "cics"
match = {{ path_prefix = "/cics/" }}
accept = ["racf"]
allow = ["spiffe://corp.example/legacy/racf/*"]
[routes.upstream]
url = "{up}"
audience = "cics"
"#,
        url = ldap.url(),
        up = up.url()
    );
    let gws: Vec<Proc> = (1..=3)
        .map(|n| replica(dir, n, &redis, &routes, ("", &pki.tls_section())))
        .collect();
    let client = pki.client(true);
    let basic = |user: &str, pw: &str| {
        let b64 = base64::engine::general_purpose::STANDARD;
        format!("Basic {}", b64.encode(format!("{user}:{pw}")))
    };
    let send = |gw: &Proc, auth: String| {
        client
            .get(format!("https://localhost:{}/cics/x", gw.data_addr.port()))
            .header("authorization", auth)
            .send()
    };
    // Wrong passwords for one account, round robin over the replicas (each replica alone would
    // let 3 reach the directory: 9 in all).
    for i in 0..9 {
        let r = send(&gws[i % 3], basic("VICTIM", &format!("guess-{i}")))
            .await
            .unwrap();
        assert_eq!(r.status(), 401);
        tokio::time::sleep(Duration::from_millis(60)).await;
    }
    let failed = ldap.failed_binds("racfid=VICTIM,profiletype=user,cn=RACF");
    eprintln!("ldap spray: {failed} failed binds reached the directory");
    // max_failures (3), plus at most one per replica while the shared count travels.
    assert!((3..=3 + 3).contains(&failed), "{failed} failed binds");
    // The account's budget is spent on every replica: even its right password (never seen to
    // bind, so no verifier) is refused without a bind, on each of them.
    for gw in &gws {
        assert_eq!(
            send(gw, basic("VICTIM", "victim-pass"))
                .await
                .unwrap()
                .status(),
            401
        );
    }
    assert_eq!(
        ldap.failed_binds("racfid=VICTIM,profiletype=user,cn=RACF"),
        failed
    );
    assert_eq!(ldap.good_binds("racfid=VICTIM,profiletype=user,cn=RACF"), 0);
    // Another account is not affected.
    assert_eq!(
        send(&gws[0], basic("GWJOB01", "job-pass-1"))
            .await
            .unwrap()
            .status(),
        200
    );
}
