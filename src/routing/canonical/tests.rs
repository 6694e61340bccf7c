use super::*;

#[test]
fn strips_parameters_per_segment() {
    for (p, want) in [
        ("/admin", "/admin"),
        ("/admin;x/secret", "/admin/secret"),
        ("/admin;/secret", "/admin/secret"),
        ("/admin;jsessionid=1/secret", "/admin/secret"),
        ("/admin%3Bx/secret", "/admin/secret"),
        ("/admin%3bx/secret", "/admin/secret"),
        ("/a;b;c/d;e", "/a/d"),
        ("/shop/;jsessionid=1", "/shop/"),
    ] {
        assert_eq!(strip_params(p), want, "{p}");
    }
    assert!(matches!(strip_params("/a/b"), Cow::Borrowed(_)));
}

#[test]
fn hosts_are_canonical() {
    for (h, want) in [
        ("Admin.Corp.Example", Ok("admin.corp.example")),
        ("admin.corp.example.", Ok("admin.corp.example")),
        ("127.0.0.1", Ok("127.0.0.1")),
        ("[::1]", Ok("[::1]")),
        ("admin.corp.example..", Err(BAD_HOST)),
        (".", Err(BAD_HOST)),
        ("", Err(BAD_HOST)),
        ("%61dmin.corp.example", Err(BAD_HOST)),
        ("a..b", Err(BAD_HOST)),
        ("[]", Err(BAD_HOST)),
    ] {
        assert_eq!(canonical_host(h).as_deref().map_err(|e| *e), want, "{h}");
    }
}

#[test]
fn case_folding_keeps_percent_encodings() {
    assert_eq!(fold_case("/Admin/caf%C3%A9/X%3A"), "/admin/caf%C3%A9/x%3A");
    assert!(matches!(fold_case("/admin/%C3%A9"), Cow::Borrowed(_)));
}

#[test]
fn well_known_hosts_start_with_the_url_host() {
    let hosts = well_known_hosts(
        "https://GW.corp.example:8443/",
        &["gw.corp.example.".into(), "127.0.0.1".into()],
    )
    .unwrap();
    assert_eq!(hosts, ["gw.corp.example", "127.0.0.1"]);
    assert!(well_known_hosts("https://gw", &["gw:443".into()]).is_err());
}

#[test]
fn check_warns_about_case_sensitive_routes_above_a_catch_all() {
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys.toml");
    std::fs::write(&keys, "").unwrap();
    let keys = keys.display();
    let config = |admin: &str, open_up: &str| {
        let toml = format!(
            "version = 1\n[listen]\naddr = \"127.0.0.1:0\"\n[admin]\naddr = \"127.0.0.1:0\"\n\
             [credentials.keys]\nkind = \"api-key\"\nheader = \"X-Key\"\nkeys_file = \"{keys}\"\n\
             [[routes]]\nname = \"admin\"\nmatch = {{ path_prefix = \"/admin\"{admin} }}\n\
             accept = [\"keys\"]\nallow = [\"*\"]\ndangerous_allow_plaintext_credentials = true\n\
             [routes.upstream]\nurl = \"http://legacy:80\"\ntoken_header = \"none\"\n\
             [[routes]]\nname = \"open\"\nmatch = {{ path_prefix = \"/\" }}\n\
             [routes.upstream]\nurl = \"{open_up}\"\n"
        );
        crate::config::from_toml_str(&toml, &std::env::temp_dir().join("portcullis-case.toml"))
    };
    let warned = |c: &crate::config::Config| c.warnings.iter().any(|w| w.contains("\"/ADMIN\""));
    let c = config("", "http://legacy:80").unwrap();
    assert!(warned(&c), "{:?}", c.warnings);
    let c = config(", case_insensitive = true", "http://legacy:80").unwrap();
    assert!(!warned(&c));
    let c = config("", "http://elsewhere:80").unwrap();
    assert!(!warned(&c));
}

/// Property tests: a fixed budget in CI (256 cases each); `PROPTEST_CASES=100000` for a long run.
mod props {
    use std::fmt::Write as _;
    use std::sync::Arc;

    use proptest::prelude::*;

    use super::super::*;
    use crate::pipeline::route::{Route, Router};
    use crate::proxy::Upstream;
    use crate::routing::Routable;

