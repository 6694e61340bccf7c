//! Decision mode (forward auth, ext_authz): a front proxy (nginx `auth_request`, Traefik
//! ForwardAuth, Caddy `forward_auth`, Envoy's ext_authz HTTP service) asks whether to let a
//! request through, and the gateway answers with the same stages as a proxied request. This
//! module does the two things that differ (see `docs/decision-mode.md`):
//!
//! - [`Decider::adopt`]: the decision request is turned into the original request's head (method,
//!   host, target, the caller's address and client certificate), but only from a trusted proxy
//!   (`[decision] trusted_proxies`, optionally only over mTLS with an allowed SPIFFE ID).
//!   Everything after it (the canonical view and its refusals, routing, authentication, policy,
//!   limits, minting, audit) is the proxy pipeline, unchanged.
//! - [`answer`]: instead of forwarding, 200 with the translation as response headers: the minted
//!   token or injected credential for the front proxy to copy onto the upstream request, and
//!   (for Envoy) the caller headers to remove.

mod cert;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::SystemTime;

use http::header::{HeaderName, HeaderValue};
use http::request::Parts;
use http::{Method, Response, Uri};

use crate::authz::Permit;
use crate::body::{empty, ProxyBody};
use crate::conn::{ConnInfo, Hop, TlsInfo};
use crate::pipeline::route::Route;
use crate::problem::{Code, Refusal};
use crate::proxy::headers;
use crate::proxy::settings::TokenHeader;
use crate::spiffe::store::TrustStore;
use crate::spiffe::svid_cache::SvidCache as _;

use super::Outgoing;

/// Which way a request on the data listener is answered: forwarded upstream, or decided for a
/// front proxy. Written to the audit line as `mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    #[default]
    Proxy,
    Decision,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Proxy => "proxy",
            Mode::Decision => "decision",
        }
    }
}

/// An address block of `[decision] trusted_proxies` (`10.0.0.0/8`, `::1/128`, or one address).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    net: IpAddr,
    bits: u8,
}

impl Cidr {
    /// Parse `addr/bits` or a bare address; host bits must be zero (a typo otherwise).
    pub fn parse(s: &str) -> Result<Cidr, String> {
        let (addr, bits) = match s.split_once('/') {
            Some((a, b)) => (a, Some(b)),
            None => (s, None),
        };
        let net: IpAddr = addr
            .trim()
            .parse()
            .map_err(|_| format!("{s:?} is not an IP address or CIDR block"))?;
        let max = if net.is_ipv4() { 32 } else { 128 };
        let bits = match bits {
            None => max,
            Some(b) => b
                .trim()
                .parse::<u8>()
                .ok()
                .filter(|b| *b <= max)
                .ok_or_else(|| format!("{s:?}: the prefix length must be 0–{max}"))?,
        };
        if mask(net, bits) != bits_of(net) {
            return Err(format!(
                "{s:?} has host bits set (did you mean {}/{bits}?)",
                from_bits(net, mask(net, bits))
            ));
        }
        Ok(Cidr { net, bits })
    }

    /// `0.0.0.0/0` or `::/0`.
    pub fn contains_everything(&self) -> bool {
        self.bits == 0
    }

    /// Whether `ip` is in the block (an IPv4-mapped IPv6 address counts as its IPv4 address).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        if ip.is_ipv4() != self.net.is_ipv4() {
            return false;
        }
        mask(ip, self.bits) == bits_of(self.net)
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.net, self.bits)
    }
}

fn bits_of(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(a) => u128::from(u32::from(a)),
        IpAddr::V6(a) => u128::from(a),
    }
}

fn mask(ip: IpAddr, bits: u8) -> u128 {
    let width = if ip.is_ipv4() { 32u32 } else { 128 };
    let keep = u32::from(bits).min(width);
    let all = bits_of(ip);
    if keep == 0 {
        return 0;
    }
    let drop = width - keep;
    (all >> drop) << drop
}

fn from_bits(like: IpAddr, v: u128) -> IpAddr {
    match like {
        IpAddr::V4(_) => IpAddr::V4(std::net::Ipv4Addr::from(
            u32::try_from(v).unwrap_or_default(),
        )),
        IpAddr::V6(_) => IpAddr::V6(std::net::Ipv6Addr::from(v)),
    }
}

