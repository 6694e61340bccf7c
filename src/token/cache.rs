//! Minted tokens reused per caller: a token is handed out again for an equal [`MintRequest`]
//! (identity, audience, kind, credential and principal, cnf, profile: every input of the claims,
//! so a reused token never says something untrue about its holder) until `refresh_before` its
//! expiry, and only while its key still signs.
//!
//! Sharded: the request is hashed once (keyed SipHash over the fields that set callers apart),
//! the hash picks the shard and is the map key, and the full request is compared on a hit. A hit
//! takes one shard read lock. In front of the shards, each data-plane worker keeps the last entry
//! they gave it (`conn::PerWorker`): the next request of the same caller on that worker is
//! compared with it in full and served without hashing or a shard lock. Bounded: a full shard
//! first drops tokens past their refresh point, then the oldest.
//!
//! Revocation: [`TokenCache::evict_identity`] and friends remove tokens; an eviction epoch makes a
//! mint that was in flight during an eviction skip its insert, and a worker's kept entry from
//! before it unusable, so an evicted caller's token is never handed out again.

use std::collections::hash_map::RandomState;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use super::mint::{Issuer, IssuerError, Legacy, LineageRef, MintRequest, Minted};
use crate::identity::profile::Profile;
use crate::identity::Kind;
use crate::metrics::Metrics;
use crate::prehash::PreHashedMap;

/// Default bound on cached tokens.
pub const DEFAULT_CAPACITY: usize = 50_000;

/// A cached token is not handed out once less than this share of its lifetime is left…
const REFRESH_SHARE: f64 = 0.2;
/// …or less than this, whichever is longer.
const REFRESH_MIN: Duration = Duration::from_secs(10);

const MAX_SHARDS: usize = 64;

/// How long before `exp` a token of this lifetime stops being handed out.
pub fn refresh_before(ttl: Duration) -> Duration {
    ttl.mul_f64(REFRESH_SHARE).max(REFRESH_MIN)
}

/// Owned copy of a [`MintRequest`], compared in full on every hit.
#[derive(Debug)]
struct Key {
    identity: Box<str>,
    audience: Box<str>,
    kind: Kind,
    profile: Profile,
    cnf: Option<Box<str>>,
    legacy: Option<(Box<str>, Option<Box<str>>)>,
    lineage: Option<OwnedLineage>,
}

/// Owned copy of a [`LineageRef`].
#[derive(Debug)]
struct OwnedLineage {
    credential: Box<str>,
    kind: Kind,
    principal: Option<Box<str>>,
    jtis: Vec<std::sync::Arc<str>>,
    not_after: Option<u64>,
}

impl OwnedLineage {
    fn new(l: &LineageRef<'_>) -> Self {
        OwnedLineage {
            credential: l.credential.into(),
            kind: l.kind,
            principal: l.principal.map(Into::into),
            jtis: l.jtis.to_vec(),
            not_after: l.not_after,
        }
    }

    fn matches(&self, l: &LineageRef<'_>) -> bool {
        *self.credential == *l.credential
            && self.kind == l.kind
            && self.principal.as_deref() == l.principal
            && self.jtis == l.jtis
            && self.not_after == l.not_after
    }
}

impl Key {
    fn new(r: &MintRequest<'_>) -> Self {
        Key {
            identity: r.identity.into(),
            audience: r.audience.into(),
            kind: r.kind,
            profile: r.profile,
            cnf: r.cnf.map(Into::into),
            legacy: r
                .legacy
                .map(|l| (l.credential.into(), l.principal.map(Into::into))),
            lineage: r.lineage.as_ref().map(OwnedLineage::new),
        }
    }

    fn matches(&self, r: &MintRequest<'_>) -> bool {
        *self.identity == *r.identity
            && *self.audience == *r.audience
            && self.kind == r.kind
            && self.profile == r.profile
            && self.cnf.as_deref() == r.cnf
            && self.legacy.as_ref().map(|(c, p)| Legacy {
                credential: c,
                principal: p.as_deref(),
            }) == r.legacy
            && match (&self.lineage, &r.lineage) {
                (Some(a), Some(b)) => a.matches(b),
                (None, None) => true,
                _ => false,
            }
    }
}

#[derive(Debug)]
struct Entry {
    key: Key,
    minted: Minted,
    refresh_at: SystemTime,
}

impl Entry {
    /// Whether the token may still be handed out: before its refresh point and signed by the
    /// current key.
    fn usable(&self, kid: &str, now: SystemTime) -> bool {
        now < self.refresh_at && *self.minted.kid == *kid
    }
}

#[derive(Debug, Default)]
struct Shard {
    /// Shared with the workers' [`TokenCache::last`] slots.
    map: PreHashedMap<Vec<Arc<Entry>>>,
    len: usize,
}

