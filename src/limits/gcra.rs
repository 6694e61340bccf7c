//! GCRA (the generic cell rate algorithm, as in ATM and `governor`) over our own [`Clock`],
//! keyed by any hashable value, with bounded memory.
//!
//! Why not `governor`: its clocks are monotonic `Instant`-like references, ours is a wall clock
//! that tests move by hand and that production can step backwards (NTP). Bridging needs an
//! adapter type plus a policy for backward steps anyway, its keyed store (DashMap) has no cap on
//! the number of keys, and its refusal does not tell us the remaining quota the `RateLimit`
//! header needs. GCRA itself is one comparison on one `u64` per key, so owning it is less code
//! than adapting it.
//!
//! State per key is the "theoretical arrival time" (TAT) in nanoseconds since the Unix epoch. A
//! request at `now` is allowed when `max(TAT, now) + T - now <= burst * T` (T = emission
//! interval), and then TAT advances by T. A key whose TAT is not after `now` holds exactly the
//! state of a key never seen, so dropping it loses nothing: that is the sweep.
//!
//! A key is hashed once per check (keyed SipHash, `RandomState`: identities and addresses are
//! the callers'): the hash picks the shard and is the shard map's key (`prehash`), and the
//! keys with that hash (almost always one) are compared in full, so a collision shares no
//! bucket. Hashing for the shard and again for its map cost a fifth of a limited request's
//! rate check (issue 22). The hash is of the key's bytes alone, in one SipHash `write`
//! ([`KeyBytes`]): a `Hash` impl adds a terminator or length and is gathered first.
//!
//! Each thread remembers the last key it hashed, the table it hashed it for and the hash
//! (`LAST`): a data-plane worker serving one caller's keep-alive requests hashes that caller's
//! key once. The hash is a function of the table's secret key and the key's bytes alone, so a
//! remembered one is taken only for the same table (a number no other table ever gets) and the
//! same bytes, compared in full: it is the value hashing would give, never another key's.
//!
//! [`Clock`]: crate::clock::Clock

use std::cell::RefCell;
use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hash, Hasher};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

use super::rate::Rate;
use crate::prehash::PreHashedMap;

/// How often (at most) a full shard is swept on the request path.
const SWEEP_EVERY_NS: u64 = 100_000_000;
/// Shards: enough that 2–16 cores rarely meet on one lock, few enough that a sweep of all is cheap.
const SHARDS: usize = 16;

/// Keys longer than this are hashed every time rather than remembered (`LAST` keeps the longest
/// key its thread remembered).
const REMEMBER_MAX: usize = 256;

/// Tables made so far: each table's number, never given to another, so that a thread's
/// remembered hash is never taken for another table (whose secret key differs), even one made
/// where a dropped table was (a reload).
static TABLES: AtomicU64 = AtomicU64::new(0);

thread_local! {
    /// This thread's last hashed key: (table number, key bytes, hash).
    static LAST: RefCell<(u64, Vec<u8>, u64)> = const { RefCell::new((u64::MAX, Vec::new(), 0)) };
}

/// One limit: interval and burst, in nanoseconds.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Quota {
    /// T: nanoseconds per request at the sustained rate.
    interval: u64,
    /// tau: burst * T, the most a TAT may run ahead of now.
    tolerance: u64,
}

/// The outcome of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Decision {
    /// Allowed; `remaining` more could pass right now, the quota is whole again in `reset_ns`.
    Allowed { remaining: u64, reset_ns: u64 },
    /// Refused; the next request passes in `retry_ns`, the quota is whole again in `reset_ns`.
    Refused { retry_ns: u64, reset_ns: u64 },
}

impl Quota {
    /// `burst` requests at once, refilled at `rate`. `burst` 0 is treated as 1.
    pub(crate) fn new(rate: Rate, burst: u32) -> Quota {
        let interval = rate.interval_nanos();
        Quota {
            interval,
            tolerance: interval.saturating_mul(u64::from(burst.max(1))),
        }
    }

    /// Nanoseconds between two tokens at the sustained rate.
    pub(crate) fn interval(&self) -> u64 {
        self.interval
    }

    /// Burst size.
    pub(crate) fn burst(&self) -> u64 {
        self.tolerance / self.interval
    }

    /// Seconds to refill a whole burst (the `w` of `RateLimit-Policy`), at least 1.
    pub(crate) fn window_secs(&self) -> u64 {
        ceil_secs(self.tolerance).max(1)
    }

