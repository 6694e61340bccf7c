use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::Method;

use super::*;
use crate::identity::{Credential, Kind};

fn model() -> Arc<Model> {
    Arc::new(Model::new().unwrap())
}

fn cred(kind: Kind, identity: &str) -> Credential {
    Credential {
        name: Arc::from(match kind {
            Kind::Mtls => "workload-mtls",
            Kind::JwtSvid => "workload-jwt",
            Kind::Ldap => "racf",
            Kind::ApiKey => "partner-keys",
            Kind::Webhook => "stripe",
        }),
        kind,
        identity: identity.to_owned(),
        principal: kind.is_legacy().then(|| "gwuser".to_owned()),
        groups: Vec::new(),
        jti: None,
        lineage: None,
    }
}

/// Monday 2026-11-02 10:00:00 UTC.
const MONDAY_10H: u64 = 1_793_613_600;

struct Req<'a> {
    cred: &'a Credential,
    method: Method,
    path: &'a str,
    ip: &'a str,
    at: u64,
    phase: &'a str,
}

impl<'a> Req<'a> {
    fn new(cred: &'a Credential) -> Self {
        Req {
            cred,
            method: Method::GET,
            path: "/cics/payments/42",
            ip: "10.20.1.2",
            at: MONDAY_10H,
            phase: "bridge",
        }
    }
    fn access(&self) -> Access<'_> {
        Access {
            credential: self.cred,
            method: &self.method,
            path: self.path,
            source_ip: self.ip.parse().unwrap(),
            now: UNIX_EPOCH + Duration::from_secs(self.at),
            phase: self.phase,
        }
    }
    /// Evaluated twice through the decision cache (a miss or a hit, then a hit) and once without
    /// it: all three must agree.
    fn eval(&self, p: &RoutePolicy) -> Verdict {
        let a = self.access();
        let first = p.evaluate(&a);
        assert_eq!(p.evaluate(&a), first, "cached decision differs");
        assert_eq!(p.evaluate_uncached(&a), first, "cache disagrees with Cedar");
        first
    }
}

fn allow_policy(patterns: &[&str]) -> RoutePolicy {
    let spec = RouteSpec {
        route: "cics-payments".into(),
        rules: Rules::Allow(patterns.iter().map(|s| s.to_string()).collect()),
        shadow: None,
    };
    RoutePolicy::load(model(), &spec, Arc::new(Metrics::default())).unwrap()
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    // Replace rather than overwrite: a new inode, as editors and Kubernetes do.
    let tmp = dir.join(format!(".{name}.tmp"));
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, &p).unwrap();
    p
}

fn file_policy(text: &str, shadow: Option<&str>) -> (tempfile::TempDir, RoutePolicy, Arc<Metrics>) {
    let dir = tempfile::tempdir().unwrap();
    let p = write(dir.path(), "route.cedar", text);
    let shadow = shadow.map(|s| write(dir.path(), "shadow.cedar", s));
    let spec = RouteSpec {
        route: "cics-payments".into(),
        rules: Rules::File(p),
        shadow,
    };
    let metrics = Arc::new(Metrics::default());
    let policy = RoutePolicy::load(model(), &spec, metrics.clone()).unwrap();
    (dir, policy, metrics)
}

fn load_err(text: &str) -> Vec<PolicyError> {
    let dir = tempfile::tempdir().unwrap();
    let p = write(dir.path(), "bad.cedar", text);
    let spec = RouteSpec {
        route: "r".into(),
        rules: Rules::File(p),
        shadow: None,
    };
    check(&model(), &spec)
}

#[test]
fn embedded_schema_compiles() {
    let m = Model::new().unwrap();
    assert_eq!(m.methods.len(), METHODS.len());
}

/// The values built per request (without the schema, for speed) fit the schema exactly.
#[test]
fn requests_fit_the_schema() {
    let m = model();
    let schema = Schema::from_cedarschema_str(SCHEMA).unwrap().0;
    let p = allow_policy(&["*"]);
    for kind in [
        Kind::Mtls,
        Kind::JwtSvid,
        Kind::Ldap,
        Kind::ApiKey,
        Kind::Webhook,
    ] {
        let mut c = cred(kind, "spiffe://corp.example/a");
        c.groups = vec!["ops".into()];
        for method in &METHODS {
            let r = Req {
                method: method.clone(),
                ..Req::new(&c)
            };
            let access = Access {
                credential: &c,
                method: &r.method,
                path: r.path,
                source_ip: r.ip.parse().unwrap(),
                now: SystemTime::now(),
                phase: "observe",
            };
            let (_, req, entities) = p.request(&access, true).unwrap();
            Request::new(
                req.principal().unwrap().clone(),
                req.action().unwrap().clone(),
                req.resource().unwrap().clone(),
                req.context().unwrap().clone(),
                Some(&schema),
            )
            .unwrap();
            // Every entity validates against the schema.
            Entities::from_entities(entities.iter().cloned(), Some(&schema)).unwrap();
        }
    }
    drop(m);
}

