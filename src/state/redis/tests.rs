//! The Redis store against a real `redis-server` (see `tests/redis_server.rs`): two stores on one
//! server stand for two replicas.

use std::time::{Duration, Instant, SystemTime};

use super::*;
use crate::identity::Kind;

pub(super) mod redis_server;
use redis_server::RedisServer;

use crate::state::tests::{at, racf};

fn mtls<'a>(identity: &'a str, t: SystemTime, not_after: SystemTime) -> Usage<'a> {
    Usage {
        at: t,
        route: "cics",
        plan: None,
        credential: "workload-mtls",
        kind: Kind::Mtls,
        identity,
        principal: None,
        cert_not_after: Some(not_after),
        source: None,
    }
}

fn opts(r: &RedisServer, flush_every: Duration) -> RedisOptions {
    RedisOptions {
        timeout: Duration::from_millis(500),
        ..RedisOptions::new(RedisUrl::parse(&r.url()).unwrap(), flush_every)
    }
}

async fn replica(r: &RedisServer) -> RedisStore {
    // An hour between flushes: anything seen sooner came through pub/sub, not the safety net.
    let s = RedisStore::connect(opts(r, Duration::from_secs(3600)))
        .await
        .unwrap();
    wait_until(Duration::from_secs(5), || s.available()).await;
    s
}

