//! One canonical view of a request, built once and read by every consumer: the local endpoints,
//! route selection, Cedar's `resource.path`, `policy suggest`, the audit line and the upstream
//! URI. Deciding on one spelling and forwarding another is how a gateway gets bypassed
//! (`/admin;x/secret` matched as "not `/admin`", served by a servlet container as `/admin/secret`),
//! so nothing downstream of this module looks at the raw target again. See `docs/security.md`
//! ("One canonical request").

#![deny(
    clippy::indexing_slicing,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic
)]

use std::borrow::Cow;
use std::sync::Arc;

use http::request::Parts;
use http::Method;

use super::path;
use super::Matcher;
use crate::problem::{Code, Refusal};

/// `[routes.match] path_parameters`: what a route does with `;params` in a path segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PathParameters {
    /// Refuse the request (400): the default. Servlet containers, Spring, Tomcat and mainframe
    /// HTTP stacks drop `;params`, so `/admin;x` may be served as `/admin`.
    #[default]
    Refuse,
    /// Match and evaluate policy on what comes before `;` in each segment; forward the
    /// parameters unchanged (`;jsessionid=…` for upstreams that need them).
    StripForMatch,
}

impl PathParameters {
    /// The config spelling.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "refuse" => Some(Self::Refuse),
            "strip-for-match" => Some(Self::StripForMatch),
            _ => None,
        }
    }
}

/// A canonical path as the view keeps it: the request's own path when that already is the
/// canonical one (the usual request: shared with the request's target, a reference count
/// instead of a copy, issue 22), else a string of its own. Reads as a `str` either way.
#[derive(Debug, Clone)]
pub enum Text {
    /// The path of this target, which is canonical as it came.
    Shared(http::uri::PathAndQuery),
    Owned(String),
}

impl std::ops::Deref for Text {
    type Target = str;
    fn deref(&self) -> &str {
        match self {
            Text::Shared(pq) => pq.path(),
            Text::Owned(s) => s,
        }
    }
}

impl PartialEq for Text {
    fn eq(&self, other: &Text) -> bool {
        **self == **other
    }
}

impl Eq for Text {}

/// The request as every stage reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CanonicalRequest {
    /// The canonical path ([`path::normalize`]), `;params` included: what the upstream receives.
    pub path: Text,
    /// `path` with every segment cut at its first `;` (raw or `%3B`): what routes match.
    pub match_path: Text,
    /// Whether some segment carries `;params` (then `match_path != path`).
    pub has_params: bool,
    /// The request's host ([`canonical_host`]), when it names one. Shared: the usual request's
    /// comes from a memo ([`super::shared_host`]).
    pub host: Option<Arc<str>>,
}

impl CanonicalRequest {
    /// Build the view, refusing what could be read two ways (400 `invalid-request`).
    pub fn of(parts: &Parts) -> Result<Self, Refusal> {
        if parts.method == Method::CONNECT {
            return Err(Refusal::new(
                Code::MethodNotAllowed,
                "CONNECT is not supported",
            ));
        }
        let raw = parts.uri.path();
        if !raw.starts_with('/') {
            return Err(Refusal::new(
                Code::InvalidRequest,
                "the request target must be an absolute path",
            ));
        }
        let canonical =
            path::normalize(raw).map_err(|e| Refusal::new(Code::InvalidRequest, e.to_string()))?;
        // Already canonical (`normalize` borrowed it): the target's own path, shared.
        let path = match (canonical, parts.uri.path_and_query()) {
            (Cow::Borrowed(p), Some(pq)) if std::ptr::eq(p, pq.path()) => Text::Shared(pq.clone()),
            (c, _) => Text::Owned(c.into_owned()),
        };
        let host = super::shared_host(parts)?;
        Ok(Self::of_text(path, host))
    }

    /// The view of an already normalized path.
    pub fn from_canonical(path: String, host: Option<String>) -> Self {
        Self::of_text(Text::Owned(path), host.map(Arc::from))
    }

    fn of_text(path: Text, host: Option<Arc<str>>) -> Self {
        // Without `;params` the match path is the path itself (shared when the path is).
        let match_path = match strip_params(&path) {
            Cow::Borrowed(_) => path.clone(),
            Cow::Owned(cut) => Text::Owned(cut),
        };
        CanonicalRequest {
            has_params: match_path.len() != path.len(),
            path,
            match_path,
            host,
        }
    }

    /// Refuse `;params` unless the selected route matches with them stripped. Routes are always
    /// selected on [`Self::match_path`], so a path with parameters is handled by the route its
    /// stripped form belongs to, or refused: never by a broader route.
    pub fn admit_params(&self, route: Matcher<'_>) -> Result<(), Refusal> {
        if self.has_params && route.path_parameters == PathParameters::Refuse {
            return Err(Refusal::new(
                Code::InvalidRequest,
                "path contains ';' parameters, which this route does not accept",
            ));
        }
        Ok(())
    }

