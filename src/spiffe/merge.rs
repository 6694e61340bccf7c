//! The Workload API's bundles inside the trust store: per trust domain, the agent's X.509 roots
//! and JWT keys, merged with the `[trust."td"]` files when both exist (`docs/spiffe.md`). The
//! agent's set replaces the previous one whole, so a CA it removes stops being trusted at once;
//! a trust domain it no longer sends falls back to its files, if any.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use rustls::pki_types::CertificateDer;

use super::bundle::{JwtBundle, X509Bundle};
use super::store::TrustStore;

/// What the agent sent last, as received.
#[derive(Debug, Default)]
struct Raw {
    x509: HashMap<String, Vec<CertificateDer<'static>>>,
    jwt: HashMap<String, Vec<u8>>,
}

/// The merged bundles validators read.
#[derive(Debug, Default)]
struct Merged {
    x509: HashMap<String, Arc<X509Bundle>>,
    jwt: HashMap<String, Arc<JwtBundle>>,
}

/// The Workload API layer of a [`TrustStore`].
#[derive(Debug, Default)]
pub(super) struct Overlay {
    active: AtomicBool,
    raw: Mutex<Raw>,
    merged: ArcSwap<Merged>,
}

impl Overlay {
    pub(super) fn active(&self) -> bool {
        self.active.load(Ordering::Acquire)
    }

    pub(super) fn x509(&self, td: &str) -> Option<Arc<X509Bundle>> {
        if !self.active() {
            return None;
        }
        self.merged.load().x509.get(td).cloned()
    }

    pub(super) fn jwt(&self, td: &str) -> Option<Arc<JwtBundle>> {
        if !self.active() {
            return None;
        }
        self.merged.load().jwt.get(td).cloned()
    }

    pub(super) fn set(
        &self,
        store: &TrustStore,
        x509: HashMap<String, Vec<CertificateDer<'static>>>,
        jwt: HashMap<String, Vec<u8>>,
    ) {
        if let Ok(mut raw) = self.raw.lock() {
            *raw = Raw { x509, jwt };
        }
        self.active.store(true, Ordering::Release);
        self.remerge(store);
    }

    /// Rebuild the merged bundles from the agent's last set and the files' current bundles.
    pub(super) fn remerge(&self, store: &TrustStore) {
        if !self.active() {
            return;
        }
        let Ok(raw) = self.raw.lock() else {
            return;
        };
        let previous = self.merged.load_full();
        let mut merged = Merged::default();
        for (td, roots) in &raw.x509 {
            let mut all = roots.clone();
            if let Some(file) = store.file_x509(td) {
                for r in file.roots() {
                    if !all.contains(r) {
                        all.push(r.clone());
                    }
                }
            }
            match X509Bundle::from_der(all) {
                Ok(b) => {
                    merged.x509.insert(td.clone(), Arc::new(b));
                }
                Err(e) => {
                    // Keep what we had for this trust domain rather than trusting nothing new.
                    tracing::error!(trust_domain = %td, error = %e, "Workload API X.509 bundle unusable; keeping the previous one");
                    if let Some(b) = previous.x509.get(td) {
                        merged.x509.insert(td.clone(), b.clone());
                    }
                }
            }
        }
        for (td, doc) in &raw.jwt {
            match JwtBundle::parse(doc) {
                Ok(b) => {
                    let b = match store.file_jwt(td) {
                        Some(file) => b.merged(&file),
                        None => b,
                    };
                    merged.jwt.insert(td.clone(), Arc::new(b));
                }
                Err(e) => {
                    tracing::error!(trust_domain = %td, error = %e, "Workload API JWT bundle unusable; keeping the previous one");
                    if let Some(b) = previous.jwt.get(td) {
                        merged.jwt.insert(td.clone(), b.clone());
                    }
                }
            }
        }
        let tds: Vec<&String> = merged.x509.keys().collect();
        tracing::debug!(trust_domains = ?tds, "Workload API bundles in use");
        self.merged.store(Arc::new(merged));
    }
}

#[cfg(test)]
mod tests;
