//! Replay protection: a verified delivery is remembered until it could no longer pass the
//! timestamp check, so the same signed message is accepted once. The store is behind a trait so
//! that replicas can share one (redis); when it cannot answer, the caller fails closed (503).

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use futures_util::future::{self, BoxFuture};

pub use crate::state::replay::{ReplayGuard, StoreError};

/// An in-process, bounded [`ReplayGuard`] (`[state] backend = "embedded"`, one replica).
///
/// Entries expire at their `until`. When full, the entries closest to expiry are evicted first
/// (each eviction re-opens a replay window for that message, so it is logged): size it for the
/// expected deliveries per tolerance window.
#[derive(Debug)]
pub struct MemoryReplayGuard {
    inner: Mutex<Inner>,
    capacity: usize,
}

#[derive(Debug, Default)]
struct Inner {
    by_key: HashMap<Arc<str>, SystemTime>,
    by_expiry: BTreeSet<(SystemTime, Arc<str>)>,
}

impl Inner {
    fn remove_first(&mut self) {
        if let Some((_, key)) = self.by_expiry.pop_first() {
            self.by_key.remove(&key);
        }
    }
}

impl MemoryReplayGuard {
    /// A guard remembering at most `capacity` messages (at least one).
    pub fn new(capacity: usize) -> Self {
        MemoryReplayGuard {
            inner: Mutex::new(Inner::default()),
            capacity: capacity.max(1),
        }
    }

    /// Messages currently remembered.
    pub fn len(&self) -> usize {
        self.inner.lock().map_or(0, |g| g.by_key.len())
    }

    /// Whether nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn record(&self, key: &str, now: SystemTime, until: SystemTime) -> Result<bool, StoreError> {
        let mut g = self
            .inner
            .lock()
            .map_err(|_| StoreError("replay memory lock poisoned".into()))?;
        while g.by_expiry.first().is_some_and(|(exp, _)| *exp <= now) {
            g.remove_first();
        }
        if g.by_key.contains_key(key) {
            return Ok(false);
        }
        if until <= now {
            return Ok(true);
        }
        let mut evicted = 0_usize;
        while g.by_key.len() >= self.capacity {
            g.remove_first();
            evicted += 1;
        }
        if evicted > 0 {
            tracing::warn!(
                replay.capacity = self.capacity,
                replay.evicted = evicted,
                "webhook replay memory is full: evicted entries before they expired"
            );
        }
        let key: Arc<str> = Arc::from(key);
        g.by_key.insert(key.clone(), until);
        g.by_expiry.insert((until, key));
        Ok(true)
    }
}

impl ReplayGuard for MemoryReplayGuard {
    fn first_seen<'a>(
        &'a self,
        key: &'a str,
        now: SystemTime,
        until: SystemTime,
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        Box::pin(future::ready(self.record(key, now, until)))
    }
}

#[cfg(test)]
mod tests {
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
}
