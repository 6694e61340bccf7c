//! The caller's hop (`Forwarded`, `X-Forwarded-For`), rendered once per connection: it lives on
//! [`super::ConnInfo`] and `proxy::headers` appends it to every upstream request.

use std::net::{IpAddr, SocketAddr};
use std::sync::OnceLock;

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
    /// The fields of the first host a request on this connection named ([`Hop::for_host`]).
    host: OnceLock<HostFields>,
}

/// A host's `Forwarded` element and `X-Forwarded-Host` value on one hop, as [`Hop::forwarded`]
/// and `HeaderValue::from_str` render them: a function of the hop and of `host` alone.
#[derive(Debug, Clone)]
struct HostFields {
    host: Box<str>,
    forwarded: HeaderValue,
    forwarded_host: Option<HeaderValue>,
}

impl Hop {
    /// The hop of a connection from `peer` over `proto` (`http` or `https`). Rendered by hand,
    /// byte for byte what `format!` renders (`rendered_as_format_renders_it`): through the
    /// formatting machinery (the address twice, the node, the element) it was about 5k
    /// instructions, a tenth of a connection that carries one request, and decision mode renders
    /// it for every decision.
    pub fn new(peer: SocketAddr, proto: &'static str) -> Self {
        let ip = ip_text(peer.ip());
        let mut forwarded = String::with_capacity(ip.len() + proto.len() + 24);
        forwarded.push_str("for=\"");
        if peer.is_ipv6() {
            forwarded.push('[');
            forwarded.push_str(&ip);
            forwarded.push(']');
        } else {
            forwarded.push_str(&ip);
        }
        forwarded.push(':');
        push_decimal(&mut forwarded, peer.port());
        forwarded.push_str("\";proto=");
        forwarded.push_str(proto);
        let value = |s: String| {
            // Digits, dots, colons, brackets, quotes and a scheme: always a valid header value.
            HeaderValue::try_from(s).unwrap_or_else(|_| HeaderValue::from_static("unknown"))
        };
        Hop {
            forwarded: value(forwarded),
            forwarded_for: value(ip),
            proto,
            host: OnceLock::new(),
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

    /// This hop's `Forwarded` element ([`Hop::forwarded`]) and the `X-Forwarded-Host` value for
    /// a request that named `host`. The first host named on the connection is rendered once and
    /// kept (issue 22): a connection's requests nearly always name the same host, and rendering
    /// both per request (two allocations, a copy and a check of every byte, two frees) cost about
    /// 0.6k instructions. What is kept is a function of this hop and the host alone, compared in
    /// full before it is used: a request gets exactly the values it would have got rendered, and
    /// a request naming another host gets its own, rendered for it.
    pub fn for_host(&self, host: Option<&str>) -> (HeaderValue, Option<HeaderValue>) {
        let Some(host) = host else {
            return (self.forwarded.clone(), None);
        };
        let kept = self.host.get_or_init(|| self.render(host));
        if *kept.host == *host {
            return (kept.forwarded.clone(), kept.forwarded_host.clone());
        }
        let other = self.render(host);
        (other.forwarded, other.forwarded_host)
    }

    /// `host`'s fields on this hop, rendered.
    fn render(&self, host: &str) -> HostFields {
        HostFields {
            host: host.into(),
            forwarded: self.forwarded(Some(host)),
            forwarded_host: HeaderValue::from_str(host).ok(),
        }
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

/// `ip` as its `Display` writes it; an IPv4 address without the formatting machinery.
fn ip_text(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => {
            let mut s = String::with_capacity(15);
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    s.push('.');
                }
                push_decimal(&mut s, u16::from(octet));
            }
            s
        }
        IpAddr::V6(v6) => v6.to_string(),
    }
}

/// `n` in decimal, without leading zeros.
fn push_decimal(s: &mut String, n: u16) {
    let mut place = 10_000u16;
    let mut started = false;
    while place > 0 {
        let digit = (n / place) % 10;
        started |= digit != 0 || place == 1;
        if started {
            s.extend(char::from_digit(u32::from(digit), 10));
        }
        place /= 10;
    }
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, Ipv6Addr, SocketAddrV6};

    use proptest::prelude::*;

    use super::*;

    /// What `Hop::new` rendered with `format!` before it was written by hand.
    fn by_format(peer: SocketAddr, proto: &str) -> (String, String) {
        let node = match peer {
            SocketAddr::V4(a) => format!("\"{}:{}\"", a.ip(), a.port()),
            SocketAddr::V6(a) => format!("\"[{}]:{}\"", a.ip(), a.port()),
        };
        (format!("for={node};proto={proto}"), peer.ip().to_string())
    }

    fn check(peer: SocketAddr, proto: &'static str) {
        let hop = Hop::new(peer, proto);
        let (forwarded, xff) = by_format(peer, proto);
        assert_eq!(hop.forwarded.to_str().unwrap(), forwarded, "{peer}");
        assert_eq!(hop.forwarded_for.to_str().unwrap(), xff, "{peer}");
    }

    #[test]
    fn the_edges_are_rendered_as_format_renders_them() {
        for peer in [
            "0.0.0.0:0",
            "255.255.255.255:65535",
            "10.0.0.1:9",
            "192.0.2.100:10",
            "[::]:0",
            "[::1]:443",
            "[::ffff:192.0.2.1]:8080",
            "[2001:db8::1]:65535",
        ] {
            if let Ok(peer) = peer.parse() {
                check(peer, "https");
                check(peer, "http");
            }
        }
    }

    proptest! {
        #[test]
        fn rendered_as_format_renders_it(v4 in any::<u32>(), v6 in any::<u128>(), port in any::<u16>()) {
            check(SocketAddr::from((Ipv4Addr::from(v4), port)), "http");
            check(SocketAddr::V6(SocketAddrV6::new(Ipv6Addr::from(v6), port, 0, 0)), "https");
        }
    }
}
