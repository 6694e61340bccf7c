//! The upstream head described by [`UpstreamHead`] against the map-editing path it replaced
//! (issue 22), kept here only as the oracle: for generated caller heads, the upstream receives
//! the same fields (as a multiset, and each name's repeated fields in the same order) from the
//! description as written by the HTTP/1.1 client ([`UpstreamHead::fields`]) and as given to
//! hyper's client ([`UpstreamHead::into_map`]), as it did from the edited map.

use proptest::prelude::*;

use super::*;
use crate::telemetry::{TraceFields, TRACEPARENT, TRACESTATE};

/// The former `to_upstream`, editing the caller's map in place.
fn old_to_upstream(
    h: &mut HeaderMap,
    hop: &Hop,
    host: Option<&str>,
    request_id: &HeaderValue,
    upstream_host: &HeaderValue,
    strip: Strip<'_>,
) {
    let kept = remove_where(h, |n| {
        is_hop_by_hop(n)
            || n == header::HOST
            || n == X_FORWARDED_PROTO
            || n == X_FORWARDED_HOST
            || withheld(n, &strip)
    });
    old_append_list(h, kept.forwarded, &header::FORWARDED, hop.forwarded(host));
    old_append_list(h, kept.forwarded_for, &X_FORWARDED_FOR, hop.forwarded_for());
    h.insert(
        X_FORWARDED_PROTO.clone(),
        HeaderValue::from_static(hop.proto()),
    );
    if let Some(host) = host.and_then(|s| HeaderValue::from_str(s).ok()) {
        h.insert(X_FORWARDED_HOST.clone(), host);
    }
    h.insert(X_REQUEST_ID.clone(), request_id.clone());
    h.insert(header::HOST, upstream_host.clone());
}

/// The former `append_list`.
fn old_append_list(h: &mut HeaderMap, present: bool, name: &HeaderName, item: HeaderValue) {
    if !present {
        h.insert(name.clone(), item);
        return;
    }
    let mut joined = Vec::new();
    for v in h.get_all(name) {
        if let Ok(s) = v.to_str() {
            if !s.trim().is_empty() {
                joined.extend_from_slice(s.trim().as_bytes());
                joined.extend_from_slice(b", ");
            }
        }
    }
    if joined.is_empty() {
        h.insert(name.clone(), item);
        return;
    }
    joined.extend_from_slice(item.as_bytes());
    if let Ok(v) = HeaderValue::from_maybe_shared(bytes::Bytes::from(joined)) {
        h.insert(name.clone(), v);
    }
}

/// Names a caller's head is drawn from: ordinary ones, hop-by-hop ones, identity claims in
/// other spellings (`X_Remote_User`, prefixes), the forwarding family, the token's and the
/// injected credential's names, trace fields, framing.
const NAMES: &[&str] = &[
    "Host",
    "accept",
    "User-Agent",
    "x-custom",
    "X-Custom",
    "Connection",
    "keep-alive",
    "Keep-Alive",
    "te",
    "upgrade",
    "proxy-connection",
    "Proxy-Authorization",
    "proxy_authorization",
    "x-remote-user",
    "X_Remote_User",
    "x-ssl-client-s-dn",
    "X-Portcullis-Identity",
    "x-auth-request-email",
    "Forwarded",
    "X-Forwarded-For",
    "x_forwarded_for",
    "X-Forwarded-Proto",
    "x-forwarded-host",
    "X-Request-Id",
    "Authorization",
    "x-legacy-role",
    "X_Legacy_Role",
    "x-tenant-id",
    "x-token",
    "x-injected",
    "traceparent",
    "tracestate",
    "content-length",
    "content-type",
    "cookie",
];

/// Values, blank and non-ASCII ones included (those are left out of a folded list).
const VALUES: &[&[u8]] = &[
    b"1",
    b"",
    b"  ",
    b"for=192.0.2.60",
    b"203.0.113.9, 203.0.113.10",
    b" 10.0.0.1 ",
    b"Bearer caller-token",
    b"caf\xe9",
    b"x-custom, keep-alive",
    b"close",
];

