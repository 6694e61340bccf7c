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
mod tests;
