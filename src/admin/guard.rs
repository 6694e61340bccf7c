//! Defences of the admin listener against web pages in an operator's browser, which shares the
//! loopback interface with it:
//!
//! - **DNS rebinding**: a page on `evil.example` whose name is re-pointed to 127.0.0.1 becomes
//!   "same-origin" with the admin listener and could read the inventory or revoke callers. Its
//!   requests still carry `Host: evil.example`, so only IP literals (which cannot be rebound),
//!   `localhost` (which a browser never resolves through DNS it does not control) and the
//!   listener's own address are accepted.
//! - **Cross-site requests**: a form on any site can POST to 127.0.0.1 with a form or text body
//!   without asking. Changes therefore require `Content-Type: application/json`, which a page can
//!   only send after a CORS preflight, and the listener never answers preflights.

use std::net::{IpAddr, Ipv6Addr, SocketAddr};

use http::header::{CONTENT_TYPE, HOST};
use http::{Method, Request};

use crate::problem::Code;

/// Refuse what a browser could have been tricked into sending: [`check_host`], then
/// [`check_json`].
#[cfg(test)]
pub(super) fn check<B>(req: &Request<B>, local: SocketAddr) -> Result<(), (Code, String)> {
    check_host(req, local)?;
    check_json(req)
}

/// Refuse a `Host` a rebound DNS name could carry.
pub(super) fn check_host<B>(req: &Request<B>, local: SocketAddr) -> Result<(), (Code, String)> {
    let mut hosts = req.headers().get_all(HOST).iter();
    match (hosts.next(), hosts.next()) {
        // No Host at all is HTTP/1.0 from a tool, never a browser.
        (None, _) => {}
        (Some(h), None) if host_allowed(h.as_bytes(), local) => {}
        _ => {
            return Err((
                Code::Forbidden,
                "the admin listener answers only to an IP address or localhost in Host \
                 (DNS rebinding protection)"
                    .into(),
            ))
        }
    }
    Ok(())
}

/// Refuse a change whose body a cross-site form could have sent (anything but JSON).
pub(super) fn check_json<B>(req: &Request<B>) -> Result<(), (Code, String)> {
    if !matches!(*req.method(), Method::GET | Method::HEAD) && !json_body(req) {
        return Err((
            Code::UnsupportedMediaType,
            "admin API changes need Content-Type: application/json".into(),
        ));
    }
    Ok(())
}

/// `Host` is an IP literal (with optional port), `localhost`, or the listener's own address.
fn host_allowed(host: &[u8], local: SocketAddr) -> bool {
    let Ok(host) = std::str::from_utf8(host) else {
        return false;
    };
    if host == local.to_string() {
        return true;
    }
    let name = if let Some(rest) = host.strip_prefix('[') {
        // [v6] or [v6]:port
        let Some((v6, after)) = rest.split_once(']') else {
            return false;
        };
        if !(after.is_empty() || port(after.strip_prefix(':'))) {
            return false;
        }
        return v6.parse::<Ipv6Addr>().is_ok();
    } else {
        match host.rsplit_once(':') {
            Some((name, p)) if port(Some(p)) => name,
            Some(_) => return false,
            None => host,
        }
    };
    name.eq_ignore_ascii_case("localhost") || name.parse::<IpAddr>().is_ok()
}

fn port(p: Option<&str>) -> bool {
    p.is_some_and(|p| !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()))
}

/// Exactly one `Content-Type`, of media type `application/json` (parameters allowed).
fn json_body<B>(req: &Request<B>) -> bool {
    let mut types = req.headers().get_all(CONTENT_TYPE).iter();
    let (Some(ct), None) = (types.next(), types.next()) else {
        return false;
    };
    ct.to_str().is_ok_and(|ct| {
        ct.split(';')
            .next()
            .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"))
    })
}

#[cfg(test)]
mod tests;
