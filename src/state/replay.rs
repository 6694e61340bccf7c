//! The replay store's contract: webhook authentication asks it whether a verified delivery is new
//! (`crate::authn::webhook::replay`). It lives with the state stores because a shared backend
//! ([`super::RedisStore`]) is one; the in-process one is `MemoryReplayGuard` in authn.

use std::time::SystemTime;

use futures_util::future::BoxFuture;

/// The replay store could not answer; the request must be refused with 503, not let through.
#[derive(Debug, Clone, thiserror::Error)]
#[error("replay store unavailable: {0}")]
pub struct StoreError(pub String);

/// Remembers which signed messages were already accepted.
pub trait ReplayGuard: Send + Sync + std::fmt::Debug {
    /// Record `key` until `until`. `Ok(true)` when it was not already recorded (first delivery),
    /// `Ok(false)` when it was (a replay). `now` is the caller's clock, for stores that expire
    /// entries themselves; a shared store may use its own (`SET key NX PXAT until`).
    fn first_seen<'a>(
        &'a self,
        key: &'a str,
        now: SystemTime,
        until: SystemTime,
    ) -> BoxFuture<'a, Result<bool, StoreError>>;
}
