//! Maps whose keys are already hashes: a keyed SipHash output (`RandomState::hash_one`) or a
//! SHA-256 prefix. Hashing such a key again with SipHash costs ~20 ns a lookup and adds nothing:
//! the key is already uniformly spread and, where a caller chooses what is hashed, already keyed
//! with a secret the caller does not know (so HashDoS resistance is the first hash's, kept).
//!
//! Only for `u64` keys that are hash outputs. Never for a key a caller chooses directly (an
//! address, a header value): those keep `RandomState`.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

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