/// A `Connection` field listing some of [`NAMES`] (mixed case, odd spacing, empty items).
fn connection_value(picks: &[usize]) -> HeaderValue {
    let tokens: Vec<&str> = picks
        .iter()
        .map(|i| NAMES.get(*i % NAMES.len()).copied().unwrap_or("x-custom"))
        .collect();
    HeaderValue::from_str(&tokens.join(" , ,")).unwrap()
}

/// What differs between two requests besides the caller's head.
#[derive(Debug, Clone)]
struct Setting {
    host: Option<&'static str>,
    strip_authorization: bool,
    route: bool,
    /// 0: no token, 1: `Authorization`, 2: `x-token`.
    token: u8,
    inject: bool,
    /// 0: trace fields untouched, 1: removed (untrusted), 2: replaced (traced).
    trace: u8,
    proto: &'static str,
}

fn setting() -> impl Strategy<Value = Setting> {
    (
        prop_oneof![
            Just(None),
            Just(Some("gw.example")),
            Just(Some("bad\u{7f}host"))
        ],
        any::<bool>(),
        any::<bool>(),
        0u8..3,
        any::<bool>(),
        0u8..3,
        prop_oneof![Just("http"), Just("https")],
    )
        .prop_map(
            |(host, strip_authorization, route, token, inject, trace, proto)| Setting {
                host,
                strip_authorization,
                route,
                token,
                inject,
                trace,
                proto,
            },
        )
}

/// A caller's fields, in the order sent: (name, value) picks, or a `Connection` list.
fn head() -> impl Strategy<Value = Vec<(usize, usize, Option<Vec<usize>>)>> {
    proptest::collection::vec(
        (
            0..NAMES.len(),
            0..VALUES.len(),
            proptest::option::weighted(0.2, proptest::collection::vec(0..NAMES.len(), 0..4)),
        ),
        0..14,
    )
}

/// The caller's map, appended in the order sent (as the parser does).
fn caller_map(fields: &[(usize, usize, Option<Vec<usize>>)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (n, v, listed) in fields {
        let (name, value) = match listed {
            Some(picks) => (header::CONNECTION, connection_value(picks)),
            None => (
                HeaderName::from_bytes(NAMES[*n].as_bytes()).unwrap(),
                HeaderValue::from_bytes(VALUES[*v]).unwrap(),
            ),
        };
        h.append(name, value);
    }
    h
}

/// The edits after `to_upstream`, in the order the pipeline makes them: the token, the injected
/// credential, the trace fields (as `telemetry` does).
fn finish(t: &mut impl TraceFields, s: &Setting) {
    match s.token {
        1 => t.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer minted"),
        ),
        2 => t.insert(
            HeaderName::from_static("x-token"),
            HeaderValue::from_static("minted"),
        ),
        _ => {}
    }
    if s.inject {
        t.insert(
            HeaderName::from_static("x-injected"),
            HeaderValue::from_static("injected"),
        );
    }
    if s.trace > 0 {
        t.remove(&TRACEPARENT);
        t.remove(&TRACESTATE);
    }
    if s.trace == 2 {
        t.insert(
            TRACEPARENT,
            HeaderValue::from_static("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"),
        );
    }
}

type Fields = Vec<(String, Vec<u8>)>;

fn collect<'a>(it: impl Iterator<Item = (&'a HeaderName, &'a HeaderValue)>) -> Fields {
    it.map(|(n, v)| (n.as_str().to_owned(), v.as_bytes().to_vec()))
        .collect()
}

