//! The caller's hop (`Forwarded`, `X-Forwarded-For`), rendered once per connection: it lives on
//! [`super::ConnInfo`] and `proxy::headers` appends it to every upstream request.

use std::net::SocketAddr;

use http::HeaderValue;

/// The caller's hop as `Forwarded` and `X-Forwarded-For` name it, rendered once per connection
/// (the peer and the scheme do not change while it lasts).
#[derive(Debug, Clone)]
pub struct Hop {
    /// `for="192.0.2.1:4000";proto=https` (RFC 7239: an IPv6 node is bracketed, a node with a
    /// port is quoted).
    forwarded: HeaderValue,
    /// `192.0.2.1`
    forwarded_for: HeaderValue,
    proto: &'static str,
}

impl Hop {
    /// The hop of a connection from `peer` over `proto` (`http` or `https`).
    pub fn new(peer: SocketAddr, proto: &'static str) -> Self {
        let node = match peer {
            SocketAddr::V4(a) => format!("\"{}:{}\"", a.ip(), a.port()),
            SocketAddr::V6(a) => format!("\"[{}]:{}\"", a.ip(), a.port()),
        };
        let value = |s: String| {
            // Digits, dots, colons, brackets, quotes and a scheme: always a valid header value.
            HeaderValue::try_from(s).unwrap_or_else(|_| HeaderValue::from_static("unknown"))
        };
        Hop {
            forwarded: value(format!("for={node};proto={proto}")),
            forwarded_for: value(peer.ip().to_string()),
            proto,
        }
    }

    /// `X-Forwarded-For`'s element for this hop: the peer's address.
    pub fn forwarded_for(&self) -> HeaderValue {
        self.forwarded_for.clone()
    }

    /// `https` or `http`.
    pub fn proto(&self) -> &'static str {
        self.proto
    }

    /// This hop's `Forwarded` element, with `host="…"` when the request named a plain host.
    pub fn forwarded(&self, host: Option<&str>) -> HeaderValue {
        let Some(host) = host.filter(|h| {
            h.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-.:[]".contains(&b))
        }) else {
            return self.forwarded.clone();
        };
        let base = self.forwarded.as_bytes();
        let mut v = Vec::with_capacity(base.len() + host.len() + 8);
        v.extend_from_slice(base);
        v.extend_from_slice(b";host=\"");
        v.extend_from_slice(host.as_bytes());
        v.push(b'"');
        HeaderValue::from_maybe_shared(bytes::Bytes::from(v))
            .unwrap_or_else(|_| self.forwarded.clone())
    }
}