impl Shard {
    fn retain(&mut self, mut keep: impl FnMut(&Entry) -> bool) -> usize {
        let before = self.len;
        self.map.retain(|_, bucket| {
            bucket.retain(|e| keep(e));
            !bucket.is_empty()
        });
        self.len = self.map.values().map(Vec::len).sum();
        before.saturating_sub(self.len)
    }

    /// Make room for one: drop what is past its refresh point, else the oldest token.
    fn make_room(&mut self, now: SystemTime, cap: usize) {
        if self.len < cap {
            return;
        }
        self.retain(|e| e.refresh_at > now);
        if self.len < cap {
            return;
        }
        let oldest = self
            .map
            .iter()
            .flat_map(|(h, b)| {
                b.iter()
                    .enumerate()
                    .map(move |(i, e)| (e.minted.iat, *h, i))
            })
            .min();
        if let Some((_, h, i)) = oldest {
            if let Some(bucket) = self.map.get_mut(&h) {
                if i < bucket.len() {
                    bucket.swap_remove(i);
                    self.len = self.len.saturating_sub(1);
                }
                if bucket.is_empty() {
                    self.map.remove(&h);
                }
            }
        }
    }
}

/// A token and where it came from.
#[derive(Debug, Clone)]
pub struct Issued {
    /// The token.
    pub minted: Minted,
    /// Handed out from the cache (counted in `token_cache_hits_total`) rather than signed now
    /// (`tokens_minted_total`).
    pub from_cache: bool,
}

/// The minted-token cache.
#[derive(Debug)]
pub struct TokenCache {
    shards: Box<[RwLock<Shard>]>,
    per_shard: usize,
    hasher: RandomState,
    /// Bumped by every eviction, before and after it removes: an insert whose mint started
    /// before the first bump is dropped, and a worker's `last` entry kept before the second is
    /// not handed out again.
    epoch: AtomicU64,
    /// Per worker, the last entry the shards gave it and the epoch before that look-up: a
    /// worker serving the same caller again compares the request in full (as a hit in a shard
    /// does) without hashing it and locking a shard first (issue 22).
    last: crate::conn::PerWorker<(u64, Arc<Entry>)>,
}

impl Default for TokenCache {
    fn default() -> Self {
        Self::new(DEFAULT_CAPACITY)
    }
}

impl TokenCache {
    /// A cache holding at most `capacity` tokens.
    pub fn new(capacity: usize) -> Self {
        let capacity = capacity.max(1);
        // A power of two, with at least 64 entries per shard so one busy shard is not starved.
        let shards = (capacity / 64).clamp(1, MAX_SHARDS);
        let shards = if shards.is_power_of_two() {
            shards
        } else {
            shards.next_power_of_two() / 2
        };
        TokenCache {
            shards: (0..shards).map(|_| RwLock::default()).collect(),
            per_shard: (capacity / shards).max(1),
            hasher: RandomState::new(),
            epoch: AtomicU64::new(0),
            last: crate::conn::PerWorker::new(),
        }
    }

    /// The request's fields that set two callers apart (identity, audience, cnf, principals,
    /// the lineage's `jti`s), keyed: callers choose some of them, so `RandomState` keeps the
    /// buckets HashDoS-resistant. The rest (kind, profile, credential names, `not_after`) is
    /// compared by `Key::matches` on a hit, so leaving it out changes no answer; it halves the
    /// hasher's writes of the derived `Hash` (a fifth of the full route's cache hit, issue 22).
    fn hash(&self, r: &MintRequest<'_>) -> u64 {
        use std::hash::Hasher;
        // The same keyed SipHash, its eight small writes made one (`prehash::Batched`).
        let mut h = crate::prehash::Batched::new(&self.hasher);
        let mut field = |s: Option<&str>| {
            if let Some(s) = s {
                h.write(s.as_bytes());
            }
            // A separator no UTF-8 string contains: ("ab", "c") and ("a", "bc") differ.
            h.write_u8(0xff);
        };
        field(Some(r.identity));
        field(Some(r.audience));
        field(r.cnf);
        field(r.legacy.and_then(|l| l.principal));
        if let Some(l) = &r.lineage {
            field(l.principal);
            for j in l.jtis {
                field(Some(j));
            }
        }
        h.finish_once()
    }

    fn shard(&self, hash: u64) -> Option<&RwLock<Shard>> {
        // Middle bits: hashbrown uses the low bits for the bucket and the top 7 as a tag.
        let i = usize::try_from(hash >> 32).unwrap_or(0) & (self.shards.len().wrapping_sub(1));
        self.shards.get(i)
    }

    fn lookup(&self, hash: u64, r: &MintRequest<'_>, kid: &str, now: SystemTime) -> Option<Minted> {
        self.find(hash, r, kid, now).map(|e| e.minted.clone())
    }

    fn find(
        &self,
        hash: u64,
        r: &MintRequest<'_>,
        kid: &str,
        now: SystemTime,
    ) -> Option<Arc<Entry>> {
        let shard = self.shard(hash)?.read().ok()?;
        let e = shard.map.get(&hash)?.iter().find(|e| e.key.matches(r))?;
        e.usable(kid, now).then(|| e.clone())
    }