    fn config() -> ProptestConfig {
        let cases = std::env::var("PROPTEST_CASES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(256);
        ProptestConfig::with_cases(cases)
    }

    /// Routes on one upstream: two nested prefixes, a sibling, a host route and a catch-all.
    /// `strip[i]` / `ci[i]` choose each route's `path_parameters` / `case_insensitive`.
    const SPECS: [(&str, &str, &str); 5] = [
        ("admin", "/admin", ""),
        ("reports", "/admin/reports/", ""),
        ("api", "/api", ""),
        ("admin-host", "/", ", host = \"admin.corp.example\""),
        ("open", "/", ""),
    ];

    /// `(strip, ci)` per route: uniform, mixed, and a stripping catch-all under refusing routes.
    const MODES: [([bool; 5], [bool; 5]); 8] = [
        ([false; 5], [false; 5]),
        ([true; 5], [false; 5]),
        ([true; 5], [true; 5]),
        ([false; 5], [true; 5]),
        (
            [true, false, true, false, false],
            [true, false, true, false, true],
        ),
        (
            [false, true, false, true, true],
            [false, true, false, true, false],
        ),
        (
            [false, false, false, false, true],
            [true, true, true, true, true],
        ),
        (
            [true, true, false, true, false],
            [false, false, true, true, true],
        ),
    ];

    /// One router per entry of [`MODES`], built once (building upstream clients is slow).
    fn routers() -> &'static [Router] {
        static ROUTERS: std::sync::OnceLock<Vec<Router>> = std::sync::OnceLock::new();
        ROUTERS.get_or_init(|| MODES.iter().map(|(s, c)| router(s, c)).collect())
    }

    fn router(strip: &[bool; 5], ci: &[bool; 5]) -> Router {
        let specs = SPECS;
        let mut toml = String::from(
            "version = 1\n[listen]\naddr = \"127.0.0.1:0\"\n[admin]\naddr = \"127.0.0.1:0\"\n",
        );
        for (i, (name, prefix, host)) in specs.iter().enumerate() {
            let pp = if strip[i] {
                "strip-for-match"
            } else {
                "refuse"
            };
            write!(
                toml,
                "[[routes]]\nname = \"{name}\"\nmatch = {{ path_prefix = \"{prefix}\", path_parameters = \"{pp}\", case_insensitive = {}{host} }}\n[routes.upstream]\nurl = \"http://127.0.0.1:9\"\n",
                ci[i]
            )
            .unwrap();
        }
        let cfg = crate::config::from_toml_str(
            &toml,
            &std::env::temp_dir().join("portcullis-props.toml"),
        )
        .unwrap();
        let routes = cfg
            .routes
            .iter()
            .map(|rc| {
                Arc::new(Route {
                    config: rc.clone(),
                    upstream: Upstream::new(&rc.upstream).unwrap(),
                    accept: Vec::new(),
                    policy: None,
                    plan: None,
                    limits: None,
                    validator: None,
                    inject: None,
                    meters: Default::default(),
                })
            })
            .collect();
        Router::new(routes)
    }

    /// What decides a request: the route and the path its policy sees (or a refusal).
    fn decide(router: &Router, host: &str, raw_path: &str) -> Result<(String, String), String> {
        let canonical = path::normalize(raw_path).map_err(|e| e.to_string())?;
        let host = canonical_host(host).map_err(str::to_owned)?;
        let view = CanonicalRequest::from_canonical(canonical.into_owned(), Some(host));
        let route = router
            .select(view.host.as_deref(), &view.match_path, &http::Method::GET)
            .map_err(|r| r.detail.to_string())?;
        view.admit_params(route.matcher())
            .map_err(|r| r.detail.to_string())?;
        Ok((
            route.name().to_string(),
            view.policy_path(route.matcher()).into_owned(),
        ))
    }

    fn segment() -> impl Strategy<Value = String> {
        "[a-zA-Z0-9._~-]{1,6}".prop_filter("dot segment", |s| s != "." && s != "..")
    }

    /// A plain path, starting (usually) under one of the route prefixes.
    fn base_path() -> impl Strategy<Value = String> {
        (
            prop_oneof![
                Just("admin"),
                Just("admin/reports"),
                Just("api"),
                Just("apix"),
                Just("other")
            ],
            proptest::collection::vec(segment(), 0..4),
            any::<bool>(),
        )
            .prop_map(|(first, rest, slash)| {
                let mut p = format!("/{first}");
                for s in rest {
                    p.push('/');
                    p.push_str(&s);
                }
                if slash {
                    p.push('/');
                }
                p
            })
    }

