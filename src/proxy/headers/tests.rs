use super::*;

mod oracle;

/// `to_upstream` with request id `rid`, upstream `up:1`, no authorization stripped, and the
/// route's strip list `route`; `h` becomes the map hyper's client would get.
fn forward(h: &mut HeaderMap, hop: &Hop, host: Option<&str>, route: &StripList) {
    *h = to_upstream(
        std::mem::take(h),
        hop,
        host,
        &HeaderValue::from_static("rid"),
        &HeaderValue::from_static("up:1"),
        Strip {
            route,
            authorization: false,
        },
    )
    .into_map();
}

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
    let hop = Hop::new("192.0.2.1:4000".parse().unwrap(), "https");
    forward(&mut h, &hop, Some("gw.example"), &StripList::EMPTY);
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

/// `X-Remote-User` with some letters upper-cased and some dashes written as underscores.
fn spelled(base: &str, mask: u64) -> HeaderName {
    let s: String = base
        .chars()
        .enumerate()
        .map(|(k, c)| match (c, (mask >> (k % 64)) & 1 == 1) {
            ('-', true) => '_',
            (c, true) => c.to_ascii_uppercase(),
            (c, false) => c,
        })
        .collect();
    HeaderName::from_bytes(s.as_bytes()).unwrap()
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]
    #[test]
    fn every_spelling_of_an_identity_header_is_stripped(
        i in 0..IDENTITY_NAMES.len(),
        p in 0..IDENTITY_PREFIXES.len(),
        mask in proptest::prelude::any::<u64>(),
    ) {
        proptest::prop_assert!(is_identity_claim(&spelled(IDENTITY_NAMES[i], mask)));
        let family = format!("{}Some-Thing", IDENTITY_PREFIXES[p]);
        proptest::prop_assert!(is_identity_claim(&spelled(&family, mask)));
        let list = StripList::parse(&["X-Legacy-Role".into(), "x_tenant_*".into()]).unwrap();
        let mut h = HeaderMap::new();
        h.insert(spelled("x-legacy-role", mask), HeaderValue::from_static("1"));
        h.insert(spelled("x-tenant-id", mask), HeaderValue::from_static("1"));
        h.insert("x-legacy-roles", HeaderValue::from_static("kept"));
        let hop = Hop::new("192.0.2.1:4000".parse().unwrap(), "https");
        forward(&mut h, &hop, None, &list);
        proptest::prop_assert!(!h.keys().any(|k| k.as_str().contains("tenant")
            || normalized(k) == "x-legacy-role"), "{h:?}");
        proptest::prop_assert_eq!(&h["x-legacy-roles"], "kept");
    }
}

#[test]
fn ordinary_headers_are_not_identity_claims() {
    for n in [
        "x-request-id",
        "x-users-count",
        "user-agent",
        "x-forwarded-for",
        "accept",
    ] {
        assert!(!is_identity_claim(&HeaderName::from_static(n)), "{n}");
    }
}

#[test]
fn forwarded_is_appended() {
    let mut h = HeaderMap::new();
    h.append(header::FORWARDED, "for=10.0.0.1".parse().unwrap());
    h.append("x-forwarded-for", "10.0.0.1".parse().unwrap());
    h.append("x-forwarded-for", "10.0.0.2".parse().unwrap());
    let hop = Hop::new("[2001:db8::1]:443".parse().unwrap(), "http");
    forward(&mut h, &hop, None, &StripList::EMPTY);
    assert_eq!(
        h[header::FORWARDED],
        "for=10.0.0.1, for=\"[2001:db8::1]:443\";proto=http"
    );
    assert_eq!(h["x-forwarded-for"], "10.0.0.1, 10.0.0.2, 2001:db8::1");
}

/// The two-byte pre-check of `is_identity_name` must never skip a listed name or prefix.
#[test]
fn identity_leads_cover_every_listed_name() {
    for n in IDENTITY_NAMES.iter().chain(IDENTITY_PREFIXES) {
        let lead = [n.as_bytes()[0], n.as_bytes()[1]];
        assert!(IDENTITY_LEADS.contains(&lead), "{n}: lead not listed");
        assert!(is_identity_name(n) || IDENTITY_PREFIXES.contains(n), "{n}");
    }
    for n in ["host", "accept", "user-agent", "content-type", "x", ""] {
        assert!(!is_identity_name(n), "{n}");
    }
}

