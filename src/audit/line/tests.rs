use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV6};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;

use super::super::{redact_query, Decision, Record};
use super::{date_time, float, Renderer};

/// The reference: the serde derive the line used to be written with (`serde_json::to_writer`
/// of this). Built by destructuring, so a field added to `Record` fails to compile here until
/// it is added to both renderings.
#[derive(Serialize)]
struct Reference<'a> {
    #[serde(serialize_with = "rfc3339")]
    ts: SystemTime,
    #[serde(serialize_with = "header_text")]
    request_id: &'a http::HeaderValue,
    route: &'a Option<Arc<str>>,
    #[serde(serialize_with = "method_text")]
    method: &'a http::Method,
    #[serde(rename = "path", serialize_with = "redacted_target")]
    target: &'a http::Uri,
    source: SocketAddr,
    decision: Decision,
    reason: &'static str,
    credential: &'a Option<Arc<str>>,
    kind: Option<&'static str>,
    principal: &'a Option<String>,
    identity: &'a Option<String>,
    plan: &'a Option<Arc<str>>,
    phase: Option<&'static str>,
    status: u16,
    upstream_status: Option<u16>,
    latency_ms: f64,
    jti: &'a Option<Arc<str>>,
    trace_id: &'a Option<String>,
    mode: &'static str,
}

fn rfc3339<S: serde::Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(&humantime::format_rfc3339_millis(*t))
}

fn header_text<S: serde::Serializer>(v: &&http::HeaderValue, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(v.to_str().unwrap_or("-"))
}

fn method_text<S: serde::Serializer>(m: &&http::Method, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(m.as_str())
}

fn redacted_target<S: serde::Serializer>(u: &&http::Uri, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&redact_query(u.path(), u.query()))
}

fn reference(r: &Record) -> Vec<u8> {
    let Record {
        ts,
        request_id,
        route,
        method,
        target,
        source,
        decision,
        reason,
        credential,
        kind,
        principal,
        identity,
        plan,
        phase,
        status,
        upstream_status,
        latency_ms,
        jti,
        trace_id,
        mode,
    } = r;
    serde_json::to_vec(&Reference {
        ts: *ts,
        request_id,
        route,
        method,
        target,
        source: *source,
        decision: *decision,
        reason,
        credential,
        kind: *kind,
        principal,
        identity,
        plan,
        phase: *phase,
        status: *status,
        upstream_status: *upstream_status,
        latency_ms: *latency_ms,
        jti,
        trace_id,
        mode,
    })
    .expect("the reference renders")
}

fn rendered(renderer: &mut Renderer, r: &Record) -> Vec<u8> {
    let mut out = b"left from the previous line".to_vec();
    out.clear();
    renderer.render(r, &mut out);
    out
}

/// Strings a caller or a config could put in a field: every escape, U+007F, non-ASCII, long.
fn hostile_strings() -> Vec<String> {
    let mut v: Vec<String> = [
        "",
        "plain",
        "spiffe://example.org/ns/a/sa/b",
        "\"",
        "\\",
        "\"quoted\" and \\back\\slashed\\",
        "é日本語🦀",
        "\u{7f}del",
        "\u{2028}\u{2029}</script>",
        "\\u0000",
        "/",
        "tab\there\r\nnew",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    for c in (0u8..0x20).chain([0x7f]) {
        v.push(format!("a{}b", c as char));
        v.push((c as char).to_string());
    }
    let all_controls: String = (0u8..0x20).map(char::from).collect();
    v.push(all_controls.repeat(3));
    v.push("x".repeat(10_000));
    v.push("ab\"c\\d\u{1}é🦀".repeat(2_000));
    v
}

fn leak(s: &str) -> &'static str {
    Box::leak(s.to_owned().into_boxed_str())
}

fn times() -> Vec<SystemTime> {
    [
        0u64,
        1,
        59,
        86_399,
        86_400,
        951_782_400,     // 2000-02-29
        946_684_799,     // 1999-12-31T23:59:59
        4_107_542_400,   // 2100-03-01
        1_798_761_599,   // 2026-12-31T23:59:59
        1_796_558_400,   // 2026-12-06
        253_402_300_799, // 9999-12-31T23:59:59
    ]
    .iter()
    .flat_map(|&s| {
        [0u32, 1, 999_999, 1_000_000, 123_456_789, 999_999_999]
            .map(|n| UNIX_EPOCH + Duration::new(s, n))
    })
    .chain([SystemTime::now()])
    .collect()
}