/// Equal as multisets, and each name's fields in the same relative order.
fn same_fields(a: &Fields, b: &Fields) -> Result<(), TestCaseError> {
    let (mut sa, mut sb) = (a.clone(), b.clone());
    sa.sort();
    sb.sort();
    prop_assert_eq!(&sa, &sb, "multisets differ:\n{:?}\n{:?}", a, b);
    for (name, _) in a {
        let of = |f: &Fields| -> Vec<Vec<u8>> {
            f.iter()
                .filter(|(n, _)| n == name)
                .map(|(_, v)| v.clone())
                .collect()
        };
        prop_assert_eq!(of(a), of(b), "order of {} differs", name);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]
    #[test]
    fn the_description_sends_what_the_edited_map_sent(fields in head(), s in setting()) {
        let caller = caller_map(&fields);
        let hop = Hop::new("192.0.2.1:4000".parse().unwrap(), s.proto);
        let list = StripList::parse(&["X-Legacy-Role".into(), "x_tenant_*".into()]).unwrap();
        let strip = Strip {
            route: if s.route { &list } else { &StripList::EMPTY },
            authorization: s.strip_authorization,
        };
        let (rid, up) = (HeaderValue::from_static("rid"), HeaderValue::from_static("up:1"));

        let mut old = caller.clone();
        old_to_upstream(&mut old, &hop, s.host, &rid, &up, strip);
        finish(&mut old, &s);
        let old = collect(old.iter());

        let mut new = to_upstream(caller, &hop, s.host, &rid, &up, strip);
        finish(&mut *new, &s);
        let written = collect(new.fields());
        same_fields(&old, &written)?;
        // What the HTTP/1.1 client writes: the same fields in the same order.
        let mut looped = Vec::new();
        new.for_each_field(|n, v| looped.push((n.as_str().to_owned(), v.as_bytes().to_vec())));
        prop_assert_eq!(&looped, &written);
        // The gateway's fields come after every caller field.
        let firsts: Vec<&str> = written.iter().map(|(n, _)| n.as_str()).collect();
        if let Some(at) = firsts.iter().position(|n| *n == "x-forwarded-proto") {
            prop_assert!(!firsts[at..].contains(&"user-agent"), "{:?}", firsts);
        }
        same_fields(&old, &collect(new.into_map().iter()))?;
    }
}

/// The hostile twins in one head, written by the HTTP/1.1 client: exact bytes.
#[test]
fn the_client_writes_the_caller_fields_in_order_then_the_gateways() {
    let mut caller = HeaderMap::new();
    for (n, v) in [
        ("Host", "gw.example"),
        ("User-Agent", "t/1"),
        ("Connection", "X-Custom, keep-alive"),
        ("x-custom", "hidden"),
        ("X_Remote_User", "admin"),
        ("Forwarded", "for=203.0.113.9"),
        ("Accept", "*/*"),
        ("x-forwarded-for", "203.0.113.9"),
        ("Authorization", "Basic c2VjcmV0"),
        ("accept", "text/plain"),
    ] {
        caller.append(
            HeaderName::from_bytes(n.as_bytes()).unwrap(),
            HeaderValue::from_static(v),
        );
    }
    let hop = Hop::new("192.0.2.1:4000".parse().unwrap(), "https");
    let mut head = to_upstream(
        caller,
        &hop,
        Some("gw.example"),
        &HeaderValue::from_static("rid"),
        &HeaderValue::from_static("up:1"),
        Strip {
            route: &StripList::EMPTY,
            authorization: true,
        },
    );
    head.set(header::AUTHORIZATION, HeaderValue::from_static("Bearer m"));
    let wire: String = head
        .fields()
        .map(|(n, v)| format!("{}: {}\r\n", n, v.to_str().unwrap()))
        .collect();
    assert_eq!(
        wire,
        "user-agent: t/1\r\n\
         accept: */*\r\n\
         accept: text/plain\r\n\
         forwarded: for=203.0.113.9, for=\"192.0.2.1:4000\";proto=https;host=\"gw.example\"\r\n\
         x-forwarded-for: 203.0.113.9, 192.0.2.1\r\n\
         x-forwarded-proto: https\r\n\
         x-forwarded-host: gw.example\r\n\
         x-request-id: rid\r\n\
         host: up:1\r\n\
         authorization: Bearer m\r\n"
    );
}
