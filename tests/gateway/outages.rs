//! `docs/outages.md`, proven: for each dependency (Redis, LDAP, the upstream, the Workload API
//! agent) a load loop of several concurrent clients runs across the outage (before, while down,
//! after recovery) against real parts, and afterwards
//!
//! - every request sent has exactly one audit line (by request id: none missing, none written
//!   twice, none extra), with the status the client got;
//! - usage (the inventory count per caller) equals the requests the gateway allowed, read after
//!   a clean shutdown (which must flush);
//! - callers got what the outage table says while the dependency was down.
//!
//! The Redis scenario is a partition: two replicas on one redis-server, replica B through a
//! relay the test cuts. A key revoked through replica A while B is cut off is never let through
//! by B, and refused (401) by B within a bounded time once the relay is restored; the usage B
//! counted while cut off reaches Redis.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;

use crate::outage_support::*;
use crate::shared_state::redis_server::RedisServer;
use crate::support::*;
use crate::workload_api_support::{
    client as svid_client, gateway_config, Agent, AgentState, Ca, RecordingVerifier,
};

const ACME: &str = "pcs_outage_test_acme_0123456789abcdef01";
const GLOBEX: &str = "pcs_outage_test_globex_0123456789abcdef";
const DIRECTORY_UNAVAILABLE: &str = "urn:portcullis:directory-unavailable";
const INVALID_CREDENTIAL: &str = "urn:portcullis:invalid-credential";
const UPSTREAM_UNAVAILABLE: &str = "urn:portcullis:upstream-unavailable";

/// A replica of the partner API on Redis at `redis_url`, auditing to `dir/audit.jsonl`.
async fn redis_replica(
    pki: &Pki,
    dir: &Path,
    up: &Upstream,
    redis_url: &str,
) -> portcullis::server::Running {
    std::fs::create_dir_all(dir).unwrap();
    let shared = pki.dir.path();
    let extra = format!(
        "{ISSUER}[state]\nbackend = \"redis\"\nurl = \"{redis_url}\"\nprefix = \"outage-test:\"\nflush_every = \"200ms\"\n{}{}",
        api_key_credential("partner-keys", shared, ""),
        RouteToml::new("partner", "/partner/", &up.url())
            .accept(&["partner-keys"])
            .allow(&["spiffe://corp.example/partner/*"])
            .audience("partner-api"),
    );
    start_in_process(dir, &base_config(dir, "", &pki.tls_section(), &extra)).await
}

fn key_request(client: &reqwest::Client, base: &str, key: &str) -> reqwest::RequestBuilder {
    client
        .get(format!("{base}/partner/orders"))
        .header("x-api-key", key)
}

fn base_url(gw: &portcullis::server::Running) -> String {
    format!("https://127.0.0.1:{}", gw.data_addr.port())
}

