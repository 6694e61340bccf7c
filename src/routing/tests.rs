use super::*;

#[test]
fn prefixes_respect_segments() {
    assert!(prefix_matches("/api", "/api"));
    assert!(prefix_matches("/api", "/api/x"));
    assert!(!prefix_matches("/api", "/apix"));
    assert!(prefix_matches("/api/", "/api/x"));
    assert!(!prefix_matches("/api/", "/api"));
    assert!(prefix_matches("/", "/anything"));
}

#[test]
fn wildcard_hosts_match_one_label() {
    let w = HostMatch::Wildcard(".corp.example".into());
    assert!(w.matches("api.corp.example"));
    assert!(!w.matches("corp.example"));
    assert!(!w.matches("a.b.corp.example"));
    assert!(!w.matches("evilcorp.example"));
}

/// The router needs nothing of a route but its matcher: a plain struct routes.
#[derive(Debug)]
struct Plain {
    name: &'static str,
    host: Option<HostMatch>,
    prefix: &'static str,
    methods: Option<Vec<Method>>,
}

impl Routable for Plain {
    fn matcher(&self) -> Matcher<'_> {
        Matcher {
            host: self.host.as_ref(),
            path_prefix: self.prefix,
            case_insensitive: false,
            methods: self.methods.as_deref(),
            path_parameters: canonical::PathParameters::Refuse,
        }
    }
}

fn plain(
    name: &'static str,
    host: Option<&str>,
    prefix: &'static str,
    methods: &[Method],
) -> Arc<Plain> {
    Arc::new(Plain {
        name,
        host: host.map(|h| HostMatch::Exact(h.to_owned())),
        prefix,
        methods: (!methods.is_empty()).then(|| methods.to_vec()),
    })
}

#[test]
fn generic_router_picks_the_most_specific_and_never_falls_through() {
    let router = Router::new(vec![
        plain("all", None, "/", &[]),
        plain("api", None, "/api", &[]),
        plain("admin-get", None, "/api/admin", &[Method::GET]),
        plain("hosted", Some("a.example"), "/", &[]),
    ]);
    let pick = |host: Option<&str>, path: &str, m: &Method| {
        router
            .select(host, path, m)
            .map(|r| r.name)
            .map_err(|e| e.code)
    };
    assert_eq!(pick(None, "/api/x", &Method::GET), Ok("api"));
    assert_eq!(pick(None, "/apix", &Method::GET), Ok("all"));
    assert_eq!(
        pick(Some("a.example"), "/api/x", &Method::GET),
        Ok("hosted")
    );
    assert_eq!(pick(None, "/api/admin/u", &Method::GET), Ok("admin-get"));
    // A method the most specific route does not allow is 405, not the broader `/api`.
    assert_eq!(
        pick(None, "/api/admin/u", &Method::DELETE),
        Err(Code::MethodNotAllowed)
    );
    let empty: Router<Plain> = Router::default();
    assert_eq!(
        empty
            .select(None, "/", &Method::GET)
            .map(|r| r.name)
            .map_err(|e| e.code),
        Err(Code::NoRoute)
    );
}

/// A request with this `Host` (origin-form target, HTTP/1.1).
fn with_host(v: &[u8]) -> Option<http::request::Parts> {
    let value = HeaderValue::from_bytes(v).ok()?;
    let (mut parts, ()) = http::Request::new(()).into_parts();
    parts.uri = "/x".parse().ok()?;
    parts.version = http::Version::HTTP_11;
    parts.headers.insert(http::header::HOST, value);
    Some(parts)
}

/// The fast reading of an already canonical `Host` answers what the full reading answers, and
/// takes nothing the full reading would refuse or rewrite.
fn fast_agrees(v: &[u8]) -> Result<(), String> {
    let Some(parts) = with_host(v) else {
        return Ok(());
    };
    let full = host_of(&parts, parts.headers.get(http::header::HOST)).map_err(|r| r.code);
    if let Some(fast) = canonical_host_port(v) {
        if full != Ok(Some(fast.to_owned())) {
            return Err(format!(
                "{:?}: fast {fast:?}, full {full:?}",
                String::from_utf8_lossy(v)
            ));
        }
    }
    let answer = request_host(&parts).map_err(|r| r.code);
    if answer != full {
        return Err(format!(
            "{:?}: {answer:?} != {full:?}",
            String::from_utf8_lossy(v)
        ));
    }
    Ok(())
}

