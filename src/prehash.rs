//! Maps whose keys are already hashes: a keyed SipHash output (`RandomState::hash_one`) or a
//! SHA-256 prefix. Hashing such a key again with SipHash costs ~20 ns a lookup and adds nothing:
//! the key is already uniformly spread and, where a caller chooses what is hashed, already keyed
//! with a secret the caller does not know (so HashDoS resistance is the first hash's, kept).
//!
//! Only for `u64` keys that are hash outputs. Never for a key a caller chooses directly (an
//! address, a header value): those keep `RandomState`, through [`Batched`] /
//! [`hash_one`] on the request path (the same SipHash values, one `write` per key).

use std::collections::HashMap;
use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher, Hash, Hasher, RandomState};

/// Passes a `u64` key through as its own hash.
#[derive(Debug, Default, Clone, Copy)]
pub struct PreHashed(u64);

impl Hasher for PreHashed {
    fn finish(&self) -> u64 {
        self.0
    }

    /// Not used by `u64` keys; kept total (and spreading) so that a misuse is slow, not wrong.
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*b);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

/// A map from a hash output to `V`.
pub type PreHashedMap<V> = HashMap<u64, V, BuildHasherDefault<PreHashed>>;

/// Bytes gathered before they are handed to SipHash: a composite key of the request path
/// (identity, route, address, path) fits, so it costs one `write`.
const BATCH: usize = 192;

/// std's keyed SipHash with the key's many small writes gathered into one.
///
/// A derived or tuple `Hash` makes a `write` per field (and one more per string, its `0xff`
/// terminator); std's SipHash pays its tail-buffer bookkeeping on each (about 90 instructions,
/// more than hashing 16 bytes). Its `write` is streaming (`write(a); write(b)` equals
/// `write(a ++ b)`), so gathering the writes and making one gives **the same hash value** as
/// `RandomState::hash_one` with the same `RandomState`: the same keyed function, as
/// HashDoS-resistant as before, fewer instructions (issue 22).
pub struct Batched {
    sip: DefaultHasher,
    buf: [u8; BATCH],
    len: usize,
}

impl Batched {
    /// A hasher keyed as `state.build_hasher()`.
    pub fn new(state: &RandomState) -> Self {
        Batched {
            sip: state.build_hasher(),
            buf: [0; BATCH],
            len: 0,
        }
    }

    /// The hash, without copying the SipHash state (as `finish` must, taking `&self`).
    pub fn finish_once(mut self) -> u64 {
        self.flush();
        self.sip.finish()
    }

    fn flush(&mut self) {
        if let Some(pending) = self.buf.get(..self.len) {
            self.sip.write(pending);
        }
        self.len = 0;
    }
}

impl Hasher for Batched {
    fn write(&mut self, bytes: &[u8]) {
        let end = self.len + bytes.len();
        if let Some(room) = self.buf.get_mut(self.len..end) {
            room.copy_from_slice(bytes);
            self.len = end;
            return;
        }
        // Does not fit: what is gathered goes first, then these bytes (order is the value).
        self.flush();
        if let Some(room) = self.buf.get_mut(..bytes.len()) {
            room.copy_from_slice(bytes);
            self.len = bytes.len();
        } else {
            self.sip.write(bytes);
        }
    }

    fn finish(&self) -> u64 {
        let mut sip = self.sip.clone();
        if let Some(pending) = self.buf.get(..self.len) {
            sip.write(pending);
        }
        sip.finish()
    }
}

/// `state.hash_one(key)` (the same value), in one SipHash `write`: see [`Batched`].
pub fn hash_one<K: Hash + ?Sized>(state: &RandomState, key: &K) -> u64 {
    let mut h = Batched::new(state);
    key.hash(&mut h);
    h.finish_once()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::hash::{BuildHasher, Hash, RandomState};

    #[test]
    fn a_u64_key_is_its_own_hash() {
        let b = BuildHasherDefault::<PreHashed>::default();
        for k in [0u64, 1, 0xdead_beef, u64::MAX] {
            assert_eq!(b.hash_one(k), k);
        }
    }

    #[test]
    fn batched_is_the_same_keyed_siphash_as_hash_one() {
        let rs = RandomState::new();
        let long = "x".repeat(3 * BATCH + 7);
        let tuple = (
            7usize,
            (
                "spiffe://example.org/ns/a/sa/b",
                3u8,
                &long,
                Some("p"),
                vec!["g1", "g2"],
            ),
            std::net::IpAddr::from([10, 0, 0, 1]),
            13u64,
            "enforce",
        );
        assert_eq!(hash_one(&rs, &tuple), rs.hash_one(&tuple));
        for n in [0, 1, 7, 8, BATCH - 1, BATCH, BATCH + 1, 2 * BATCH + 3] {
            let s = "y".repeat(n);
            assert_eq!(hash_one(&rs, s.as_str()), rs.hash_one(s.as_str()), "{n}");
            assert_eq!(
                hash_one(&rs, &(&s, &long, &s)),
                rs.hash_one((&s, &long, &s))
            );
            let mut h = Batched::new(&rs);
            h.write(s.as_bytes());
            h.write_u8(0xff);
            let once = h.finish();
            assert_eq!(once, h.finish(), "finish does not consume");
            assert_eq!(once, rs.hash_one(s.as_str()));
        }
        let other = RandomState::new();
        assert_ne!(hash_one(&rs, "k"), hash_one(&other, "k"), "keyed");
    }

    #[test]
    fn keyed_hash_outputs_index_as_any_map_would() {
        let rs = RandomState::new();
        let mut m: PreHashedMap<usize> = PreHashedMap::default();
        for i in 0..10_000usize {
            m.insert(rs.hash_one(i), i);
        }
        assert_eq!(m.len(), 10_000);
        for i in (0..10_000usize).step_by(7) {
            assert_eq!(m.get(&rs.hash_one(i)), Some(&i));
        }
        let mut h = PreHashed::default();
        "spreads".hash(&mut h);
        assert_ne!(h.finish(), 0);
    }
}
