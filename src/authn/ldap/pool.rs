//! A bounded pool of LDAP connections.
//!
//! At most `size` connections exist at once (a semaphore): a burst of callers waits for a free
//! connection, up to the operation timeout, instead of opening hundreds of sockets to a mainframe.
//! Each idle connection remembers who it is bound as, so a search connection stays bound as the
//! service account and is not re-bound for every request.
//!
//! A connection that failed at the transport level (I/O error, timeout, closed by the server) is
//! dropped, never returned: after a directory restart the dead sockets go away on their own and
//! the next request opens a fresh one, without rebuilding anything.
//!
//! TCP_NODELAY: ldap3 does not set it, and a bind is a small write followed by a wait for the
//! answer, which Nagle plus delayed ACKs stall by ~40 ms. The socket is therefore connected here
//! (under the connect timeout), `set_nodelay(true)`, and handed to ldap3 as a std stream.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ldap3::{Ldap, LdapConnAsync, LdapConnSettings, StdStream};
use rustls::ClientConfig;
use tokio::sync::{Semaphore, SemaphorePermit};

use super::LdapStats;

/// Who a connection is bound as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Bound {
    Anonymous,
    Service,
    User,
}

/// How the connection is secured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Security {
    Plain,
    StartTls,
    Ldaps,
}

/// The directory could not be reached or did not answer in time. Never contains a secret.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub(super) struct Unavailable(pub String);

/// One open connection.
pub(super) struct Conn {
    pub ldap: Ldap,
    pub bound: Bound,
    open: Arc<AtomicUsize>,
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.open.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Where and how to connect.
pub(super) struct Target {
    pub url: String,
    pub host: String,
    pub port: u16,
    pub security: Security,
    pub tls: Option<Arc<ClientConfig>>,
}

pub(super) struct Pool {
    target: Target,
    idle: Mutex<Vec<Conn>>,
    permits: Semaphore,
    size: usize,
    /// Connections that exist (idle or leased).
    open: Arc<AtomicUsize>,
    connect_timeout: Duration,
    op_timeout: Duration,
    stats: Arc<LdapStats>,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("url", &self.target.url)
            .field("security", &self.target.security)
            .field("available", &self.permits.available_permits())
            .finish()
    }
}

impl Pool {
    pub fn new(
        target: Target,
        size: usize,
        connect_timeout: Duration,
        op_timeout: Duration,
        stats: Arc<LdapStats>,
    ) -> Self {
        Pool {
            target,
            idle: Mutex::new(Vec::with_capacity(size)),
            permits: Semaphore::new(size),
            size,
            open: Arc::default(),
            connect_timeout,
            op_timeout,
            stats,
        }
    }

    /// The per-operation timeout.
    pub fn op_timeout(&self) -> Duration {
        self.op_timeout
    }

    /// A connection, preferably one already bound as `prefer`. Waits for a free slot up to the
    /// operation timeout.
    pub async fn get(&self, prefer: Bound) -> Result<Lease<'_>, Unavailable> {
        let permit = tokio::time::timeout(self.op_timeout, self.permits.acquire())
            .await
            .map_err(|_| Unavailable("all LDAP connections busy".into()))?
            .map_err(|_| Unavailable("LDAP pool closed".into()))?;
        let conn = match self.take_idle(prefer) {
            Some(c) => c,
            None => self.connect().await?,
        };
        Ok(Lease {
            pool: self,
            conn: Some(conn),
            _permit: permit,
        })
    }

    /// An idle connection bound as `prefer`; else, when the pool is full, any idle one (to be
    /// re-bound); else none (open a new one, so search and user connections do not keep
    /// re-binding each other's).
    fn take_idle(&self, prefer: Bound) -> Option<Conn> {
        let mut idle = self.idle.lock().ok()?;
        // Connections whose driver has stopped (server closed the socket) are dropped here.
        idle.retain_mut(|c| !c.ldap.is_closed());
        let pos = match idle.iter().rposition(|c| c.bound == prefer) {
            Some(p) => p,
            None if self.open.load(Ordering::Relaxed) >= self.size => idle.len().checked_sub(1)?,
            None => return None,
        };
        Some(idle.swap_remove(pos))
    }

    async fn connect(&self) -> Result<Conn, Unavailable> {
        self.stats.connects.inc();
        let t = &self.target;
        let addr = (t.host.as_str(), t.port);
        let tcp = tokio::time::timeout(self.connect_timeout, tokio::net::TcpStream::connect(addr))
            .await
            .map_err(|_| Unavailable(format!("connect to {} timed out", t.url)))?
            .map_err(|e| Unavailable(format!("connect to {}: {e}", t.url)))?;
        tcp.set_nodelay(true)
            .map_err(|e| Unavailable(format!("TCP_NODELAY: {e}")))?;
        let std = tcp
            .into_std()
            .map_err(|e| Unavailable(format!("socket: {e}")))?;
        let mut settings = LdapConnSettings::new()
            .set_std_stream(StdStream::Tcp(std))
            // Covers the TLS handshake and StartTLS exchange.
            .set_conn_timeout(self.connect_timeout)
            .set_starttls(t.security == Security::StartTls);
        if let Some(cfg) = &t.tls {
            settings = settings.set_config(cfg.clone());
        }
        let (conn, ldap) = LdapConnAsync::with_settings(settings, &t.url)
            .await
            .map_err(|e| Unavailable(format!("LDAP session with {}: {e}", t.url)))?;
        tokio::spawn(async move {
            if let Err(e) = conn.drive().await {
                tracing::debug!(error = %e, "LDAP connection ended");
            }
        });
        self.open.fetch_add(1, Ordering::Relaxed);
        Ok(Conn {
            ldap,
            bound: Bound::Anonymous,
            open: self.open.clone(),
        })
    }
}

/// A connection on loan. It goes back to the pool only through [`Lease::release`], after an
/// operation completed cleanly; dropped otherwise (an error, a timeout, or the request future
/// being cancelled mid-operation leave its state unknown).
pub(super) struct Lease<'a> {
    pool: &'a Pool,
    conn: Option<Conn>,
    _permit: SemaphorePermit<'a>,
}

impl Lease<'_> {
    /// The connection (always there while leased).
    pub fn conn(&mut self) -> Option<&mut Conn> {
        self.conn.as_mut()
    }

    /// Return the connection to the pool for reuse.
    pub fn release(mut self) {
        if let Some(c) = self.conn.take() {
            if let Ok(mut idle) = self.pool.idle.lock() {
                idle.push(c);
            }
        }
    }
}