#[test]
fn default_deny_and_allow_star() {
    let (_d, none, _) = file_policy(
        r#"forbid (principal, action, resource) when { principal.id == "spiffe://x/y" };"#,
        None,
    );
    let c = cred(Kind::Mtls, "spiffe://corp.example/a");
    let v = Req::new(&c).eval(&none);
    assert!(!v.allowed(), "only a forbid: default deny");
    assert!(v.decision.policies.is_empty());

    let any = allow_policy(&["*"]);
    for kind in [
        Kind::Mtls,
        Kind::JwtSvid,
        Kind::Ldap,
        Kind::ApiKey,
        Kind::Webhook,
    ] {
        let c = cred(kind, "spiffe://other.example/whatever");
        let v = Req::new(&c).eval(&any);
        assert!(v.allowed(), "{kind:?}");
        assert_eq!(v.decision.policies, vec!["allow:*".to_owned()]);
    }
}

#[test]
fn allow_patterns_match_spiffe_ids_exactly() {
    let p = allow_policy(&[
        "spiffe://corp.example/ns/pay/*",
        "spiffe://corp.example/ns/billing/sa/api",
    ]);
    let cases = [
        ("spiffe://corp.example/ns/pay/sa/api", true),
        ("spiffe://corp.example/ns/pay/x/y/z", true),
        // A sibling with a longer name is not under /ns/pay/.
        ("spiffe://corp.example/ns/payments/x", false),
        ("spiffe://corp.example/ns/pay", false),
        // Trust domain confusion.
        ("spiffe://corp.example.evil/ns/pay/x", false),
        ("spiffe://evil.corp.example/ns/pay/x", false),
        ("spiffe://corp.example/ns/billing/sa/api", true),
        ("spiffe://corp.example/ns/billing/sa/api2", false),
        ("spiffe://corp.example/ns/billing/sa/ap", false),
        ("spiffe://corp.example/ns/billing/sa/api/x", false),
    ];
    for (id, want) in cases {
        for kind in [Kind::Mtls, Kind::JwtSvid, Kind::Ldap, Kind::ApiKey] {
            let c = cred(kind, id);
            assert_eq!(Req::new(&c).eval(&p).allowed(), want, "{id} via {kind:?}");
        }
    }
    let c = cred(Kind::Mtls, "spiffe://corp.example/ns/pay/a");
    assert_eq!(
        Req::new(&c).eval(&p).decision.policies,
        vec!["allow:spiffe://corp.example/ns/pay/*".to_owned()]
    );

    let whole_td = allow_policy(&["spiffe://corp.example/*"]);
    for (id, want) in [
        ("spiffe://corp.example/a", true),
        ("spiffe://corp.example.evil/a", false),
        ("spiffe://corp.exampl/a", false),
    ] {
        let c = cred(Kind::Mtls, id);
        assert_eq!(Req::new(&c).eval(&whole_td).allowed(), want, "{id}");
    }
}

#[test]
fn allow_patterns_are_checked_and_cannot_inject() {
    let bad = [
        "",
        "spiffe://corp.example/x\" } || true || { \"",
        "spiffe://corp.example/x\"; permit (principal, action, resource); //",
        "spiffe://corp.example/x\\",
        "spiffe://*/x",
        "spiffe://corp.*/x",
        "spiffe://corp.example",
        "spiffe://corp.example/",
        "spiffe://corp.example/a//b",
        "spiffe://corp.example/../x",
        "spiffe://Corp.example/x",
        "corp.example/x",
        "**",
        "spiffe://corp.example/a b",
        "spiffe://corp.example/a\nb",
    ];
    for b in bad {
        let errs = load::compile_allow(&model(), "r", &[b.to_owned()]).unwrap_err();
        assert!(
            matches!(errs.as_slice(), [PolicyError::Pattern { pattern, .. }] if pattern == b),
            "{b:?}: {errs:?}"
        );
    }
    assert!(load::compile_allow(&model(), "r", &[]).is_err());
    // All problems at once.
    let errs =
        load::compile_allow(&model(), "r", &["x".into(), "*".into(), "y".into()]).unwrap_err();
    assert_eq!(errs.len(), 2);
}