    /// How one spelling differs from the plain path.
    #[derive(Debug, Clone)]
    struct Spelling {
        /// Per character: 0 keep, 1 `%XX`, 2 `%xx`, 3 flip ASCII case (when allowed).
        chars: Vec<u8>,
        /// Per segment: `;params` to append (raw `;` or `%3B`), if any.
        params: Vec<Option<(bool, String)>>,
    }

    fn spelling() -> impl Strategy<Value = Spelling> {
        (
            proptest::collection::vec(0u8..4, 64),
            proptest::collection::vec(
                proptest::option::weighted(0.3, (any::<bool>(), "[a-z0-9=]{0,5}")),
                8,
            ),
        )
            .prop_map(|(chars, params)| Spelling { chars, params })
    }

    /// Spell `path` differently: percent-encode unreserved characters, flip case (only when
    /// `case`), add `;params` after non-empty segments (only when `params`).
    fn respell(path: &str, s: &Spelling, case: bool, params: bool) -> String {
        let mut out = String::new();
        let mut seg = 0usize;
        let mut seg_len = 0usize;
        let add_params = |out: &mut String, seg: usize, seg_len: usize| {
            if let (true, true, Some(Some((raw, p)))) = (params, seg_len > 0, s.params.get(seg)) {
                out.push_str(if *raw { ";" } else { "%3B" });
                out.push_str(p);
            }
        };
        for (i, c) in path.chars().enumerate() {
            if c == '/' {
                if i > 0 {
                    add_params(&mut out, seg, seg_len);
                    seg += 1;
                }
                seg_len = 0;
                out.push('/');
                continue;
            }
            seg_len += 1;
            match s.chars.get(i % s.chars.len()).copied().unwrap_or(0) {
                1 => write!(out, "%{:02X}", c as u32).unwrap(),
                2 => write!(out, "%{:02x}", c as u32).unwrap(),
                3 if case && c.is_ascii_alphabetic() => out.push(if c.is_ascii_uppercase() {
                    c.to_ascii_lowercase()
                } else {
                    c.to_ascii_uppercase()
                }),
                _ => out.push(c),
            }
        }
        add_params(&mut out, seg, seg_len);
        out
    }

    fn respell_host(host: &str, flips: &[bool], dot: bool) -> String {
        let mut h: String = host
            .chars()
            .zip(flips.iter().cycle())
            .map(|(c, f)| if *f { c.to_ascii_uppercase() } else { c })
            .collect();
        if dot {
            h.push('.');
        }
        h
    }

