//! The trust store: per trust domain (`[trust."<name>"]`), the current X.509 and JWT bundles.
//!
//! Validators read the current bundle through an `ArcSwap`, so a reload never blocks or disturbs a
//! check in flight. Files are polled by stat fingerprint (modification time and length, as for
//! the listener certificate); a changed file is parsed in full before it replaces anything, and a
//! file that no longer parses (or vanished) keeps the previous bundle and is reported once, until
//! it changes again. Trust domains are strictly separate: a bundle only ever vouches for IDs of
//! its own trust domain (see [`crate::spiffe::x509`], [`crate::spiffe::jwt`]).

use std::collections::HashMap;
use std::fmt;
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;

use super::bundle::{BundleError, JwtBundle, X509Bundle};
use crate::identity::TrustDomain;
use crate::metrics::Metrics;

/// Bundle files larger than this are refused (a bundle is a few KiB).
pub const MAX_BUNDLE_BYTES: u64 = 4 * 1024 * 1024;

/// Where one trust domain's bundles come from (`[trust."<name>"]` in config).
#[derive(Debug, Clone)]
pub struct TrustSource {
    /// The `[trust."<name>"]` key.
    pub trust_domain: TrustDomain,
    /// PEM or SPIFFE bundle JSON.
    pub x509_bundle: Option<PathBuf>,
    /// JWK set or SPIFFE bundle JSON.
    pub jwt_bundle: Option<PathBuf>,
}

/// Why a trust source could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: larger than {MAX_BUNDLE_BYTES} bytes")]
    TooLarge { path: String },
    #[error("{path}: {source}")]
    Bundle { path: String, source: BundleError },
    #[error("trust domain {0:?}: neither x509_bundle nor jwt_bundle is set")]
    NoBundle(String),
    #[error("trust domain {0:?} is configured twice")]
    Duplicate(String),
}

/// Every problem found while loading the trust sources.
#[derive(Debug)]
pub struct LoadErrors(pub Vec<StoreError>);

impl fmt::Display for LoadErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for LoadErrors {}

/// A bundle type that can be read from a file.
trait FromFile: Sized {
    const WHAT: &'static str;
    fn parse(bytes: &[u8]) -> Result<Self, BundleError>;
    /// Called after each successful load.
    fn loaded(&self, _file: &str, _metrics: Option<&Metrics>) {}
}

impl FromFile for X509Bundle {
    const WHAT: &'static str = "x509_bundle";
    fn parse(bytes: &[u8]) -> Result<Self, BundleError> {
        X509Bundle::parse(bytes)
    }
    fn loaded(&self, file: &str, metrics: Option<&Metrics>) {
        let Some(at) = self.earliest_expiry() else {
            return;
        };
        let secs = match at.duration_since(SystemTime::now()) {
            Ok(d) => d.as_secs_f64(),
            Err(e) => -e.duration().as_secs_f64(),
        };
        if let Some(m) = metrics {
            m.set_cert_expiry(file, at);
        }
        if secs < 30.0 * 86400.0 {
            tracing::warn!(
                file,
                days = secs / 86400.0,
                "a trust bundle CA expires within 30 days"
            );
        }
    }
}

impl FromFile for JwtBundle {
    const WHAT: &'static str = "jwt_bundle";
    fn parse(bytes: &[u8]) -> Result<Self, BundleError> {
        JwtBundle::parse(bytes)
    }
}

fn load_file<T: FromFile>(path: &Path) -> Result<T, StoreError> {
    let name = || path.display().to_string();
    let read_err = |source| StoreError::Read {
        path: name(),
        source,
    };
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(MAX_BUNDLE_BYTES + 1).read_to_end(&mut bytes))
        .map_err(read_err)?;
    if bytes.len() as u64 > MAX_BUNDLE_BYTES {
        return Err(StoreError::TooLarge { path: name() });
    }
    T::parse(&bytes).map_err(|source| StoreError::Bundle {
        path: name(),
        source,
    })
}

type Fingerprint = crate::reload::Stamp;

fn fingerprint(path: &Path) -> Fingerprint {
    crate::reload::stamp(path)
}

/// One bundle, possibly following a file.
#[derive(Debug)]
struct Slot<T> {
    path: Option<PathBuf>,
    current: ArcSwap<T>,
    seen: Mutex<Fingerprint>,
}

impl<T: FromFile> Slot<T> {
    fn from_file(path: &Path, metrics: Option<&Metrics>) -> Result<Self, StoreError> {
        let seen = fingerprint(path);
        let bundle = load_file::<T>(path)?;
        bundle.loaded(&path.display().to_string(), metrics);
        Ok(Slot {
            path: Some(path.to_path_buf()),
            current: ArcSwap::from_pointee(bundle),
            seen: Mutex::new(seen),
        })
    }

    fn fixed(bundle: T) -> Self {
        Slot {
            path: None,
            current: ArcSwap::from_pointee(bundle),
            seen: Mutex::new(None),
        }
    }

    /// Reload if the file changed; whether a new bundle is in use.
    fn poll(&self, td: &str, metrics: Option<&Metrics>) -> bool {
        let Some(path) = &self.path else {
            return false;
        };
        let now = fingerprint(path);
        {
            let Ok(mut seen) = self.seen.lock() else {
                return false;
            };
            if *seen == now {
                return false;
            }
            // Remembered even if the load below fails: a broken file is reported once, and
            // retried when it changes again (a half-written file changes when completed).
            *seen = now;
        }
        let file = path.display().to_string();
        match load_file::<T>(path) {
            Ok(bundle) => {
                bundle.loaded(&file, metrics);
                self.current.store(Arc::new(bundle));
                if let Some(m) = metrics {
                    m.config_reloads_total.with(&["ok"]).inc();
                }
                tracing::info!(trust_domain = td, file = %file, kind = T::WHAT, "trust bundle reloaded");
                true
            }
            Err(e) => {
                if let Some(m) = metrics {
                    m.config_reloads_total.with(&["error"]).inc();
                }
                tracing::error!(trust_domain = td, kind = T::WHAT, error = %e, "trust bundle reload failed; keeping the previous bundle");
                false
            }
        }
    }
}

