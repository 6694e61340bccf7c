//! The failed-authentication throttle shared across replicas (`[listen] max_auth_failures` with
//! `[state] backend = "redis"`), so a password spray spread over the replicas is caught as one.
//!
//! Each replica keeps its own per-source table exactly as without Redis (it still throttles a
//! source on its own count, and is all there is while Redis is unreachable). In addition, every
//! failure is reported to a shared bucket per source in Redis (`authfail:<source>`, the same
//! atomic lease script as cluster rate limits: a failure takes one token). Reports are batched:
//! the background task sends every source's failures since the last call in one script call, at
//! most once per [`super::cluster::TICK`]. When the shared bucket has no token left, the replica
//! remembers how long until it has one and refuses that source until then, like a local refusal.
//!
//! **Accuracy:** every failure reaching a replica is counted once in the shared bucket (none is
//! lost while Redis answers). A replica learns that the budget is spent at its next report after
//! its own next failure from that source, so beyond the shared budget a spray gets at most one
//! tick's worth of attempts per replica (a handful), never another full budget per replica.
//!
//! **Redis unreachable:** failures that could not be reported are dropped from the shared count
//! (the local tables counted them); each replica throttles on its own count, as a gateway without
//! Redis does. This fails *open to the per-replica limit*, not to "no limit": refusing every
//! caller because the throttle's store is down would be the denial of service the throttle is
//! meant to prevent.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;

use super::cluster::{Ask, LeaseFn, CALL_TIMEOUT, TICK};
use super::gcra::Quota;

/// The quota of `burst` failures refilling at `rate` (for callers outside `limits`).
pub(crate) fn quota(rate: super::Rate, burst: u32) -> Quota {
    Quota::new(rate, burst)
}

/// Failures of one kind of key (a source address, an LDAP account) counted across replicas:
/// the shared half of a [`super::SourceLimiter`] and of the LDAP lockout table.
pub struct SharedFailures<K> {
    lease: LeaseFn,
    /// Bucket name prefix (`authfail:`, `ldapfail:<credential>:`).
    prefix: String,
    quota: Quota,
    max_keys: usize,
    /// Failures not reported yet, per source key.
    pending: Mutex<HashMap<K, u64>>,
    /// Sources whose shared budget is spent, until when (ns on the limiter's clock).
    blocked: Mutex<HashMap<K, u64>>,
    wake: tokio::sync::Notify,
}

impl<K> std::fmt::Debug for SharedFailures<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedFailures").finish_non_exhaustive()
    }
}

impl<K> SharedFailures<K>
where
    K: std::hash::Hash + Eq + Clone + std::fmt::Display + Send + Sync + 'static,
{
    /// Start reporting (needs a Tokio runtime); the task ends with the limiter. `quota`: the
    /// shared budget of failures per key; `prefix` names its buckets.
    pub(crate) fn start(
        prefix: &str,
        lease: LeaseFn,
        quota: Quota,
        max_keys: usize,
        clock: Arc<dyn crate::clock::Clock>,
    ) -> Result<Arc<SharedFailures<K>>, String> {
        let handle = tokio::runtime::Handle::try_current()
            .map_err(|_| "the shared failure throttle needs the gateway's runtime".to_string())?;
        let me = Arc::new(SharedFailures {
            prefix: prefix.to_string(),
            lease,
            quota,
            max_keys: max_keys.max(1),
            pending: Mutex::new(HashMap::new()),
            blocked: Mutex::new(HashMap::new()),
            wake: tokio::sync::Notify::new(),
        });
        handle.spawn(run(Arc::downgrade(&me), clock));
        Ok(me)
    }

    /// When `key`'s shared budget has a token again, if it is spent now.
    pub(crate) fn blocked(&self, key: &K, now: u64) -> Option<u64> {
        let blocked = self.blocked.lock().unwrap_or_else(PoisonError::into_inner);
        blocked
            .get(key)
            .filter(|until| **until > now)
            .map(|until| until - now)
    }

    /// Queue one failure of `key` for the next report.
    pub(crate) fn note(&self, key: K) {
        let mut pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
        if pending.len() >= self.max_keys && !pending.contains_key(&key) {
            return;
        }
        *pending.entry(key).or_insert(0) += 1;
        drop(pending);
        self.wake.notify_one();
    }

    /// Forget sources no longer blocked.
    pub(crate) fn sweep(&self, now: u64) {
        self.blocked
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|_, until| *until > now);
    }

    async fn report(&self, now: impl Fn() -> u64) {
        let batch: Vec<(K, u64)> =
            std::mem::take(&mut *self.pending.lock().unwrap_or_else(PoisonError::into_inner))
                .into_iter()
                .collect();
        if batch.is_empty() {
            return;
        }
        let asks = batch
            .iter()
            .map(|(ip, n)| Ask {
                bucket: format!("{}{ip}", self.prefix),
                interval_us: (self.quota.interval() / 1000).max(1),
                burst: self.quota.burst(),
                want: *n,
            })
            .collect();
        let grants = match tokio::time::timeout(CALL_TIMEOUT, (self.lease)(asks)).await {
            Ok(Ok(g)) if g.len() == batch.len() => g,
            Ok(Ok(_)) => return,
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "shared failure throttle: redis unreachable, local counts only");
                return;
            }
            Err(_) => return,
        };
        let at = now();
        let mut blocked = self.blocked.lock().unwrap_or_else(PoisonError::into_inner);
        for ((ip, _), g) in batch.iter().zip(grants) {
            if g.remaining == 0 {
                if blocked.len() < self.max_keys || blocked.contains_key(ip) {
                    blocked.insert(
                        ip.clone(),
                        at.saturating_add(g.wait_us.saturating_mul(1000)),
                    );
                }
            } else {
                blocked.remove(ip);
            }
        }
    }
}

async fn run<K>(me: Weak<SharedFailures<K>>, clock: Arc<dyn crate::clock::Clock>)
where
    K: std::hash::Hash + Eq + Clone + std::fmt::Display + Send + Sync + 'static,
{
    loop {
        let wait = {
            let Some(s) = me.upgrade() else { return };
            async move {
                let _ = tokio::time::timeout(Duration::from_secs(1), s.wake.notified()).await;
            }
        };
        wait.await;
        let Some(s) = me.upgrade() else { return };
        let started = tokio::time::Instant::now();
        s.report(|| super::nanos(clock.as_ref())).await;
        drop(s);
        tokio::time::sleep_until(started + TICK).await;
    }
}