/// `[decision]`, checked.
#[derive(Debug, Clone)]
pub struct DecisionSettings {
    /// The decision endpoint on the data listener (`/.portcullis/decide`); Envoy appends the
    /// original path to it.
    pub path_prefix: String,
    /// Only peers in these blocks may ask (others: 403, audited).
    pub trusted_proxies: Vec<Cidr>,
    /// When non-empty, a trusted peer must also present a client certificate (on a TLS data
    /// listener) whose SPIFFE ID matches one of these patterns (`*` = any characters).
    pub trusted_proxy_ids: Vec<String>,
    /// Where the front proxy puts the caller's client certificate: `x-forwarded-client-cert`
    /// (Envoy's XFCC, `Cert=`/`Chain=`) or a header holding a URL-encoded PEM chain (nginx
    /// `$ssl_client_escaped_cert`). `None`: forwarded certificates are not read.
    pub client_cert_header: Option<HeaderName>,
}

impl DecisionSettings {
    /// One line for `portcullis check`: where, from whom, which certificate header.
    pub fn summary(&self) -> String {
        let from: Vec<String> = self.trusted_proxies.iter().map(Cidr::to_string).collect();
        let mut s = format!("{} from {}", self.path_prefix, from.join(", "));
        if !self.trusted_proxy_ids.is_empty() {
            s.push_str(&format!(
                " over mTLS as {}",
                self.trusted_proxy_ids.join(", ")
            ));
        }
        if let Some(h) = &self.client_cert_header {
            s.push_str(&format!(", client certificates in {h}"));
        }
        s
    }
}

/// The decision endpoint of the data listener.
#[derive(Debug)]
pub struct Decider {
    settings: DecisionSettings,
    /// The `[trust]` bundles: forwarded client certificates and the proxies' own are validated
    /// against them exactly like a handshake on the data listener.
    trust: Arc<TrustStore>,
}

static X_FORWARDED_METHOD: HeaderName = HeaderName::from_static("x-forwarded-method");
static X_FORWARDED_URI: HeaderName = HeaderName::from_static("x-forwarded-uri");
static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_ORIGINAL_METHOD: HeaderName = HeaderName::from_static("x-original-method");
static X_ORIGINAL_URI: HeaderName = HeaderName::from_static("x-original-uri");
static X_ENVOY_AUTH_PARTIAL_BODY: HeaderName = HeaderName::from_static("x-envoy-auth-partial-body");
/// Envoy's ext_authz: remove these caller headers before the upstream sees the request.
pub static X_ENVOY_AUTH_HEADERS_TO_REMOVE: HeaderName =
    HeaderName::from_static("x-envoy-auth-headers-to-remove");

/// The original request, as the front proxy described it.
struct Original {
    method: Method,
    target: Uri,
    host: Option<HeaderValue>,
    proto: &'static str,
}

impl Decider {
    pub fn new(settings: DecisionSettings, trust: Arc<TrustStore>) -> Self {
        Decider { settings, trust }
    }

    pub fn settings(&self) -> &DecisionSettings {
        &self.settings
    }

    /// Whether the request is for the decision endpoint: its raw path is the prefix or continues
    /// it with `/` (compared before any normalisation: the rest is the original request's path,
    /// canonicalised on its own).
    pub fn claims(&self, parts: &Parts) -> bool {
        let prefix = self.settings.path_prefix.as_str();
        parts
            .uri
            .path()
            .strip_prefix(prefix)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
    }

