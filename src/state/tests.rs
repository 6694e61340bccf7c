use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::*;
use crate::time::{Date, Timestamp};

/// `secs` seconds into `day` (also used by the Redis store's tests).
pub(super) fn at(day: &str, secs: u64) -> SystemTime {
    Date::parse(day).unwrap().midnight() + Duration::from_secs(secs)
}

/// A RACF user's request through the `payments-cics` plan.
pub(super) fn racf<'a>(
    principal: &'a str,
    identity: &'a str,
    route: &'a str,
    t: SystemTime,
) -> Usage<'a> {
    Usage {
        at: t,
        route,
        plan: Some("payments-cics"),
        credential: "racf",
        kind: Kind::Ldap,
        identity,
        principal: Some(principal),
        cert_not_after: None,
        source: None,
    }
}

fn mtls<'a>(identity: &'a str, t: SystemTime, not_after: SystemTime) -> Usage<'a> {
    Usage {
        at: t,
        route: "cics",
        plan: Some("payments-cics"),
        credential: "workload-mtls",
        kind: Kind::Mtls,
        identity,
        principal: None,
        cert_not_after: Some(not_after),
        source: None,
    }
}

/// Rows in a table, read through a second, independent connection to the file.
fn rows(path: &std::path::Path, table: &str) -> i64 {
    let c = rusqlite::Connection::open(path).unwrap();
    c.query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0))
        .unwrap()
}

fn sample(store: &dyn StateStore) {
    let jsmith = "spiffe://corp.example/legacy/racf/jsmith";
    for i in 0..3 {
        store.record(&racf("JSMITH", jsmith, "cics", at("2026-12-01", 100 + i)));
    }
    store.record(&racf("JSMITH", jsmith, "cics-admin", at("2026-12-02", 50)));
    store.record(&racf(
        "BATCH01",
        "spiffe://corp.example/legacy/racf/batch01",
        "cics",
        at("2026-12-02", 7),
    ));
    store.record(&mtls(
        "spiffe://corp.example/ns/payments/batch",
        at("2026-12-01", 10),
        at("2027-01-01", 0),
    ));
    store.record(&mtls(
        "spiffe://corp.example/ns/payments/batch",
        at("2026-12-02", 10),
        at("2027-02-01", 0),
    ));
    // An out-of-order sighting must not move last_seen back or replace the newer cert.
    store.record(&mtls(
        "spiffe://corp.example/ns/payments/batch",
        at("2026-11-30", 10),
        at("2026-12-15", 0),
    ));
}

#[tokio::test]
async fn record_is_memory_only_until_flush() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    let store = EmbeddedStore::open(&path).await.unwrap();
    sample(&store);
    assert_eq!(
        rows(&path, "usage"),
        0,
        "record() must not write to the database"
    );
    assert_eq!(rows(&path, "inventory"), 0);
    store.flush().await.unwrap();
    assert_eq!(rows(&path, "usage"), 6);
    assert_eq!(rows(&path, "inventory"), 3);
    assert_eq!(rows(&path, "inventory_routes"), 4);
    // An empty flush is a no-op.
    store.flush().await.unwrap();
    assert_eq!(rows(&path, "usage"), 6);
}

