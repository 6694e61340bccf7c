//! Successful binds, remembered for `cache_ttl` so a busy batch job does not cost one LDAP bind
//! per request.
//!
//! Keys are HMAC-SHA256(per-process random key, user ‖ password): the table never holds a
//! password, and its keys are useless outside this process (no offline guessing from a memory
//! dump without the key, which is never written anywhere). The same digest is what the lockout
//! table remembers as a user's last known-good password. The table is bounded in entries.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

/// A keyed digest of (user, password).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub(super) struct Digest([u8; 32]);

impl Digest {
    /// Constant-time equality (the digest stands for a password).
    pub fn ct_eq(&self, other: &Digest) -> bool {
        self.0.ct_eq(&other.0).into()
    }
}

impl std::fmt::Debug for Digest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Digest(<redacted>)")
    }
}

/// HMAC-SHA256 keyed once per process.
pub(super) struct Hasher {
    keyed: Hmac<Sha256>,
}

impl Hasher {
    /// A hasher with a fresh random key.
    pub fn random() -> Self {
        let key: [u8; 32] = rand::random();
        // HMAC accepts keys of any length; this cannot fail.
        let keyed = <Hmac<Sha256> as Mac>::new_from_slice(&key)
            .unwrap_or_else(|_| <Hmac<Sha256> as Mac>::new(&Default::default()));
        Hasher { keyed }
    }

    /// The digest of (user, password); the user's length is hashed first so that the pair is
    /// unambiguous.
    pub fn digest(&self, user: &str, password: &str) -> Digest {
        let mut mac = self.keyed.clone();
        mac.update(&(user.len() as u64).to_be_bytes());
        mac.update(user.as_bytes());
        mac.update(password.as_bytes());
        Digest(mac.finalize().into_bytes().into())
    }
}

/// What a successful bind established.
#[derive(Debug, Clone)]
pub(super) struct Bound {
    /// The normalized user name, as typed.
    pub user: Arc<str>,
    /// The entry's DN, lower-cased (the lockout key).
    pub account: Arc<str>,
    pub identity: Arc<str>,
    pub groups: Arc<[String]>,
}

struct Entry {
    bound: Bound,
    expires: SystemTime,
}

pub(super) struct Cache {
    map: Mutex<HashMap<Digest, Entry>>,
    ttl: Duration,
    capacity: usize,
}

impl std::fmt::Debug for Cache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cache")
            .field("ttl", &self.ttl)
            .field("capacity", &self.capacity)
            .finish_non_exhaustive()
    }
}

impl Cache {
    /// A cache keeping entries for `ttl` (zero: nothing is cached), at most `capacity` of them.
    pub fn new(ttl: Duration, capacity: usize) -> Self {
        Cache {
            map: Mutex::new(HashMap::new()),
            ttl,
            capacity,
        }
    }

    fn enabled(&self) -> bool {
        !self.ttl.is_zero() && self.capacity > 0
    }

    /// The entry for `key`, if it has not expired.
    pub fn get(&self, key: &Digest, now: SystemTime) -> Option<Bound> {
        if !self.enabled() {
            return None;
        }
        let mut map = self.map.lock().ok()?;
        match map.get(key) {
            Some(e) if now < e.expires => Some(e.bound.clone()),
            Some(_) => {
                map.remove(key);
                None
            }
            None => None,
        }
    }

    /// Remember a successful bind.
    pub fn insert(&self, key: Digest, bound: Bound, now: SystemTime) {
        if !self.enabled() {
            return;
        }
        let Ok(mut map) = self.map.lock() else {
            return;
        };
        if map.len() >= self.capacity && !map.contains_key(&key) {
            map.retain(|_, e| now < e.expires);
            if map.len() >= self.capacity {
                // Full of live entries: drop any one. A dropped entry only costs a bind later.
                if let Some(k) = map.keys().next().copied() {
                    map.remove(&k);
                }
            }
        }
        map.insert(
            key,
            Entry {
                bound,
                expires: now + self.ttl,
            },
        );
    }

    /// Forget every entry of `user` (case-insensitively: `Alice` may have bound the same
    /// entry as `alice`) and of the `accounts` (DNs), so the next request binds again.
    pub fn evict(&self, user: &str, accounts: &[String]) -> usize {
        let Ok(mut map) = self.map.lock() else {
            return 0;
        };
        let before = map.len();
        map.retain(|_, e| {
            !(e.bound.user.eq_ignore_ascii_case(user)
                || accounts.iter().any(|a| **a == *e.bound.account))
        });
        before - map.len()
    }
}