fn targets() -> Vec<http::Uri> {
    [
        "/",
        "/a",
        "/a?api_key=s3cret&x=1&flag",
        "/a?",
        "/a?&&=&x",
        "/a?=v&==&a=b=c",
        "/p%22q%5C?x=%5C%22",
        "/é?q=日本",
        "/{x}|^`?y={}",
        "http://h.example/a?b=c",
        "http://h.example",
        "*",
        "/a/../b;p=1?k",
    ]
    .iter()
    .filter_map(|t| t.parse().ok())
    .collect()
}

fn sources() -> Vec<SocketAddr> {
    vec![
        SocketAddr::from((Ipv4Addr::new(127, 0, 0, 1), 1)),
        SocketAddr::from((Ipv4Addr::new(0, 0, 0, 0), 0)),
        SocketAddr::from((Ipv4Addr::new(255, 255, 255, 255), 65_535)),
        SocketAddr::from((Ipv4Addr::new(10, 20, 100, 9), 8080)),
        SocketAddr::from((Ipv6Addr::LOCALHOST, 443)),
        SocketAddr::from((Ipv6Addr::UNSPECIFIED, 0)),
        SocketAddr::from((Ipv4Addr::new(192, 0, 2, 1).to_ipv6_mapped(), 5)),
        SocketAddr::V6(SocketAddrV6::new(
            "fe80::1:2:3:4".parse().expect("address"),
            65_535,
            0,
            7,
        )),
        SocketAddr::from((
            Ipv6Addr::new(
                0x2001, 0xdb8, 0xffff, 0xffff, 0xffff, 0xffff, 0xffff, 0xffff,
            ),
            1234,
        )),
    ]
}

fn latencies() -> Vec<f64> {
    vec![
        0.0,
        -0.0,
        1e-7,
        0.001,
        0.123,
        1.0,
        12.5,
        123_456.789,
        1e21,
        1e22,
        1.5e300,
        f64::MAX,
        f64::MIN_POSITIVE,
        5e-324,
        f64::NAN,
        f64::INFINITY,
        f64::NEG_INFINITY,
        0.1 + 0.2,
    ]
}

fn request_ids() -> Vec<http::HeaderValue> {
    let mut v: Vec<http::HeaderValue> =
        ["0b6f7c8e-6a0d-4a8f-9b1e-3d2c1b0a9f8e", "", "a\tb", "\"q\\"]
            .iter()
            .map(|s| http::HeaderValue::from_str(s).expect("header value"))
            .collect();
    // obs-text: not `to_str`-able, written as `-`.
    v.push(http::HeaderValue::from_bytes(b"caf\xc3\xa9\xff").expect("header value"));
    v
}

fn methods() -> Vec<http::Method> {
    vec![
        http::Method::GET,
        http::Method::POST,
        http::Method::OPTIONS,
        http::Method::from_bytes(b"PROPFIND").expect("method"),
        http::Method::from_bytes(b"X-VERY-LONG-EXTENSION-METHOD-NAME").expect("method"),
    ]
}

fn base() -> Record {
    Record {
        ts: UNIX_EPOCH + Duration::new(1_796_558_400, 42_000_000),
        request_id: http::HeaderValue::from_static("rid"),
        route: Some(Arc::from("route")),
        method: http::Method::GET,
        target: http::Uri::from_static("/x?k=v"),
        source: SocketAddr::from((Ipv4Addr::new(127, 0, 0, 1), 40_000)),
        decision: Decision::Allow,
        reason: "ok",
        credential: Some(Arc::from("partner-keys")),
        kind: Some("api-key"),
        principal: Some("p".into()),
        identity: Some("spiffe://e/x".into()),
        plan: None,
        phase: None,
        status: 200,
        upstream_status: Some(200),
        latency_ms: 0.5,
        jti: None,
        trace_id: None,
        mode: "proxy",
    }
}