#[derive(Debug)]
struct Domain {
    x509: Option<Slot<X509Bundle>>,
    jwt: Option<Slot<JwtBundle>>,
}

/// The bundles of every configured trust domain.
#[derive(Debug, Default)]
pub struct TrustStore {
    domains: HashMap<String, Domain>,
    metrics: Option<Arc<Metrics>>,
    /// What the Workload API delivers, merged with the files (see [`TrustStore::set_workload_bundles`]).
    workload: super::merge::Overlay,
}

impl TrustStore {
    /// Load every source; fails listing every problem if any file is unusable.
    pub fn load(sources: &[TrustSource], metrics: Arc<Metrics>) -> Result<Self, LoadErrors> {
        let mut domains = HashMap::new();
        let mut errors = Vec::new();
        let m = Some(&*metrics);
        for src in sources {
            let td = src.trust_domain.as_str();
            if domains.contains_key(td) {
                errors.push(StoreError::Duplicate(td.to_owned()));
                continue;
            }
            if src.x509_bundle.is_none() && src.jwt_bundle.is_none() {
                errors.push(StoreError::NoBundle(td.to_owned()));
                continue;
            }
            let x509 = src.x509_bundle.as_deref().map(|p| Slot::from_file(p, m));
            let jwt = src.jwt_bundle.as_deref().map(|p| Slot::from_file(p, m));
            let x509 = x509.transpose().map_err(|e| errors.push(e)).ok().flatten();
            let jwt = jwt.transpose().map_err(|e| errors.push(e)).ok().flatten();
            domains.insert(td.to_owned(), Domain { x509, jwt });
        }
        if !errors.is_empty() {
            return Err(LoadErrors(errors));
        }
        Ok(TrustStore {
            domains,
            metrics: Some(metrics),
            workload: Default::default(),
        })
    }

    /// A store with no trust domains (add fixed bundles with [`TrustStore::insert`]).
    pub fn empty() -> Self {
        TrustStore::default()
    }

    /// Add (or replace) a trust domain with fixed, in-memory bundles that are never reloaded
    /// (the demo, tests).
    pub fn insert(&mut self, td: TrustDomain, x509: Option<X509Bundle>, jwt: Option<JwtBundle>) {
        let domain = Domain {
            x509: x509.map(Slot::fixed),
            jwt: jwt.map(Slot::fixed),
        };
        self.domains.insert(td.as_str().to_owned(), domain);
    }

    /// The current X.509 authorities of `td` (the Workload API's merged with the file's).
    pub fn x509(&self, td: &str) -> Option<Arc<X509Bundle>> {
        if let Some(b) = self.workload.x509(td) {
            return Some(b);
        }
        self.file_x509(td)
    }

    /// The current JWT authorities of `td` (the Workload API's merged with the file's).
    pub fn jwt(&self, td: &str) -> Option<Arc<JwtBundle>> {
        if let Some(b) = self.workload.jwt(td) {
            return Some(b);
        }
        self.file_jwt(td)
    }

    pub(super) fn file_x509(&self, td: &str) -> Option<Arc<X509Bundle>> {
        let slot = self.domains.get(td)?.x509.as_ref()?;
        Some(slot.current.load_full())
    }

    pub(super) fn file_jwt(&self, td: &str) -> Option<Arc<JwtBundle>> {
        let slot = self.domains.get(td)?.jwt.as_ref()?;
        Some(slot.current.load_full())
    }

    /// Whether any trust domain has X.509 authorities (else client certificates are pointless).
    pub fn has_x509(&self) -> bool {
        self.workload.active() || self.domains.values().any(|d| d.x509.is_some())
    }

    /// Replace what the Workload API delivered: DER roots and JWK sets (JSON) per trust domain.
    /// A trust domain absent here falls back to its `[trust]` files (or is no longer trusted).
    pub fn set_workload_bundles(
        &self,
        x509: HashMap<String, Vec<rustls::pki_types::CertificateDer<'static>>>,
        jwt: HashMap<String, Vec<u8>>,
    ) {
        self.workload.set(self, x509, jwt);
    }

    /// The configured trust domain names, sorted.
    pub fn trust_domains(&self) -> Vec<&str> {
        let mut v: Vec<&str> = self.domains.keys().map(String::as_str).collect();
        v.sort_unstable();
        v
    }

    /// Reload the files that changed. Returns how many bundles were replaced.
    pub fn poll(&self) -> usize {
        let m = self.metrics.as_deref();
        let mut n = 0;
        for (td, d) in &self.domains {
            n += usize::from(d.x509.as_ref().is_some_and(|s| s.poll(td, m)));
            n += usize::from(d.jwt.as_ref().is_some_and(|s| s.poll(td, m)));
        }
        if n > 0 {
            // Merged bundles hold the files' roots and keys: merge again.
            self.workload.remerge(self);
        }
        n
    }

    /// Poll the files every `every` until the store is dropped.
    pub fn spawn_watcher(self: &Arc<Self>, every: Duration) -> tokio::task::JoinHandle<()> {
        crate::reload::spawn_watcher(self, every)
    }
}

impl crate::reload::Reload for TrustStore {
    fn poll_files(&self) {
        self.poll();
    }
}

#[cfg(test)]
mod tests;
