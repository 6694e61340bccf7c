//! What a connection tells the request stages about the caller: addresses, TLS details, the
//! `Forwarded` hop, and a memo a mechanism keeps for the connection's later requests. Accepting
//! connections is `transport`'s (the wiring); this is the part every stage reads, so that the
//! mechanisms need nothing of the wiring.

mod hop;

pub use hop::Hop;

use std::any::Any;
use std::cell::Cell;
use std::net::SocketAddr;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, OnceLock};

use rustls::pki_types::CertificateDer;

/// What the connection tells us about the caller.
#[derive(Debug, Clone)]
pub struct ConnInfo {
    pub peer: SocketAddr,
    /// Present when the connection is TLS.
    pub tls: Option<TlsInfo>,
    /// Set by the HTTP/1.1 framing guard (`transport::framing`) when a request head on this
    /// connection could be framed two ways.
    pub ambiguous_framing: Arc<AtomicBool>,
    /// Every request head on this connection was parsed by the native HTTP/1.1 core, which
    /// refuses each framing the pipeline's framing stage refuses (`transport::h1::parse`): that
    /// stage then has only `ambiguous_framing` left to look at.
    pub framing_checked: bool,
    /// The client chain's last validation (`kind = "mtls"`), reused by later requests.
    pub svid: Memo,
    /// `Forwarded`/`X-Forwarded-For` for this peer, rendered once.
    pub hop: Hop,
}

/// TLS details of a connection.
#[derive(Debug, Clone, Default)]
pub struct TlsInfo {
    pub sni: Option<String>,
    pub h2: bool,
    /// The client's certificate chain, leaf first (empty when none was presented). Private:
    /// `leaf` below is worked out from it, so it is set once, by [`TlsInfo::new`].
    client_chain: Vec<CertificateDer<'static>>,
    leaf: LeafFacts,
}

/// What the leaf certificate says that requests ask again and again: worked out on a
/// connection's first request that asks, then kept for its later ones. A connection's chain
/// never changes (rustls has no renegotiation and no post-handshake client authentication), so
/// a kept answer is the one a new computation would give. Per request, on the mTLS route, the
/// thumbprint's SHA-256 over the DER and the certificate's parse for `notAfter` were about half
/// of its user time (issue 22).
#[derive(Debug, Clone, Default)]
struct LeafFacts {
    thumbprint: OnceLock<Option<String>>,
    not_after: OnceLock<Option<std::time::SystemTime>>,
}

impl TlsInfo {
    /// A connection's TLS details: the SNI it asked for, whether ALPN chose h2, and the client's
    /// certificate chain, leaf first (empty when none was presented).
    pub fn new(sni: Option<String>, h2: bool, client_chain: Vec<CertificateDer<'static>>) -> Self {
        TlsInfo {
            sni,
            h2,
            client_chain,
            leaf: LeafFacts::default(),
        }
    }

    /// The client's certificate chain, leaf first (empty when none was presented).
    pub fn client_chain(&self) -> &[CertificateDer<'static>] {
        &self.client_chain
    }

    /// [`leaf_thumbprint`] of the client chain, computed once per connection.
    pub fn leaf_thumbprint(&self) -> Option<&str> {
        self.leaf
            .thumbprint
            .get_or_init(|| leaf_thumbprint(&self.client_chain))
            .as_deref()
    }

    /// [`not_after`] of the client chain's leaf, parsed once per connection.
    pub fn leaf_not_after(&self) -> Option<std::time::SystemTime> {
        *self
            .leaf
            .not_after
            .get_or_init(|| self.client_chain.first().and_then(|c| not_after(c)))
    }
}

impl ConnInfo {
    /// A connection from `peer`; `tls` when it is TLS.
    pub fn new(peer: SocketAddr, tls: Option<TlsInfo>, ambiguous_framing: Arc<AtomicBool>) -> Self {
        let proto = if tls.is_some() { "https" } else { "http" };
        ConnInfo {
            peer,
            tls,
            ambiguous_framing,
            framing_checked: false,
            svid: Default::default(),
            hop: Hop::new(peer, proto),
        }
    }

    /// A loopback connection for unit tests, TLS with `client_chain` when given.
    #[cfg(test)]
    pub fn for_tests(client_chain: Option<Vec<CertificateDer<'static>>>) -> Self {
        let addr = SocketAddr::from(([127, 0, 0, 1], 1));
        let tls = client_chain.map(|client_chain| TlsInfo::new(None, false, client_chain));
        ConnInfo::new(addr, tls, Arc::default())
    }

    /// `https` or `http`.
    pub fn proto(&self) -> &'static str {
        self.hop.proto()
    }
}

/// One value a mechanism keeps on a connection for its later requests (the mTLS validation of
/// the client chain, `spiffe::svid_cache`). Its type is the owner's alone: this module stores it
/// without knowing it, and a read of another type finds nothing. A copy starts empty, so a copy's
/// first use recomputes, which is always correct.
#[derive(Default)]
pub struct Memo(Mutex<Option<Box<dyn Any + Send>>>);