    /// Turn the decision request into the original request's head: `parts` gets its method,
    /// target and host (and loses the forwarding headers), and the returned connection is the
    /// caller's (address from the proxy's `X-Forwarded-For`, client certificate from
    /// `client_cert_header`). Refused: an untrusted peer (403), a description that could be
    /// read two ways or is incomplete (400), a forwarded certificate that is not a valid
    /// X.509-SVID (401).
    pub fn adopt(
        &self,
        conn: &ConnInfo,
        parts: &mut Parts,
        now: SystemTime,
    ) -> Result<ConnInfo, Refusal> {
        self.check_peer(conn, now)?;
        let original = self.original(conn, parts)?;
        // Envoy's `allow_partial_message`: a cut body would fail a signature or a schema with a
        // misleading reason.
        if single(&parts.headers, &X_ENVOY_AUTH_PARTIAL_BODY)?.is_some_and(|v| v == "true") {
            return Err(Refusal::new(
                Code::PayloadTooLarge,
                "the front proxy sent only part of the body (raise its max_request_bytes)",
            ));
        }
        let chain = match &self.settings.client_cert_header {
            Some(name) => cert::forwarded_chain(name, &parts.headers)?,
            None => None,
        };
        let tls = match chain {
            Some(chain) => Some(self.verified(chain, now)?),
            None => None,
        };
        let peer = SocketAddr::new(client_ip(&parts.headers)?.unwrap_or(conn.peer.ip()), 0);
        let mut caller = ConnInfo::new(peer, None, conn.ambiguous_framing.clone());
        if let Some((tls, svid)) = tls {
            caller.tls = Some(tls);
            // The certificate was just checked like a handshake; the mTLS credential reuses
            // that check, as it does for a connection's own chain.
            if let Some(t) = &caller.tls {
                caller.svid.put(t.client_chain(), &self.trust, &svid, now);
            }
        }
        caller.hop = Hop::new(peer, original.proto);
        for name in [
            &X_FORWARDED_METHOD,
            &X_FORWARDED_URI,
            &X_FORWARDED_HOST,
            &X_FORWARDED_PROTO,
            &X_ORIGINAL_METHOD,
            &X_ORIGINAL_URI,
        ] {
            parts.headers.remove(name);
        }
        if let Some(name) = &self.settings.client_cert_header {
            parts.headers.remove(name);
        }
        match original.host {
            Some(h) => parts.headers.insert(http::header::HOST, h),
            None => parts.headers.remove(http::header::HOST),
        };
        parts.method = original.method;
        parts.uri = original.target;
        Ok(caller)
    }

    /// Only trusted proxies may describe a request: anyone else could name any method, host or
    /// path (or a client certificate) and have it decided.
    fn check_peer(&self, conn: &ConnInfo, now: SystemTime) -> Result<(), Refusal> {
        let forbidden = |d: &'static str| Err(Refusal::new(Code::Forbidden, d));
        if !self
            .settings
            .trusted_proxies
            .iter()
            .any(|c| c.contains(conn.peer.ip()))
        {
            return forbidden(
                "decision requests are accepted only from [decision] trusted_proxies",
            );
        }
        if self.settings.trusted_proxy_ids.is_empty() {
            return Ok(());
        }
        let chain = conn.tls.as_ref().map(TlsInfo::client_chain);
        let Some(chain) = chain.filter(|c| !c.is_empty()) else {
            return forbidden("decision requests need the front proxy's client certificate");
        };
        let svid = match conn.svid.get(&self.trust, now) {
            Some(svid) => svid,
            None => match crate::spiffe::x509::verify_chain(chain, &self.trust, now) {
                Ok(svid) => {
                    conn.svid.put(chain, &self.trust, &svid, now);
                    svid
                }
                Err(_) => return forbidden("the front proxy's client certificate does not verify"),
            },
        };
        let id = svid.id.to_string();
        if self
            .settings
            .trusted_proxy_ids
            .iter()
            .any(|p| crate::authz::policy::allow::id_matches(p, &id))
        {
            Ok(())
        } else {
            forbidden("the front proxy's SPIFFE ID is not in [decision] trusted_proxy_ids")
        }
    }