/// The caller's own `Forwarded`/`X-Forwarded-For` are appended to; named in `Connection` (its
/// hostile twin), the caller's are dropped first and the gateway's element is the whole value.
#[test]
fn forwarding_lists_append_unless_named_in_connection() {
    let hop = Hop::new("192.0.2.1:4000".parse().unwrap(), "https");
    let run = |connection: Option<&str>| {
        let mut h = HeaderMap::new();
        h.insert(header::FORWARDED, "for=203.0.113.9".parse().unwrap());
        h.append(header::FORWARDED, "for=203.0.113.10".parse().unwrap());
        h.insert("x-forwarded-for", "203.0.113.9".parse().unwrap());
        if let Some(c) = connection {
            h.insert(header::CONNECTION, c.parse().unwrap());
        }
        forward(&mut h, &hop, None, &StripList::EMPTY);
        h
    };
    let h = run(None);
    assert_eq!(
        h[header::FORWARDED],
        "for=203.0.113.9, for=203.0.113.10, for=\"192.0.2.1:4000\";proto=https"
    );
    assert_eq!(h["x-forwarded-for"], "203.0.113.9, 192.0.2.1");
    let h = run(Some("Forwarded, X-Forwarded-For"));
    assert_eq!(h[header::FORWARDED], "for=\"192.0.2.1:4000\";proto=https");
    assert_eq!(h["x-forwarded-for"], "192.0.2.1");
    assert_eq!(h.get_all(header::FORWARDED).iter().count(), 1);
    // Withheld by the route's list: the same as named in `Connection`.
    let list = StripList::parse(&["forwarded".into()]).unwrap();
    let mut h = HeaderMap::new();
    h.insert(header::FORWARDED, "for=203.0.113.9".parse().unwrap());
    forward(&mut h, &hop, None, &list);
    assert_eq!(h[header::FORWARDED], "for=\"192.0.2.1:4000\";proto=https");
}

/// A description done with (`UpstreamHead::recycle`), after a sent head (its map taken) or a
/// failed exchange (its map still there), with the gateway's fields, a minted token and
/// withheld names: the thread's next description holds only its own request's fields, the
/// same as one built fresh, whether it is built by `to_upstream` or `verbatim`.
#[test]
fn a_recycled_description_holds_nothing_of_the_request_before() {
    let hop = Hop::new("192.0.2.1:4000".parse().unwrap(), "https");
    let strip = Strip {
        route: &StripList::EMPTY,
        authorization: true,
    };
    let first = || {
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, "Basic c2VjcmV0".parse().unwrap());
        h.insert("x-first", "mine".parse().unwrap());
        h.insert(header::CONNECTION, "x-hidden".parse().unwrap());
        h.insert("x-hidden", "1".parse().unwrap());
        h
    };
    let second = || {
        let mut h = HeaderMap::new();
        h.insert("x-second", "2".parse().unwrap());
        h
    };
    let build = |h: HeaderMap, rid: &'static str| {
        to_upstream(
            h,
            &hop,
            Some("b.example"),
            &HeaderValue::from_static(rid),
            &HeaderValue::from_static("up:1"),
            strip,
        )
    };
    let wire = |head: &UpstreamHead| {
        head.fields()
            .map(|(n, v)| format!("{n}: {}", v.to_str().unwrap()))
            .collect::<Vec<_>>()
    };
    let fresh = wire(&build(second(), "rid-2"));
    let fresh_verbatim = wire(&UpstreamHead::verbatim(second()));
    for sent in [true, false] {
        let mut done = build(first(), "rid-1");
        done.set(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer minted"),
        );
        done.set(
            HeaderName::from_static("x-injected"),
            HeaderValue::from_static("k"),
        );
        if sent {
            let mut answer = HeaderMap::new();
            done.hand_over(&mut answer);
            assert!(answer.is_empty());
        }
        done.recycle();
        let next = build(second(), "rid-2");
        assert_eq!(wire(&next), fresh, "sent: {sent}");
        assert!(next.withheld.is_empty());
        next.recycle();
        let next = UpstreamHead::verbatim(second());
        assert_eq!(wire(&next), fresh_verbatim, "sent: {sent}");
        assert_eq!(wire(&next), ["x-second: 2"]);
        next.recycle();
    }
}