#[tokio::test]
async fn everything_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    {
        let store = EmbeddedStore::open(&path).await.unwrap();
        sample(&store);
        assert!(store
            .revoke(Revocation {
                target: Target::credential("racf:BATCH01").unwrap(),
                reason: "left the company".into(),
                at: Timestamp(1_796_083_200),
            })
            .await
            .unwrap());
        store
            .revoke(Revocation {
                target: Target::jti("tok-1").unwrap(),
                reason: "leaked".into(),
                at: Timestamp(1_796_083_201),
            })
            .await
            .unwrap();
        store.flush().await.unwrap();
        // Recorded after the flush, then a graceful shutdown: the final flush keeps it.
        store.record(&racf(
            "JSMITH",
            "spiffe://corp.example/legacy/racf/jsmith",
            "cics",
            at("2026-12-03", 1),
        ));
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let store: Arc<dyn StateStore> = Arc::new(store);
        let flusher = spawn_flusher(store.clone(), Duration::from_secs(3600), async move {
            let _ = rx.await;
        });
        tx.send(()).unwrap();
        flusher.await.unwrap();
    }

    let store = EmbeddedStore::open(&path).await.unwrap();
    assert!(store.is_revoked("spiffe://x", "racf", Some("BATCH01"), None));
    assert!(store.is_revoked("spiffe://x", "workload-jwt", None, Some("tok-1")));
    assert!(!store.is_revoked("spiffe://x", "racf", Some("JSMITH"), None));
    let revs = store.revocations().await.unwrap();
    assert_eq!(revs.len(), 2);
    assert_eq!(revs[0].reason, "left the company");
    let json = serde_json::to_value(&revs).unwrap();
    assert_eq!(
        json[0],
        serde_json::json!({"credential": "racf:BATCH01", "target": "credential:racf:BATCH01",
                           "reason": "left the company", "at": "2026-12-01T00:00:00Z"})
    );

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
    assert_eq!(count("2026-12-01", "racf"), 3);
    assert_eq!(count("2026-12-02", "racf"), 2);
    assert_eq!(
        count("2026-12-03", "racf"),
        1,
        "the final flush at shutdown"
    );
    assert_eq!(count("2026-12-01", "workload-mtls"), 1);
    assert!(usage
        .iter()
        .all(|r| r.plan.as_deref() == Some("payments-cics")));
    // `since` filters days (2026-11-30 excluded).
    assert_eq!(usage.iter().map(|r| r.count).sum::<u64>(), 3 + 2 + 1 + 2);

    let inv = store.inventory().await.unwrap();
    assert_eq!(inv.len(), 3);
    let j = inv
        .iter()
        .find(|e| e.principal.as_deref() == Some("JSMITH"))
        .unwrap();
    assert_eq!(j.count, 5);
    assert_eq!(j.kind, Kind::Ldap);
    assert_eq!(j.routes.iter().collect::<Vec<_>>(), ["cics", "cics-admin"]);
    assert_eq!(j.first_seen, Timestamp::of(at("2026-12-01", 100)));
    assert_eq!(j.last_seen, Timestamp::of(at("2026-12-03", 1)));
    let m = inv.iter().find(|e| e.kind == Kind::Mtls).unwrap();
    assert_eq!(m.principal, None);
    assert_eq!(m.count, 3);
    assert_eq!(m.first_seen, Timestamp::of(at("2026-11-30", 10)));
    assert_eq!(m.last_seen, Timestamp::of(at("2026-12-02", 10)));
    assert_eq!(
        m.cert_not_after,
        Some(Timestamp::of(at("2027-02-01", 0))),
        "the newest sighting's cert"
    );

    // Counts accumulate across restarts.
    store.record(&racf(
        "JSMITH",
        "spiffe://corp.example/legacy/racf/jsmith-v2",
        "cics",
        at("2026-12-04", 1),
    ));
    let inv = store.inventory().await.unwrap();
    let j = inv
        .iter()
        .find(|e| e.principal.as_deref() == Some("JSMITH"))
        .unwrap();
    assert_eq!(j.count, 6);
    assert_eq!(
        j.identity, "spiffe://corp.example/legacy/racf/jsmith-v2",
        "latest mapping"
    );
}

#[tokio::test]
async fn revoke_and_unrevoke_take_effect_at_once() {
    let store = EmbeddedStore::in_memory().await.unwrap();
    let id = "spiffe://corp.example/ns/payments/batch";
    assert!(!store.is_revoked(id, "workload-mtls", None, None));
    let t = Target::identity(id).unwrap();
    let rev = Revocation {
        target: t.clone(),
        reason: "decommissioned".into(),
        at: Timestamp(5),
    };
    assert!(store.revoke(rev.clone()).await.unwrap());
    assert!(store.is_revoked(id, "workload-mtls", None, None));
    assert!(store.is_revoked(id, "workload-jwt", None, Some("j")));
    // Revoking again only updates the reason.
    let again = Revocation {
        reason: "still decommissioned".into(),
        ..rev
    };
    assert!(!store.revoke(again).await.unwrap());
    let revs = store.revocations().await.unwrap();
    assert_eq!(
        (revs.len(), revs[0].reason.as_str()),
        (1, "still decommissioned")
    );
    assert!(store.unrevoke(&t).await.unwrap());
    assert!(!store.is_revoked(id, "workload-mtls", None, None));
    assert!(!store.unrevoke(&t).await.unwrap());
}

