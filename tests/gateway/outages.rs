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
use crate::shared_state::{sign, WHSEC};
use crate::support::*;
use crate::workload_api_support::{
    client as svid_client, gateway_config, Agent, AgentState, Ca, RecordingVerifier,
};

const ACME: &str = "pcs_outage_test_acme_0123456789abcdef01";
const GLOBEX: &str = "pcs_outage_test_globex_0123456789abcdef";
const DIRECTORY_UNAVAILABLE: &str = "urn:portcullis:directory-unavailable";
const INVALID_CREDENTIAL: &str = "urn:portcullis:invalid-credential";
const UPSTREAM_UNAVAILABLE: &str = "urn:portcullis:upstream-unavailable";

/// A replica of the partner API (API keys) and the billing webhooks (Standard Webhooks signed
/// with `shared_state::WHSEC`) on Redis at `redis_url`, auditing to `dir/audit.jsonl`.
async fn redis_replica(
    pki: &Pki,
    dir: &Path,
    up: &Upstream,
    redis_url: &str,
) -> portcullis::server::Running {
    std::fs::create_dir_all(dir).unwrap();
    let shared = pki.dir.path();
    std::fs::write(shared.join("whsec"), format!("{WHSEC}\n")).unwrap();
    let extra = format!(
        "{ISSUER}[state]\nbackend = \"redis\"\nurl = \"{redis_url}\"\nprefix = \"outage-test:\"\nflush_every = \"200ms\"\n{}{}{}",
        api_key_credential("partner-keys", shared, ""),
        billing_hooks_credential(&shared.join("whsec")),
        partner_and_hooks_routes(&up.url()),
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

/// Two replicas of the partner API on one redis-server: A connected directly, B through a relay
/// the test cuts or freezes. `acme` and `globex` are API keys both replicas accept.
struct Partition {
    redis: RedisServer,
    relay: Relay,
    pki: Pki,
    up: Upstream,
    a: portcullis::server::Running,
    b: portcullis::server::Running,
    client: reqwest::Client,
}

impl Partition {
    async fn start() -> Partition {
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
        let a = redis_replica(&pki, &pki.dir.path().join("a"), &up, &redis.url()).await;
        let b_url = format!("redis://{}", relay.addr());
        let b = redis_replica(&pki, &pki.dir.path().join("b"), &up, &b_url).await;
        let client = pki.client(true);
        eventually(Duration::from_secs(5), "B ready", || async {
            readyz(b.admin_addr).await.0 == 200
        })
        .await;
        Partition {
            redis,
            relay,
            pki,
            up,
            a,
            b,
            client,
        }
    }

    /// A request with `key` to replica A (`b == false`) or B.
    fn get(&self, b: bool, key: &str) -> reqwest::RequestBuilder {
        let gw = if b { &self.b } else { &self.a };
        key_request(&self.client, &base_url(gw), key)
    }

    /// The billing webhook delivery `id`, signed for timestamp `ts`, to replica A or B. The
    /// same `(id, ts)` twice is a replay (the byte-identical message).
    fn deliver(&self, b: bool, id: &str, ts: u64) -> reqwest::RequestBuilder {
        let gw = if b { &self.b } else { &self.a };
        let body = r#"{"type":"invoice.paid","data":{"id":"in_outage"}}"#;
        self.client
            .post(format!("{}/hooks/billing", base_url(gw)))
            .header("content-type", "application/json")
            .header("webhook-id", id)
            .header("webhook-timestamp", ts.to_string())
            .header("webhook-signature", sign(id, ts, body))
            .body(body)
    }

    /// Two clients per replica sending `acme` requests (`acme.a`, `acme.b`).
    fn load(&self, ledger: &Ledger) -> Load {
        let make = |gw: &portcullis::server::Running| -> MakeRequest {
            let (c, b) = (self.client.clone(), base_url(gw));
            Arc::new(move || key_request(&c, &b, ACME))
        };
        Load::start(
            ledger,
            vec![
                ("acme.a", make(&self.a)),
                ("acme.a", make(&self.a)),
                ("acme.b", make(&self.b)),
                ("acme.b", make(&self.b)),
            ],
        )
    }

    /// Revoke `globex` through A's admin API.
    async fn revoke_globex(&self) {
        let r = reqwest::Client::new()
            .post(format!("http://{}/admin/v1/revocations", self.a.admin_addr))
            .header("content-type", "application/json")
            .body(r#"{"credential":"partner-keys:globex","reason":"offboarded during the partition"}"#)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
    }

    /// After the relay is restored: B refuses the revoked key with 401 within 5 s and is ready
    /// again; returns how long the refusal took.
    async fn b_enforces_the_revocation(&self, ledger: &Ledger) -> Duration {
        let took = eventually(
            Duration::from_secs(5),
            "B never refused the revoked key",
            || async {
                let o = ledger.send("globex.b", self.get(true, GLOBEX)).await;
                assert_ne!(
                    o.status, 200,
                    "B let a revoked key through after the partition: {o:?}"
                );
                o.status == 401
            },
        )
        .await;
        eventually(Duration::from_secs(5), "B not ready again", || async {
            readyz(self.b.admin_addr).await.0 == 200
        })
        .await;
        took
    }

    /// Stop both replicas (a clean shutdown flushes; B through the restored relay), then check
    /// the audit files and the usage a third gateway reads from Redis.
    async fn assert_nothing_lost(self, ledger: &Ledger) {
        let dir = self.pki.dir.path().to_path_buf();
        self.b.stop().await;
        self.a.stop().await;
        let (audit_a, audit_b) = (audit_file(&dir.join("a")), audit_file(&dir.join("b")));
        let allowed = assert_one_audit_line_per_request(&[audit_a, audit_b.clone()], ledger);
        // B's last answer to the revoked key is audited as what it was.
        let b_audit = audit_by_id(&[audit_b]);
        let last_globex = ledger
            .outcomes()
            .into_iter()
            .rfind(|o| o.who == "globex.b")
            .unwrap();
        let line = &b_audit[&last_globex.id][0];
        assert_eq!(line["decision"], "deny", "{line}");
        assert_eq!(line["reason"], "invalid-credential", "{line}");
        assert_eq!(line["principal"], "globex", "{line}");

        let reader =
            redis_replica(&self.pki, &dir.join("reader"), &self.up, &self.redis.url()).await;
        let inv = inventory(reader.admin_addr).await;
        let served = |who: &[&str]| who.iter().map(|w| ledger.count(w, 200)).sum::<u64>();
        let acme = served(&["acme.a", "acme.b"]);
        assert_eq!(inventory_count(&inv, "acme"), acme, "{inv}");
        assert_eq!(
            inventory_count(&inv, "globex"),
            served(&["globex.a", "globex.b"]),
            "{inv}"
        );
        let allowed_acme: u64 = ["acme.a", "acme.b"]
            .iter()
            .filter_map(|w| allowed.get(w))
            .sum();
        assert_eq!(allowed_acme, acme, "audited allow = usage");
        assert!(ledger.count("acme.b", 200) > 0);
        assert_eq!(
            inventory_count(&inv, "standard-webhooks"),
            served(&["hook.a", "hook.b"]),
            "{inv}"
        );
        reader.stop().await;
        drop(self.relay);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_partition_fails_closed_enforces_a_revocation_made_meanwhile_and_loses_nothing() {
    let p = Partition::start().await;
    let ledger = Ledger::default();
    let load = p.load(&ledger);
    tokio::time::sleep(Duration::from_millis(800)).await;
    // B serves globex before the cut (nothing is revoked yet).
    assert_eq!(
        ledger.send("globex.b", p.get(true, GLOBEX)).await.status,
        200
    );

    // Cut B off from Redis: its connections close, new ones are refused.
    ledger.set_phase(DOWN);
    let cut_at = Instant::now();
    p.relay.cut();
    let first_503 = loop {
        let o = ledger.send("acme.b", p.get(true, ACME)).await;
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
    assert_eq!(first_503.problem.as_deref(), Some(DIRECTORY_UNAVAILABLE));
    assert_eq!(first_503.retry_after.as_deref(), Some("5"));
    eprintln!("cut: B refused (503) {grace:?} after the cut");
    let (code, body) = readyz(p.b.admin_addr).await;
    assert_eq!(code, 503, "{body}");
    assert!(body.contains("state backend unavailable"), "{body}");
    assert_eq!(readyz(p.a.admin_addr).await.0, 200, "A still reaches Redis");

    // Revoke globex through A while B is cut off: A refuses at once; B never lets it through.
    p.revoke_globex().await;
    let o = ledger.send("globex.a", p.get(false, GLOBEX)).await;
    assert_eq!(
        (o.status, o.problem.as_deref()),
        (401, Some(INVALID_CREDENTIAL))
    );
    for _ in 0..5 {
        let o = ledger.send("globex.b", p.get(true, GLOBEX)).await;
        assert_eq!(
            (o.status, o.problem.as_deref()),
            (503, Some(DIRECTORY_UNAVAILABLE)),
            "{o:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // A webhook delivery accepted by A while B is cut off: B cannot check it against the shared
    // replay memory, so it refuses (503) rather than accept what may be a replay.
    let ts = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let o = ledger
        .send("hook.a", p.deliver(false, "msg_partition_1", ts))
        .await;
    assert_eq!(o.status, 200, "{o:?}");
    let o = ledger
        .send("hook.b", p.deliver(true, "msg_partition_1", ts))
        .await;
    assert_eq!(
        (o.status, o.problem.as_deref()),
        (503, Some(DIRECTORY_UNAVAILABLE)),
        "{o:?}"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;

    // Restore: B re-reads the revocations and refuses globex (401) within a bounded time.
    ledger.set_phase(RECOVERING);
    let restored_at = Instant::now();
    p.relay.restore();
    let took = p.b_enforces_the_revocation(&ledger).await;
    eprintln!("cut: B refused the revoked key (401) {took:?} after the relay came back");
    ledger.set_phase(AFTER);
    tokio::time::sleep(Duration::from_millis(800)).await;
    let o = ledger.send("globex.b", p.get(true, GLOBEX)).await;
    assert_eq!(
        (o.status, o.problem.as_deref()),
        (401, Some(INVALID_CREDENTIAL))
    );
    // The delivery A accepted during the partition is a replay at B now.
    let o = ledger
        .send("hook.b", p.deliver(true, "msg_partition_1", ts))
        .await;
    assert_eq!(
        (o.status, o.problem.as_deref()),
        (401, Some(INVALID_CREDENTIAL)),
        "{o:?}"
    );
    assert_eq!(
        ledger
            .send("hook.b", p.deliver(true, "msg_partition_2", ts))
            .await
            .status,
        200
    );
    load.finish().await;

    // What callers got. A: never affected. B: 200 until it noticed the cut (the grace), then
    // only 503 directory-unavailable until the relay was restored; after recovery only 200.
    // A request's phase is read when it is built and its bytes leave a moment later, so the
    // windows are by time: answered before the cut, or sent after B's first refusal arrived
    // and answered before the restore.
    for o in ledger.outcomes() {
        let before = o.at < cut_at;
        let refusing = o.sent > first_503.at && o.at < restored_at;
        match o.who {
            "acme.a" => assert_eq!(o.status, 200, "{o:?}"),
            "acme.b" if before || o.phase == AFTER => assert_eq!(o.status, 200, "{o:?}"),
            "acme.b" if refusing => assert_eq!(
                (o.status, o.problem.as_deref()),
                (503, Some(DIRECTORY_UNAVAILABLE)),
                "{o:?}"
            ),
            "acme.b" => assert!(
                o.status == 200 || o.problem.as_deref() == Some(DIRECTORY_UNAVAILABLE),
                "{o:?}"
            ),
            "globex.b" if o.phase >= DOWN => assert_ne!(o.status, 200, "{o:?}"),
            _ => {}
        }
    }
    assert!(
        statuses(&ledger, "acme.b", BEFORE).len() > 10,
        "load ran before the cut"
    );
    let down_b = statuses(&ledger, "acme.b", DOWN);
    assert!(
        down_b.iter().filter(|o| o.status == 503).count() >= 10,
        "{down_b:?}"
    );
    assert!(statuses(&ledger, "acme.b", AFTER).len() > 10);
    eprintln!("cut: {} requests", ledger.outcomes().len());
    p.assert_nothing_lost(&ledger).await;
}

/// The other way Redis goes away: it hangs (nothing closes, nothing answers). B notices only
/// because its revocation set stops being refreshed: after at most `3 × flush_every` since
/// the last good read (here 3 × 200 ms), it refuses with 503, and a revocation made meanwhile is
/// enforced once Redis answers again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_that_hangs_fails_closed_after_three_flush_intervals_and_loses_nothing() {
    let p = Partition::start().await;
    let ledger = Ledger::default();
    let load = p.load(&ledger);
    tokio::time::sleep(Duration::from_millis(800)).await;

    ledger.set_phase(DOWN);
    let frozen_at = Instant::now();
    p.relay.freeze();
    p.revoke_globex().await;
    // Within the grace B may still serve globex (it cannot have heard of the revocation);
    // once it refuses anything, it never serves it again until Redis answers.
    let mut first_503: Option<Instant> = None;
    while first_503.is_none() {
        let o = ledger.send("globex.b", p.get(true, GLOBEX)).await;
        match o.status {
            200 => {}
            503 => first_503 = Some(o.at),
            _ => panic!("{o:?}"),
        }
        assert!(
            frozen_at.elapsed() < Duration::from_secs(3),
            "B kept serving a hung Redis"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let grace = first_503.unwrap() - frozen_at;
    eprintln!("hang: B refused (503) {grace:?} after Redis hung");
    // The last good read can be one flush interval before the hang: at most 4 × 200 ms, plus
    // scheduling slack on a shared machine.
    assert!(grace <= Duration::from_millis(1300), "{grace:?}");
    assert_eq!(readyz(p.b.admin_addr).await.0, 503);
    tokio::time::sleep(Duration::from_millis(800)).await;
    for _ in 0..3 {
        let o = ledger.send("globex.b", p.get(true, GLOBEX)).await;
        assert_eq!(
            (o.status, o.problem.as_deref()),
            (503, Some(DIRECTORY_UNAVAILABLE)),
            "{o:?}"
        );
    }

    ledger.set_phase(RECOVERING);
    let restored_at = Instant::now();
    p.relay.restore();
    let took = p.b_enforces_the_revocation(&ledger).await;
    eprintln!("hang: B refused the revoked key (401) {took:?} after Redis answered again");
    ledger.set_phase(AFTER);
    tokio::time::sleep(Duration::from_millis(600)).await;
    load.finish().await;

    let first_503 = first_503.unwrap();
    // B served requests it could not write to Redis (sent after the hang began): their counts
    // must reach Redis after it answers again (checked below, with everything else).
    let served_cut_off = ledger
        .outcomes()
        .iter()
        .filter(|o| o.who.ends_with(".b") && o.status == 200 && o.sent > frozen_at)
        .filter(|o| o.at < restored_at)
        .count();
    assert!(served_cut_off > 0, "B served nothing while Redis hung");
    for o in ledger.outcomes() {
        let before = o.at < frozen_at;
        let refusing = o.sent > first_503 && o.at < restored_at;
        match o.who {
            "acme.a" => assert_eq!(o.status, 200, "{o:?}"),
            "acme.b" if before || o.phase == AFTER => assert_eq!(o.status, 200, "{o:?}"),
            "acme.b" | "globex.b" if refusing => assert_eq!(
                (o.status, o.problem.as_deref()),
                (503, Some(DIRECTORY_UNAVAILABLE)),
                "{o:?}"
            ),
            _ => assert!(matches!(o.status, 200 | 401 | 503), "{o:?}"),
        }
    }
    p.assert_nothing_lost(&ledger).await;
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

/// A directory that hangs (it accepts, and never answers): the caller waits at most the
/// credential's `timeout`, then gets 503, never a hang; cached binds are not held up by it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ldap_that_hangs_is_503_after_the_timeout_and_never_holds_a_cached_bind() {
    let ldap = tokio::task::spawn_blocking(crate::ldap::slapd::Slapd::start)
        .await
        .unwrap();
    let port: u16 = ldap.url().rsplit(':').next().unwrap().parse().unwrap();
    let relay = Relay::start(([127, 0, 0, 1], port).into());
    let pki = Pki::new();
    let dir = pki.dir.path().to_path_buf();
    let up = Upstream::start().await;
    let toml = ldap_config(&dir, &pki, &format!("ldap://{}", relay.addr()), &up)
        .replace("timeout = \"2s\"", "timeout = \"1s\"");
    let gw = start_in_process(&dir, &toml).await;
    let base = base_url(&gw);
    let client = pki.client(true);
    let req = |user: &str, pw: &str| {
        client
            .get(format!("{base}/cics/payments"))
            .header("authorization", basic(user, pw))
    };
    let ledger = Ledger::default();
    assert_eq!(
        ledger
            .send("gwjob01", req("GWJOB01", "job-pass-1"))
            .await
            .status,
        200
    );

    ledger.set_phase(DOWN);
    relay.freeze();
    let o = ledger.send("victim", req("VICTIM", "victim-pass")).await;
    let waited = o.at - o.sent;
    assert_eq!(
        (o.status, o.problem.as_deref()),
        (503, Some(DIRECTORY_UNAVAILABLE)),
        "{o:?}"
    );
    assert_eq!(o.retry_after.as_deref(), Some("5"));
    // `timeout` (1 s) for the operation; a fresh connection is bounded by `connect_timeout`
    // (1 s) on top.
    assert!(waited >= Duration::from_millis(900), "{waited:?}");
    assert!(waited < Duration::from_millis(3500), "{waited:?}");
    let o = ledger.send("gwjob01", req("GWJOB01", "job-pass-1")).await;
    assert_eq!(o.status, 200, "{o:?}");
    assert!(
        o.at - o.sent < Duration::from_millis(500),
        "a cached bind waited on the directory"
    );
    eprintln!("ldap hang: 503 after {waited:?}");

    ledger.set_phase(RECOVERING);
    relay.restore();
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
    gw.stop().await;
    let allowed = assert_one_audit_line_per_request(&[audit_file(&dir)], &ledger);
    assert_eq!(allowed["victim"], 1);
    assert_eq!(allowed["gwjob01"], 2);
    drop(ldap);
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
    let cut_started = Instant::now();
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
    let restored_at = Instant::now();
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

    // By time, as in the Redis tests: answered before the cut started, or sent after it was
    // complete (connections closed, port refusing) and answered before the restore.
    for o in ledger.outcomes().into_iter().filter(|o| o.who == "acme") {
        if o.at < cut_started || o.phase == AFTER {
            assert_eq!(o.status, 200, "{o:?}");
        } else if o.sent > cut_at && o.at < restored_at {
            assert_eq!(
                (o.status, o.problem.as_deref()),
                (502, Some(UPSTREAM_UNAVAILABLE)),
                "{o:?}"
            );
        } else {
            assert!(o.status == 200 || o.status == 502, "{o:?}");
        }
    }
    assert!(ledger.count("acme", 502) >= 10);
    // The gateway never retries (a request is sent upstream at most once); it tells the
    // caller when to.
    for o in ledger.outcomes().into_iter().filter(|o| o.status == 502) {
        assert_eq!(o.retry_after.as_deref(), Some("1"), "{o:?}");
    }

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

/// A replica stopped while it cannot reach Redis (a rollout during a Redis restart) keeps
/// retrying its last flush for up to 10 s: the counts it served meanwhile reach Redis once it
/// answers, instead of being dropped at the first failed attempt.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_stopped_while_redis_is_away_writes_its_counts_when_redis_answers() {
    let p = Partition::start().await;
    let ledger = Ledger::default();
    for _ in 0..5 {
        assert_eq!(ledger.send("acme.b", p.get(true, ACME)).await.status, 200);
    }
    // Hung Redis: B serves during its grace, and cannot write those counts.
    p.relay.freeze();
    let frozen_at = Instant::now();
    loop {
        let o = ledger.send("acme.b", p.get(true, ACME)).await;
        if o.status == 503 {
            break;
        }
        assert!(frozen_at.elapsed() < Duration::from_secs(3));
    }
    let unflushed = ledger.count("acme.b", 200);
    // Then gone (connections closed, new ones refused), and B is stopped.
    p.relay.cut();
    let Partition {
        a,
        b,
        relay,
        redis,
        pki,
        up,
        ..
    } = p;
    let stopping = tokio::spawn(b.stop());
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(!stopping.is_finished(), "B gave up on its counts");
    relay.restore();
    tokio::time::timeout(Duration::from_secs(10), stopping)
        .await
        .expect("B did not finish its shutdown once Redis answered")
        .unwrap();
    a.stop().await;
    let dir = pki.dir.path();
    assert_one_audit_line_per_request(
        &[audit_file(&dir.join("a")), audit_file(&dir.join("b"))],
        &ledger,
    );
    let reader = redis_replica(&pki, &dir.join("reader"), &up, &redis.url()).await;
    let inv = inventory(reader.admin_addr).await;
    assert_eq!(inventory_count(&inv, "acme"), unflushed, "{inv}");
    reader.stop().await;
}
