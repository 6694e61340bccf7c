use std::time::{Duration, UNIX_EPOCH};

use super::*;

fn at(s: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(s)
}

#[test]
fn remembers_until_expiry() {
    let g = MemoryReplayGuard::new(10);
    assert!(g.record("a", at(100), at(400)).unwrap());
    assert!(!g.record("a", at(200), at(500)).unwrap());
    assert!(!g.record("a", at(399), at(500)).unwrap());
    // Expired at 400: a new message with the same key may be recorded again.
    assert!(g.record("a", at(400), at(700)).unwrap());
    assert_eq!(g.len(), 1);
}

#[test]
fn past_until_is_not_stored() {
    let g = MemoryReplayGuard::new(10);
    assert!(g.record("a", at(100), at(100)).unwrap());
    assert!(g.is_empty());
}

#[test]
fn bounded_evicts_oldest_expiry() {
    let g = MemoryReplayGuard::new(2);
    assert!(g.record("late", at(0), at(900)).unwrap());
    assert!(g.record("soon", at(0), at(100)).unwrap());
    assert!(g.record("new", at(0), at(500)).unwrap());
    assert_eq!(g.len(), 2);
    // "soon" went first; the others are still remembered.
    assert!(!g.record("late", at(1), at(900)).unwrap());
    assert!(!g.record("new", at(1), at(500)).unwrap());
    assert!(g.record("soon", at(1), at(100)).unwrap());
}

#[tokio::test]
async fn trait_object() {
    let g: Arc<dyn ReplayGuard> = Arc::new(MemoryReplayGuard::new(4));
    assert!(g.first_seen("k", at(0), at(10)).await.unwrap());
    assert!(!g.first_seen("k", at(1), at(10)).await.unwrap());
}