/// Every value of every field on its own, then many mixed records, rendered by one renderer
/// (its per-second cache sees times go forward, back and repeat): the same bytes as serde.
#[test]
fn lines_are_byte_identical_to_the_serde_rendering() {
    let strings = hostile_strings();
    let opt = |i: usize| -> Option<&String> { i.checked_sub(1).and_then(|i| strings.get(i)) };
    let decisions = [
        Decision::Allow,
        Decision::Deny,
        Decision::ShadowDeny,
        Decision::Observe,
    ];
    let statuses = [
        0u16, 7, 10, 99, 100, 200, 404, 503, 999, 1000, 9_999, 10_000, 65_535,
    ];
    let (times, targets, sources, latencies, ids, methods) = (
        times(),
        targets(),
        sources(),
        latencies(),
        request_ids(),
        methods(),
    );
    assert!(targets.len() >= 12, "the hostile targets parse");

    let mut records = Vec::new();
    let with = |f: &dyn Fn(&mut Record)| {
        let mut r = base();
        f(&mut r);
        r
    };
    for s in &strings {
        let a: Arc<str> = Arc::from(s.as_str());
        let st = leak(s);
        records.push(with(&|r| r.route = Some(a.clone())));
        records.push(with(&|r| r.credential = Some(a.clone())));
        records.push(with(&|r| r.plan = Some(a.clone())));
        records.push(with(&|r| r.jti = Some(a.clone())));
        records.push(with(&|r| r.principal = Some(s.clone())));
        records.push(with(&|r| r.identity = Some(s.clone())));
        records.push(with(&|r| r.trace_id = Some(s.clone())));
        records.push(with(&|r| r.reason = st));
        records.push(with(&|r| r.kind = Some(st)));
        records.push(with(&|r| r.phase = Some(st)));
        records.push(with(&|r| r.mode = st));
    }
    records.push(with(&|r| {
        r.route = None;
        r.credential = None;
        r.kind = None;
        r.principal = None;
        r.identity = None;
        r.plan = None;
        r.phase = None;
        r.upstream_status = None;
        r.jti = None;
        r.trace_id = None;
    }));
    for &t in &times {
        records.push(with(&|r| r.ts = t));
    }
    for t in &targets {
        records.push(with(&|r| r.target = t.clone()));
    }
    for &s in &sources {
        records.push(with(&|r| r.source = s));
    }
    for &l in &latencies {
        records.push(with(&|r| r.latency_ms = l));
    }
    for id in &ids {
        records.push(with(&|r| r.request_id = id.clone()));
    }
    for m in &methods {
        records.push(with(&|r| r.method = m.clone()));
    }
    for &d in &decisions {
        records.push(with(&|r| r.decision = d));
    }
    for &s in &statuses {
        records.push(with(&|r| r.status = s));
        records.push(with(&|r| r.upstream_status = Some(s)));
    }
    // Mixed: a cheap deterministic walk over all the lists at once.
    let pick = |n: usize, salt: usize, len: usize| (n * 7919 + salt * 104_729 + n / 3) % len;
    for n in 0..3_000 {
        let s = |salt: usize| opt(pick(n, salt, strings.len() + 1));
        let arc = |salt: usize| s(salt).map(|s| Arc::<str>::from(s.as_str()));
        let st = |salt: usize| s(salt).map(|s| leak(s));
        records.push(Record {
            ts: times[pick(n, 1, times.len())],
            request_id: ids[pick(n, 2, ids.len())].clone(),
            route: arc(3),
            method: methods[pick(n, 4, methods.len())].clone(),
            target: targets[pick(n, 5, targets.len())].clone(),
            source: sources[pick(n, 6, sources.len())],
            decision: decisions[pick(n, 7, decisions.len())],
            reason: st(8).unwrap_or("ok"),
            credential: arc(9),
            kind: st(10),
            principal: s(11).cloned(),
            identity: s(12).cloned(),
            plan: arc(13),
            phase: st(14),
            status: statuses[pick(n, 15, statuses.len())],
            upstream_status: (n % 5 != 0).then(|| statuses[pick(n, 16, statuses.len())]),
            latency_ms: latencies[pick(n, 17, latencies.len())],
            jti: arc(18),
            trace_id: s(19).cloned(),
            mode: st(20).unwrap_or("decision"),
        });
    }

    let mut renderer = Renderer::new();
    for (i, r) in records.iter().enumerate() {
        let ours = rendered(&mut renderer, r);
        let theirs = reference(r);
        assert!(
            ours == theirs,
            "record {i} differs:\n ours:   {}\n serde:  {}",
            String::from_utf8_lossy(&ours),
            String::from_utf8_lossy(&theirs)
        );
        serde_json::from_slice::<serde_json::Value>(&ours).expect("a JSON object");
    }
}

