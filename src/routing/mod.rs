//! Route selection: optional host, then the longest matching path prefix (on segment boundaries),
//! then the method. Generic over the route type ([`Routable`]): routing knows nothing of the
//! mechanisms a route uses. The request is made canonical first (see [`canonical`] and [`path`]); a path
//! or host that could be read two ways is refused before any route is consulted.

pub mod canonical;
pub mod path;
pub mod settings;

use std::cell::RefCell;
use std::sync::Arc;

use http::{HeaderValue, Method};

use crate::problem::{Code, Refusal};
use settings::HostMatch;

/// How one route is matched: optional host, path prefix, methods.
#[derive(Debug, Clone, Copy)]
pub struct Matcher<'a> {
    pub host: Option<&'a HostMatch>,
    pub path_prefix: &'a str,
    /// Prefix matching ignores ASCII case (`[routes.match] case_insensitive`).
    pub case_insensitive: bool,
    /// `None`: any method.
    pub methods: Option<&'a [Method]>,
    /// `[routes.match] path_parameters`: applied to the request once the route is chosen.
    pub path_parameters: canonical::PathParameters,
}

/// What the router needs of a route: how it is matched. The router knows nothing else of it
/// (the pipeline's route bundles the mechanisms built for it).
pub trait Routable {
    fn matcher(&self) -> Matcher<'_>;
}

/// All routes, ordered most specific first.
#[derive(Debug)]
pub struct Router<R> {
    routes: Vec<Arc<R>>,
}

impl<R> Default for Router<R> {
    fn default() -> Self {
        Router { routes: Vec::new() }
    }
}

fn host_rank(h: Option<&HostMatch>) -> u8 {
    match h {
        Some(HostMatch::Exact(_)) => 0,
        Some(HostMatch::Wildcard(_)) => 1,
        None => 2,
    }
}

impl<R: Routable> Router<R> {
    /// Build from routes in config order; ties keep config order.
    pub fn new(mut routes: Vec<Arc<R>>) -> Self {
        routes.sort_by(|a, b| {
            let (a, b) = (a.matcher(), b.matcher());
            host_rank(a.host)
                .cmp(&host_rank(b.host))
                .then(b.path_prefix.len().cmp(&a.path_prefix.len()))
        });
        Router { routes }
    }

    /// Every route.
    pub fn routes(&self) -> &[Arc<R>] {
        &self.routes
    }

    /// Select the route for a canonical match path ([`canonical::CanonicalRequest::match_path`]:
    /// `;params` already cut, so every route is matched on the same form). The most specific
    /// (host, prefix) that matches decides: a method it does not allow is 405, never a
    /// fall-through to a broader route (which could carry a weaker policy).
    pub fn select(
        &self,
        host: Option<&str>,
        path: &str,
        method: &Method,
    ) -> Result<&Arc<R>, Refusal> {
        let mut winner: Option<Matcher<'_>> = None;
        let mut allowed: Vec<&Method> = Vec::new();
        for r in &self.routes {
            let c = r.matcher();
            if let Some(w) = winner {
                // Only routes with the very same host and prefix may still claim the method.
                if w.host != c.host || w.path_prefix != c.path_prefix {
                    continue;
                }
            } else {
                let host_ok = match (c.host, host) {
                    (None, _) => true,
                    (Some(m), Some(h)) => m.matches(h),
                    (Some(_), None) => false,
                };
                if !host_ok || !prefix_matches_case(c.path_prefix, path, c.case_insensitive) {
                    continue;
                }
                winner = Some(c);
            }
            match c.methods {
                None => return Ok(r),
                Some(ms) if ms.contains(method) => return Ok(r),
                Some(ms) => allowed.extend(ms.iter()),
            }
        }
        if winner.is_none() {
            return Err(Refusal::new(
                Code::NoRoute,
                "no route matches this host and path",
            ));
        }
        allowed.sort_by(|a, b| a.as_str().cmp(b.as_str()));
        allowed.dedup();
        let list = allowed
            .iter()
            .map(|m| m.as_str())
            .collect::<Vec<_>>()
            .join(", ");
        let mut refusal = Refusal::new(Code::MethodNotAllowed, format!("this route allows {list}"));
        refusal.allow = HeaderValue::from_str(&list).ok();
        Err(refusal)
    }
}

/// `/api` matches `/api` and `/api/x`, never `/apix`; `/api/` matches `/api/x` only.
pub fn prefix_matches(prefix: &str, path: &str) -> bool {
    prefix_matches_case(prefix, path, false)
}

/// [`prefix_matches`], ignoring ASCII case when `case_insensitive` (`[routes.match]
/// case_insensitive`, for upstreams such as IIS that serve `/Admin` as `/admin`).
pub fn prefix_matches_case(prefix: &str, path: &str, case_insensitive: bool) -> bool {
    let (Some(head), Some(rest)) = (path.get(..prefix.len()), path.get(prefix.len()..)) else {
        return false;
    };
    let same = if case_insensitive {
        head.eq_ignore_ascii_case(prefix)
    } else {
        head == prefix
    };
    same && (prefix.ends_with('/') || rest.is_empty() || rest.starts_with('/'))
}