    /// The path the route's policy (`resource.path`) and `policy suggest` see: the match path,
    /// in ASCII lower case on a `case_insensitive` route (so `/Admin` and `/admin` get one decision).
    pub fn policy_path(&self, route: Matcher<'_>) -> Cow<'_, str> {
        if route.case_insensitive {
            fold_case(&self.match_path)
        } else {
            Cow::Borrowed(&*self.match_path)
        }
    }

    /// The target the audit line records: the canonical path (what was decided on and
    /// forwarded) with the query as sent (the audit redacts its values). `None` when the request's
    /// own path already is the canonical one (the usual case: the audit reads `raw` itself, and
    /// nothing is copied for it), or when no target can be built from it.
    pub fn audit_target(&self, raw: &http::Uri) -> Option<http::Uri> {
        if raw.path() == &*self.path {
            return None;
        }
        let pq = match raw.query() {
            Some(q) => format!("{}?{q}", &*self.path),
            None => self.path.to_string(),
        };
        http::Uri::builder().path_and_query(pq).build().ok()
    }

    /// Whether the path names `local` (a gateway endpoint such as `/oauth2/token`): `Ok(true)` on
    /// the exact canonical path, a refusal when only `;params` tell them apart (the gateway would
    /// answer one request and a parameter-dropping upstream another).
    pub fn is_local(&self, local: &str) -> Result<bool, Refusal> {
        if &*self.match_path != local {
            return Ok(false);
        }
        if self.has_params {
            return Err(Refusal::new(
                Code::InvalidRequest,
                "path contains ';' parameters on a gateway endpoint",
            ));
        }
        Ok(true)
    }
}

/// `path` with each segment cut at its first `;` (raw, or `%3B`/`%3b`). Borrowed when there is
/// nothing to cut. The result of a canonical path is canonical: [`path::normalize`] has already
/// refused segments that are empty or dots before their parameters.
pub fn strip_params(path: &str) -> Cow<'_, str> {
    if !has_params(path) {
        return Cow::Borrowed(path);
    }
    let mut out = String::with_capacity(path.len());
    for (i, seg) in path.split('/').enumerate() {
        if i > 0 {
            out.push('/');
        }
        out.push_str(segment_before_params(seg));
    }
    Cow::Owned(out)
}

/// Whether `path` has a `;`, `%3B` or `%3b` anywhere: one pass over its bytes (three substring
/// searches cost each request more than the rest of the canonical view, issue 22).
fn has_params(path: &str) -> bool {
    let b = path.as_bytes();
    b.iter().enumerate().any(|(i, &c)| {
        c == b';'
            || (c == b'%'
                && b.get(i + 1) == Some(&b'3')
                && matches!(b.get(i + 2), Some(b'B' | b'b')))
    })
}

fn segment_before_params(seg: &str) -> &str {
    let cut = [seg.find(';'), seg.find("%3B"), seg.find("%3b")]
        .into_iter()
        .flatten()
        .min();
    match cut {
        Some(at) => seg.get(..at).unwrap_or(seg),
        None => seg,
    }
}

/// ASCII letters lower-cased, percent-encodings (`%C3%A9`) kept as they are: the canonical form
/// writes their hex digits in upper case.
pub fn fold_case(path: &str) -> Cow<'_, str> {
    let b = path.as_bytes();
    let needs = b
        .iter()
        .enumerate()
        .any(|(i, c)| c.is_ascii_uppercase() && !in_percent(b, i));
    if !needs {
        return Cow::Borrowed(path);
    }
    let folded = path
        .char_indices()
        .map(|(i, ch)| {
            if in_percent(b, i) {
                ch
            } else {
                ch.to_ascii_lowercase()
            }
        })
        .collect();
    Cow::Owned(folded)
}

/// Whether byte `i` is one of the two hex digits of a `%XX`.
fn in_percent(b: &[u8], i: usize) -> bool {
    (i >= 1 && b.get(i - 1) == Some(&b'%')) || (i >= 2 && b.get(i - 2) == Some(&b'%'))
}

/// `[issuer] well_known_hosts`: the host of `url` (when it has one), then each listed host, all
/// in canonical form and without repeats. A listed host that is not a plain DNS name or IP literal
/// is an error.
pub fn well_known_hosts(url: &str, listed: &[String]) -> Result<Vec<String>, String> {
    let mut hosts = Vec::new();
    if let Some(h) = url
        .parse::<http::Uri>()
        .ok()
        .and_then(|u| u.host().map(canonical_host))
        .and_then(Result::ok)
    {
        hosts.push(h);
    }
    for h in listed {
        let canon = canonical_host(h).map_err(|_| format!("{h:?}: not a host name (no port)"))?;
        if !hosts.contains(&canon) {
            hosts.push(canon);
        }
    }
    Ok(hosts)
}

/// Why a host was refused.
pub const BAD_HOST: &str = "malformed host";

/// The canonical spelling of a host (from the URI authority or `Host`, port already removed):
/// ASCII lower case, one trailing dot removed (`admin.corp.example.` is the same name, and DNS
/// resolves it the same), and only DNS labels (`a-z 0-9 - _`) or an IP literal. Anything else —
/// percent-encodings, empty labels, two trailing dots — is refused rather than guessed at.
pub fn canonical_host(host: &str) -> Result<String, &'static str> {
    let lower = host.to_ascii_lowercase();
    if let Some(inner) = lower.strip_prefix('[') {
        let ok = inner.strip_suffix(']').is_some_and(|ip| {
            !ip.is_empty()
                && ip
                    .bytes()
                    .all(|c| c.is_ascii_hexdigit() || c == b':' || c == b'.')
        });
        return if ok { Ok(lower) } else { Err(BAD_HOST) };
    }
    let name = lower.strip_suffix('.').unwrap_or(&lower);
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && l.bytes()
                .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
    };
    if name.is_empty() || name.len() > 253 || !name.split('.').all(label_ok) {
        return Err(BAD_HOST);
    }
    Ok(name.to_owned())
}

#[cfg(test)]
mod tests;