#[tokio::test]
async fn failed_flush_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    let store = EmbeddedStore::open(&path).await.unwrap();
    sample(&store);
    // Sabotage the database from outside so the flush fails.
    let side = rusqlite::Connection::open(&path).unwrap();
    side.execute_batch("ALTER TABLE usage RENAME TO usage_moved")
        .unwrap();
    assert!(store.flush().await.is_err());
    store.record(&racf(
        "JSMITH",
        "spiffe://corp.example/legacy/racf/jsmith",
        "cics",
        at("2026-12-01", 999),
    ));
    side.execute_batch("ALTER TABLE usage_moved RENAME TO usage")
        .unwrap();
    drop(side);
    store.flush().await.unwrap();
    assert_eq!(rows(&path, "usage"), 6);
    let usage = store
        .usage(Date::parse("2026-11-01").unwrap())
        .await
        .unwrap();
    assert_eq!(
        usage.iter().map(|r| r.count).sum::<u64>(),
        9,
        "8 before the failure + 1 after"
    );
    let inv = store.inventory().await.unwrap();
    assert_eq!(inv.iter().map(|e| e.count).sum::<u64>(), 9);
}

#[tokio::test]
async fn refuses_a_newer_schema_and_bad_rows() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    drop(EmbeddedStore::open(&path).await.unwrap());
    let side = rusqlite::Connection::open(&path).unwrap();
    side.execute_batch("INSERT INTO revocations VALUES ('bogus', 'r', 0)")
        .unwrap();
    let err = EmbeddedStore::open(&path).await.unwrap_err();
    assert!(err.to_string().contains("unreadable revocation"), "{err}");
    side.execute_batch("DELETE FROM revocations; PRAGMA user_version = 99")
        .unwrap();
    let err = EmbeddedStore::open(&path).await.unwrap_err();
    assert!(err.to_string().contains("newer"), "{err}");
    let err = EmbeddedStore::open(&dir.path().join("missing-dir/state.db"))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("missing-dir"), "{err}");
}

#[test]
fn targets_parse_strictly() {
    assert_eq!(
        Target::from_key("credential:racf:DOMAIN:user"),
        Some(Target::Credential {
            name: "racf".into(),
            principal: "DOMAIN:user".into()
        })
    );
    assert_eq!(
        Target::from_key("identity:spiffe://a/b").unwrap().key(),
        "identity:spiffe://a/b"
    );
    assert_eq!(Target::from_key("jti:abc"), Some(Target::Jti("abc".into())));
    assert!(Target::identity("not-a-spiffe-id").is_none());
    assert!(Target::credential("racf").is_none());
    assert!(Target::credential(":x").is_none());
    assert!(Target::credential("racf:").is_none());
    assert!(Target::jti("a\nb").is_none());
    // Strict SPIFFE IDs and no invisible characters: such targets could never match a caller.
    assert!(Target::identity("spiffe://a/b/").is_none());
    assert!(Target::identity("spiffe://a/\u{202e}b").is_none());
    assert!(Target::credential("racf:BATCH\u{200b}01").is_none());
    assert!(Target::jti("x\u{feff}").is_none());
    assert!(Target::from_key("group:x").is_none());
}

fn access<'a>(route: &'a str, id: &'a str, m: &'a str, p: &'a str, t: SystemTime) -> Access<'a> {
    Access::of(route, id, m, p, t).unwrap()
}