/// The escaping itself, independently of the pattern checks: hostile text becomes one literal.
#[test]
fn escaping_keeps_hostile_text_literal() {
    let hostile = [
        "\" } || true || { \"",
        "a\\\" || true || \"",
        "\\",
        "*",
        "line\nbreak\r\t\0",
        "\u{202e}rtl \u{1f600}",
        "\"; permit (principal, action, resource); //",
    ];
    let m = model();
    for h in hostile {
        let text = format!(
            "permit (principal, action, resource) when {{ principal.principal == \"{}\" && principal.principal like \"{}\" }};",
            allow::escape_str(h),
            allow::escape_literal_pattern(h)
        );
        let set = load::compile(&m, &text, Origin::File("t".into())).unwrap();
        assert_eq!(set.policies().count(), 1, "{h:?}");
        let p = RoutePolicy {
            model: m.clone(),
            route: EntityUid::from_str("Route::\"r\"").unwrap(),
            route_name: RestrictedExpression::new_string("r".into()),
            enforced: Watched::fixed(&m, set),
            shadow: None,
            metrics: Arc::new(Metrics::default()),
        };
        let mut c = cred(Kind::ApiKey, "spiffe://corp.example/k");
        c.principal = Some(h.to_owned());
        assert!(Req::new(&c).eval(&p).allowed(), "{h:?} matches itself");
        c.principal = Some(format!("{h}x"));
        assert!(!Req::new(&c).eval(&p).allowed(), "{h:?}: nothing else");
        c.principal = Some(String::new());
        assert!(!Req::new(&c).eval(&p).allowed(), "{h:?}: nothing else");
    }
}

const MATRIX: &str = r#"
@id("payments-workloads")
permit (principal, action in [Action::"read", Action::"write"], resource)
when { principal.id like "spiffe://corp.example/ns/payments/*" && !principal.legacy };

@id("racf-payops-read")
permit (principal, action in Action::"read", resource)
when {
  principal.kind == "ldap" && principal.credential == "racf" &&
  principal.groups.contains("PAYOPS") &&
  context.source_ip.isInRange(ip("10.20.0.0/16")) &&
  context.weekday <= 5 && context.hour >= 6 && context.hour < 20
};

@id("partner-post")
permit (principal, action == Action::"POST", resource == Route::"cics-payments")
when { principal.kind == "api-key" && principal.principal == "acme-1" && context.phase != "enforce" };

@id("no-batch-delete")
forbid (principal, action == Action::"DELETE", resource)
when { resource.path like "/cics/payments/batch/*" };
"#;

#[test]
fn matrix_across_kinds_groups_ips_methods_and_time() {
    let (_d, p, _) = file_policy(MATRIX, None);
    let wl = cred(Kind::Mtls, "spiffe://corp.example/ns/payments/sa/api");
    let jwt = cred(Kind::JwtSvid, "spiffe://corp.example/ns/payments/sa/batch");
    let mut racf = cred(Kind::Ldap, "spiffe://corp.example/legacy/racf/gwuser");
    racf.groups = vec!["PAYOPS".into(), "OTHER".into()];
    let mut racf_nogroup = racf.clone();
    racf_nogroup.groups = vec!["OPS".into()];
    let mut key = cred(Kind::ApiKey, "spiffe://corp.example/partners/acme");
    key.principal = Some("acme-1".into());
    let mut other_key = key.clone();
    other_key.principal = Some("acme-2".into());
    // A legacy credential mapped into the payments namespace does not get workload rights.
    let legacy_in_ns = cred(Kind::Ldap, "spiffe://corp.example/ns/payments/sa/api");

    let check = |r: Req<'_>, want: bool, policy: Option<&str>| {
        let v = r.eval(&p);
        assert_eq!(
            v.allowed(),
            want,
            "{} {} {} from {} at {}: {v:?}",
            r.cred.identity,
            r.method,
            r.path,
            r.ip,
            r.at
        );
        if let Some(id) = policy {
            assert_eq!(v.decision.policies, vec![id.to_owned()]);
        }
        assert!(v.decision.errors.is_empty(), "{v:?}");
    };
    for m in [
        Method::GET,
        Method::POST,
        Method::PUT,
        Method::DELETE,
        Method::HEAD,
    ] {
        check(
            Req {
                method: m.clone(),
                ..Req::new(&wl)
            },
            true,
            Some("payments-workloads"),
        );
        check(
            Req {
                method: m,
                ..Req::new(&jwt)
            },
            true,
            None,
        );
    }
    check(
        Req {
            method: Method::TRACE,
            ..Req::new(&wl)
        },
        false,
        None,
    );
    check(
        Req {
            method: Method::DELETE,
            path: "/cics/payments/batch/7",
            ..Req::new(&wl)
        },
        false,
        Some("no-batch-delete"),
    );
    check(Req::new(&legacy_in_ns), false, None);

    // LDAP group, source range, hours.
    check(Req::new(&racf), true, Some("racf-payops-read"));
    check(
        Req {
            method: Method::OPTIONS,
            ..Req::new(&racf)
        },
        true,
        None,
    );
    check(
        Req {
            method: Method::POST,
            ..Req::new(&racf)
        },
        false,
        None,
    );
    check(Req::new(&racf_nogroup), false, None);
    check(
        Req {
            ip: "10.21.0.1",
            ..Req::new(&racf)
        },
        false,
        None,
    );
    check(
        Req {
            ip: "::ffff:10.20.3.4",
            ..Req::new(&racf)
        },
        true,
        None,
    );
    check(
        Req {
            ip: "fd00::1",
            ..Req::new(&racf)
        },
        false,
        None,
    );
    check(
        Req {
            at: MONDAY_10H + 11 * 3600,
            ..Req::new(&racf)
        },
        false,
        None,
    ); // 21:00
    check(
        Req {
            at: MONDAY_10H + 5 * 86_400,
            ..Req::new(&racf)
        },
        false,
        None,
    ); // Saturday
    check(
        Req {
            at: MONDAY_10H + 4 * 86_400,
            ..Req::new(&racf)
        },
        true,
        None,
    ); // Friday

    // API key by key id, method and phase.
    check(
        Req {
            method: Method::POST,
            ..Req::new(&key)
        },
        true,
        Some("partner-post"),
    );
    check(
        Req {
            method: Method::GET,
            ..Req::new(&key)
        },
        false,
        None,
    );
    check(
        Req {
            method: Method::POST,
            phase: "enforce",
            ..Req::new(&key)
        },
        false,
        None,
    );
    check(
        Req {
            method: Method::POST,
            ..Req::new(&other_key)
        },
        false,
        None,
    );

    // Webhooks get nothing here.
    let hook = cred(Kind::Webhook, "spiffe://corp.example/external/stripe");
    check(
        Req {
            method: Method::POST,
            ..Req::new(&hook)
        },
        false,
        None,
    );
}

