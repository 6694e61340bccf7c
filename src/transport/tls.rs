//! The data listener's certificate, reloaded when its files change. Handshakes read the current
//! certificate through an `ArcSwap`, so a swap never touches open connections; a bad new file
//! (unreadable, half-written, key not matching) keeps the old certificate and is reported.

use rustls_pki_types::pem::PemObject;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use super::settings::TlsFiles;
use crate::metrics::Metrics;
use crate::spiffe::workload::CertSource;

/// Why a certificate could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    #[error("{path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{0}: no PEM certificate found")]
    NoCert(String),
    #[error("{0}: no PEM private key found")]
    NoKey(String),
    #[error("{path}: unusable private key: {source}")]
    Key { path: String, source: rustls::Error },
    #[error("the private key does not match the certificate")]
    Mismatch,
}

fn read(path: &Path) -> Result<Vec<u8>, CertError> {
    std::fs::read(path).map_err(|source| CertError::Read {
        path: path.display().to_string(),
        source,
    })
}

/// Load a PEM certificate chain.
pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, CertError> {
    let pem = read(path)?;
    let certs: Vec<_> = rustls_pki_types::CertificateDer::pem_slice_iter(&pem)
        .filter_map(Result::ok)
        .collect();
    if certs.is_empty() {
        return Err(CertError::NoCert(path.display().to_string()));
    }
    Ok(certs)
}

/// Load a PEM private key (PKCS#8, SEC1 or PKCS#1).
pub fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, CertError> {
    let pem = read(path)?;
    PrivateKeyDer::from_pem_slice(&pem)
        .ok()
        .ok_or_else(|| CertError::NoKey(path.display().to_string()))
}

/// Load and check a certificate and its key.
pub fn load_certified_key(files: &TlsFiles) -> Result<CertifiedKey, CertError> {
    let certs = load_certs(&files.cert)?;
    let key = load_key(&files.key)?;
    let provider = rustls::crypto::aws_lc_rs::default_provider();
    let signing = provider
        .key_provider
        .load_private_key(key)
        .map_err(|source| CertError::Key {
            path: files.key.display().to_string(),
            source,
        })?;
    let ck = CertifiedKey::new(certs, signing);
    ck.keys_match().map_err(|_| CertError::Mismatch)?;
    Ok(ck)
}

/// Stat fingerprint of the watched files: cheap to compare every poll.
type Fingerprint = Vec<Option<(SystemTime, u64)>>;

fn fingerprint(paths: &[&PathBuf]) -> Fingerprint {
    paths
        .iter()
        .map(|p| {
            std::fs::metadata(p)
                .ok()
                .and_then(|m| Some((m.modified().ok()?, m.len())))
        })
        .collect()
}

/// A server certificate that follows its files.
#[derive(Debug)]
pub struct ReloadingCert {
    files: TlsFiles,
    current: ArcSwap<CertifiedKey>,
    seen: Mutex<Fingerprint>,
    metrics: Arc<Metrics>,
}

impl ReloadingCert {
    /// Load now; fails if the files are not usable at start.
    pub fn new(files: TlsFiles, metrics: Arc<Metrics>) -> Result<Self, CertError> {
        let seen = fingerprint(&[&files.cert, &files.key]);
        let ck = load_certified_key(&files)?;
        let me = ReloadingCert {
            files,
            current: ArcSwap::from_pointee(ck),
            seen: Mutex::new(seen),
            metrics,
        };
        me.report_expiry();
        Ok(me)
    }

    fn report_expiry(&self) {
        let ck = self.current.load();
        if let Some(at) = ck.cert.first().and_then(|c| crate::conn::not_after(c)) {
            let file = self.files.cert.display().to_string();
            self.metrics.set_cert_expiry(&file, at);
            let secs = match at.duration_since(SystemTime::now()) {
                Ok(d) => d.as_secs_f64(),
                Err(e) => -e.duration().as_secs_f64(),
            };
            if secs < 7.0 * 86400.0 {
                tracing::warn!(file = %file, days = secs / 86400.0, "the listener certificate expires within 7 days");
            }
        }
    }

    /// Reload if the files changed. Returns whether a new certificate is in use.
    pub fn poll(&self) -> bool {
        let now = fingerprint(&[&self.files.cert, &self.files.key]);
        {
            let Ok(seen) = self.seen.lock() else {
                return false;
            };
            if *seen == now {
                return false;
            }
        }
        match load_certified_key(&self.files) {
            Ok(ck) => {
                self.current.store(Arc::new(ck));
                if let Ok(mut seen) = self.seen.lock() {
                    *seen = now;
                }
                self.metrics.config_reloads_total.with(&["ok"]).inc();
                self.report_expiry();
                tracing::info!(cert = %self.files.cert.display(), "listener certificate reloaded");
                true
            }
            Err(e) => {
                // Keep the old certificate; the fingerprint stays stale so the next poll retries
                // (a half-written pair usually becomes valid a moment later).
                self.metrics.config_reloads_total.with(&["error"]).inc();
                tracing::error!(error = %e, "listener certificate reload failed; keeping the previous one");
                false
            }
        }
    }

    /// Poll the files every `every` until the task is dropped.
    pub fn spawn_watcher(self: &Arc<Self>, every: Duration) -> tokio::task::JoinHandle<()> {
        crate::reload::spawn_watcher(self, every)
    }
}

impl ResolvesServerCert for ReloadingCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load_full())
    }
}

impl CertSource for ReloadingCert {
    fn current(&self) -> Arc<CertifiedKey> {
        self.current.load_full()
    }
}

/// Serves whatever certificate a [`CertSource`] holds at each handshake (the Workload API's
/// SVID: a rotation is used by the next handshake, open connections keep theirs).
#[derive(Debug)]
pub struct SourceResolver(pub Arc<dyn CertSource>);

impl ResolvesServerCert for SourceResolver {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.current())
    }
}

/// The rustls server config of the data listener.
///
/// With `client_auth`, client certificates are requested (not required: routes decide) and a
/// presented chain that does not verify fails the handshake.
pub fn server_config(
    cert: Arc<dyn ResolvesServerCert>,
    client_auth: Option<Arc<dyn rustls::server::danger::ClientCertVerifier>>,
) -> Result<rustls::ServerConfig, rustls::Error> {
    let builder = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()?;
    let builder = match client_auth {
        Some(v) => builder.with_client_cert_verifier(v),
        None => builder.with_no_client_auth(),
    };
    let mut cfg = builder.with_cert_resolver(cert);
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(cfg)
}

impl crate::reload::Reload for ReloadingCert {
    fn poll_files(&self) {
        self.poll();
    }
}