/// Poll `cond` until it holds; panics after `limit`. Returns how long it took.
async fn wait_until(limit: Duration, mut cond: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    while !cond() {
        assert!(
            start.elapsed() < limit,
            "condition not met within {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    start.elapsed()
}

fn revocation(t: Target, reason: &str, at: i64) -> Revocation {
    Revocation {
        target: t,
        reason: reason.into(),
        at: Timestamp(at),
    }
}

const JSMITH: &str = "spiffe://corp.example/legacy/racf/jsmith";
const BATCH: &str = "spiffe://corp.example/ns/payments/batch";

#[tokio::test]
async fn two_replicas_sum_usage_and_inventory() {
    let r = RedisServer::start();
    let a = replica(&r).await;
    let b = replica(&r).await;

    // Replica A sees JSMITH in the middle of the day and mTLS early; B sees JSMITH earlier and
    // later, on another route, and mTLS with a newer certificate.
    for i in 0..3 {
        a.record(&racf("JSMITH", JSMITH, "cics", at("2026-12-01", 500 + i)));
    }
    a.record(&mtls(BATCH, at("2026-12-01", 10), at("2027-01-01", 0)));
    b.record(&racf("JSMITH", JSMITH, "cics", at("2026-12-01", 100)));
    b.record(&racf(
        "JSMITH",
        "spiffe://corp.example/legacy/racf/jsmith-v2",
        "cics-admin",
        at("2026-12-02", 50),
    ));
    b.record(&mtls(BATCH, at("2026-12-02", 10), at("2027-02-01", 0)));
    a.flush().await.unwrap();
    // Recorded by A after B's sighting was taken, but older: must not move last_seen back.
    a.record(&mtls(BATCH, at("2026-11-30", 10), at("2026-12-15", 0)));
    b.flush().await.unwrap();
    a.flush().await.unwrap();

    for store in [&a, &b] {
        let usage = store
            .usage(Date::parse("2026-12-01").unwrap())
            .await
            .unwrap();
        let count = |d: &str, cred: &str| -> u64 {
            usage
                .iter()
                .filter(|r| r.day == Date::parse(d).unwrap() && r.credential == cred)
                .map(|r| r.count)
                .sum()
        };
        assert_eq!(count("2026-12-01", "racf"), 4, "3 from A + 1 from B");
        assert_eq!(count("2026-12-02", "racf"), 1);
        assert_eq!(count("2026-12-01", "workload-mtls"), 1);
        assert_eq!(count("2026-12-02", "workload-mtls"), 1);
        assert_eq!(usage.len(), 4, "2026-11-30 is before `since`: {usage:?}");
        let mtls_row = usage
            .iter()
            .find(|r| r.credential == "workload-mtls")
            .unwrap();
        assert_eq!(
            (mtls_row.plan.as_deref(), mtls_row.kind),
            (None, Kind::Mtls)
        );
        let racf_row = usage.iter().find(|r| r.credential == "racf").unwrap();
        assert_eq!(racf_row.plan.as_deref(), Some("payments-cics"));

        let inv = store.inventory().await.unwrap();
        assert_eq!(inv.len(), 2, "{inv:?}");
        let j = inv.iter().find(|e| e.kind == Kind::Ldap).unwrap();
        assert_eq!(j.principal.as_deref(), Some("JSMITH"));
        assert_eq!(j.count, 5);
        assert_eq!(j.first_seen, Timestamp::of(at("2026-12-01", 100)), "B's");
        assert_eq!(j.last_seen, Timestamp::of(at("2026-12-02", 50)), "B's");
        assert_eq!(
            j.identity, "spiffe://corp.example/legacy/racf/jsmith-v2",
            "the newest sighting's mapping"
        );
        assert_eq!(j.routes.iter().collect::<Vec<_>>(), ["cics", "cics-admin"]);
        let m = inv.iter().find(|e| e.kind == Kind::Mtls).unwrap();
        assert_eq!((m.principal.as_deref(), m.count), (None, 3));
        assert_eq!(m.first_seen, Timestamp::of(at("2026-11-30", 10)));
        assert_eq!(m.last_seen, Timestamp::of(at("2026-12-02", 10)));
        assert_eq!(
            m.cert_not_after,
            Some(Timestamp::of(at("2027-02-01", 0))),
            "the newest sighting's cert, not the last flushed"
        );
    }

    // Per-day keys expire on their own (400 days after their day); the inventory does not.
    let ttl = r.cmd(&["TTL", "portcullis:usage:2026-12-01"]);
    let ttl: i64 = ttl.trim().trim_start_matches(':').parse().unwrap();
    assert!(ttl > 0, "usage key has no expiry: {ttl}");
    // Reads include what is not flushed yet.
    b.record(&racf("JSMITH", JSMITH, "cics", at("2026-12-03", 1)));
    let inv = a.inventory().await.unwrap();
    assert_eq!(
        inv.iter().map(|e| e.count).sum::<u64>(),
        8,
        "A does not see B's memory"
    );
    let inv = b.inventory().await.unwrap();
    assert_eq!(inv.iter().map(|e| e.count).sum::<u64>(), 9);
}

#[tokio::test]
async fn observed_access_from_two_replicas_is_merged_and_templated() {
    let r = RedisServer::start();
    let a = replica(&r).await;
    let b = replica(&r).await;
    let acc = |m: &'static str, p: &'static str, t| Access::of("cics", JSMITH, m, p, t).unwrap();
    a.record_access(&acc("GET", "/accounts/1234/balance", at("2026-12-01", 500)));
    a.record_access(&acc(
        "GET",
        "/accounts/98765/balance",
        at("2026-12-01", 900),
    ));
    b.record_access(&acc("GET", "/accounts/42/balance", at("2026-12-01", 100)));
    b.record_access(&acc("POST", "/payments", at("2026-11-20", 0)));
    a.flush().await.unwrap();
    // B's rows are written by its own read (or its next flush).
    let rows = b
        .access("cics", Date::parse("2026-12-01").unwrap())
        .await
        .unwrap();
    assert_eq!(
        rows,
        vec![AccessRow {
            route: "cics".into(),
            identity: JSMITH.into(),
            method: "GET".into(),
            path: "/accounts/*/balance".into(),
            first_seen: Timestamp::of(at("2026-12-01", 100)),
            last_seen: Timestamp::of(at("2026-12-01", 900)),
            count: 3,
        }]
    );
    // An older `since` includes the POST; another route has nothing.
    let all = a
        .access("cics", Date::parse("2026-11-01").unwrap())
        .await
        .unwrap();
    assert_eq!(all.len(), 2);
    assert!(a
        .access("other", Date::parse("2026-11-01").unwrap())
        .await
        .unwrap()
        .is_empty());
}

#[tokio::test]
async fn a_chunk_is_applied_once_even_when_retried() {
    let r = RedisServer::start();
    let a = replica(&r).await;
    let mut p = Pending::default();
    p.record(&racf("JSMITH", JSMITH, "cics", at("2026-12-01", 1)));
    let chunk = chunks(&p, 400).pop().unwrap();
    // The reply of the first attempt was "lost": the retry carries the same id.
    a.inner.send(&chunk).await.unwrap();
    a.inner.send(&chunk).await.unwrap();
    let inv = a.inventory().await.unwrap();
    assert_eq!(inv[0].count, 1);
    // A different chunk (new id) with the same content counts.
    let again = chunks(&p, 400).pop().unwrap();
    a.inner.send(&again).await.unwrap();
    assert_eq!(a.inventory().await.unwrap()[0].count, 2);
}

#[tokio::test]
async fn large_aggregates_are_flushed_in_chunks() {
    let r = RedisServer::start();
    let a = replica(&r).await;
    let names: Vec<String> = (0..1234).map(|i| format!("USER{i:04}")).collect();
    for n in &names {
        a.record(&racf(n, JSMITH, "cics", at("2026-12-01", 1)));
    }
    assert_eq!(
        a.inner
            .pending
            .lock()
            .map(|p| chunks(&p, 400).len())
            .unwrap(),
        3
    );
    a.flush().await.unwrap();
    let inv = a.inventory().await.unwrap();
    assert_eq!(inv.len(), 1234);
    let usage = a.usage(Date::parse("2026-12-01").unwrap()).await.unwrap();
    assert_eq!(usage.iter().map(|r| r.count).sum::<u64>(), 1234);
}

#[tokio::test]
async fn revocations_reach_every_replica_at_once_and_persist() {
    let r = RedisServer::start();
    let a = replica(&r).await;
    let b = replica(&r).await;
    let t = Target::credential("racf:JSMITH").unwrap();
    assert!(!b.is_revoked(JSMITH, "racf", Some("JSMITH"), None));

    assert!(a
        .revoke(revocation(t.clone(), "left", 1_796_083_200))
        .await
        .unwrap());
    assert!(
        a.is_revoked(JSMITH, "racf", Some("JSMITH"), None),
        "effective on return at the replica that revoked"
    );
    // B flushes only hourly: this is pub/sub.
    let took = wait_until(Duration::from_secs(1), || {
        b.is_revoked(JSMITH, "racf", Some("JSMITH"), None)
    })
    .await;
    eprintln!("revocation reached the other replica in {took:?}");

    // Revoking again changes the reason only.
    assert!(!b
        .revoke(revocation(t.clone(), "left the company", 1_900_000_000))
        .await
        .unwrap());
    let revs = a.revocations().await.unwrap();
    assert_eq!(
        revs,
        vec![revocation(t.clone(), "left the company", 1_796_083_200)]
    );
    b.revoke(revocation(Target::jti("tok-1").unwrap(), "leaked", 5))
        .await
        .unwrap();
    wait_until(Duration::from_secs(1), || {
        a.is_revoked("spiffe://x", "workload-jwt", None, Some("tok-1"))
    })
    .await;

    // A replica started later loads the set before it says it is available.
    drop(b);
    let c = RedisStore::connect(opts(&r, Duration::from_secs(3600)))
        .await
        .unwrap();
    assert!(c.is_revoked(JSMITH, "racf", Some("JSMITH"), None));
    assert!(c.is_revoked("spiffe://x", "workload-jwt", None, Some("tok-1")));

    // Un-revoking travels the same way.
    assert!(c.unrevoke(&t).await.unwrap());
    assert!(!c.is_revoked(JSMITH, "racf", Some("JSMITH"), None));
    wait_until(Duration::from_secs(1), || {
        !a.is_revoked(JSMITH, "racf", Some("JSMITH"), None)
    })
    .await;
    assert!(!a.unrevoke(&t).await.unwrap());
    assert!(a.is_revoked("spiffe://x", "workload-jwt", None, Some("tok-1")));
}

#[tokio::test]
async fn a_foreign_revocation_entry_fails_the_refresh_instead_of_unrevoking() {
    let r = RedisServer::start();
    let a = replica(&r).await;
    a.revoke(revocation(Target::jti("tok-1").unwrap(), "leaked", 5))
        .await
        .unwrap();
    assert!(r
        .cmd(&["HSET", "portcullis:revocations", "bogus", "x"])
        .starts_with(':'));
    let err = a.flush().await.unwrap_err();
    assert!(err.to_string().contains("unreadable revocation"), "{err}");
    assert!(
        a.is_revoked("spiffe://x", "j", None, Some("tok-1")),
        "old set kept"
    );
    assert!(a.revocations().await.is_err());
}

#[tokio::test]
async fn password_verifiers_are_shared_by_replicas() {
    let r = RedisServer::start();
    let a = replica(&r).await;
    let b = replica(&r).await;
    assert_eq!(a.password_verifier("c:uid=a").await.unwrap(), None);
    a.set_password_verifier("c:uid=a", Some("v1"))
        .await
        .unwrap();
    assert_eq!(
        b.password_verifier("c:uid=a").await.unwrap().as_deref(),
        Some("v1")
    );
    b.set_password_verifier("c:uid=a", None).await.unwrap();
    assert_eq!(a.password_verifier("c:uid=a").await.unwrap(), None);
}

#[tokio::test]
async fn replay_keys_are_shared_and_expire() {
    let r = RedisServer::start();
    let a = replica(&r).await;
    let b = replica(&r).await;
    let now = SystemTime::now();
    let until = now + Duration::from_millis(400);
    assert!(a.first_seen("stripe:sig-1", now, until).await.unwrap());
    assert!(
        !b.first_seen("stripe:sig-1", now, until).await.unwrap(),
        "replayed to the other replica"
    );
    assert!(!a.first_seen("stripe:sig-1", now, until).await.unwrap());
    assert!(b.first_seen("stripe:sig-2", now, until).await.unwrap());
    // Past its window the key is gone by itself.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(b
        .first_seen(
            "stripe:sig-1",
            SystemTime::now(),
            SystemTime::now() + Duration::from_secs(60)
        )
        .await
        .unwrap());
    // Already outside the window: accepted by the guard (the timestamp check refuses it), not
    // stored.
    assert!(a.first_seen("stripe:sig-3", now, now).await.unwrap());
    assert_eq!(
        r.cmd(&["EXISTS", "portcullis:replay:stripe:sig-3"]),
        ":0\r\n"
    );
    // Another prefix is another gateway.
    let other = RedisStore::connect(RedisOptions {
        prefix: "other:".into(),
        ..opts(&r, Duration::from_secs(3600))
    })
    .await
    .unwrap();
    assert!(other
        .first_seen(
            "stripe:sig-2",
            SystemTime::now(),
            SystemTime::now() + Duration::from_secs(60)
        )
        .await
        .unwrap());
}

#[tokio::test]
async fn redis_down_fails_closed_and_recovers() {
    let mut r = RedisServer::start();
    let flush_every = Duration::from_millis(200);
    let a = RedisStore::connect(opts(&r, flush_every)).await.unwrap();
    wait_until(Duration::from_secs(5), || a.available()).await;
    a.revoke(revocation(Target::jti("tok-1").unwrap(), "leaked", 5))
        .await
        .unwrap();
    // Two requests recorded, not flushed yet, when Redis dies.
    a.record(&racf("JSMITH", JSMITH, "cics", at("2026-12-01", 1)));
    a.record(&racf("JSMITH", JSMITH, "cics", at("2026-12-01", 2)));
    r.stop();

    // The pub/sub link drops: unavailable at once, not only after the staleness bound.
    let took = wait_until(Duration::from_secs(2), || !a.available()).await;
    eprintln!("unavailable {took:?} after Redis died");
    let now = SystemTime::now();
    let err = a
        .first_seen("stripe:sig", now, now + Duration::from_secs(60))
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("replay store unavailable"),
        "{err}"
    );
    assert!(a
        .revoke(revocation(Target::jti("tok-2").unwrap(), "x", 6))
        .await
        .is_err());
    assert!(
        !a.is_revoked("spiffe://x", "j", None, Some("tok-2")),
        "not half-applied"
    );
    assert!(
        a.is_revoked("spiffe://x", "j", None, Some("tok-1")),
        "last known set kept"
    );
    assert!(a.flush().await.is_err());
    a.record(&racf("JSMITH", JSMITH, "cics", at("2026-12-01", 3)));
    assert!(a.flush().await.is_err());
    assert!(!a.available());

    // Back (empty: this test Redis persists nothing). The same store recovers by itself.
    r.restart();
    let started = Instant::now();
    while a.flush().await.is_err() {
        assert!(started.elapsed() < Duration::from_secs(10), "no recovery");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    wait_until(Duration::from_secs(5), || a.available()).await;
    let now = SystemTime::now();
    assert!(a
        .first_seen("stripe:sig", now, now + Duration::from_secs(60))
        .await
        .unwrap());
    let usage = a.usage(Date::parse("2026-12-01").unwrap()).await.unwrap();
    assert_eq!(
        usage.iter().map(|r| r.count).sum::<u64>(),
        3,
        "nothing recorded during the outage was lost"
    );
    assert!(a
        .revoke(revocation(Target::jti("tok-2").unwrap(), "x", 6))
        .await
        .unwrap());
}

#[tokio::test]
async fn a_hung_redis_turns_unavailable_after_the_staleness_bound() {
    let r = RedisServer::start();
    let flush_every = Duration::from_millis(200);
    let a = RedisStore::connect(opts(&r, flush_every)).await.unwrap();
    wait_until(Duration::from_secs(5), || a.available()).await;
    // Every command hangs for 3 s, but connections (and the subscription) stay up: only the
    // staleness bound can notice.
    assert_eq!(r.cmd(&["CLIENT", "PAUSE", "3000", "ALL"]), "+OK\r\n");
    let start = Instant::now();
    let now = SystemTime::now();
    assert!(a
        .first_seen("k", now, now + Duration::from_secs(60))
        .await
        .is_err());
    assert!(
        start.elapsed() < Duration::from_millis(1500),
        "bounded by the timeout"
    );
    assert!(a.flush().await.is_err());
    while a.available() {
        assert!(
            start.elapsed() < Duration::from_millis(2500),
            "still available"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let stale = start.elapsed();
    assert!(stale >= Duration::from_millis(300), "too early: {stale:?}");
    eprintln!("unavailable {stale:?} into the pause (bound 600ms)");
    // The pause ends; the next flush makes it available again.
    let started = Instant::now();
    while a.flush().await.is_err() || !a.available() {
        assert!(started.elapsed() < Duration::from_secs(10), "no recovery");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn unreachable_at_startup_is_unavailable_not_fatal() {
    let mut r = RedisServer::start();
    r.stop();
    let a = RedisStore::connect(opts(&r, Duration::from_millis(200)))
        .await
        .unwrap();
    assert!(!a.available());
    r.restart();
    let started = Instant::now();
    while !a.available() {
        assert!(started.elapsed() < Duration::from_secs(10), "no recovery");
        let _ = a.flush().await;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    a.ping().await.unwrap();
}

#[test]
fn availability_rules() {
    let h = Health::new();
    let bound = Duration::from_secs(60);
    assert!(!h.available(bound), "never read");
    let t = h.now() + 10;
    h.refreshed.store(t, Ordering::Release);
    assert!(
        h.available(bound),
        "read after the (initial) link-down mark"
    );
    h.link_down.store(t + 1, Ordering::Release);
    assert!(!h.available(bound), "link down, no read since");
    h.refreshed.store(t + 2, Ordering::Release);
    assert!(h.available(bound), "link still down, but read since");
    h.link_down.store(0, Ordering::Release);
    assert!(h.available(bound));
    std::thread::sleep(Duration::from_millis(2));
    assert!(!h.available(Duration::from_millis(1)), "read too long ago");
}

#[test]
fn urls_are_checked_and_never_shown_with_their_password() {
    let u = RedisUrl::parse("redis://app:s3cret@redis.example:6379/2").unwrap();
    assert_eq!(u.redacted(), "redis://app:***@redis.example:6379/2");
    assert!(!format!("{u:?} {u}").contains("s3cret"));
    assert_eq!(
        RedisUrl::parse("redis://:s3cret@h/0").unwrap().redacted(),
        "redis://***@h/0"
    );
    assert_eq!(
        RedisUrl::parse("redis://h:6379").unwrap().redacted(),
        "redis://h:6379"
    );
    assert_eq!(redact("redis://a:b@c@h/x@y"), "redis://a:***@h/x@y");
    for bad in [
        "http://h:6379",
        "rediss://",
        "rediss://h:6379/#insecure",
        "redis://",
        "redis:///0",
        "redis://h:notaport",
        "redis://h 1",
        "h:6379",
    ] {
        let err = RedisUrl::parse(bad).unwrap_err();
        assert!(!err.contains("h:"), "the URL is not echoed: {err}");
    }
    let tls = RedisUrl::parse("rediss://gw:pw@h:6380/0").unwrap();
    assert!(tls.is_tls() && tls.has_password());
    assert!(!RedisUrl::parse("redis://h:6379").unwrap().has_password());
    assert!(check_prefix("portcullis:").is_ok());
    assert!(check_prefix("").is_err());
    assert!(check_prefix("a b").is_err());
    assert!(check_prefix(&"x".repeat(65)).is_err());
}

/// Each caller's share of a route's rows holds in Redis too, across flushes and replicas.
#[tokio::test]
async fn observed_access_is_capped_per_identity() {
    use crate::state::MAX_ACCESS_ROWS_PER_IDENTITY as CAP;
    let r = RedisServer::start();
    let a = replica(&r).await;
    let b = replica(&r).await;
    let t = at("2026-12-01", 0);
    let walker = "spiffe://corp.example/walker";
    let paths: Vec<String> = (0..CAP + 10).map(|i| format!("/w/p{i}x")).collect();
    let (first, second) = paths.split_at(CAP / 2);
    for p in first {
        a.record_access(&Access::of("cics", walker, "GET", p, t).unwrap());
    }
    a.flush().await.unwrap();
    b.record_access(&Access::of("cics", walker, "GET", &paths[0], t).unwrap());
    for p in second {
        b.record_access(&Access::of("cics", walker, "GET", p, t).unwrap());
    }
    b.record_access(&Access::of("cics", JSMITH, "GET", "/calm", t).unwrap());
    b.flush().await.unwrap();
    let rows = a
        .access("cics", Date::parse("2026-11-01").unwrap())
        .await
        .unwrap();
    let mine: Vec<_> = rows.iter().filter(|r| r.identity == walker).collect();
    assert_eq!(mine.len(), CAP);
    assert_eq!(
        mine.iter().find(|r| r.path == paths[0]).map(|r| r.count),
        Some(2)
    );
    assert!(rows.iter().any(|r| r.identity == JSMITH));
}

/// `[state] retention`: usage of days past it is gone (the day hashes expire), and access rows
/// last seen before it are swept on the flush, with their identity's row budget given back.
#[tokio::test]
async fn retention_drops_old_usage_and_access_rows() {
    let r = RedisServer::start();
    let s = RedisStore::connect(RedisOptions {
        retention: Duration::from_secs(86_400),
        ..opts(&r, Duration::from_secs(3600))
    })
    .await
    .unwrap();
    wait_until(Duration::from_secs(5), || s.available()).await;
    let now = SystemTime::now();
    let old = now - Duration::from_secs(10 * 86_400);
    let id = "spiffe://corp.example/legacy/racf/jsmith";
    s.record(&racf("JSMITH", id, "cics", old));
    s.record(&racf("JSMITH", id, "cics", now));
    let path = |p: &'static str| crate::state::Access::of("cics", id, "GET", p, old).unwrap();
    s.record_access(&path("/cics/old"));
    s.record_access(&crate::state::Access::of("cics", id, "GET", "/cics/new", now).unwrap());
    s.flush().await.unwrap();
    let since = Date::of(old).plus(-1);
    let usage = s.usage(since).await.unwrap();
    assert_eq!(usage.len(), 1, "{usage:?}");
    assert_eq!(usage[0].day, Date::of(now));
    let access = s.access("cics", since).await.unwrap();
    let paths: Vec<&str> = access.iter().map(|a| a.path.as_str()).collect();
    assert_eq!(paths, ["/cics/new"]);
    // One row left for the identity in the per-identity budget.
    let ids = r.cmd(&["HGET", "portcullis:access:ids:cics", id]);
    assert!(ids.contains("\r\n1\r\n"), "{ids:?}");
}

#[tokio::test]
async fn sources_from_two_replicas_are_one_capped_set() {
    use crate::state::tests::{from_many_sources, source_summary};
    let r = RedisServer::start();
    let (a, b) = (replica(&r).await, replica(&r).await);
    // The same 20 addresses at both replicas, then 20 others at b: 32 kept, 8 in the overflow.
    from_many_sources(&a, "2026-12-01", 20);
    from_many_sources(&b, "2026-12-01", 20);
    a.flush().await.unwrap();
    b.flush().await.unwrap();
    let jsmith = "spiffe://corp.example/legacy/racf/jsmith";
    for i in 20..40u8 {
        let s = Source::of([10, 0, 1, i].into(), Some(b"batch/1.0"));
        let mut u = racf("JSMITH", jsmith, "cics", at("2026-12-01", 500));
        u.source = Some(&s);
        b.record(&u);
    }
    let day = Date::parse("2026-12-01").unwrap();
    let rows = a.sources(day).await.unwrap();
    assert_eq!(source_summary(&rows, 42), (20, 0));
    let rows = b.sources(day).await.unwrap();
    assert_eq!(
        source_summary(&rows, 62),
        (crate::state::sources::MAX_SOURCES, 8)
    );
    let first = rows
        .iter()
        .find(|x| x.source == Some(Source::of([10, 0, 1, 0].into(), Some(b"batch/1.0"))))
        .unwrap();
    assert_eq!(first.count, 4, "two requests at each replica");
    assert_eq!(first.plan.as_deref(), Some("payments-cics"));
    assert!(a.sources(day.plus(1)).await.unwrap().is_empty());
}