/// Statuses of `who`'s requests sent in `phase`.
fn statuses(ledger: &Ledger, who: &str, phase: u8) -> Vec<Outcome> {
    ledger
        .outcomes()
        .into_iter()
        .filter(|o| o.who == who && o.phase == phase)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_partition_fails_closed_enforces_a_revocation_made_meanwhile_and_loses_nothing() {
    let redis = RedisServer::start();
    let relay = Relay::start(([127, 0, 0, 1], redis.port).into());
    let pki = Pki::new();
    let up = Upstream::start().await;
    write_api_keys(
        pki.dir.path(),
        &[
            ("acme", "spiffe://corp.example/partner/acme", ACME),
            ("globex", "spiffe://corp.example/partner/globex", GLOBEX),
        ],
    );
    let (dir_a, dir_b) = (pki.dir.path().join("a"), pki.dir.path().join("b"));
    let gw_a = redis_replica(&pki, &dir_a, &up, &redis.url()).await;
    let gw_b = redis_replica(&pki, &dir_b, &up, &format!("redis://{}", relay.addr())).await;
    let (base_a, base_b) = (base_url(&gw_a), base_url(&gw_b));
    let client = pki.client(true);
    eventually(Duration::from_secs(5), "B ready", || async {
        readyz(gw_b.admin_addr).await.0 == 200
    })
    .await;

    let ledger = Ledger::default();
    let make = |base: &str, key: &'static str| -> MakeRequest {
        let (c, b) = (client.clone(), base.to_owned());
        Arc::new(move || key_request(&c, &b, key))
    };
    let load = Load::start(
        &ledger,
        vec![
            ("acme.a", make(&base_a, ACME)),
            ("acme.a", make(&base_a, ACME)),
            ("acme.b", make(&base_b, ACME)),
            ("acme.b", make(&base_b, ACME)),
        ],
    );
    tokio::time::sleep(Duration::from_millis(800)).await;
    // B has served globex before the cut (it is in B's inventory, and nothing is revoked yet).
    let o = ledger
        .send("globex.b", key_request(&client, &base_b, GLOBEX))
        .await;
    assert_eq!(o.status, 200);

    // Cut B off from Redis.
    ledger.set_phase(DOWN);
    let cut_at = Instant::now();
    relay.cut();
    let first_503 = loop {
        let o = ledger
            .send("acme.b", key_request(&client, &base_b, ACME))
            .await;
        if o.status == 503 {
            break o;
        }
        assert_eq!(o.status, 200, "{o:?}");
        assert!(
            cut_at.elapsed() < Duration::from_secs(3),
            "B kept serving without Redis"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let grace = cut_at.elapsed();
    let o = first_503;
    assert_eq!(o.problem.as_deref(), Some(DIRECTORY_UNAVAILABLE));
    assert_eq!(o.retry_after.as_deref(), Some("5"));
    eprintln!("B refused (503) {grace:?} after the cut");
    let (code, body) = readyz(gw_b.admin_addr).await;
    assert_eq!(code, 503, "{body}");
    assert!(body.contains("state backend unavailable"), "{body}");
    assert_eq!(
        readyz(gw_a.admin_addr).await.0,
        200,
        "A still reaches Redis"
    );

    // Revoke globex through A while B is cut off: A refuses at once; B never lets it through.
    let r = reqwest::Client::new()
        .post(format!("http://{}/admin/v1/revocations", gw_a.admin_addr))
        .header("content-type", "application/json")
        .body(r#"{"credential":"partner-keys:globex","reason":"offboarded during the partition"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let o = ledger
        .send("globex.a", key_request(&client, &base_a, GLOBEX))
        .await;
    assert_eq!(
        (o.status, o.problem.as_deref()),
        (401, Some(INVALID_CREDENTIAL))
    );
    for _ in 0..5 {
        let o = ledger
            .send("globex.b", key_request(&client, &base_b, GLOBEX))
            .await;
        assert_eq!(
            o.status, 503,
            "B must not let a possibly revoked key through: {o:?}"
        );
        assert_eq!(o.problem.as_deref(), Some(DIRECTORY_UNAVAILABLE));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;

    // Restore: B re-reads the revocations and refuses globex (401) within a bounded time.
    ledger.set_phase(RECOVERING);
    let down_for = cut_at.elapsed();
    relay.restore();
    let restored_at = Instant::now();
    let took = eventually(
        Duration::from_secs(5),
        "B never refused the revoked key",
        || async {
            let o = ledger
                .send("globex.b", key_request(&client, &base_b, GLOBEX))
                .await;
            assert_ne!(
                o.status, 200,
                "B let a revoked key through after the partition: {o:?}"
            );
            o.status == 401
        },
    )
    .await;
    eprintln!("B refused the revoked key (401) {took:?} after the relay came back");
    eventually(Duration::from_secs(5), "B not ready again", || async {
        readyz(gw_b.admin_addr).await.0 == 200
    })
    .await;
    ledger.set_phase(AFTER);
    let after_at = Instant::now();
    tokio::time::sleep(Duration::from_millis(800)).await;
    let o = ledger
        .send("globex.b", key_request(&client, &base_b, GLOBEX))
        .await;
    assert_eq!(
        (o.status, o.problem.as_deref()),
        (401, Some(INVALID_CREDENTIAL))
    );
    load.finish().await;

    // What callers got. A: never affected. B: 200 until it noticed the cut (the grace), then
    // only 503 directory-unavailable until the relay was restored; after recovery only 200.
    for o in ledger.outcomes() {
        match (o.who, o.phase) {
            ("acme.a", _) => assert_eq!(o.status, 200, "{o:?}"),
            ("acme.b", BEFORE) | ("acme.b", AFTER) => assert_eq!(o.status, 200, "{o:?}"),
            ("acme.b", DOWN) => {
                if o.at > cut_at + grace + Duration::from_millis(50) {
                    assert_eq!(o.status, 503, "{o:?}");
                }
                assert!(o.status == 200 || o.problem.as_deref() == Some(DIRECTORY_UNAVAILABLE));
            }
            ("acme.b", _) => assert!(o.status == 200 || o.status == 503, "{o:?}"),
            ("globex.b", p) if p >= DOWN => assert_ne!(o.status, 200, "{o:?}"),
            _ => {}
        }
    }
    let down_b = statuses(&ledger, "acme.b", DOWN);
    assert!(
        down_b.iter().filter(|o| o.status == 503).count() >= 10,
        "{down_b:?}"
    );
    assert!(
        statuses(&ledger, "acme.b", AFTER).len() > 10,
        "load continued after recovery"
    );
    let _ = (down_for, restored_at, after_at);

    // Nothing lost: both replicas stop cleanly (B flushes through the restored relay).
    gw_b.stop().await;
    gw_a.stop().await;
    let allowed =
        assert_one_audit_line_per_request(&[audit_file(&dir_a), audit_file(&dir_b)], &ledger);
    let b_audit = audit_by_id(&[audit_file(&dir_b)]);
    let last_globex = ledger
        .outcomes()
        .into_iter()
        .rfind(|o| o.who == "globex.b")
        .unwrap();
    let line = &b_audit[&last_globex.id][0];
    assert_eq!(line["decision"], "deny", "{line}");
    assert_eq!(line["reason"], "invalid-credential", "{line}");
    assert_eq!(line["principal"], "globex", "{line}");

    // Usage: a third gateway on the same Redis reads the inventory both replicas flushed.
    let reader = redis_replica(&pki, &pki.dir.path().join("reader"), &up, &redis.url()).await;
    let inv = inventory(reader.admin_addr).await;
    let served_acme = ledger.count("acme.a", 200) + ledger.count("acme.b", 200);
    let served_globex = ledger.count("globex.a", 200) + ledger.count("globex.b", 200);
    assert_eq!(inventory_count(&inv, "acme"), served_acme, "{inv}");
    assert_eq!(inventory_count(&inv, "globex"), served_globex, "{inv}");
    assert_eq!(
        allowed.get("acme.a").copied().unwrap_or(0) + allowed.get("acme.b").copied().unwrap_or(0),
        served_acme
    );
    assert!(ledger.count("acme.b", 200) > 0);
    reader.stop().await;
    eprintln!(
        "redis partition: {} requests, acme served {served_acme}, B down {down_for:?}",
        ledger.outcomes().len()
    );
}

fn basic(user: &str, pw: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pw}"))
    )
}

/// The RACF directory's gateway: `[state] path` so usage survives the restart the test reads
/// it after.
fn ldap_config(dir: &Path, pki: &Pki, ldap_url: &str, up: &Upstream) -> String {
    let extra = format!(
        "{ISSUER}[state]\npath = \"{}\"\nflush_every = \"200ms\"\n\
         [credentials.racf]\nkind = \"ldap\"\nadapter = \"zos-racf\"\nurl = \"{ldap_url}\"\n\
         base_dn = \"profiletype=user,cn=RACF\"\nidentity = \"spiffe://corp.example/legacy/racf/{{user}}\"\n\
         cache_ttl = \"30s\"\nconnect_timeout = \"1s\"\ntimeout = \"2s\"\n{}",
        dir.join("state.db").display(),
        RouteToml::new("cics", "/cics/", &up.url())
            .accept(&["racf"])
            .allow(&["spiffe://corp.example/legacy/racf/*"])
            .audience("cics"),
    );
    base_config(dir, "", &pki.tls_section(), &extra)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ldap_outage_serves_only_cached_binds_refuses_the_rest_with_503_and_loses_nothing() {
    let mut ldap = tokio::task::spawn_blocking(crate::ldap::slapd::Slapd::start)
        .await
        .unwrap();
    let pki = Pki::new();
    let dir = pki.dir.path().to_path_buf();
    let up = Upstream::start().await;
    let toml = ldap_config(&dir, &pki, &ldap.url(), &up);
    let gw = start_in_process(&dir, &toml).await;
    let base = base_url(&gw);
    let client = pki.client(true);
    let req = |user: &str, pw: &str| {
        client
            .get(format!("{base}/cics/payments"))
            .header("authorization", basic(user, pw))
    };
    let ledger = Ledger::default();
    let good: MakeRequest = {
        let (c, b) = (client.clone(), base.clone());
        Arc::new(move || {
            c.get(format!("{b}/cics/payments"))
                .header("authorization", basic("GWJOB01", "job-pass-1"))
        })
    };
    let load = Load::start(
        &ledger,
        vec![
            ("gwjob01", good.clone()),
            ("gwjob01", good.clone()),
            ("gwjob01", good),
        ],
    );
    tokio::time::sleep(Duration::from_millis(800)).await;
    let o = ledger
        .send("wrong", req("GWJOB01", "not-the-password"))
        .await;
    assert_eq!(
        (o.status, o.problem.as_deref()),
        (401, Some(INVALID_CREDENTIAL))
    );

    // The directory goes away.
    ledger.set_phase(DOWN);
    ldap.stop();
    // A password never bound before (VICTIM's) needs the directory: 503 with Retry-After.
    let o = ledger.send("victim", req("VICTIM", "victim-pass")).await;
    assert_eq!(
        (o.status, o.problem.as_deref()),
        (503, Some(DIRECTORY_UNAVAILABLE)),
        "{o:?}"
    );
    assert_eq!(o.retry_after.as_deref(), Some("5"));
    // A wrong password for the account whose right one is cached: never let in, never a 401
    // the directory did not say.
    for _ in 0..3 {
        let o = ledger
            .send("wrong", req("GWJOB01", "not-the-password"))
            .await;
        assert_eq!(
            (o.status, o.problem.as_deref()),
            (503, Some(DIRECTORY_UNAVAILABLE)),
            "{o:?}"
        );
    }
    let o = ledger.send("wrong", req("gwjob01", "JOB-PASS-1")).await;
    assert_eq!(
        o.status, 503,
        "another spelling of the cached password: {o:?}"
    );
    assert_eq!(
        readyz(gw.admin_addr).await.0,
        200,
        "the LDAP directory does not gate /readyz"
    );
    tokio::time::sleep(Duration::from_millis(1000)).await;

    // Back: the same gateway binds again, no restart.
    ledger.set_phase(RECOVERING);
    let mut ldap = tokio::task::spawn_blocking(move || {
        ldap.restart();
        ldap
    })
    .await
    .unwrap();
    eventually(
        Duration::from_secs(10),
        "LDAP binds did not resume",
        || async {
            ledger
                .send("victim", req("VICTIM", "victim-pass"))
                .await
                .status
                == 200
        },
    )
    .await;
    ledger.set_phase(AFTER);
    tokio::time::sleep(Duration::from_millis(600)).await;
    let o = ledger
        .send("wrong", req("GWJOB01", "not-the-password"))
        .await;
    assert_eq!(o.status, 401, "{o:?}");
    load.finish().await;

    // The cached bind kept GWJOB01's right password working throughout.
    for o in ledger.outcomes() {
        match o.who {
            "gwjob01" => assert_eq!(o.status, 200, "{o:?}"),
            "wrong" => assert!(o.status == 401 || o.status == 503, "{o:?}"),
            "victim" if o.phase == DOWN => assert_eq!(o.status, 503, "{o:?}"),
            _ => {}
        }
    }
    assert!(statuses(&ledger, "gwjob01", DOWN).len() > 10);

    gw.stop().await;
    let allowed = assert_one_audit_line_per_request(&[audit_file(&dir)], &ledger);
    // Usage, after the clean shutdown flushed it: the same configuration started again reads it.
    let audit_before = std::fs::read_to_string(audit_file(&dir)).unwrap();
    let gw = start_in_process(&dir, &toml).await;
    let inv = inventory(gw.admin_addr).await;
    assert_eq!(
        inventory_count(&inv, "GWJOB01"),
        ledger.count("gwjob01", 200),
        "{inv}"
    );
    assert_eq!(
        inventory_count(&inv, "VICTIM"),
        ledger.count("victim", 200),
        "{inv}"
    );
    assert_eq!(allowed["gwjob01"], ledger.count("gwjob01", 200));
    gw.stop().await;
    assert_eq!(
        std::fs::read_to_string(audit_file(&dir)).unwrap(),
        audit_before
    );
    ldap.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_outage_is_502_for_allowed_callers_and_loses_no_audit_line_or_usage() {
    let pki = Pki::new();
    let dir = pki.dir.path().to_path_buf();
    let up = Upstream::start().await;
    let relay = Relay::start(up.addr);
    write_api_keys(
        &dir,
        &[("acme", "spiffe://corp.example/partner/acme", ACME)],
    );
    let extra = format!(
        "{ISSUER}[state]\npath = \"{}\"\nflush_every = \"200ms\"\n{}{}",
        dir.join("state.db").display(),
        api_key_credential("partner-keys", &dir, ""),
        RouteToml::new("partner", "/partner/", &format!("http://{}", relay.addr()))
            .accept(&["partner-keys"])
            .allow(&["spiffe://corp.example/partner/*"])
            .audience("partner-api"),
    );
    let toml = base_config(&dir, "", &pki.tls_section(), &extra);
    let gw = start_in_process(&dir, &toml).await;
    let base = base_url(&gw);
    let client = pki.client(false);
    let ledger = Ledger::default();
    let make = || -> MakeRequest {
        let (c, b) = (client.clone(), base.clone());
        Arc::new(move || key_request(&c, &b, ACME))
    };
    let load = Load::start(
        &ledger,
        vec![("acme", make()), ("acme", make()), ("acme", make())],
    );
    tokio::time::sleep(Duration::from_millis(800)).await;

    ledger.set_phase(DOWN);
    relay.cut();
    let cut_at = Instant::now();
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let o = ledger
        .send(
            "wrong-key",
            key_request(&client, &base, "pcs_not_a_key_0123456789abcdef01"),
        )
        .await;
    assert_eq!(
        o.status, 401,
        "a wrong key is refused before the upstream matters: {o:?}"
    );
    assert_eq!(
        readyz(gw.admin_addr).await.0,
        200,
        "the upstream does not gate /readyz"
    );
    let refused = metric(
        gw.admin_addr,
        "portcullis_refusals_total{route=\"partner\",reason=\"upstream-unavailable\"}",
    )
    .await;
    assert!(refused > 0.0, "refusals_total counts upstream-unavailable");

    ledger.set_phase(RECOVERING);
    relay.restore();
    eventually(
        Duration::from_secs(5),
        "the upstream did not come back",
        || async {
            ledger
                .send("acme", key_request(&client, &base, ACME))
                .await
                .status
                == 200
        },
    )
    .await;
    ledger.set_phase(AFTER);
    tokio::time::sleep(Duration::from_millis(800)).await;
    load.finish().await;

    for o in ledger.outcomes().into_iter().filter(|o| o.who == "acme") {
        match o.phase {
            BEFORE | AFTER => assert_eq!(o.status, 200, "{o:?}"),
            DOWN if o.at > cut_at + Duration::from_millis(50) => {
                assert_eq!(
                    (o.status, o.problem.as_deref()),
                    (502, Some(UPSTREAM_UNAVAILABLE)),
                    "{o:?}"
                );
            }
            _ => assert!(o.status == 200 || o.status == 502, "{o:?}"),
        }
    }
    assert!(ledger.count("acme", 502) >= 10);

    gw.stop().await;
    let allowed = assert_one_audit_line_per_request(&[audit_file(&dir)], &ledger);
    // A 502 is an allowed request whose upstream failed: audited `allow`, counted as use.
    let by_id = audit_by_id(&[audit_file(&dir)]);
    let a502 = ledger
        .outcomes()
        .into_iter()
        .find(|o| o.status == 502)
        .unwrap();
    let line = &by_id[&a502.id][0];
    assert_eq!(line["decision"], "allow", "{line}");
    assert_eq!(line["reason"], "upstream-unavailable", "{line}");
    let used = ledger.count("acme", 200) + ledger.count("acme", 502);
    assert_eq!(allowed["acme"], used);
    let gw = start_in_process(&dir, &toml).await;
    let inv = inventory(gw.admin_addr).await;
    assert_eq!(inventory_count(&inv, "acme"), used, "{inv}");
    gw.stop().await;
}

const GW_ID: &str = "spiffe://corp.example/portcullis";
const CALLER: &str = "spiffe://corp.example/billing";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workload_api_outage_keeps_serving_on_the_last_svid_and_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let ca = Ca::new("corp.example");
    let svid = ca.svid(GW_ID);
    let mut agent = Agent::start(dir, &AgentState::one(GW_ID, &svid, &[ca.der()]));
    let up = Upstream::start().await;
    let rest = format!(
        "[state]\npath = \"{}\"\nflush_every = \"200ms\"\n\
         [credentials.workload-mtls]\nkind = \"mtls\"\ntrust_domains = [\"corp.example\"]\n{}",
        dir.join("state.db").display(),
        RouteToml::new("api", "/api", &up.url())
            .accept(&["workload-mtls"])
            .allow(&["spiffe://corp.example/*"])
            .upstream_key("token_header = \"none\""),
    );
    let toml = gateway_config(dir, &agent, &rest);
    let gw = start_in_process(dir, &toml).await;
    let caller = Arc::new(ca.svid(CALLER));
    let url = format!("https://127.0.0.1:{}/api/x", gw.data_addr.port());
    let ledger = Ledger::default();
    // Keep-alive clients, plus one that opens a new connection (a new handshake) every time.
    let keep: MakeRequest = {
        let c = svid_client(Some(caller.as_ref()), &RecordingVerifier::new());
        let u = url.clone();
        Arc::new(move || c.get(&u))
    };
    let fresh: MakeRequest = {
        let (caller, u) = (caller.clone(), url.clone());
        Arc::new(move || svid_client(Some(caller.as_ref()), &RecordingVerifier::new()).get(&u))
    };
    let load = Load::start(
        &ledger,
        vec![
            ("billing", keep.clone()),
            ("billing", keep),
            ("billing", fresh),
        ],
    );
    tokio::time::sleep(Duration::from_millis(800)).await;

    ledger.set_phase(DOWN);
    agent.stop();
    eventually(
        Duration::from_secs(5),
        "workload_api_up stayed 1",
        || async { metric(gw.admin_addr, "portcullis_workload_api_up").await == 0.0 },
    )
    .await;
    let (code, body) = readyz(gw.admin_addr).await;
    assert_eq!(code, 200, "the SVID is still valid: {body}");
    assert!(body.contains("unreachable"), "{body}");
    tokio::time::sleep(Duration::from_millis(1000)).await;

    ledger.set_phase(RECOVERING);
    agent.restart();
    eventually(
        Duration::from_secs(10),
        "workload_api_up stayed 0",
        || async { metric(gw.admin_addr, "portcullis_workload_api_up").await == 1.0 },
    )
    .await;
    // The agent came back with the material the gateway already held (no rotation): it is
    // reported connected again all the same.
    let (code, body) = readyz(gw.admin_addr).await;
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("connected"), "{body}");
    ledger.set_phase(AFTER);
    tokio::time::sleep(Duration::from_millis(600)).await;
    load.finish().await;

    for o in ledger.outcomes() {
        assert_eq!(o.status, 200, "the agent's absence refused a caller: {o:?}");
    }
    assert!(statuses(&ledger, "billing", DOWN).len() > 10);

    gw.stop().await;
    let allowed = assert_one_audit_line_per_request(&[audit_file(dir)], &ledger);
    let served = ledger.count("billing", 200);
    assert_eq!(allowed["billing"], served);
    let gw = start_in_process(dir, &toml).await;
    let inv = inventory(gw.admin_addr).await;
    assert_eq!(inventory_count(&inv, CALLER), served, "{inv}");
    gw.stop().await;
}