/// The per-second date-time prefix against humantime, across the calendar (leap years,
/// centuries, the 400-year rule, month ends) to year 9999.
#[test]
fn date_time_prefix_matches_humantime_across_the_calendar() {
    let mut secs: Vec<u64> = (0..=400 * 366).map(|d| d * 86_400 + 86_399).collect();
    secs.extend((0u64..200_000).map(|i| i.wrapping_mul(1_267_650_600_228_229) % 253_402_300_800));
    secs.extend([
        951_868_799,     // 2000-02-29T23:59:59
        4_107_456_000,   // 2100-02-28
        253_402_300_799, // 9999-12-31T23:59:59
    ]);
    for s in secs {
        let expected =
            humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(s)).to_string();
        let ours = date_time(s);
        assert_eq!(
            std::str::from_utf8(&ours).expect("ASCII"),
            &expected[..19],
            "second {s}"
        );
    }
}

/// Times serde could not render (it panicked before 1970 and lost the line after 9999) are
/// clamped: the line is still written.
#[test]
fn out_of_range_times_are_clamped() {
    let mut renderer = Renderer::new();
    let mut r = base();
    r.ts = UNIX_EPOCH - Duration::from_secs(1);
    let line = rendered(&mut renderer, &r);
    assert!(line.starts_with(br#"{"ts":"1970-01-01T00:00:00.000Z","#));
    r.ts = UNIX_EPOCH + Duration::from_secs(253_402_300_800 + 86_400);
    let line = rendered(&mut renderer, &r);
    assert!(line.starts_with(br#"{"ts":"9999-12-31T23:59:59.999Z","#));
}

/// The word-at-a-time scan finds the first byte to escape at every position of a chunk, next
/// to every other byte value (UTF-8 lead and continuation bytes must not look like one).
#[test]
fn clean_prefix_finds_every_byte_to_escape() {
    for filler in 0u8..=255 {
        if super::needs_escape(filler) {
            continue;
        }
        for special in (0u8..0x20).chain([b'"', b'\\']) {
            for at in 0..20 {
                let mut v = vec![filler; 24];
                v[at] = special;
                assert_eq!(
                    super::clean_prefix(&v),
                    at,
                    "filler {filler:#x} special {special:#x}"
                );
            }
        }
        assert_eq!(super::clean_prefix(&[filler; 19]), 19);
    }
}

/// The latency written by hand is serde_json's own rendering: every whole number of
/// microseconds up to a second and a half, a spread of larger ones up to the 10^9 ms bound and
/// past it, and the values that must go to serde_json (negative zero, non-whole microseconds,
/// huge, not finite).
#[test]
fn latencies_by_hand_match_serde_json() {
    let check = |v: f64| {
        let mut out = Vec::new();
        float(&mut out, v);
        let want = serde_json::to_vec(&v).unwrap();
        assert_eq!(
            String::from_utf8_lossy(&out),
            String::from_utf8_lossy(&want),
            "{v:?}"
        );
    };
    for k in 0..1_500_000u64 {
        check(k as f64 / 1000.0);
    }
    let mut k = 1_500_000u64;
    while k < 2_000_000_000_000 {
        for d in [0, 1, 7, 10, 100, 999, 1000] {
            check((k + d) as f64 / 1000.0);
        }
        k = k * 3 / 2 + 17;
    }
    for us in [0.4, 1.5, 999.5, 123_456.7] {
        let v = (us * 1000.0_f64).round() / 1000.0;
        check(v);
    }
    for v in [
        -0.0,
        0.0,
        0.0005,
        1e-7,
        0.1 + 0.2,
        999_999_999.999,
        1e9,
        1e15,
        1e16,
        1e300,
        -1.5,
        f64::MIN_POSITIVE,
        f64::INFINITY,
        f64::NAN,
    ] {
        let mut out = Vec::new();
        float(&mut out, v);
        let want = if v.is_finite() {
            serde_json::to_vec(&v).unwrap()
        } else {
            b"null".to_vec()
        };
        assert_eq!(out, want, "{v:?}");
    }
}
