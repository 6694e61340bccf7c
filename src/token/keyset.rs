//! The issuer's keys, `[issuer] keys`: an ordered list where the first key signs and every key is
//! published in the JWKS, so a new key can be published before it signs and an old one kept until
//! the tokens it signed have expired (the procedure is on [`crate::token::jwks::JWKS_MAX_AGE`]).
//!
//! The set follows its files the way the listener certificate does: a stat fingerprint is compared
//! on every poll, and a changed set is loaded whole; if any file is bad the previous set stays in
//! use and the error is logged. With no files configured the set is one ephemeral ES256 key (dev
//! only: every restart invalidates every token, and replicas cannot verify each other's tokens).

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;

use super::keys::{Alg, KeyError, SigningKey};
use crate::metrics::Metrics;

/// What the signing key (the first one) must be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SignerRequirement {
    /// ES256 or EdDSA.
    #[default]
    Any,
    /// ES256: some route uses the `jwt-svid` profile, which allows no EdDSA. A reload that would
    /// put an EdDSA key first is refused.
    Es256,
}

/// One immutable generation of keys: the signer first, then the others, in config order.
#[derive(Debug)]
pub struct KeyRing {
    generation: u64,
    signer: Arc<SigningKey>,
    keys: Vec<Arc<SigningKey>>,
}

/// Process-wide, so two sets never share a generation number (the JWKS renderer keys on it).
static GENERATION: AtomicU64 = AtomicU64::new(1);

impl KeyRing {
    /// A ring from keys in order (first signs). `labels` name the keys in errors (file paths).
    pub fn new(keys: Vec<(String, SigningKey)>) -> Result<Self, KeyError> {
        let mut out: Vec<(String, Arc<SigningKey>)> = Vec::with_capacity(keys.len());
        for (label, key) in keys {
            if let Some((first, _)) = out.iter().find(|(_, k)| k.kid() == key.kid()) {
                return Err(KeyError::Duplicate {
                    first: first.clone(),
                    second: label,
                    kid: key.kid().to_string(),
                });
            }
            out.push((label, Arc::new(key)));
        }
        let keys: Vec<Arc<SigningKey>> = out.into_iter().map(|(_, k)| k).collect();
        let signer = keys.first().cloned().ok_or(KeyError::Empty)?;
        Ok(KeyRing {
            generation: GENERATION.fetch_add(1, Ordering::Relaxed),
            signer,
            keys,
        })
    }

    /// The key that signs new tokens.
    pub fn signer(&self) -> &Arc<SigningKey> {
        &self.signer
    }

    /// Every published key, signer first.
    pub fn keys(&self) -> &[Arc<SigningKey>] {
        &self.keys
    }

    /// The key with this `kid`.
    pub fn find(&self, kid: &str) -> Option<&Arc<SigningKey>> {
        self.keys.iter().find(|k| &**k.kid() == kid)
    }

    /// Changes whenever the set is reloaded (unique in the process).
    pub fn generation(&self) -> u64 {
        self.generation
    }
}