#[tokio::test]
async fn access_is_templated_aggregated_and_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    let api = "spiffe://corp.example/ns/payments/sa/api";
    let old = "spiffe://corp.example/ns/payments/sa/old";
    {
        let store = EmbeddedStore::open(&path).await.unwrap();
        store.record_access(&access(
            "cics",
            api,
            "GET",
            "/cics/pay/42/status",
            at("2026-12-02", 1),
        ));
        store.record_access(&access(
            "cics",
            api,
            "GET",
            "/cics/pay/43/status",
            at("2026-12-02", 9),
        ));
        store.record_access(&access(
            "cics",
            api,
            "POST",
            "/cics/pay",
            at("2026-12-02", 5),
        ));
        store.record_access(&access(
            "cics",
            old,
            "GET",
            "/cics/pay",
            at("2026-11-20", 5),
        ));
        store.record_access(&access("other", api, "GET", "/x", at("2026-12-02", 5)));
        assert_eq!(rows(&path, "access"), 0, "memory only until flushed");
        // Unflushed rows are included; `since` filters by last seen.
        let got = store
            .access("cics", Date::parse("2026-12-01").unwrap())
            .await
            .unwrap();
        let got: Vec<(&str, &str, &str, u64)> = got
            .iter()
            .map(|r| {
                (
                    r.identity.as_str(),
                    r.method.as_str(),
                    r.path.as_str(),
                    r.count,
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                (api, "GET", "/cics/pay/*/status", 2),
                (api, "POST", "/cics/pay", 1)
            ]
        );
        store.record_access(&access(
            "cics",
            api,
            "GET",
            "/cics/pay/44/status",
            at("2026-12-03", 1),
        ));
        store.flush().await.unwrap();
    }
    let store = EmbeddedStore::open(&path).await.unwrap();
    let all = store
        .access("cics", Date::parse("2026-11-01").unwrap())
        .await
        .unwrap();
    assert_eq!(all.len(), 3);
    let get = all
        .iter()
        .find(|r| r.method == "GET" && r.identity == api)
        .unwrap();
    assert_eq!(
        get.count, 3,
        "counts accumulate across flushes and restarts"
    );
    assert_eq!(get.first_seen, Timestamp::of(at("2026-12-02", 1)));
    assert_eq!(get.last_seen, Timestamp::of(at("2026-12-03", 1)));
    assert!(all.iter().all(|r| r.route == "cics"));
}

#[tokio::test]
async fn access_rows_are_capped_per_route_and_survive_a_failed_flush() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    let store = EmbeddedStore::open(&path).await.unwrap();
    let id = "spiffe://corp.example/walker";
    let t = at("2026-12-02", 0);
    let paths: Vec<String> = (0..MAX_ACCESS_ROWS_PER_ROUTE + 5)
        .map(|i| format!("/walk/x{i}"))
        .collect();
    // Many callers (each within its share) fill the route.
    let walkers: Vec<String> = (0..paths.len() / MAX_ACCESS_ROWS_PER_IDENTITY + 1)
        .map(|i| format!("{id}/{i}"))
        .collect();
    let walker = |i: usize| walkers[i / MAX_ACCESS_ROWS_PER_IDENTITY].as_str();
    for (i, p) in paths.iter().enumerate() {
        store.record_access(&access("walk", walker(i), "GET", p, t));
    }
    store.record_access(&access("calm", id, "GET", "/calm", t));
    // A failed flush puts everything back.
    let side = rusqlite::Connection::open(&path).unwrap();
    side.execute_batch("ALTER TABLE access RENAME TO access_moved")
        .unwrap();
    assert!(store.flush().await.is_err());
    side.execute_batch("ALTER TABLE access_moved RENAME TO access")
        .unwrap();
    drop(side);
    store.flush().await.unwrap();
    let cap = i64::try_from(MAX_ACCESS_ROWS_PER_ROUTE).unwrap();
    assert_eq!(rows(&path, "access"), cap + 1);
    // Next interval: new rows still refused on the full route, known rows still counted, other
    // routes unaffected.
    store.record_access(&access("walk", id, "GET", "/walk/new-one", t));
    store.record_access(&access("walk", walker(0), "GET", &paths[0], t));
    store.record_access(&access("calm", id, "POST", "/calm", t));
    store.flush().await.unwrap();
    assert_eq!(rows(&path, "access"), cap + 2);
    let walk = store
        .access("walk", Date::parse("2026-12-01").unwrap())
        .await
        .unwrap();
    assert_eq!(walk.len(), MAX_ACCESS_ROWS_PER_ROUTE);
    assert!(!walk.iter().any(|r| r.path == "/walk/new-one"));
    assert_eq!(walk.iter().map(|r| r.count).max(), Some(2));
}

