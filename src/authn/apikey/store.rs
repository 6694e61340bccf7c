//! The API keys file and the in-memory key store.
//!
//! ```toml
//! [[keys]]
//! id = "acme-billing"                  # principal in audit, inventory and minted tokens
//! sha256 = "9f86d081…"                 # hex SHA-256 of the key; the key itself is never stored
//! identity = "spiffe://corp.example/partner/acme"
//! owner = "partners-team"              # optional: who to ask about this key
//! expires = "2027-06-30"               # optional: valid through the end of that day, UTC
//! ```
//!
//! The file holds hashes only, so reading it gives nobody a usable key. Keys are random (see
//! `portcullis apikey new`), so an unsalted SHA-256 is enough: nothing to brute-force.
//!
//! # Why a map keyed by the hash, not a constant-time scan
//!
//! A linear scan comparing the presented hash against every stored one with `subtle` costs
//! O(keys) per request. Instead the store indexes keys by the first 8 bytes of their hash (a
//! `u64`, compared in one instruction, in a map that uses it as its own hash: `prehash`), then
//! compares the full 32 bytes of the candidates in constant time. What timing can reveal is at
//! most whether some stored hash shares its first 64 bits with SHA-256 of a key the attacker
//! chose: finding such a key is a 2^64 preimage search, and even then it says nothing about the
//! key behind the stored hash. So lookups are O(1) without a usable timing signal.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use arc_swap::ArcSwap;
use sha2::{Digest, Sha256};

use crate::diag::{Collector, Invalid, Problem};
use crate::identity::SpiffeId;
use crate::prehash::PreHashedMap;
use crate::reload::{stamp, Stamp};
use crate::time::Date;

/// Longest key id: it is written into audit lines, metrics labels and minted tokens.
pub const MAX_ID_LEN: usize = 64;
/// Most keys in one file (a bound on memory and on the work of a reload).
pub const MAX_KEYS: usize = 100_000;
/// Largest keys file read.
pub const MAX_FILE_LEN: u64 = 16 * 1024 * 1024;

/// One configured key (its hash, never the key).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyEntry {
    /// The key's id: the legacy principal.
    pub id: String,
    /// SHA-256 of the key.
    pub sha256: [u8; 32],
    /// The SPIFFE ID the key stands for.
    pub identity: SpiffeId,
    /// Who to ask about the key (audit and inventory only).
    pub owner: Option<String>,
    /// The last day the key is valid (UTC), as written.
    pub expires: Option<Date>,
}

impl KeyEntry {
    /// Whether the key is expired at `now`: it is valid through the end of its `expires` day in UTC.
    pub fn is_expired(&self, now: SystemTime) -> bool {
        self.expires.is_some_and(|d| now >= d.end_of_day_utc())
    }
}

/// An `expires` date: exactly `YYYY-MM-DD`, years 1970–9999 (a key file never names an earlier
/// day). The calendar is [`crate::time::Date`].
pub fn parse_expires(s: &str) -> Option<Date> {
    Date::parse(s).filter(|d| d.days() >= 0)
}

/// Whether `id` is an acceptable key id: 1–64 of `A-Z a-z 0-9 . _ -`.
pub fn valid_id(id: &str) -> Result<(), String> {
    if id.is_empty() || id.len() > MAX_ID_LEN {
        return Err(format!("must be 1 to {MAX_ID_LEN} characters"));
    }
    if !id
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    {
        return Err("may contain only A-Z, a-z, 0-9, '.', '_' and '-'".into());
    }
    Ok(())
}

/// SHA-256 of a key, as stored.
pub fn hash_key(key: &[u8]) -> [u8; 32] {
    Sha256::digest(key).into()
}

/// The parsed keys, indexed for lookup.
#[derive(Debug, Default)]
pub struct Keys {
    entries: Vec<KeyEntry>,
    /// First 8 bytes of the hash → indices into `entries` (see the module docs).
    index: PreHashedMap<Vec<usize>>,
}

fn prefix(h: &[u8; 32]) -> u64 {
    let [a, b, c, d, e, f, g, i, ..] = *h;
    u64::from_le_bytes([a, b, c, d, e, f, g, i])
}

