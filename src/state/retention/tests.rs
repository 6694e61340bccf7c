use std::time::{Duration, SystemTime};

use super::*;
use crate::state::tests::racf;
use crate::state::{Access, EmbeddedStore, StateStore};

#[test]
fn a_sweep_is_due_once_an_hour() {
    let r = Retention::new(Duration::from_secs(3 * 86_400));
    let t = SystemTime::UNIX_EPOCH + Duration::from_secs(100 * 86_400);
    let cut = r.due(t).unwrap();
    assert_eq!(cut.day, Date::of(t).plus(-3));
    assert_eq!(cut.seen.0, Timestamp::of(t).0 - 3 * 86_400);
    assert!(r.due(t + Duration::from_secs(60)).is_none());
    assert!(r.due(t + SWEEP_EVERY).is_some());
    // Less than a day still keeps today.
    assert_eq!(Retention::new(Duration::from_secs(60)).days(), 1);
}

#[tokio::test]
async fn embedded_retention_drops_old_usage_and_access_rows() {
    let s = EmbeddedStore::in_memory()
        .await
        .unwrap()
        .with_retention(Duration::from_secs(86_400));
    let now = SystemTime::now();
    let old = now - Duration::from_secs(10 * 86_400);
    let id = "spiffe://corp.example/legacy/racf/jsmith";
    s.record(&racf("JSMITH", id, "cics", old));
    s.record(&racf("JSMITH", id, "cics", now));
    s.record_access(&Access::of("cics", id, "GET", "/cics/old", old).unwrap());
    s.record_access(&Access::of("cics", id, "GET", "/cics/new", now).unwrap());
    // The periodic flush writes, then sweeps (the first sweep is due at once).
    s.flush().await.unwrap();
    let since = Date::of(old).plus(-1);
    let usage = s.usage(since).await.unwrap();
    assert_eq!(usage.len(), 1, "{usage:?}");
    assert_eq!(usage[0].day, Date::of(now));
    let access = s.access("cics", since).await.unwrap();
    let paths: Vec<&str> = access.iter().map(|a| a.path.as_str()).collect();
    assert_eq!(paths, ["/cics/new"]);
    // The inventory is not traffic: the principal is still known.
    assert_eq!(s.inventory().await.unwrap().len(), 1);
}
