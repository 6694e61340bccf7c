//! Issuing API keys: a fresh random key and the `[[keys]]` entry (hash only) for the keys file
//! (`portcullis apikey new`, and the demo's partner key).
//!
//! Keys are `pcs_` followed by 32 random bytes in unpadded base64url (47 characters): the prefix
//! makes a leaked key recognisable to secret scanners, base64url needs no escaping in a header or
//! a query string, and 256 random bits make an unsalted SHA-256 safe to store.

use anyhow::Context as _;
use base64::Engine as _;

use super::{hash_key, parse_expires, store::valid_id};
use crate::identity::SpiffeId;

/// Prefix of generated keys.
pub const KEY_PREFIX: &str = "pcs_";

/// A new key and its entry for the keys file.
#[derive(Debug)]
pub struct NewKey {
    /// The key: shown once, stored nowhere.
    pub key: String,
    /// The `[[keys]]` TOML entry.
    pub entry: String,
}

/// Make a key for `id` standing for `identity`, checking the arguments as the keys file will.
pub fn new_key(
    id: &str,
    identity: &str,
    owner: Option<&str>,
    expires: Option<&str>,
) -> anyhow::Result<NewKey> {
    valid_id(id).map_err(|m| anyhow::anyhow!("--id: {m}"))?;
    let identity = SpiffeId::parse(identity).context("--identity: not a SPIFFE ID")?;
    let expires = expires
        .map(|e| {
            parse_expires(e).ok_or_else(|| anyhow::anyhow!("--expires: must be a date YYYY-MM-DD"))
        })
        .transpose()?;
    let mut bytes = [0u8; 32];
    aws_lc_rs::rand::fill(&mut bytes).map_err(|_| anyhow::anyhow!("no system randomness"))?;
    let key = format!(
        "{KEY_PREFIX}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    );
    bytes.fill(0);

    // TOML basic strings: `id` and `identity` are already restricted to safe characters; the
    // owner is free text, so it is escaped.
    let mut entry = format!(
        "[[keys]]\nid = \"{id}\"\nsha256 = \"{}\"\nidentity = \"{identity}\"\n",
        hex::encode(hash_key(key.as_bytes()))
    );
    if let Some(o) = owner {
        entry.push_str(&format!("owner = {}\n", toml::Value::String(o.to_owned())));
    }
    if let Some(d) = expires {
        entry.push_str(&format!("expires = \"{d}\"\n"));
    }
    Ok(NewKey { key, entry })
}