/// One caller gets at most its share of a route's rows, in memory and in the file, across
/// flushes; the other callers keep theirs.
#[tokio::test]
async fn access_rows_are_capped_per_identity() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    let store = EmbeddedStore::open(&path).await.unwrap();
    let (walker, calm) = ("spiffe://corp.example/walker", "spiffe://corp.example/calm");
    let t = at("2026-12-02", 0);
    let cap = MAX_ACCESS_ROWS_PER_IDENTITY;
    // Over two flush intervals: the file's count is what limits the second.
    for i in 0..cap / 2 {
        store.record_access(&access("r", walker, "GET", &format!("/r/a{i}x"), t));
    }
    store.flush().await.unwrap();
    store.record_access(&access("r", walker, "GET", "/r/a0x", t));
    for i in 0..cap {
        store.record_access(&access("r", walker, "GET", &format!("/r/b{i}x"), t));
    }
    store.record_access(&access("r", calm, "GET", "/r/calm", t));
    store.record_access(&access("other", walker, "GET", "/other", t));
    store.flush().await.unwrap();
    let rows = store
        .access("r", Date::parse("2026-12-01").unwrap())
        .await
        .unwrap();
    let mine: Vec<_> = rows.iter().filter(|r| r.identity == walker).collect();
    assert_eq!(mine.len(), cap);
    assert_eq!(
        mine.iter().find(|r| r.path == "/r/a0x").map(|r| r.count),
        Some(2),
        "known rows still count"
    );
    assert!(rows.iter().any(|r| r.identity == calm));
    let other = store
        .access("other", Date::parse("2026-12-01").unwrap())
        .await
        .unwrap();
    assert_eq!(other.len(), 1, "the share is per route");
}

/// A literal `*` segment is not recorded: stored templates use `*` for any one segment.
#[test]
fn literal_star_segments_are_not_recorded() {
    let t = at("2026-12-02", 0);
    for p in ["/partners/*", "/partners/*/x", "/*"] {
        assert!(
            Access::of("r", "spiffe://x/y", "DELETE", p, t).is_none(),
            "{p}"
        );
    }
    for (p, stored) in [
        ("/partners/a*b", "/partners/a*b"),
        ("/partners/%2A", "/partners/%2A"),
        ("/partners/12345", "/partners/*"),
    ] {
        let a = Access::of("r", "spiffe://x/y", "DELETE", p, t).unwrap();
        assert_eq!(a.path, stored);
    }
}

#[tokio::test]
async fn password_verifiers_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    {
        let store = EmbeddedStore::open(&path).await.unwrap();
        assert_eq!(store.password_verifier("c:uid=a").await.unwrap(), None);
        store
            .set_password_verifier("c:uid=a", Some("v1"))
            .await
            .unwrap();
        store
            .set_password_verifier("c:uid=a", Some("v2"))
            .await
            .unwrap();
        store
            .set_password_verifier("c:uid=b", Some("vb"))
            .await
            .unwrap();
    }
    let store = EmbeddedStore::open(&path).await.unwrap();
    assert_eq!(
        store.password_verifier("c:uid=a").await.unwrap().as_deref(),
        Some("v2")
    );
    store.set_password_verifier("c:uid=a", None).await.unwrap();
    assert_eq!(store.password_verifier("c:uid=a").await.unwrap(), None);
    assert_eq!(
        store.password_verifier("c:uid=b").await.unwrap().as_deref(),
        Some("vb")
    );
}