#[test]
fn unknown_method_is_denied_with_a_reason() {
    let p = allow_policy(&["*"]);
    let c = cred(Kind::Mtls, "spiffe://corp.example/a");
    let r = Req {
        method: Method::from_bytes(b"PROPFIND").unwrap(),
        ..Req::new(&c)
    };
    let v = r.eval(&p);
    assert!(!v.allowed());
    assert!(v.decision.errors[0].contains("PROPFIND"), "{v:?}");
}

#[test]
fn shadow_deny_is_reported_but_not_enforced() {
    let (_d, p, _) = file_policy(
        "permit (principal, action, resource);",
        Some(r#"@id("next") permit (principal, action, resource) when { !principal.legacy };"#),
    );
    let legacy = cred(Kind::Ldap, "spiffe://corp.example/legacy/u");
    let v = Req::new(&legacy).eval(&p);
    assert!(v.allowed());
    assert!(v.shadow_denied());
    assert_eq!(v.shadow.as_ref().map(|s| s.allowed), Some(false));

    let wl = cred(Kind::Mtls, "spiffe://corp.example/a");
    let v = Req::new(&wl).eval(&p);
    assert!(v.allowed() && !v.shadow_denied());
    assert_eq!(v.shadow.unwrap().policies, vec!["next".to_owned()]);

    // No shadow configured: nothing to report.
    let v = Req::new(&wl).eval(&allow_policy(&["*"]));
    assert!(v.shadow.is_none() && !v.shadow_denied());
}

#[test]
fn reload_follows_the_file_and_keeps_the_old_set_on_error() {
    let (dir, p, metrics) = file_policy(
        r#"permit (principal, action, resource) when { principal.id == "spiffe://corp.example/a" };"#,
        None,
    );
    let a = cred(Kind::Mtls, "spiffe://corp.example/a");
    let b = cred(Kind::Mtls, "spiffe://corp.example/b");
    assert_eq!(p.poll(), Ok(false), "nothing changed");
    assert!(Req::new(&a).eval(&p).allowed());
    assert!(!Req::new(&b).eval(&p).allowed());

    write(
        dir.path(),
        "route.cedar",
        r#"permit (principal, action, resource) when { principal.id == "spiffe://corp.example/b" };"#,
    );
    assert_eq!(p.poll(), Ok(true));
    assert!(!Req::new(&a).eval(&p).allowed());
    assert!(Req::new(&b).eval(&p).allowed());
    assert_eq!(metrics.config_reloads_total.with(&["ok"]).get(), 1);

    // Broken: syntax, then a schema error. The previous set stays in force.
    write(
        dir.path(),
        "route.cedar",
        "permit (principal, action, resource) when {",
    );
    let errs = p.poll().unwrap_err();
    assert!(matches!(errs[0], PolicyError::Syntax { .. }), "{errs:?}");
    assert!(Req::new(&b).eval(&p).allowed());
    assert_eq!(
        p.poll(),
        Ok(false),
        "same broken file: not retried every tick"
    );
    write(
        dir.path(),
        "route.cedar",
        "permit (principal, action, resource) when { principal.team == \"x\" };",
    );
    let errs = p.poll().unwrap_err();
    assert!(matches!(errs[0], PolicyError::Invalid { .. }), "{errs:?}");
    assert!(Req::new(&b).eval(&p).allowed());
    assert_eq!(metrics.config_reloads_total.with(&["error"]).get(), 2);

    // Deleted: also kept.
    std::fs::remove_file(dir.path().join("route.cedar")).unwrap();
    assert!(matches!(p.poll().unwrap_err()[0], PolicyError::Read { .. }));
    assert!(Req::new(&b).eval(&p).allowed());

    // Fixed.
    write(
        dir.path(),
        "route.cedar",
        "permit (principal, action, resource);",
    );
    assert_eq!(p.poll(), Ok(true));
    assert!(Req::new(&a).eval(&p).allowed());
}

#[test]
fn validation_errors_name_file_line_and_reason() {
    let errs = load_err(
        "@id(\"ok\")\npermit (principal, action, resource);\n\n@id(\"typo\")\npermit (principal, action, resource)\n  when { principal.grups.contains(\"ops\") };\n",
    );
    assert_eq!(errs.len(), 1, "{errs:?}");
    let PolicyError::Invalid {
        origin,
        policy,
        line,
        reason,
        ..
    } = &errs[0]
    else {
        panic!("{errs:?}")
    };
    assert!(matches!(origin, Origin::File(p) if p.ends_with("bad.cedar")));
    assert_eq!(policy, "typo");
    assert_eq!(*line, 6);
    assert!(reason.contains("grups"), "{reason}");
    let shown = errs[0].to_string();
    assert!(shown.contains("bad.cedar:6:"), "{shown}");
    let problem = errs[0].problem("portcullis.toml");
    assert!(
        problem.file.ends_with("bad.cedar") && problem.key.starts_with("6:"),
        "{problem}"
    );

    let cases: [(&str, &str); 7] = [
        (
            "permit (principal, action, resource) when { context.hour == \"9\" };",
            "policy0",
        ),
        (
            "permit (principal, action == Action::\"FETCH\", resource);",
            "FETCH",
        ),
        (
            "permit (principal == User::\"alice\", action, resource);",
            "User",
        ),
        (
            "permit (principal, action, resource) when { context.source_ip == \"10.0.0.1\" };",
            "policy0",
        ),
        (
            "permit (principal, action, resource) when { resource.owner == \"x\" };",
            "owner",
        ),
        (
            "permit (principal in Group::\"ops\", action, resource);",
            "Group",
        ),
        (
            "permit (principal, action, resource) when { principal.groups.contains(1) };",
            "policy0",
        ),
    ];
    for (text, needle) in cases {
        let errs = load_err(text);
        assert!(!errs.is_empty(), "{text}");
        assert!(
            errs.iter()
                .all(|e| matches!(e, PolicyError::Invalid { line: 1, .. })),
            "{text}: {errs:?}"
        );
        assert!(errs[0].to_string().contains(needle), "{text}: {}", errs[0]);
    }

    // Syntax errors carry the position too.
    let errs = load_err("permit (principal, action, resource);\npermit (principal action);\n");
    assert!(
        matches!(errs[0], PolicyError::Syntax { line: 2, .. }),
        "{errs:?}"
    );
    // Templates, empty files, duplicate ids, unreadable files.
    assert!(matches!(
        load_err("permit (principal == ?principal, action, resource);")[0],
        PolicyError::Syntax { .. }
    ));
    assert!(load_err("// nothing\n")[0]
        .to_string()
        .contains("no policies"));
    assert!(load_err(
        "@id(\"a\") permit (principal, action, resource);\n@id(\"a\") forbid (principal, action, resource);"
    )[0]
    .to_string()
    .contains("two policies"));
    let spec = RouteSpec {
        route: "r".into(),
        rules: Rules::File("/nonexistent/p.cedar".into()),
        shadow: Some("/nonexistent/s.cedar".into()),
    };
    let errs = check(&model(), &spec);
    assert_eq!(errs.len(), 2);
    assert!(errs.iter().all(|e| matches!(e, PolicyError::Read { .. })));
    assert!(RoutePolicy::load(model(), &spec, Arc::new(Metrics::default())).is_err());
}

#[test]
fn rules_from_route_config() {
    let p = Some(PathBuf::from("p.cedar"));
    let a = Some(vec!["*".to_owned()]);
    assert_eq!(
        Rules::from_route("r", true, None, None),
        Err(PolicyError::NoPolicy { route: "r".into() })
    );
    assert_eq!(
        Rules::from_route("r", true, p.clone(), a.clone()),
        Err(PolicyError::Ambiguous { route: "r".into() })
    );
    assert_eq!(
        Rules::from_route("r", false, p.clone(), None),
        Err(PolicyError::Unreachable { route: "r".into() })
    );
    assert_eq!(Rules::from_route("r", false, None, None), Ok(None));
    assert_eq!(
        Rules::from_route("r", true, None, a),
        Ok(Some(Rules::Allow(vec!["*".into()])))
    );
    assert_eq!(
        Rules::from_route("r", true, p, None),
        Ok(Some(Rules::File("p.cedar".into())))
    );
    let problem = PolicyError::NoPolicy { route: "r".into() }.problem("gw.toml");
    assert_eq!(
        (problem.file.as_str(), problem.key.as_str()),
        ("gw.toml", "routes.r")
    );
    assert!(
        problem.message.starts_with("accepts credentials"),
        "{problem}"
    );
}

fn obs(identity: &str, method: &str, path: &str) -> suggest::Observed {
    suggest::Observed {
        identity: identity.into(),
        method: method.into(),
        path: path.into(),
        count: 3,
    }
}

fn compiled(text: &str) -> RoutePolicy {
    let set = load::compile(&model(), text, Origin::File("suggested.cedar".into()))
        .unwrap_or_else(|e| panic!("{e:?}\n{text}"));
    RoutePolicy {
        model: model(),
        route: EntityUid::from_str("Route::\"cics-payments\"").unwrap(),
        route_name: RestrictedExpression::new_string("cics-payments".into()),
        enforced: Watched::fixed(&model(), set),
        shadow: None,
        metrics: Arc::new(Metrics::default()),
    }
}

#[test]
fn suggested_policy_allows_what_was_seen_and_little_else() {
    let api = "spiffe://corp.example/ns/payments/sa/api";
    let batch = "spiffe://corp.example/ns/payments/sa/batch";
    let racf = "spiffe://corp.example/legacy/racf/gwuser";
    let seen = vec![
        obs(api, "GET", "/cics/payments/42/status"),
        obs(api, "GET", "/cics/payments/7/status"),
        obs(api, "POST", "/cics/payments"),
        obs(batch, "GET", "/cics/payments/1234/status"),
        obs(batch, "POST", "/cics/payments"),
        obs(
            racf,
            "GET",
            "/cics/payments/3f2504e0-4f89-11d3-9a0c-0305e82c3301",
        ),
        obs(racf, "GET", "/cics/payments/report/2026-11-01"),
        obs(racf, "PROPFIND", "/cics/payments"),
    ];
    let text = suggest::suggest("cics-payments", &seen);
    let p = compiled(&text);
    // api and batch have the same access: one group.
    assert!(
        text.contains(&format!("[\"{api}\", \"{batch}\"].contains(principal.id)")),
        "{text}"
    );

    let at = |id: &str, m: Method, path: &str| {
        let c = cred(Kind::Mtls, id);
        Req {
            method: m,
            path,
            ..Req::new(&c)
        }
        .eval(&p)
        .allowed()
    };
    for o in &seen {
        if o.method != "PROPFIND" {
            let m = Method::from_bytes(o.method.as_bytes()).unwrap();
            assert!(at(&o.identity, m, &o.path), "{o:?}\n{text}");
        }
    }
    // Generalized ids.
    assert!(at(api, Method::GET, "/cics/payments/99/status"));
    assert!(at(
        racf,
        Method::GET,
        "/cics/payments/00000000-0000-0000-0000-000000000000"
    ));
    // Nothing else.
    assert!(!at(
        "spiffe://corp.example/ns/payments/sa/new",
        Method::GET,
        "/cics/payments/42/status"
    ));
    assert!(!at(api, Method::DELETE, "/cics/payments"));
    assert!(!at(api, Method::POST, "/cics/payments/42/status"));
    assert!(!at(api, Method::GET, "/cics/payments/42/cancel"));
    assert!(!at(racf, Method::POST, "/cics/payments"));
    assert!(!at(racf, Method::GET, "/cics/payments/42/status"));
}

#[test]
fn suggest_escapes_and_handles_no_traffic() {
    let text = suggest::suggest("cics-payments", &[]);
    let p = compiled(&text);
    let c = cred(Kind::Mtls, "spiffe://corp.example/a");
    assert!(!Req::new(&c).eval(&p).allowed());

    // Hostile values cannot break out of their strings.
    let evil_id = "spiffe://corp.example/a\" || true || \"";
    let evil_path = "/x\"*/}; permit (principal, action, resource); //";
    let text = suggest::suggest("cics-payments", &[obs(evil_id, "GET", evil_path)]);
    let p = compiled(&text);
    let c = cred(Kind::Mtls, evil_id);
    assert!(
        Req {
            path: evil_path,
            ..Req::new(&c)
        }
        .eval(&p)
        .allowed(),
        "{text}"
    );
    assert!(
        !Req {
            path: "/x\"anything/}",
            ..Req::new(&c)
        }
        .eval(&p)
        .allowed(),
        "{text}"
    );
    let other = cred(Kind::Mtls, "spiffe://corp.example/a");
    assert!(
        !Req {
            path: evil_path,
            ..Req::new(&other)
        }
        .eval(&p)
        .allowed(),
        "{text}"
    );
}

#[test]
fn suggested_wildcards_stay_within_one_segment() {
    let id = "spiffe://corp.example/a";
    let text = suggest::suggest("cics-payments", &[obs(id, "GET", "/a/42/b")]);
    let p = compiled(&text);
    let c = cred(Kind::Mtls, id);
    let at = |path: &str| {
        Req {
            path,
            ..Req::new(&c)
        }
        .eval(&p)
        .allowed()
    };
    assert!(at("/a/7/b"), "{text}");
    assert!(!at("/a/4/2/b"), "{text}");
    assert!(!at("/a/7/b/c"), "{text}");
    assert!(!at("/a/7/c"), "{text}");
}

#[test]
fn admin_allow_patterns_match_like_cedar_like() {
    use super::allow::{check_pattern, id_matches};
    let ops = "spiffe://corp.example/ops/*";
    assert!(id_matches(ops, "spiffe://corp.example/ops/alice"));
    assert!(id_matches(ops, "spiffe://corp.example/ops/team/bob"));
    assert!(!id_matches(ops, "spiffe://corp.example/opsx/alice"));
    assert!(!id_matches(ops, "spiffe://corp.example.evil/ops/alice"));
    assert!(!id_matches(
        ops,
        "spiffe://evil.example/spiffe://corp.example/ops/a"
    ));
    assert!(id_matches("*", "spiffe://any.example/x"));
    let exact = "spiffe://corp.example/ops/alice";
    assert!(id_matches(exact, exact));
    assert!(!id_matches(exact, "spiffe://corp.example/ops/alice2"));
    assert!(id_matches(
        "spiffe://corp.example/*/admin",
        "spiffe://corp.example/a/b/admin"
    ));
    assert!(!id_matches(
        "spiffe://corp.example/*/admin",
        "spiffe://corp.example/admin"
    ));
    assert!(check_pattern(ops).is_ok());
    assert!(check_pattern("*").is_ok());
    for bad in [
        "spiffe://*/ops",
        "corp.example/ops",
        "spiffe://corp.example",
    ] {
        assert!(check_pattern(bad).is_err(), "{bad}");
    }
}

#[test]
fn cached_decisions_follow_every_context_input_they_depend_on() {
    let wl = cred(Kind::Mtls, "spiffe://corp.example/ns/payments/sa/api");
    let cacheable = |p: &RoutePolicy| {
        let s = p.enforced.current.load();
        s.by_method.iter().all(|m| m.cacheable)
    };
    // Hour, weekday, source address and phase are part of the cache key.
    let (_d, p, _) = file_policy(
        r#"permit (principal, action, resource) when {
  context.hour < 11 && context.weekday <= 5 &&
  context.source_ip.isInRange(ip("10.20.0.0/16")) && context.phase == "bridge"
};"#,
        None,
    );
    assert!(cacheable(&p));
    let at = |at: u64, ip: &'static str, phase: &'static str| Req {
        at,
        ip,
        phase,
        ..Req::new(&wl)
    };
    assert!(at(MONDAY_10H, "10.20.1.2", "bridge").eval(&p).allowed());
    assert!(!at(MONDAY_10H + 3_600, "10.20.1.2", "bridge")
        .eval(&p)
        .allowed());
    assert!(!at(MONDAY_10H + 5 * 86_400, "10.20.1.2", "bridge")
        .eval(&p)
        .allowed());
    assert!(!at(MONDAY_10H, "10.30.1.2", "bridge").eval(&p).allowed());
    assert!(!at(MONDAY_10H, "::ffff:10.30.1.2", "bridge")
        .eval(&p)
        .allowed());
    assert!(at(MONDAY_10H, "::ffff:10.20.1.2", "bridge")
        .eval(&p)
        .allowed());
    assert!(!at(MONDAY_10H, "10.20.1.2", "enforce").eval(&p).allowed());
    assert!(at(MONDAY_10H + 60, "10.20.1.2", "bridge")
        .eval(&p)
        .allowed());
    // Five distinct keys above: 10:00 and 10:01 share one, and so do an IPv4 address and its
    // IPv4-mapped IPv6 form (the cache keys on the canonical address, as the context does).
    assert_eq!(p.enforced.current.load().decisions.len(), 5);
    // Another caller, another entry: groups and principal are part of the key too.
    let mut grouped = cred(Kind::Ldap, "spiffe://corp.example/legacy/racf/gwuser");
    let (_d2, g, _) = file_policy(
        r#"permit (principal, action, resource) when { principal.groups.contains("PAYOPS") };"#,
        None,
    );
    assert!(!Req::new(&grouped).eval(&g).allowed());
    grouped.groups = vec!["PAYOPS".into()];
    assert!(Req::new(&grouped).eval(&g).allowed());
    grouped.principal = Some("other".into());
    assert!(Req::new(&grouped).eval(&g).allowed());

    // A policy reading `context.time` is never cached: within one hour its answer changes.
    let (_d3, t, _) = file_policy(
        &format!(
            "permit (principal, action, resource) when {{ context.time < {} }};",
            MONDAY_10H + 60
        ),
        None,
    );
    assert!(!cacheable(&t));
    assert!(at(MONDAY_10H + 30, "10.20.1.2", "bridge")
        .eval(&t)
        .allowed());
    assert!(!at(MONDAY_10H + 90, "10.20.1.2", "bridge")
        .eval(&t)
        .allowed());
    // Nor is one reading `resource.path`, for the methods it applies to.
    let (_d4, r, _) = file_policy(
        r#"permit (principal, action, resource) when { resource.path like "/cics/payments/*" };"#,
        None,
    );
    assert!(!cacheable(&r));
    assert!(Req::new(&wl).eval(&r).allowed());
    assert!(!Req {
        path: "/cics/other",
        ..Req::new(&wl)
    }
    .eval(&r)
    .allowed());
}