impl Keys {
    /// Index checked entries (ids and hashes already known to be unique).
    fn new(entries: Vec<KeyEntry>) -> Keys {
        let mut index: PreHashedMap<Vec<usize>> =
            PreHashedMap::with_capacity_and_hasher(entries.len(), Default::default());
        for (i, e) in entries.iter().enumerate() {
            index.entry(prefix(&e.sha256)).or_default().push(i);
        }
        Keys { entries, index }
    }

    /// Parse a keys file's text, reporting every problem as `file: key: message`.
    pub fn parse(text: &str, file: &str) -> Result<Keys, Invalid> {
        let doc: toml::Table = toml::from_str(text).map_err(|e| {
            let mut c = Collector::new(file);
            c.push("-", e.message());
            Invalid(c.problems)
        })?;
        let mut c = Collector::new(file);
        let none = Vec::new();
        for k in doc.keys().filter(|k| *k != "keys") {
            c.push(k.clone(), "unknown key");
        }
        let list = match doc.get("keys") {
            None => &none,
            Some(toml::Value::Array(a)) => a,
            Some(_) => {
                c.push("keys", "must be an array of tables ([[keys]])");
                &none
            }
        };
        if list.len() > MAX_KEYS {
            c.push("keys", format!("more than {MAX_KEYS} keys"));
            return Err(Invalid(c.problems));
        }
        let mut entries = Vec::with_capacity(list.len());
        let mut ids: HashMap<String, usize> = HashMap::new();
        let mut hashes: HashMap<[u8; 32], usize> = HashMap::new();
        for (i, v) in list.iter().enumerate() {
            let at = |field: &str| format!("keys[{i}].{field}");
            let Some(t) = v.as_table() else {
                c.push(format!("keys[{i}]"), "must be a table");
                continue;
            };
            let before = c.problems.len();
            let Fields {
                id,
                sha256,
                identity,
                owner,
                expires,
            } = fields(&mut c, i, t);
            if let Some(id) = &id {
                if let Some(first) = ids.insert(id.clone(), i) {
                    c.push(at("id"), format!("duplicate of keys[{first}].id"));
                }
            }
            if let Some(h) = &sha256 {
                if let Some(first) = hashes.insert(*h, i) {
                    c.push(
                        at("sha256"),
                        format!("same key as keys[{first}]: each key must be distinct"),
                    );
                }
            }
            if c.problems.len() != before {
                continue;
            }
            if let (Some(id), Some(sha256), Some(identity)) = (id, sha256, identity) {
                entries.push(KeyEntry {
                    id,
                    sha256,
                    identity,
                    owner,
                    expires,
                });
            }
        }
        if c.is_ok() {
            Ok(Keys::new(entries))
        } else {
            Err(Invalid(c.problems))
        }
    }

    /// The entry whose hash is `hash`, found as explained in the module docs.
    pub fn find(&self, hash: &[u8; 32]) -> Option<&KeyEntry> {
        let candidates = self.index.get(&prefix(hash))?;
        let mut found = None;
        // Every candidate is compared (there is almost always one), without stopping early.
        for &i in candidates {
            if let Some(e) = self.entries.get(i) {
                // aws-lc's CRYPTO_memcmp: constant time like `subtle`, without `subtle`'s
                // optimisation barrier on every byte (several times the instructions).
                if aws_lc_rs::constant_time::verify_slices_are_equal(&e.sha256, hash).is_ok() {
                    found = Some(e);
                }
            }
        }
        found
    }

    /// All entries, in file order.
    pub fn entries(&self) -> &[KeyEntry] {
        &self.entries
    }
}

/// The keys of one `kind = "api-key"` credential, reloaded when the file changes.
///
/// A file that fails to load on reload keeps the previous keys (and logs every problem), so a
/// bad edit cannot lock every partner out.
#[derive(Debug)]
pub struct KeyStore {
    path: PathBuf,
    keys: ArcSwap<Keys>,
    stamp: Mutex<Stamp>,
}

impl KeyStore {
    /// Load `path` (already resolved against the config's directory).
    pub fn load(path: &Path) -> Result<KeyStore, Invalid> {
        let st = stamp(path);
        let keys = read(path)?;
        Ok(KeyStore {
            path: path.to_path_buf(),
            keys: ArcSwap::from_pointee(keys),
            stamp: Mutex::new(st),
        })
    }

    /// The keys in use now.
    pub fn current(&self) -> Arc<Keys> {
        self.keys.load_full()
    }

