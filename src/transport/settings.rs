//! `[listen]` (and the certificate files `[admin.tls]` also names) as checked from the config.

use std::net::SocketAddr;
use std::time::Duration;

/// `[listen]`
#[derive(Debug, Clone)]
pub struct Listen {
    pub addr: SocketAddr,
    pub tls: Option<ServerCert>,
    pub header_timeout: Duration,
    pub handshake_timeout: Duration,
    pub idle_timeout: Duration,
    pub drain_timeout: Duration,
    /// A write to the caller blocked this long cuts the connection (`send_deadline`).
    pub send_timeout: Duration,
    pub max_connections: usize,
    pub max_header_bytes: usize,
    pub max_headers: usize,
    pub max_concurrent_streams: u32,
    /// Failed authentications allowed per source address in a window, then 429 for that source
    /// until the window's budget refills; `None` when turned off.
    pub max_auth_failures: Option<(u32, Duration)>,
    /// Data-plane worker threads, each running its share of the connections (at least 1).
    pub workers: usize,
    /// Deadlines and memory caps for request bodies read whole before forwarding.
    pub bodies: crate::limits::bodies::BodyPolicy,
    /// Which HTTP/1.1 server core answers the data listener (h2 is always hyper's).
    pub http1_engine: Http1Engine,
}

#[cfg(test)]
impl Listen {
    /// Plain HTTP on the native core, small limits, one worker: what the transport's unit
    /// tests serve with.
    pub(crate) fn for_tests() -> Listen {
        Listen {
            addr: "127.0.0.1:0".parse().unwrap(),
            tls: None,
            header_timeout: Duration::from_secs(2),
            handshake_timeout: Duration::from_secs(2),
            idle_timeout: Duration::from_secs(2),
            drain_timeout: Duration::from_secs(2),
            send_timeout: Duration::from_secs(60),
            max_connections: 10,
            max_header_bytes: 8 * 1024,
            max_headers: 50,
            max_concurrent_streams: 10,
            max_auth_failures: None,
            workers: 1,
            bodies: crate::limits::bodies::BodyPolicy {
                timeout: Duration::from_secs(2),
                min_rate: 0,
                max_total: 1 << 20,
                max_per_source: 1 << 20,
            },
            http1_engine: Http1Engine::Native,
        }
    }
}

/// `[listen] http1_engine`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Http1Engine {
    /// hyper's HTTP/1.1 server: the fallback, kept for one release for anyone who meets a
    /// difference.
    Hyper,
    /// The gateway's own HTTP/1.1 core (`transport::h1`; the default).
    #[default]
    Native,
}

pub use crate::conn::TlsFiles;

/// Where a listener's certificate comes from (`[listen.tls]` / `[admin.tls]` `source`).
#[derive(Debug, Clone)]
pub enum ServerCert {
    /// `source = "files"` (default): `cert` and `key`, reloaded when they change.
    Files(TlsFiles),
    /// `source = "workload-api"`: the X.509-SVID from `[spiffe]`, rotated live.
    WorkloadApi,
}