    proptest! {
        #![proptest_config(config())]

        /// The normalizer never panics; what it accepts is canonical (idempotent), and cutting
        /// the parameters keeps it canonical.
        #[test]
        fn normalizer_is_total_and_idempotent(raw in "(/|[a-zA-Z0-9._~;=-]|%[0-9a-fA-F]{2}|%|\\\\|é)*") {
            if let Ok(out) = path::normalize(&raw) {
                let again = path::normalize(&out).unwrap();
                prop_assert!(matches!(again, Cow::Borrowed(_)), "{raw:?} -> {out:?}");
                let stripped = strip_params(&out);
                prop_assert_eq!(path::normalize(&stripped).unwrap(), stripped.clone());
                prop_assert_eq!(strip_params(&stripped), stripped.clone());
                let folded = fold_case(&out).into_owned();
                prop_assert_eq!(fold_case(&folded), folded.as_str());
            }
        }

        /// The view of a request whose path is already canonical shares the target's path
        /// (no copy): it reads exactly as the view built from a copy of the normalized path,
        /// for every target, canonical or not, with or without `;params` and a query.
        #[test]
        fn shared_view_reads_as_the_copied_one(
            raw in "(/|[a-zA-Z0-9._~;=-]|%[0-9a-fA-F]{2}|%|\\\\|é)*",
            query in proptest::option::of("[a-z0-9=&;%]{0,8}"),
        ) {
            let target = match &query {
                Some(q) => format!("{raw}?{q}"),
                None => raw.clone(),
            };
            let Ok(uri) = target.parse::<http::Uri>() else { return Ok(()) };
            let (mut parts, ()) = http::Request::new(()).into_parts();
            parts.uri = uri;
            parts.version = http::Version::HTTP_11;
            parts.headers.insert(http::header::HOST, http::HeaderValue::from_static("gw.example"));
            let shared = CanonicalRequest::of(&parts).map_err(|r| r.detail.to_string());
            let copied = path::normalize(parts.uri.path())
                .map_err(|e| e.to_string())
                .map(|c| (matches!(c, Cow::Borrowed(_)), c.into_owned()))
                .map(|(borrowed, c)| {
                    (borrowed, CanonicalRequest::from_canonical(c, Some("gw.example".into())))
                });
            match (shared, copied) {
                (Ok(view), Ok((borrowed, want))) => {
                    prop_assert_eq!(&*view.path, &*want.path);
                    prop_assert_eq!(&*view.match_path, &*want.match_path);
                    prop_assert_eq!(view.has_params, want.has_params);
                    prop_assert_eq!(&view.host, &want.host);
                    prop_assert_eq!(view.audit_target(&parts.uri), want.audit_target(&parts.uri));
                    prop_assert_eq!(matches!(view.path, Text::Shared(_)), borrowed);
                    prop_assert_eq!(view, want);
                }
                (Err(_), Err(_)) => {}
                (a, b) => prop_assert!(false, "{target:?}: {a:?} vs {b:?}"),
            }
        }

        /// The one-pass test for parameters answers what the three substring searches did.
        #[test]
        fn one_pass_parameter_test_agrees(raw in "([a-z/;=%3Bb]|%3[Bb]|%[0-9a-fA-F]{0,2})*") {
            let searched = raw.contains(';') || raw.contains("%3B") || raw.contains("%3b");
            prop_assert_eq!(has_params(&raw), searched, "{:?}", raw);
        }

        /// The host parser never panics and its output is a fixed point.
        #[test]
        fn host_parser_is_total_and_idempotent(raw in "[a-zA-Z0-9.:_%\\[\\]-]{0,24}|\\PC{0,8}") {
            if let Ok(h) = canonical_host(&raw) {
                prop_assert_eq!(canonical_host(&h), Ok(h.clone()));
                prop_assert_eq!(canonical_host(&h.to_ascii_uppercase()), Ok(h.clone()));
                if !h.starts_with('[') {
                    prop_assert_eq!(canonical_host(&format!("{h}.")), Ok(h.clone()));
                }
            }
        }

        /// The class property: equivalent spellings of one request get the same route and the
        /// same policy input, or a refusal; never another route.
        #[test]
        fn equivalent_spellings_get_one_decision(
            base in base_path(),
            s in spelling(),
            mode in 0..MODES.len(),
            host in prop_oneof![Just("admin.corp.example"), Just("other.example"), Just("localhost")],
            flips in proptest::collection::vec(any::<bool>(), 1..8),
            dot in any::<bool>(),
        ) {
            let router = &routers()[mode];
            let (strip, ci) = MODES[mode];
            let plain = decide(router, host, &base);
            let spelled_host = respell_host(host, &flips, dot);
            // Percent-encoding unreserved characters and the host's case and trailing dot:
            // exactly the same outcome.
            let encoded = respell(&base, &s, false, false);
            prop_assert_eq!(&decide(router, &spelled_host, &encoded), &plain, "{}", encoded);
            // `;params`: the same route and policy path, or a refusal; with every route
            // stripping, never a refusal.
            let with_params = respell(&base, &s, false, true);
            match decide(router, &spelled_host, &with_params) {
                Ok(d) => prop_assert_eq!(Ok(d), plain.clone(), "{}", with_params),
                // A refusal only where the plain request's route refuses parameters.
                Err(e) => {
                    if let Ok((name, _)) = &plain {
                        let i = SPECS.iter().position(|(n, _, _)| n == name).unwrap();
                        prop_assert!(!strip[i], "{with_params} refused: {e}");
                    }
                }
            }
            // Case, where every route matches case-insensitively: the same outcome.
            if ci.iter().all(|x| *x) {
                let cased = respell(&base, &s, true, true);
                let got = decide(router, &spelled_host, &cased);
                if strip.iter().all(|x| *x) || got.is_ok() {
                    prop_assert_eq!(got, plain, "{}", cased);
                }
            }
        }
    }
}