impl Memo {
    /// `f` of the value kept, when there is one of type `T`.
    pub fn read<T: 'static, R>(&self, f: impl FnOnce(&T) -> Option<R>) -> Option<R> {
        let guard = self.0.lock().ok()?;
        f(guard.as_ref()?.downcast_ref::<T>()?)
    }

    /// Keep `value`, replacing what was kept.
    pub fn keep<T: Send + 'static>(&self, value: T) {
        if let Ok(mut guard) = self.0.lock() {
            *guard = Some(Box::new(value));
        }
    }
}

impl Clone for Memo {
    fn clone(&self) -> Self {
        Memo::default()
    }
}

impl std::fmt::Debug for Memo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Memo")
    }
}

/// The `x5t#S256` thumbprint of a chain's leaf (RFC 8705 §3.1: base64url of SHA-256 of the DER,
/// no padding), if there is a leaf: `cnf` of tokens minted for an mTLS caller.
pub fn leaf_thumbprint(chain: &[CertificateDer<'_>]) -> Option<String> {
    use base64::Engine as _;
    use sha2::Digest as _;
    let leaf = chain.first()?;
    Some(
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(sha2::Sha256::digest(leaf.as_ref())),
    )
}

/// A certificate's `notAfter`.
pub fn not_after(cert: &CertificateDer<'_>) -> Option<std::time::SystemTime> {
    let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref()).ok()?;
    let secs = u64::try_from(parsed.validity().not_after.timestamp()).ok()?;
    Some(std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(secs))
}

thread_local! {
    static WORKER: Cell<usize> = const { Cell::new(0) };
}

/// The data-plane worker running the current thread, `1..=n`; `0` on any other thread (the
/// control-plane runtime, blocking pools, tests). `proxy` keys its upstream pool slots on it, so
/// that a connection's upstream requests stay on its thread (see `transport::workers`).
pub fn worker_index() -> usize {
    WORKER.with(Cell::get)
}

/// Mark the current thread as worker `i` (`transport::workers` calls it once per worker thread).
pub fn set_worker_index(i: usize) {
    WORKER.with(|c| c.set(i));
}

/// Slots of a [`PerWorker`]: one per data-plane worker up to 64 (slot 0 for other threads), as
/// `proxy`'s upstream pools; workers past that share a slot, which stays correct (a slot is
/// locked), only slower.
const WORKER_SLOTS: usize = 65;

/// One value per data-plane worker: the last entry a shared cache handed out on this thread, so
/// that a worker serving the same caller again checks that entry in full instead of hashing the
/// caller's key to find it again (issue 22). What is kept is only ever a copy of what the cache
/// itself holds; its owner compares every field of the key before using it, exactly as a hit in
/// the cache does, and invalidates it the way it invalidates the cache.
pub struct PerWorker<T> {
    slots: Box<[Slot<T>]>,
}

/// A slot on its own cache line: workers writing their slots do not contend for one line.
#[repr(align(64))]
struct Slot<T>(Mutex<Option<T>>);

impl<T> PerWorker<T> {
    /// Every slot empty.
    pub fn new() -> Self {
        PerWorker {
            slots: (0..WORKER_SLOTS).map(|_| Slot(Mutex::new(None))).collect(),
        }
    }

    fn slot(&self) -> Option<&Mutex<Option<T>>> {
        self.slots.get(worker_index() % WORKER_SLOTS).map(|s| &s.0)
    }

    /// `f` of this worker's value, when there is one.
    pub fn read<R>(&self, f: impl FnOnce(&T) -> Option<R>) -> Option<R> {
        let guard = self.slot()?.lock().ok()?;
        f(guard.as_ref()?)
    }

    /// Keep `value` as this worker's, replacing what it kept.
    pub fn keep(&self, value: T) {
        let old = match self.slot().map(Mutex::lock) {
            Some(Ok(mut guard)) => guard.replace(value),
            _ => None,
        };
        // Dropped once the slot is free again.
        drop(old);
    }
}

impl<T> Default for PerWorker<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> std::fmt::Debug for PerWorker<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PerWorker")
    }
}

#[cfg(test)]
mod tests;

/// Certificate chain and private key files (PEM): a listener's certificate, or the client
/// certificate a route presents to its upstream.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert: std::path::PathBuf,
    pub key: std::path::PathBuf,
}

/// A client certificate resolver that always presents one certificate (an upstream
/// connection's, chosen when its pool was built).
#[derive(Debug)]
pub struct FixedClientCert(pub Arc<rustls::sign::CertifiedKey>);

impl rustls::client::ResolvesClientCert for FixedClientCert {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[rustls::SignatureScheme],
    ) -> Option<Arc<rustls::sign::CertifiedKey>> {
        Some(self.0.clone())
    }

    fn has_certs(&self) -> bool {
        true
    }
}
