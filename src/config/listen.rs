//! `[listen]`: the data-plane listener, its timeouts, caps and body policy.

use std::path::Path;

use super::validate::Collector;
use super::{defaults, raw};
use crate::transport::settings::{Http1Engine, Listen};

pub(super) fn listen(c: &mut Collector<'_>, base: &Path, l: raw::Listen) -> Option<Listen> {
    let addr = c.addr("listen.addr", &l.addr);
    let bodies = body_policy(c, &l);
    let tls = match l.tls {
        Some(t) => super::spiffe::server_cert(c, base, "listen.tls", t),
        None => {
            c.warn("no [listen.tls]: the data listener speaks plain HTTP (development only)");
            None
        }
    };
    let header_timeout = c.duration(
        "listen.header_timeout",
        l.header_timeout.as_ref(),
        defaults::HEADER_TIMEOUT,
    );
    let handshake_timeout = c.duration(
        "listen.handshake_timeout",
        l.handshake_timeout.as_ref(),
        defaults::HANDSHAKE_TIMEOUT,
    );
    let idle_timeout = c.duration(
        "listen.idle_timeout",
        l.idle_timeout.as_ref(),
        defaults::IDLE_TIMEOUT,
    );
    let drain_timeout = c.duration(
        "listen.drain_timeout",
        l.drain_timeout.as_ref(),
        defaults::DRAIN_TIMEOUT,
    );
    let send_timeout = c.duration(
        "listen.send_timeout",
        l.send_timeout.as_ref(),
        defaults::SEND_TIMEOUT,
    );
    let max_header_bytes = c.size(
        "listen.max_header_bytes",
        l.max_header_bytes.as_ref(),
        defaults::MAX_HEADER_BYTES as u64,
    );
    if max_header_bytes > 1024 * 1024 {
        c.push("listen.max_header_bytes", "must be at most 1MiB");
    }
    let max_connections = positive(
        c,
        "listen.max_connections",
        l.max_connections,
        defaults::MAX_CONNECTIONS as u64,
    );
    let max_headers = positive(
        c,
        "listen.max_headers",
        l.max_headers,
        defaults::MAX_HEADERS as u64,
    );
    if max_headers > 1000 {
        c.push("listen.max_headers", "must be at most 1000");
    }
    let streams = positive(
        c,
        "listen.max_concurrent_streams",
        l.max_concurrent_streams,
        defaults::MAX_CONCURRENT_STREAMS.into(),
    );
    let cpus = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    let workers = positive(c, "listen.workers", l.workers, cpus as u64);
    if workers > 1024 {
        c.push("listen.workers", "must be at most 1024");
    }
    let max_auth_failures = match l.max_auth_failures.as_deref().map(str::trim) {
        None => Some(defaults::MAX_AUTH_FAILURES),
        Some("off") => None,
        Some(v) => match super::creds::parse_per(v) {
            Ok(p) => Some(p),
            Err(e) => {
                c.push("listen.max_auth_failures", format!("{e}, or \"off\""));
                Some(defaults::MAX_AUTH_FAILURES)
            }
        },
    };
    let http1_engine = match l.http1_engine.as_deref() {
        None | Some("native") => Http1Engine::Native,
        Some("hyper") => Http1Engine::Hyper,
        Some(_) => {
            c.push("listen.http1_engine", "must be \"native\" or \"hyper\"");
            Http1Engine::Native
        }
    };
    Some(Listen {
        addr: addr?,
        http1_engine,
        bodies,
        max_auth_failures,
        tls,
        header_timeout,
        handshake_timeout,
        idle_timeout,
        drain_timeout,
        send_timeout,
        max_connections: usize::try_from(max_connections).unwrap_or(usize::MAX),
        max_header_bytes: usize::try_from(max_header_bytes).unwrap_or(usize::MAX),
        max_headers: usize::try_from(max_headers).unwrap_or(usize::MAX),
        max_concurrent_streams: u32::try_from(streams).unwrap_or(u32::MAX),
        workers: usize::try_from(workers.min(1024)).unwrap_or(1),
    })
}

/// `[listen] body_timeout`, `body_min_rate`, `max_buffered_bodies`, `max_buffered_per_source`.
pub(super) fn body_policy(
    c: &mut Collector<'_>,
    l: &raw::Listen,
) -> crate::limits::bodies::BodyPolicy {
    let min_rate = match l.body_min_rate.as_deref().map(str::trim) {
        Some("off") => 0,
        _ => c.size(
            "listen.body_min_rate",
            l.body_min_rate.as_ref(),
            defaults::BODY_MIN_RATE,
        ),
    };
    let total = c.size(
        "listen.max_buffered_bodies",
        l.max_buffered_bodies.as_ref(),
        defaults::MAX_BUFFERED_BODIES,
    );
    let per_source = c.size(
        "listen.max_buffered_per_source",
        l.max_buffered_per_source.as_ref(),
        defaults::MAX_BUFFERED_PER_SOURCE,
    );
    crate::limits::bodies::BodyPolicy {
        timeout: c.duration(
            "listen.body_timeout",
            l.body_timeout.as_ref(),
            defaults::BODY_TIMEOUT,
        ),
        min_rate,
        max_total: usize::try_from(total).unwrap_or(usize::MAX),
        max_per_source: usize::try_from(per_source).unwrap_or(usize::MAX),
    }
}

pub(super) fn positive(c: &mut Collector<'_>, key: &str, v: Option<u64>, default: u64) -> u64 {
    match v {
        None => default,
        Some(0) => {
            c.push(key, "must be greater than zero");
            default
        }
        Some(n) => n,
    }
}