    /// Look a presented key up: `f` of its entry, if any (expired or not). A closure rather than
    /// a copy of the entry: the request takes two of its fields, and copying all four strings
    /// was a tenth of the lookup apart from SHA-256 (issue 22).
    pub fn lookup<T>(&self, key: &[u8], f: impl FnOnce(&KeyEntry) -> T) -> Option<T> {
        self.keys.load().find(&hash_key(key)).map(f)
    }

    /// The keys file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Reload if the file changed. Returns whether new keys were installed.
    pub fn poll(&self) -> bool {
        let now = stamp(&self.path);
        {
            let Ok(mut last) = self.stamp.lock() else {
                return false;
            };
            if *last == now {
                return false;
            }
            // Remember the stamp even if the load fails: the error is logged once, and the
            // next edit is tried again.
            *last = now;
        }
        match read(&self.path) {
            Ok(keys) => {
                tracing::info!(file = %self.path.display(), keys = keys.entries.len(), "API keys reloaded");
                self.keys.store(Arc::new(keys));
                true
            }
            Err(invalid) => {
                for p in &invalid.0 {
                    tracing::error!(problem = %p, "API keys file not reloaded; keeping the previous keys");
                }
                false
            }
        }
    }
}

impl crate::reload::Reload for KeyStore {
    fn poll_files(&self) {
        self.poll();
    }
}

/// One `[[keys]]` entry's fields, each checked on its own (duplicates are checked by the caller).
struct Fields {
    id: Option<String>,
    sha256: Option<[u8; 32]>,
    identity: Option<SpiffeId>,
    owner: Option<String>,
    expires: Option<Date>,
}

/// Read and check the fields of `keys[i]`.
fn fields(c: &mut Collector<'_>, i: usize, t: &toml::Table) -> Fields {
    let at = |field: &str| format!("keys[{i}].{field}");
    for k in t.keys() {
        if !matches!(
            k.as_str(),
            "id" | "sha256" | "identity" | "owner" | "expires"
        ) {
            c.push(at(k), "unknown key");
        }
    }
    let mut text = |field: &str, required: bool| -> Option<String> {
        match t.get(field) {
            None if required => {
                c.push(at(field), "missing");
                None
            }
            None => None,
            Some(toml::Value::String(s)) => Some(s.clone()),
            // `expires = 2027-06-30` (a TOML date) is accepted as well as a string.
            Some(toml::Value::Datetime(d)) if field == "expires" => Some(d.to_string()),
            Some(_) => {
                c.push(at(field), "must be a string");
                None
            }
        }
    };
    let id = text("id", true);
    let sha = text("sha256", true);
    let identity = text("identity", true);
    let owner = text("owner", false);
    let expires = text("expires", false);

    let id = id.and_then(|id| match valid_id(&id) {
        Ok(()) => Some(id),
        Err(m) => {
            c.push(at("id"), m);
            None
        }
    });
    let sha256 = sha.and_then(|s| {
        let mut out = [0u8; 32];
        match hex::decode_to_slice(&s, &mut out) {
            Ok(()) => Some(out),
            Err(_) => {
                c.push(
                    at("sha256"),
                    "must be 64 hex digits (the SHA-256 of the key, not the key)",
                );
                None
            }
        }
    });
    let identity = identity.and_then(|s| match SpiffeId::parse(&s) {
        Ok(id) => Some(id),
        Err(e) => {
            c.push(at("identity"), format!("not a SPIFFE ID: {e}"));
            None
        }
    });
    let expires = match expires {
        None => None,
        Some(s) => match parse_expires(&s) {
            Some(d) => Some(d),
            None => {
                c.push(
                    at("expires"),
                    "must be a date YYYY-MM-DD (valid through the end of that day, UTC)",
                );
                None
            }
        },
    };
    Fields {
        id,
        sha256,
        identity,
        owner,
        expires,
    }
}

fn read(path: &Path) -> Result<Keys, Invalid> {
    let file = path.display().to_string();
    let fail = |message: String| {
        Invalid(vec![Problem {
            file: file.clone(),
            key: "-".into(),
            message,
        }])
    };
    let meta = std::fs::metadata(path).map_err(|e| fail(format!("cannot read file: {e}")))?;
    if meta.len() > MAX_FILE_LEN {
        return Err(fail(format!("larger than {MAX_FILE_LEN} bytes")));
    }
    let text = std::fs::read_to_string(path).map_err(|e| fail(format!("cannot read file: {e}")))?;
    Keys::parse(&text, &file)
}