    /// Check and, if allowed, charge one request against `tat`.
    pub(crate) fn check(&self, tat: &mut u64, now: u64) -> Decision {
        // The clamp keeps a backward clock step from punishing a key for longer than one full
        // burst: under a monotonic clock TAT never exceeds now + tau anyway.
        let start = (*tat).max(now).min(now.saturating_add(self.tolerance));
        let next = start.saturating_add(self.interval);
        let ahead = next - now;
        if ahead > self.tolerance {
            // Keep the clamp (a no-op under a monotonic clock) so the key recovers after a step.
            *tat = start;
            Decision::Refused {
                retry_ns: ahead - self.tolerance,
                reset_ns: start - now,
            }
        } else {
            *tat = next;
            Decision::Allowed {
                remaining: (self.tolerance - ahead) / self.interval,
                reset_ns: ahead,
            }
        }
    }

    /// Would a charge be allowed now? Does not charge.
    pub(crate) fn peek(&self, tat: u64, now: u64) -> Decision {
        let mut copy = tat;
        self.check(&mut copy, now)
    }

    /// Give back one charge (a later limit refused the request).
    pub(crate) fn refund(&self, tat: &mut u64) {
        *tat = tat.saturating_sub(self.interval);
    }
}

/// Nanoseconds to whole seconds, rounded up.
pub(crate) fn ceil_secs(ns: u64) -> u64 {
    ns.div_ceil(1_000_000_000)
}

/// What a full table does with a key it has no room for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Overflow {
    /// All such keys share one bucket with the same quota: bounded memory, still limited, and
    /// keys already tracked are unaffected.
    Shared,
    /// Such keys are not tracked: a check peeks as allowed and a charge is dropped.
    Untracked,
}

/// GCRA state for many keys, in shards, at most `max_keys` in all (at least one per shard).
#[derive(Debug)]
pub(crate) struct KeyedGcra<K> {
    quota: Quota,
    hasher: RandomState,
    /// This table's number (`TABLES`).
    id: u64,
    shards: [Mutex<Shard<K>>; SHARDS],
    per_shard: usize,
    overflow: Overflow,
    shared: Mutex<u64>,
    /// Keys tracked in all shards: a peek at an empty table (no failing source, the usual case
    /// of the per-source limiter) needs no hash and no lock.
    tracked: AtomicUsize,
}

/// The keys with one hash and their TATs: one entry unless two keys' 64-bit hashes collide.
type Bucket<K> = smallvec::SmallVec<[(K, u64); 1]>;

#[derive(Debug)]
struct Shard<K> {
    /// Keyed hash of the key → its bucket.
    map: PreHashedMap<Bucket<K>>,
    /// Keys in `map` (not buckets).
    len: usize,
    last_sweep: u64,
}

impl<K: Hash + Eq> KeyedGcra<K> {
    pub(crate) fn new(quota: Quota, max_keys: usize, overflow: Overflow) -> Self {
        let shards = std::array::from_fn(|_| {
            Mutex::new(Shard {
                map: PreHashedMap::default(),
                len: 0,
                last_sweep: 0,
            })
        });
        KeyedGcra {
            quota,
            hasher: RandomState::new(),
            id: TABLES.fetch_add(1, Ordering::Relaxed),
            shards,
            per_shard: (max_keys / SHARDS).max(1),
            overflow,
            shared: Mutex::new(0),
            tracked: AtomicUsize::new(0),
        }
    }

    /// The keyed hash of a key's bytes `b`: this thread's remembered one when it hashed the
    /// same bytes for this table last (see the module's comment).
    fn hash(&self, b: &[u8]) -> u64 {
        let hashed = || {
            let mut h = self.hasher.build_hasher();
            h.write(b);
            h.finish()
        };
        LAST.try_with(|last| {
            let Ok(mut last) = last.try_borrow_mut() else {
                return hashed();
            };
            let (table, bytes, h) = &mut *last;
            if *table == self.id && bytes.as_slice() == b {
                return *h;
            }
            let fresh = hashed();
            if b.len() <= REMEMBER_MAX {
                bytes.clear();
                bytes.extend_from_slice(b);
                (*table, *h) = (self.id, fresh);
            }
            fresh
        })
        .unwrap_or_else(|_| hashed())
    }

    /// The key's hash and its shard, locked.
    fn shard<Q: KeyBytes + ?Sized>(&self, key: &Q) -> (u64, MutexGuard<'_, Shard<K>>) {
        let h = key.with_bytes(|b| self.hash(b));
        // The high half picks the shard: the map indexes by the low bits, which must still
        // differ between the keys of one shard. Always in range; the fallback satisfies the lint.
        let i = usize::try_from((h >> 32) % SHARDS as u64).unwrap_or(0);
        let [first, ..] = &self.shards;
        let shard = self
            .shards
            .get(i)
            .unwrap_or(first)
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        (h, shard)
    }

