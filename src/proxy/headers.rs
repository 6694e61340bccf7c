//! Header hygiene in both directions. Order matters: headers a caller names in `Connection` are
//! removed from what the caller sent *before* the gateway adds its own, so no caller can make the
//! gateway drop `Forwarded`, `X-Request-Id` or a minted `Authorization`.

use std::net::SocketAddr;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};

/// Hop-by-hop headers (RFC 9110 §7.6.1) plus the legacy ones proxies must not forward.
const HOP_BY_HOP: &[HeaderName] = &[
    header::CONNECTION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    header::PROXY_AUTHORIZATION,
    header::PROXY_AUTHENTICATE,
];
const HOP_BY_HOP_EXTRA: &[&str] = &["keep-alive", "proxy-connection"];

/// Headers a caller could use to claim an identity; the gateway alone speaks for identity.
pub fn is_identity_claim(name: &HeaderName) -> bool {
    let n = name.as_str();
    n.starts_with("x-portcullis-") || n == "x-forwarded-client-cert"
}

/// Headers the gateway itself sets or that carry framing: config may not name them as the place
/// for a minted token or an injected credential.
pub fn is_reserved(name: &HeaderName) -> bool {
    HOP_BY_HOP.contains(name)
        || HOP_BY_HOP_EXTRA.contains(&name.as_str())
        || is_identity_claim(name)
        || [
            header::HOST,
            header::CONTENT_LENGTH,
            header::CONTENT_TYPE,
            header::FORWARDED,
            header::COOKIE,
        ]
        .contains(name)
        || matches!(
            name.as_str(),
            "x-request-id" | "x-forwarded-for" | "x-forwarded-proto" | "x-forwarded-host"
        )
}

/// Names listed in `Connection` (lower-cased tokens).
fn connection_tokens(h: &HeaderMap) -> Vec<HeaderName> {
    h.get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok())
        .collect()
}

/// Remove hop-by-hop headers and those named in `Connection`, in place.
pub fn strip_hop_by_hop(h: &mut HeaderMap) {
    for name in connection_tokens(h) {
        h.remove(name);
    }
    for name in HOP_BY_HOP {
        h.remove(name);
    }
    for name in HOP_BY_HOP_EXTRA {
        h.remove(*name);
    }
}

/// What the gateway knows about the hop it is forwarding.
pub struct ForwardedFor<'a> {
    pub peer: SocketAddr,
    pub host: Option<&'a str>,
    pub proto: &'static str,
}

/// Prepare caller headers for the upstream: strip hop-by-hop and identity claims, then append
/// `Forwarded`/`X-Forwarded-For` and set `X-Forwarded-Proto`/`-Host`, `X-Request-Id` and `Host`.
pub fn to_upstream(
    h: &mut HeaderMap,
    fwd: &ForwardedFor<'_>,
    request_id: &HeaderValue,
    upstream_host: &HeaderValue,
) {
    strip_hop_by_hop(h);
    let claims: Vec<HeaderName> = h.keys().filter(|n| is_identity_claim(n)).cloned().collect();
    for n in claims {
        h.remove(n);
    }
    h.remove(header::HOST);
    h.remove("x-forwarded-proto");
    h.remove("x-forwarded-host");

    // RFC 7239: an IPv6 node is bracketed, and a node with a port is quoted.
    let node = match fwd.peer {
        SocketAddr::V4(a) => format!("\"{}:{}\"", a.ip(), a.port()),
        SocketAddr::V6(a) => format!("\"[{}]:{}\"", a.ip(), a.port()),
    };
    let mut fwd_elem = format!("for={node};proto={}", fwd.proto);
    if let Some(host) = fwd.host.filter(|h| {
        h.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-.:[]".contains(&b))
    }) {
        fwd_elem.push_str(";host=\"");
        fwd_elem.push_str(host);
        fwd_elem.push('"');
    }
    append_list(h, header::FORWARDED, &fwd_elem);
    append_list(
        h,
        HeaderName::from_static("x-forwarded-for"),
        &fwd.peer.ip().to_string(),
    );
    h.insert("x-forwarded-proto", HeaderValue::from_static(fwd.proto));
    if let Some(host) = fwd.host.and_then(|s| HeaderValue::from_str(s).ok()) {
        h.insert("x-forwarded-host", host);
    }
    h.insert("x-request-id", request_id.clone());
    h.insert(header::HOST, upstream_host.clone());
}

/// Append to a comma-separated list header, folding repeated fields into one.
fn append_list(h: &mut HeaderMap, name: HeaderName, item: &str) {
    let mut joined = String::new();
    for v in h.get_all(&name) {
        if let Ok(s) = v.to_str() {
            if !s.trim().is_empty() {
                joined.push_str(s.trim());
                joined.push_str(", ");
            }
        }
    }
    joined.push_str(item);
    if let Ok(v) = HeaderValue::from_str(&joined) {
        h.insert(name, v);
    }
}

/// Prepare upstream response headers for the caller.
pub fn to_caller(h: &mut HeaderMap) {
    strip_hop_by_hop(h);
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn connection_cannot_remove_gateway_headers() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONNECTION,
            "authorization, x-request-id, forwarded, x-secret"
                .parse()
                .unwrap(),
        );
        h.insert("x-secret", "1".parse().unwrap());
        h.insert("x-request-id", "caller".parse().unwrap());
        h.insert("x-portcullis-identity", "spiffe://evil".parse().unwrap());
        h.insert(
            "x-forwarded-client-cert",
            "By=spiffe://evil".parse().unwrap(),
        );
        let fwd = ForwardedFor {
            peer: "192.0.2.1:4000".parse().unwrap(),
            host: Some("gw.example"),
            proto: "https",
        };
        to_upstream(
            &mut h,
            &fwd,
            &HeaderValue::from_static("rid"),
            &HeaderValue::from_static("up:1"),
        );
        assert_eq!(h["x-request-id"], "rid");
        assert_eq!(
            h[header::FORWARDED],
            "for=\"192.0.2.1:4000\";proto=https;host=\"gw.example\""
        );
        assert_eq!(h["x-forwarded-for"], "192.0.2.1");
        assert!(h.get("x-secret").is_none());
        assert!(h.get("x-portcullis-identity").is_none());
        assert!(h.get("x-forwarded-client-cert").is_none());
        assert!(h.get(header::CONNECTION).is_none());
    }

    #[test]
    fn forwarded_is_appended() {
        let mut h = HeaderMap::new();
        h.append(header::FORWARDED, "for=10.0.0.1".parse().unwrap());
        h.append("x-forwarded-for", "10.0.0.1".parse().unwrap());
        h.append("x-forwarded-for", "10.0.0.2".parse().unwrap());
        let fwd = ForwardedFor {
            peer: "[2001:db8::1]:443".parse().unwrap(),
            host: None,
            proto: "http",
        };
        to_upstream(
            &mut h,
            &fwd,
            &HeaderValue::from_static("r"),
            &HeaderValue::from_static("u"),
        );
        assert_eq!(
            h[header::FORWARDED],
            "for=10.0.0.1, for=\"[2001:db8::1]:443\";proto=http"
        );
        assert_eq!(h["x-forwarded-for"], "10.0.0.1, 10.0.0.2, 2001:db8::1");
    }
}