    /// The original method, target, host and scheme, from whichever convention the proxy uses;
    /// two conventions at once, or one header twice, is ambiguous and refused.
    fn original(&self, conn: &ConnInfo, parts: &Parts) -> Result<Original, Refusal> {
        let h = &parts.headers;
        let rest = parts
            .uri
            .path_and_query()
            .map_or("", |pq| pq.as_str())
            .get(self.settings.path_prefix.len()..)
            .unwrap_or_default();
        let xf_uri = single(h, &X_FORWARDED_URI)?;
        let xo_uri = single(h, &X_ORIGINAL_URI)?;
        let (method, target) = if rest.starts_with('/') {
            // Envoy: the original path follows the prefix, the method is the request's own.
            if xf_uri.is_some() || xo_uri.is_some() {
                return Err(bad(
                    "the decision request names its target twice (path after the prefix and X-Forwarded-Uri/X-Original-URI)",
                ));
            }
            (parts.method.clone(), rest)
        } else {
            let target = agree(xf_uri, xo_uri, "X-Forwarded-Uri and X-Original-URI")?.ok_or_else(|| {
                bad("the decision request does not name the original request (X-Forwarded-Uri, X-Original-URI, or a path after the prefix)")
            })?;
            let method = agree(
                single(h, &X_FORWARDED_METHOD)?,
                single(h, &X_ORIGINAL_METHOD)?,
                "X-Forwarded-Method and X-Original-Method",
            )?
            .ok_or_else(|| {
                bad("the decision request does not name the original method (X-Forwarded-Method or X-Original-Method)")
            })?;
            let method = Method::from_bytes(method.as_bytes())
                .map_err(|_| bad("the original method is not a valid method"))?;
            (method, target)
        };
        // Origin form only: an absolute URI would name a host of its own.
        if !target.starts_with('/') {
            return Err(bad("the original target must be an absolute path"));
        }
        let target = Uri::try_from(target).map_err(|_| bad("the original target is malformed"))?;
        let host = match single(h, &X_FORWARDED_HOST)? {
            Some(v) => Some(v.clone()),
            None => match single(h, &http::header::HOST)? {
                Some(v) => Some(v.clone()),
                None => parts
                    .uri
                    .authority()
                    .and_then(|a| HeaderValue::from_str(a.as_str()).ok()),
            },
        };
        let proto = match single(h, &X_FORWARDED_PROTO)?.map(HeaderValue::as_bytes) {
            None => conn.proto(),
            Some(p) if p.eq_ignore_ascii_case(b"https") => "https",
            Some(p) if p.eq_ignore_ascii_case(b"http") => "http",
            Some(_) => return Err(bad("X-Forwarded-Proto must be http or https")),
        };
        Ok(Original {
            method,
            target,
            host,
            proto,
        })
    }

    /// Validate a forwarded chain as the data listener's handshake would (`spiffe::x509`): the
    /// trust domain's bundle and every SVID rule. A failure is the caller's (401).
    fn verified(
        &self,
        chain: Vec<rustls::pki_types::CertificateDer<'static>>,
        now: SystemTime,
    ) -> Result<(TlsInfo, crate::spiffe::x509::VerifiedSvid), Refusal> {
        match crate::spiffe::x509::verify_chain(&chain, &self.trust, now) {
            Ok(svid) => Ok((TlsInfo::new(None, false, chain), svid)),
            Err(e) => {
                tracing::debug!(reason = %e, "forwarded client certificate refused");
                Err(Refusal::new(
                    Code::InvalidCredential,
                    "the forwarded client certificate is not an acceptable X.509-SVID",
                ))
            }
        }
    }
}

/// A webhook signature arrived without the body it signs: the front proxy does not send bodies
/// (nginx `auth_request`, Traefik and Caddy by default). Refused: the signature cannot be checked.
pub fn body_missing() -> Refusal {
    Refusal::new(
        Code::InvalidRequest,
        "this route's webhook signature needs the request body, and the front proxy did not send it (Envoy: with_request_body; nginx auth_request cannot)",
    )
}

/// The problem document again, in a response header, for front proxies that drop the body of
/// a refusal (nginx `auth_request` keeps only the status and what `auth_request_set` captures;
/// docs/decision-mode.md shows the `error_page` that sends it on).
pub static X_PORTCULLIS_PROBLEM: HeaderName = HeaderName::from_static("x-portcullis-problem");

pub(super) fn mirror_problem(h: &mut http::HeaderMap, json: &str) {
    if let Ok(v) = HeaderValue::from_str(json) {
        h.insert(X_PORTCULLIS_PROBLEM.clone(), v);
    }
}

fn bad(detail: &'static str) -> Refusal {
    Refusal::new(Code::InvalidRequest, detail)
}

/// The header's one value; twice is ambiguous (which one would the front proxy have meant?).
fn single<'h>(
    h: &'h http::HeaderMap,
    name: &HeaderName,
) -> Result<Option<&'h HeaderValue>, Refusal> {
    let mut all = h.get_all(name).iter();
    let first = all.next();
    if all.next().is_some() {
        return Err(Refusal::new(
            Code::InvalidRequest,
            format!("the decision request carries {name} twice"),
        ));
    }
    Ok(first)
}