#[test]
fn a_workers_last_decision_answers_only_the_same_key() {
    // Every input of the key decides here, so a twin that differs in one of them and is handed
    // the kept decision of the caller before it would be allowed wrongly.
    let (_d, p, _) = file_policy(
        r#"permit (principal, action == Action::"GET", resource) when {
  principal.id == "spiffe://corp.example/a" && principal.kind == "ldap" &&
  principal.credential == "racf" && principal.principal == "gwuser" &&
  principal.groups.contains("G") && context.source_ip.isInRange(ip("10.20.0.0/16")) &&
  context.phase == "bridge" && context.hour == 10
};"#,
        None,
    );
    let mut a = cred(Kind::Ldap, "spiffe://corp.example/a");
    a.groups = vec!["G".into()];
    let twin = |f: &dyn Fn(&mut Credential)| {
        let mut c = a.clone();
        f(&mut c);
        c
    };
    let creds = [
        twin(&|c| c.identity = "spiffe://corp.example/A".into()),
        twin(&|c| c.identity = "spiffe://corp.example/a/".into()),
        twin(&|c| c.identity = "spiffe://corp.example/%61".into()),
        twin(&|c| c.kind = Kind::Mtls),
        twin(&|c| c.name = Arc::from("racf2")),
        twin(&|c| c.principal = Some("GWUSER".into())),
        twin(&|c| c.principal = None),
        twin(&|c| c.groups = vec!["g".into()]),
        twin(&|c| c.groups = Vec::new()),
    ];
    let mut twins: Vec<Req<'_>> = creds.iter().map(Req::new).collect();
    twins.push(Req {
        method: Method::POST,
        ..Req::new(&a)
    });
    twins.push(Req {
        ip: "10.30.1.2",
        ..Req::new(&a)
    });
    twins.push(Req {
        phase: "enforce",
        ..Req::new(&a)
    });
    twins.push(Req {
        at: MONDAY_10H + 3_600,
        ..Req::new(&a)
    });
    for t in &twins {
        // The original first, twice: the second answer comes from this thread's kept entry.
        assert!(p.evaluate(&Req::new(&a).access()).allowed());
        assert!(p.evaluate(&Req::new(&a).access()).allowed());
        let v = p.evaluate(&t.access());
        assert!(!v.allowed(), "{:?} {} {}: {v:?}", t.cred, t.method, t.ip);
        assert_eq!(v, p.evaluate_uncached(&t.access()));
        // And the other way round: the twin kept, the original asked.
        assert!(!p.evaluate(&t.access()).allowed());
        assert!(p.evaluate(&Req::new(&a).access()).allowed());
    }
    // A superset of the groups is another key with its own (here the same) answer.
    let more = twin(&|c| c.groups = vec!["G".into(), "H".into()]);
    assert!(Req::new(&more).eval(&p).allowed());
}
