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