    /// This worker's last entry, if it is for `r`, still usable and no eviction came since.
    fn last_for(&self, r: &MintRequest<'_>, kid: &str, now: SystemTime) -> Option<Minted> {
        self.last.read(|(epoch, e)| {
            (*epoch == self.epoch.load(Ordering::Acquire) && e.key.matches(r) && e.usable(kid, now))
                .then(|| e.minted.clone())
        })
    }

    /// A cached token for `r`, if one is still fresh at `now` and signed by the key `kid`.
    pub fn get(&self, r: &MintRequest<'_>, kid: &str, now: SystemTime) -> Option<Minted> {
        self.lookup(self.hash(r), r, kid, now)
    }

    fn insert(&self, hash: u64, r: &MintRequest<'_>, minted: &Minted, epoch: u64) {
        let ttl = minted.exp.duration_since(minted.iat).unwrap_or_default();
        let Some(refresh_at) = minted.exp.checked_sub(refresh_before(ttl)) else {
            return;
        };
        if refresh_at <= minted.iat {
            return; // too short-lived to be worth reusing
        }
        let Some(Ok(mut shard)) = self.shard(hash).map(RwLock::write) else {
            return;
        };
        if self.epoch.load(Ordering::Acquire) != epoch {
            return;
        }
        let entry = Arc::new(Entry {
            key: Key::new(r),
            minted: minted.clone(),
            refresh_at,
        });
        if let Some(e) = shard
            .map
            .get_mut(&hash)
            .and_then(|b| b.iter_mut().find(|e| e.key.matches(r)))
        {
            *e = entry;
            return;
        }
        shard.make_room(minted.iat, self.per_shard);
        shard.map.entry(hash).or_default().push(entry);
        shard.len += 1;
    }

    /// A token for `r`: from the cache if a fresh one signed by the current key exists, else
    /// minted now and cached. Counts the outcome in `metrics`.
    pub fn get_or_mint(
        &self,
        issuer: &Issuer,
        r: &MintRequest<'_>,
        now: SystemTime,
        metrics: &Metrics,
    ) -> Result<Issued, IssuerError> {
        let kid = issuer.keys().current().signer().kid().clone();
        let hit = |minted| {
            metrics.token_cache_hits_total.inc();
            Ok(Issued {
                minted,
                from_cache: true,
            })
        };
        if let Some(minted) = self.last_for(r, &kid, now) {
            return hit(minted);
        }
        // Read before the look-up: an eviction after it invalidates what is kept below.
        let epoch = self.epoch.load(Ordering::Acquire);
        let hash = self.hash(r);
        if let Some(e) = self.find(hash, r, &kid, now) {
            let minted = e.minted.clone();
            self.last.keep((epoch, e));
            return hit(minted);
        }
        let minted = issuer.mint(r, now)?;
        metrics.tokens_minted_total.inc();
        self.insert(hash, r, &minted, epoch);
        Ok(Issued {
            minted,
            from_cache: false,
        })
    }

    /// Remove every token matching `pred`; returns how many.
    fn evict(&self, pred: impl Fn(&Entry) -> bool) -> usize {
        self.epoch.fetch_add(1, Ordering::AcqRel);
        let removed = self
            .shards
            .iter()
            .filter_map(|s| s.write().ok())
            .map(|mut s| s.retain(|e| !pred(e)))
            .sum();
        // Again once removed: a worker that found an entry while this ran kept it under an
        // epoch it can no longer match (see `last_for`).
        self.epoch.fetch_add(1, Ordering::AcqRel);
        removed
    }

    /// Revocation of an identity: none of its tokens is handed out again.
    pub fn evict_identity(&self, identity: &str) -> usize {
        self.evict(|e| *e.key.identity == *identity)
    }

    /// Revocation of a static credential (`NAME:PRINCIPAL`).
    pub fn evict_credential(&self, name: &str, principal: &str) -> usize {
        self.evict(|e| {
            e.key
                .legacy
                .as_ref()
                .is_some_and(|(c, p)| **c == *name && p.as_deref() == Some(principal))
        })
    }

    /// Revocation of one token.
    pub fn evict_jti(&self, jti: &str) -> usize {
        self.evict(|e| *e.minted.jti == *jti)
    }

    /// Drop everything (for example after removing a compromised key).
    pub fn clear(&self) -> usize {
        self.evict(|_| true)
    }

    /// Drop tokens past their refresh point (housekeeping; the cache is bounded regardless).
    pub fn purge(&self, now: SystemTime) -> usize {
        self.shards
            .iter()
            .filter_map(|s| s.write().ok())
            .map(|mut s| s.retain(|e| e.refresh_at > now))
            .sum()
    }

    /// Tokens held.
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .filter_map(|s| s.read().ok().map(|s| s.len))
            .sum()
    }

    /// Whether no token is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