/// The value two conventions give, refused when they disagree.
fn agree<'h>(
    a: Option<&'h HeaderValue>,
    b: Option<&'h HeaderValue>,
    which: &'static str,
) -> Result<Option<&'h str>, Refusal> {
    let text = |v: &'h HeaderValue| {
        v.to_str()
            .map_err(|_| bad("a forwarding header is not visible ASCII"))
    };
    match (a, b) {
        (Some(a), Some(b)) if a != b => Err(Refusal::new(
            Code::InvalidRequest,
            format!("{which} disagree"),
        )),
        (Some(v), _) | (None, Some(v)) => text(v).map(Some),
        (None, None) => Ok(None),
    }
}

/// The caller's address: the last `X-Forwarded-For` element, the one the trusted proxy itself
/// appended or wrote (anything before it came from the caller). `None` when the header is absent
/// (the caller is then the proxy's address). A last element that is not an address is refused
/// rather than read as the proxy's own address: a proxy that passes the caller's header through
/// would otherwise let the caller pass as the proxy (often inside a range a policy trusts), and
/// a proxy that writes something else (nginx's `unix:`) would put every caller in one throttle
/// bucket unnoticed.
fn client_ip(h: &http::HeaderMap) -> Result<Option<IpAddr>, Refusal> {
    let Some(last) = h.get_all(&X_FORWARDED_FOR).iter().next_back() else {
        return Ok(None);
    };
    let item = last
        .to_str()
        .ok()
        .and_then(|v| v.rsplit(',').next())
        .map(str::trim)
        .unwrap_or_default();
    // `ip`, `[v6]:port` or `v4:port`.
    let ip = item
        .parse::<IpAddr>()
        .ok()
        .or_else(|| item.parse::<SocketAddr>().ok().map(|s| s.ip()));
    match ip {
        Some(ip) => Ok(Some(ip)),
        None => Err(Refusal::new(
            Code::InvalidRequest,
            "the last X-Forwarded-For element is not an IP address: the front proxy must append (or set) the caller's address",
        )),
    }
}

/// The allowed answer: 200 with what the front proxy copies onto the upstream request (the
/// minted token in the route's `token_header`, or the injected credential) and, for Envoy,
/// `x-envoy-auth-headers-to-remove` naming the caller headers proxy mode would have stripped
/// (the presented credentials, identity claims, the route's `strip_headers`). A credential that
/// only a rewritten URI could remove (an API key in the query string) is refused: no front
/// proxy rewrites the target from a decision, and the static secret must not reach the upstream.
pub(super) fn answer(
    permit: &Permit<Route>,
    head: &Parts,
    outgoing: Outgoing<'_>,
) -> Result<Response<ProxyBody>, Refusal> {
    let route = permit.route();
    let mut stripped = head.clone();
    if outgoing.strip_credentials() {
        for a in &route.accept {
            a.strip(&mut stripped);
        }
        if stripped.uri != head.uri {
            return Err(Refusal::new(
                Code::InvalidRequest,
                "in decision mode a credential in the query string cannot be removed before the upstream sees it: send it in a header",
            ));
        }
    }
    let strip = headers::Strip {
        route: &route.config.upstream.strip_headers,
        authorization: outgoing.strip_credentials() && !route.accept.is_empty(),
    };
    let mut remove: Vec<&str> = Vec::new();
    for name in head.headers.keys() {
        if !stripped.headers.contains_key(name) || headers::withheld(name, &strip) {
            remove.push(name.as_str());
        }
    }
    let mut resp = Response::new(empty());
    let h = resp.headers_mut();
    if let Some(minted) = outgoing.token() {
        match &route.config.upstream.token_header {
            TokenHeader::Authorization => {
                h.insert(http::header::AUTHORIZATION, minted.bearer.clone());
            }
            TokenHeader::Named(n) => {
                h.insert(n.clone(), minted.bare.clone());
            }
            TokenHeader::None => {}
        }
    }
    if let Some((name, value)) = outgoing.inject() {
        h.insert(name.clone(), value.clone());
    }
    // A header the gateway sets is overwritten by the front proxy; removing it too would drop
    // the new value.
    remove.retain(|n| !h.contains_key(*n));
    if !remove.is_empty() {
        if let Ok(v) = HeaderValue::from_str(&remove.join(",")) {
            h.insert(X_ENVOY_AUTH_HEADERS_TO_REMOVE.clone(), v);
        }
    }
    h.insert(
        http::header::CACHE_CONTROL,
        HeaderValue::from_static("no-store"),
    );
    Ok(resp)
}

#[cfg(test)]
mod tests;