/// `n` requests of JSMITH, each from its own address, on `day`, plus one more from the first.
pub(super) fn from_many_sources(store: &dyn StateStore, day: &str, n: u8) {
    let jsmith = "spiffe://corp.example/legacy/racf/jsmith";
    let mut sources: Vec<Source> = (0..n)
        .map(|i| Source::of([10, 0, 1, i].into(), Some(b"batch/1.0")))
        .collect();
    sources.push(sources[0].clone());
    for (i, s) in sources.iter().enumerate() {
        let mut u = racf("JSMITH", jsmith, "cics", at(day, 100 + i as u64));
        u.source = Some(s);
        store.record(&u);
    }
}

/// The rows' sources and the overflow row's count, checking every count adds up to `total`.
pub(super) fn source_summary(rows: &[SourceRow], total: u64) -> (usize, u64) {
    assert_eq!(rows.iter().map(|r| r.count).sum::<u64>(), total, "{rows:?}");
    let listed = rows.iter().filter(|r| r.source.is_some()).count();
    let overflow = rows
        .iter()
        .filter(|r| r.source.is_none())
        .map(|r| r.count)
        .sum();
    (listed, overflow)
}

#[tokio::test]
async fn sources_are_capped_per_principal_and_day_and_counts_stay_exact() {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(&dir.path().join("s.db")).await.unwrap();
    // 20 sources, flushed; 20 more: 32 kept, the other 8 counted in one overflow row.
    from_many_sources(&store, "2026-12-01", 20);
    store.flush().await.unwrap();
    let jsmith = "spiffe://corp.example/legacy/racf/jsmith";
    for i in 20..40u8 {
        let s = Source::of([10, 0, 1, i].into(), Some(b"batch/1.0"));
        let mut u = racf("JSMITH", jsmith, "cics", at("2026-12-01", 500));
        u.source = Some(&s);
        store.record(&u);
    }
    let rows = store
        .sources(Date::parse("2026-12-01").unwrap())
        .await
        .unwrap();
    assert_eq!(source_summary(&rows, 41), (sources::MAX_SOURCES, 8));
    // A known source still counts as itself once the cap is reached.
    let first = Source::of([10, 0, 1, 0].into(), Some(b"batch/1.0"));
    let mut u = racf("JSMITH", jsmith, "cics", at("2026-12-01", 900));
    u.source = Some(&first);
    store.record(&u);
    let rows = store
        .sources(Date::parse("2026-12-01").unwrap())
        .await
        .unwrap();
    let mine = rows
        .iter()
        .find(|r| r.source.as_ref() == Some(&first))
        .unwrap();
    assert_eq!(
        (mine.count, mine.last_seen),
        (3, Timestamp::of(at("2026-12-01", 900)))
    );
    // Another day is its own set; `since` leaves out earlier days.
    from_many_sources(&store, "2026-12-02", 2);
    let rows = store
        .sources(Date::parse("2026-12-02").unwrap())
        .await
        .unwrap();
    assert_eq!(source_summary(&rows, 3), (2, 0));
    // The file keeps them across a restart.
    drop(store);
    let store = EmbeddedStore::open(&dir.path().join("s.db")).await.unwrap();
    let rows = store
        .sources(Date::parse("2026-12-01").unwrap())
        .await
        .unwrap();
    assert_eq!(rows.len(), sources::MAX_SOURCES + 1 + 2);
}

#[test]
fn user_agents_are_cleaned_and_bounded() {
    let s = Source::of(
        "::ffff:10.0.0.1".parse().unwrap(),
        Some("a\tb\u{202e}c\u{200b}".as_bytes()),
    );
    assert_eq!(
        s.ip, "10.0.0.1",
        "an IPv4-mapped address is the IPv4 address"
    );
    assert_eq!(s.user_agent, "a?b?c?");
    let long = "x".repeat(1000);
    assert_eq!(
        Source::of([10, 0, 0, 1].into(), Some(long.as_bytes()))
            .user_agent
            .len(),
        sources::MAX_AGENT_CHARS
    );
    assert_eq!(
        Source::of([10, 0, 0, 1].into(), Some(b"\xff\xfe")).user_agent,
        "\u{fffd}\u{fffd}"
    );
    assert_eq!(Source::of([10, 0, 0, 1].into(), None).user_agent, "");
}