/// The host a request is for, in canonical form ([`canonical::canonical_host`]: lower case, no
/// port, no trailing dot): the URI authority (HTTP/2 `:authority`, HTTP/1.1 absolute form) or the
/// `Host` header. Two different answers, several `Host` headers, or a malformed host are refused
/// as ambiguous. No other header (`X-Forwarded-Host`, …) is ever read for routing.
pub fn request_host(parts: &http::request::Parts) -> Result<Option<String>, Refusal> {
    shared_host(parts).map(|h| h.as_deref().map(str::to_owned))
}

/// [`request_host`], shared: the host of the usual request comes from a one-entry memo of the
/// worker thread, without copying or checking the name again (issue 22).
pub fn shared_host(parts: &http::request::Parts) -> Result<Option<Arc<str>>, Refusal> {
    let mut hosts = parts.headers.get_all(http::header::HOST).iter();
    let header = hosts.next();
    if hosts.next().is_some() {
        return Err(Refusal::new(Code::InvalidRequest, "several Host headers"));
    }
    // The usual request: an origin-form target and one `Host` already in canonical form. What
    // the full reading below would answer is that host itself (a property test compares the
    // two), without parsing an authority and copying the name twice (issue 22).
    if parts.uri.authority().is_none() {
        if let Some(h) = header.and_then(|v| memo_host(v.as_bytes())) {
            return Ok(Some(h));
        }
    }
    Ok(host_of(parts, header)?.map(Arc::from))
}

/// A `Host` value, byte for byte, and its canonical host.
type SeenHost = (Box<[u8]>, Arc<str>);

thread_local! {
    /// The last `Host` value in canonical form that this thread read, byte for byte, and its
    /// host. A worker's requests nearly always name the same host: the next one is a compare
    /// and a reference count, not a check of every byte, an allocation and a copy. One entry,
    /// replaced on a miss: a caller choosing hosts can only make it miss.
    static LAST_HOST: RefCell<Option<SeenHost>> = const { RefCell::new(None) };
}

/// [`canonical_host_port`]'s host, shared, through [`LAST_HOST`].
fn memo_host(v: &[u8]) -> Option<Arc<str>> {
    LAST_HOST.with_borrow_mut(|last| {
        if let Some((raw, host)) = last.as_ref() {
            if **raw == *v {
                return Some(host.clone());
            }
        }
        let host: Arc<str> = Arc::from(canonical_host_port(v)?);
        *last = Some((Box::from(v), host.clone()));
        Some(host)
    })
}

/// The host of a `Host` value that is `host` or `host:port` with the host already in the form
/// [`canonical::canonical_host`] gives (lower-case DNS labels, no trailing dot) and a port of
/// one to five digits up to 65535; `None` for anything else (upper case, a trailing dot, an IP
/// literal, a port that is not plain), which takes the full reading.
fn canonical_host_port(v: &[u8]) -> Option<&str> {
    let (name, port) = match v.iter().position(|&b| b == b':') {
        Some(at) => (v.get(..at)?, Some(v.get(at + 1..)?)),
        None => (v, None),
    };
    let label_ok = |l: &[u8]| {
        !l.is_empty()
            && l.len() <= 63
            && l.iter()
                .all(|&c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-' || c == b'_')
    };
    if name.is_empty() || name.len() > 253 || !name.split(|&b| b == b'.').all(label_ok) {
        return None;
    }
    if let Some(p) = port {
        if p.is_empty() || p.len() > 5 || !p.iter().all(u8::is_ascii_digit) {
            return None;
        }
        let value = p.iter().fold(0u32, |n, &d| n * 10 + u32::from(d - b'0'));
        if value > 65_535 {
            return None;
        }
    }
    std::str::from_utf8(name).ok()
}

/// [`request_host`] after the `Host` count: the URI authority and the `Host` value read as
/// authorities, compared, and the chosen host made canonical.
fn host_of(
    parts: &http::request::Parts,
    header: Option<&HeaderValue>,
) -> Result<Option<String>, Refusal> {
    let ambiguous = |d: &'static str| Refusal::new(Code::InvalidRequest, d);
    let from_header = match header {
        Some(v) => Some(
            v.to_str()
                .ok()
                .and_then(|s| s.parse::<http::uri::Authority>().ok())
                .ok_or_else(|| ambiguous("malformed Host header"))?,
        ),
        None => None,
    };
    let from_uri = parts.uri.authority().cloned();
    let chosen = match (from_uri, from_header) {
        (Some(u), Some(h)) => {
            let same_host = match (
                canonical::canonical_host(u.host()),
                canonical::canonical_host(h.host()),
            ) {
                (Ok(a), Ok(b)) => a == b,
                _ => false,
            };
            if !same_host || u.port_u16() != h.port_u16() {
                return Err(ambiguous(
                    "the request target and Host header name different hosts",
                ));
            }
            Some(u)
        }
        (Some(u), None) => Some(u),
        (None, h) => h,
    };
    match chosen {
        // RFC 9112 §3.2: a server MUST answer 400 to an HTTP/1.1 request without Host.
        None if parts.version == http::Version::HTTP_11 => {
            Err(ambiguous("HTTP/1.1 request without Host"))
        }
        None => Ok(None),
        Some(a) => {
            if a.as_str().contains('@') {
                return Err(ambiguous("user information in the request authority"));
            }
            canonical::canonical_host(a.host())
                .map(Some)
                .map_err(ambiguous)
        }
    }
}

#[cfg(test)]
mod tests;