#[test]
fn canonical_host_fast_path_hostile_twins() {
    let cases: &[&[u8]] = &[
        b"api.example",
        b"api.example:8080",
        b"127.0.0.1:18601",
        b"a_b.example",
        b"API.example",
        b"api.example.",
        b"api.example..",
        b"api..example",
        b".api.example",
        b"api.example:",
        b"api.example:65535",
        b"api.example:65536",
        b"api.example:99999",
        b"api.example:123456",
        b"api.example:+80",
        b"api.example:08",
        b"api.example:80:80",
        b"user@api.example",
        b"api%2eexample",
        b"[::1]:80",
        b"[::1]",
        b"api example",
        b"api.example/x",
        b"api.example?x",
        b"",
        b":80",
    ];
    for c in cases {
        fast_agrees(c).unwrap();
    }
    let long = format!("{}.example", "a".repeat(64));
    fast_agrees(long.as_bytes()).unwrap();
    let longest = vec!["a".repeat(63); 4].join(".");
    fast_agrees(longest.as_bytes()).unwrap();
    fast_agrees(format!("{longest}a").as_bytes()).unwrap();
    // Two `Host` fields: refused, whatever their spelling.
    let mut parts = with_host(b"api.example").unwrap();
    parts
        .headers
        .append(http::header::HOST, HeaderValue::from_static("api.example"));
    assert!(request_host(&parts).is_err());
    // An absolute-form target names its own host: the full reading compares the two.
    let mut parts = with_host(b"api.example").unwrap();
    parts.uri = "http://other.example/x".parse().unwrap();
    assert!(request_host(&parts).is_err());
}

/// The worker's one-entry `Host` memo answers only for the very bytes it saw: another spelling
/// of the same host, a port, a second `Host` or an absolute-form target naming another host are
/// each read (and refused) as without it.
#[test]
fn host_memo_hostile_twins() {
    let shared = |v: &[u8]| shared_host(&with_host(v).unwrap()).map_err(|r| r.code);
    let first = shared(b"api.example").unwrap().unwrap();
    let again = shared(b"api.example").unwrap().unwrap();
    assert!(Arc::ptr_eq(&first, &again), "the second read is the memo's");
    // Twins right after the memo holds `api.example`: each is the full reading's answer.
    for twin in [
        &b"API.example"[..],
        b"api.example.",
        b"api.example:8080",
        b"api.example:",
        b"api.exampl",
        b"api.example:99999",
        b"user@api.example",
        b"api.example/x",
    ] {
        assert!(shared(b"api.example").is_ok());
        fast_agrees(twin).unwrap();
        let parts = with_host(twin).unwrap();
        let full = host_of(&parts, parts.headers.get(http::header::HOST)).map_err(|r| r.code);
        let got = shared(twin).map(|h| h.as_deref().map(str::to_owned));
        assert_eq!(got, full, "{}", String::from_utf8_lossy(twin));
    }
    assert_eq!(
        &*shared(b"api.example:8080").unwrap().unwrap(),
        "api.example"
    );
    assert_eq!(
        &*shared(b"api.example:8080").unwrap().unwrap(),
        "api.example"
    );
    // Two `Host` fields, the memo holding their value: refused.
    let mut parts = with_host(b"api.example").unwrap();
    parts
        .headers
        .append(http::header::HOST, HeaderValue::from_static("api.example"));
    assert!(shared_host(&parts).is_err());
    // An absolute-form target naming another host: refused, the memo holding `Host`'s value.
    let mut parts = with_host(b"api.example").unwrap();
    parts.uri = "http://other.example/x".parse().unwrap();
    assert!(shared_host(&parts).is_err());
    // No `Host` on HTTP/1.1: refused, whatever the memo holds.
    let (mut parts, ()) = http::Request::new(()).into_parts();
    parts.uri = "/x".parse().unwrap();
    assert!(shared_host(&parts).is_err());
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(4096))]
    #[test]
    fn canonical_host_fast_path_agrees_with_full_reading(
        v in proptest::collection::vec(
            proptest::sample::select(b"abcAZ09-_.:[]@%/ 5x".to_vec()),
            0..24,
        )
    ) {
        proptest::prop_assert_eq!(fast_agrees(&v), Ok(()));
    }

    #[test]
    fn canonical_host_fast_path_agrees_on_any_bytes(
        v in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..16)
    ) {
        proptest::prop_assert_eq!(fast_agrees(&v), Ok(()));
    }
}
