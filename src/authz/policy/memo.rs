//! Small bounded caches for the parts of a Cedar request that are costly to build and repeat from
//! request to request: the `ip("…")` value of a source address (building it parses the function
//! name with Cedar's parser, about 5 µs) and the `Workload` entity of a caller (about 3 µs).
//!
//! Keys come from callers (addresses, identities), so each cache is bounded: when full it is
//! emptied and refilled by the traffic that follows, which keeps the steady state (a few thousand
//! active callers) fast without any way to grow memory.

use std::hash::{Hash, RandomState};
use std::sync::RwLock;

use crate::prehash::PreHashedMap;

/// Entries kept per cache before it is emptied.
const CAPACITY: usize = 4096;

/// A bounded map from `K` to a value, checked with `matches` on every hit so that the key can be
/// a hash of the real key (no allocation to look up) without a collision ever returning the
/// wrong value.
#[derive(Debug)]
pub(super) struct Memo<S, V> {
    hasher: RandomState,
    map: RwLock<PreHashedMap<(S, V)>>,
}

impl<S, V: Clone> Memo<S, V> {
    pub(super) fn new() -> Self {
        Memo {
            hasher: RandomState::new(),
            map: RwLock::new(PreHashedMap::default()),
        }
    }

    /// The cached value for `key`, whose stored form must satisfy `matches`; else `make` it
    /// (returning the stored form and the value) and remember it.
    pub(super) fn get_or<K: Hash + ?Sized, E>(
        &self,
        key: &K,
        matches: impl Fn(&S) -> bool,
        make: impl FnOnce() -> Result<(S, V), E>,
    ) -> Result<V, E> {
        self.find_or(key, matches, make, |_, v| v.clone())
    }

    /// [`Memo::get_or`], with a copy of the stored form too (for a [`crate::conn::PerWorker`]
    /// memo in front of this one).
    pub(super) fn get_or_stored<K: Hash + ?Sized, E>(
        &self,
        key: &K,
        matches: impl Fn(&S) -> bool,
        make: impl FnOnce() -> Result<(S, V), E>,
    ) -> Result<(S, V), E>
    where
        S: Clone,
    {
        self.find_or(key, matches, make, |s, v| (s.clone(), v.clone()))
    }

    fn find_or<K: Hash + ?Sized, E, R>(
        &self,
        key: &K,
        matches: impl Fn(&S) -> bool,
        make: impl FnOnce() -> Result<(S, V), E>,
        out: impl Fn(&S, &V) -> R,
    ) -> Result<R, E> {
        // The key is a tuple of a dozen fields: one batched SipHash `write`, the same value.
        let h = crate::prehash::hash_one(&self.hasher, key);
        if let Ok(map) = self.map.read() {
            if let Some((s, v)) = map.get(&h) {
                if matches(s) {
                    return Ok(out(s, v));
                }
            }
        }
        let (s, v) = make()?;
        let made = out(&s, &v);
        if let Ok(mut map) = self.map.write() {
            if map.len() >= CAPACITY {
                map.clear();
            }
            map.insert(h, (s, v));
        }
        Ok(made)
    }

    /// Entries held.
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.map.read().map_or(0, |m| m.len())
    }
}

#[cfg(test)]
mod tests;