    /// Check and charge one request for `key`.
    pub(crate) fn check<Q>(&self, key: &Q, now: u64) -> Decision
    where
        K: std::borrow::Borrow<Q>,
        Q: KeyBytes + Eq + ?Sized + ToKey<K>,
    {
        let (h, mut shard) = self.shard(key);
        if let Some(tat) = shard.tat(h, key) {
            return self.quota.check(tat, now);
        }
        if shard.len >= self.per_shard {
            let swept = shard.sweep(now, false);
            self.tracked.fetch_sub(swept, Ordering::Relaxed);
        }
        if shard.len < self.per_shard {
            let mut tat = 0;
            let d = self.quota.check(&mut tat, now);
            shard.map.entry(h).or_default().push((key.to_key(), tat));
            shard.len += 1;
            self.tracked.fetch_add(1, Ordering::Relaxed);
            return d;
        }
        drop(shard);
        match self.overflow {
            Overflow::Shared => {
                let mut tat = self.shared.lock().unwrap_or_else(PoisonError::into_inner);
                self.quota.check(&mut tat, now)
            }
            Overflow::Untracked => self.quota.peek(0, now),
        }
    }

    /// Would a charge for `key` pass now? Never inserts.
    pub(crate) fn peek<Q>(&self, key: &Q, now: u64) -> Decision
    where
        K: std::borrow::Borrow<Q>,
        Q: KeyBytes + Eq + ?Sized,
    {
        if self.tracked.load(Ordering::Relaxed) == 0 {
            return self.quota.peek(0, now);
        }
        let (h, mut shard) = self.shard(key);
        let tat = shard.tat(h, key).map_or(0, |t| *t);
        self.quota.peek(tat, now)
    }

    /// Undo one charge for `key` (only if it is tracked).
    pub(crate) fn refund<Q>(&self, key: &Q)
    where
        K: std::borrow::Borrow<Q>,
        Q: KeyBytes + Eq + ?Sized,
    {
        let (h, mut shard) = self.shard(key);
        if let Some(tat) = shard.tat(h, key) {
            self.quota.refund(tat);
        }
    }

    /// Drop every idle key (lossless, see the module docs) and give memory back.
    pub(crate) fn sweep(&self, now: u64) {
        for m in self.shards.iter() {
            let swept = m
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .sweep(now, true);
            self.tracked.fetch_sub(swept, Ordering::Relaxed);
        }
    }

    /// Keys tracked now.
    pub(crate) fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|m| m.lock().unwrap_or_else(PoisonError::into_inner).len)
            .sum()
    }
}

impl<K: Hash + Eq> Shard<K> {
    /// The TAT of `key`, whose hash is `h`, if it is tracked.
    fn tat<Q>(&mut self, h: u64, key: &Q) -> Option<&mut u64>
    where
        K: std::borrow::Borrow<Q>,
        Q: Eq + ?Sized,
    {
        self.map
            .get_mut(&h)?
            .iter_mut()
            .find(|(k, _)| k.borrow() == key)
            .map(|(_, tat)| tat)
    }

    /// Drop idle keys; returns how many. On the request path (`force` false) at most every
    /// `SWEEP_EVERY_NS`, so a shard full of busy keys does not cost a scan per new key.
    fn sweep(&mut self, now: u64, force: bool) -> usize {
        if !force && now.saturating_sub(self.last_sweep) < SWEEP_EVERY_NS {
            return 0;
        }
        self.last_sweep = now;
        let before = self.len;
        let mut len = 0;
        self.map.retain(|_, bucket| {
            bucket.retain(|(_, tat)| *tat > now);
            len += bucket.len();
            !bucket.is_empty()
        });
        self.len = len;
        if self.map.capacity() > 64 && self.map.len() < self.map.capacity() / 4 {
            self.map.shrink_to_fit();
        }
        before.saturating_sub(len)
    }
}

/// The bytes of a key, as its table hashes them: a table holds keys of one type, compared in
/// full, so the bytes need no length or terminator to keep two keys apart.
pub(crate) trait KeyBytes {
    fn with_bytes<R>(&self, f: impl FnOnce(&[u8]) -> R) -> R;
}

impl KeyBytes for str {
    fn with_bytes<R>(&self, f: impl FnOnce(&[u8]) -> R) -> R {
        f(self.as_bytes())
    }
}

impl KeyBytes for std::net::IpAddr {
    fn with_bytes<R>(&self, f: impl FnOnce(&[u8]) -> R) -> R {
        match self {
            std::net::IpAddr::V4(a) => f(&a.octets()),
            std::net::IpAddr::V6(a) => f(&a.octets()),
        }
    }
}

/// Owned key from a borrowed one, allocated only when a new key is inserted.
pub(crate) trait ToKey<K> {
    fn to_key(&self) -> K;
}

impl ToKey<Box<str>> for str {
    fn to_key(&self) -> Box<str> {
        self.into()
    }
}

impl ToKey<std::net::IpAddr> for std::net::IpAddr {
    fn to_key(&self) -> std::net::IpAddr {
        *self
    }
}

#[cfg(test)]
mod tests;