/// Load every file, in order, and check the signer requirement. Every problem is reported (for
/// `portcullis check`); the ring is built only when there are none.
fn load_all(paths: &[PathBuf], req: SignerRequirement) -> Result<KeyRing, Vec<KeyError>> {
    let mut keys = Vec::with_capacity(paths.len());
    let mut errors = Vec::new();
    for path in paths {
        match SigningKey::load(path) {
            Ok(k) => keys.push((path.display().to_string(), k)),
            Err(e) => errors.push(e),
        }
    }
    if let (SignerRequirement::Es256, Some((path, key))) = (req, keys.first()) {
        if key.alg() != Alg::Es256 {
            errors.push(KeyError::SignerNotEs256 {
                path: path.clone(),
                alg: key.alg(),
            });
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    KeyRing::new(keys).map_err(|e| vec![e])
}

/// For `portcullis check`: every problem with these key files (empty when they would load).
pub fn check_files(paths: &[PathBuf], req: SignerRequirement) -> Vec<KeyError> {
    if paths.is_empty() {
        return Vec::new();
    }
    load_all(paths, req).err().unwrap_or_default()
}

type Fingerprint = Vec<crate::reload::Stamp>;

fn fingerprint(paths: &[PathBuf]) -> Fingerprint {
    crate::reload::stamps(paths)
}

/// The issuer's keys, following their files.
#[derive(Debug)]
pub struct KeySet {
    paths: Vec<PathBuf>,
    requirement: SignerRequirement,
    current: ArcSwap<KeyRing>,
    seen: Mutex<Fingerprint>,
    metrics: Arc<Metrics>,
}

impl KeySet {
    /// Load `[issuer] keys`. No paths: one ephemeral ES256 key and a loud warning. Fails (with
    /// the first problem; [`check_files`] lists all) if any file is unusable at start.
    pub fn load(
        paths: &[PathBuf],
        requirement: SignerRequirement,
        metrics: Arc<Metrics>,
    ) -> Result<Self, KeyError> {
        if paths.is_empty() {
            tracing::warn!(
                "no [issuer] keys configured: signing with an EPHEMERAL key. Tokens die with this \
                 process and other replicas cannot verify them. Dev only: generate a key with \
                 `portcullis keys generate` and list it in [issuer] keys"
            );
            let ring = KeyRing::new(vec![(
                "<ephemeral>".to_owned(),
                SigningKey::generate(Alg::Es256)?,
            )])?;
            return Ok(Self::from_ring(ring, metrics));
        }
        let seen = fingerprint(paths);
        let ring = load_all(paths, requirement)
            .map_err(|errs| errs.into_iter().next().unwrap_or(KeyError::Empty))?;
        tracing::info!(signer = %ring.signer().kid(), alg = %ring.signer().alg(), published = ring.keys().len(), "issuer keys loaded");
        Ok(KeySet {
            paths: paths.to_vec(),
            requirement,
            current: ArcSwap::from_pointee(ring),
            seen: Mutex::new(seen),
            metrics,
        })
    }

    /// A fixed set that never reloads (the demo, tests).
    pub fn from_ring(ring: KeyRing, metrics: Arc<Metrics>) -> Self {
        KeySet {
            paths: Vec::new(),
            requirement: SignerRequirement::Any,
            current: ArcSwap::from_pointee(ring),
            seen: Mutex::new(Vec::new()),
            metrics,
        }
    }

    /// The keys in use now.
    pub fn current(&self) -> Arc<KeyRing> {
        self.current.load_full()
    }

    /// Whether the keys are file-backed (false: ephemeral or fixed).
    pub fn is_file_backed(&self) -> bool {
        !self.paths.is_empty()
    }

    /// Reload if any file changed. Returns whether a new set is in use. A bad set keeps the
    /// previous one; its fingerprint is not recorded, so the next poll retries (a key being
    /// written is usually complete a moment later).
    pub fn poll(&self) -> bool {
        if self.paths.is_empty() {
            return false;
        }
        let now = fingerprint(&self.paths);
        match self.seen.lock() {
            Ok(seen) if *seen == now => return false,
            Ok(_) => {}
            Err(_) => return false,
        }
        match load_all(&self.paths, self.requirement) {
            Ok(ring) => {
                let old = self.current.load();
                let removed: Vec<String> = old
                    .keys()
                    .iter()
                    .filter(|k| ring.find(k.kid()).is_none())
                    .map(|k| k.kid().to_string())
                    .collect();
                tracing::info!(signer = %ring.signer().kid(), alg = %ring.signer().alg(), published = ring.keys().len(), removed = ?removed, "issuer keys reloaded");
                self.current.store(Arc::new(ring));
                if let Ok(mut seen) = self.seen.lock() {
                    *seen = now;
                }
                self.metrics.config_reloads_total.with(&["ok"]).inc();
                true
            }
            Err(errors) => {
                self.metrics.config_reloads_total.with(&["error"]).inc();
                for e in &errors {
                    tracing::error!(error = %e, "issuer keys reload failed; keeping the previous keys");
                }
                false
            }
        }
    }

    /// Poll the files every `every` until the set is dropped.
    pub fn spawn_watcher(self: &Arc<Self>, every: Duration) -> tokio::task::JoinHandle<()> {
        crate::reload::spawn_watcher(self, every)
    }
}

impl crate::reload::Reload for KeySet {
    fn poll_files(&self) {
        self.poll();
    }
}

#[cfg(test)]
mod tests;
