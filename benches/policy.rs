//! Cost of one authorization decision (budget: 10 µs for a typical route policy): through the
//! decision cache (the steady state for a caller) and without it (`uncached_*`, a caller's first
//! request).
//!
//! `cargo bench --bench policy`

#![expect(
    clippy::unwrap_used,
    reason = "bench setup: a failure should stop the bench loudly"
)]

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use criterion::{criterion_group, criterion_main, Criterion};
use http::Method;
use portcullis::authz::policy::{Access, Model, RoutePolicy, RouteSpec, Rules};
use portcullis::identity::{Credential, Kind};
use portcullis::metrics::Metrics;

const ROUTE_POLICY: &str = r#"
@id("payments-workloads")
permit (principal, action in [Action::"read", Action::"write"], resource)
when { principal.id like "spiffe://corp.example/ns/payments/*" && !principal.legacy };

@id("racf-payops-read")
permit (principal, action in Action::"read", resource)
when {
  principal.kind == "ldap" && principal.groups.contains("PAYOPS") &&
  context.source_ip.isInRange(ip("10.20.0.0/16")) &&
  context.weekday <= 5 && context.hour >= 6 && context.hour < 20
};

@id("no-batch-delete")
forbid (principal, action == Action::"DELETE", resource)
when { resource.path like "/cics/payments/batch/*" };
"#;

fn bench(c: &mut Criterion) {
    let model = Arc::new(Model::new().unwrap());
    let metrics = Arc::new(Metrics::default());
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("route.cedar");
    std::fs::write(&file, ROUTE_POLICY).unwrap();

    let allow = RoutePolicy::load(
        model.clone(),
        &RouteSpec {
            route: "cics-payments".into(),
            rules: Rules::Allow(vec!["spiffe://corp.example/ns/payments/*".into()]),
            shadow: None,
        },
        metrics.clone(),
    )
    .unwrap();
    let route_file = RoutePolicy::load(
        model.clone(),
        &RouteSpec {
            route: "cics-payments".into(),
            rules: Rules::File(file.clone()),
            shadow: None,
        },
        metrics.clone(),
    )
    .unwrap();
    let with_shadow = RoutePolicy::load(
        model,
        &RouteSpec {
            route: "cics-payments".into(),
            rules: Rules::File(file.clone()),
            shadow: Some(file),
        },
        metrics,
    )
    .unwrap();

    let workload = Credential {
        name: Arc::from("workload-mtls"),
        kind: Kind::Mtls,
        identity: "spiffe://corp.example/ns/payments/sa/api".into(),
        principal: None,
        groups: Vec::new(),
        jti: None,
        lineage: None,
    };
    let racf = Credential {
        name: Arc::from("racf"),
        kind: Kind::Ldap,
        identity: "spiffe://corp.example/legacy/racf/gwuser".into(),
        principal: Some("GWUSER".into()),
        groups: vec!["PAYOPS".into(), "BATCH".into(), "USERS".into()],
        jti: None,
        lineage: None,
    };
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_793_613_600);
    let access = |c| Access {
        credential: c,
        method: &Method::GET,
        path: "/cics/payments/42/status",
        source_ip: "10.20.1.2".parse().unwrap(),
        now,
        phase: "bridge",
    };

    let mut g = c.benchmark_group("policy");
    g.bench_function("allow_list_workload", |b| {
        let a = access(&workload);
        b.iter(|| assert!(allow.evaluate(std::hint::black_box(&a)).allowed()))
    });
    g.bench_function("file_workload", |b| {
        let a = access(&workload);
        b.iter(|| assert!(route_file.evaluate(std::hint::black_box(&a)).allowed()))
    });
    g.bench_function("file_ldap_groups_ip_time", |b| {
        let a = access(&racf);
        b.iter(|| assert!(route_file.evaluate(std::hint::black_box(&a)).allowed()))
    });
    g.bench_function("file_ldap_with_shadow", |b| {
        let a = access(&racf);
        b.iter(|| assert!(with_shadow.evaluate(std::hint::black_box(&a)).allowed()))
    });
    // The same without the decision cache: what the first request of a caller (per source
    // address, hour and phase) pays, and every request when a policy reads `context.time`.
    g.bench_function("uncached_allow_list_workload", |b| {
        let a = access(&workload);
        b.iter(|| assert!(allow.evaluate_uncached(std::hint::black_box(&a)).allowed()))
    });
    g.bench_function("uncached_file_ldap_groups_ip_time", |b| {
        let a = access(&racf);
        b.iter(|| {
            assert!(route_file
                .evaluate_uncached(std::hint::black_box(&a))
                .allowed())
        })
    });
    // The floor: Cedar alone, with the request and entities built once outside the loop.
    let set: cedar_policy::PolicySet = ROUTE_POLICY.parse().unwrap();
    let entities = cedar_policy::Entities::from_json_value(
        serde_json::json!([
            {"uid": {"type": "Workload", "id": "spiffe://corp.example/legacy/racf/gwuser"},
             "attrs": {"id": "spiffe://corp.example/legacy/racf/gwuser", "trust_domain": "corp.example",
                       "kind": "ldap", "credential": "racf", "principal": "GWUSER",
                       "groups": ["PAYOPS", "BATCH", "USERS"], "legacy": true},
             "parents": []},
            {"uid": {"type": "Route", "id": "cics-payments"},
             "attrs": {"name": "cics-payments", "path": "/cics/payments/42/status"}, "parents": []},
            {"uid": {"type": "Action", "id": "GET"}, "attrs": {},
             "parents": [{"type": "Action", "id": "read"}]}
        ]),
        None,
    )
    .unwrap();
    let context = cedar_policy::Context::from_json_value(
        serde_json::json!({
            "source_ip": {"__extn": {"fn": "ip", "arg": "10.20.1.2"}},
            "time": 1_793_613_600, "hour": 10, "weekday": 1, "phase": "bridge",
            "kind": "ldap", "legacy": true
        }),
        None,
    )
    .unwrap();
    let request = cedar_policy::Request::new(
        r#"Workload::"spiffe://corp.example/legacy/racf/gwuser""#
            .parse()
            .unwrap(),
        r#"Action::"GET""#.parse().unwrap(),
        r#"Route::"cics-payments""#.parse().unwrap(),
        context,
        None,
    )
    .unwrap();
    let authorizer = cedar_policy::Authorizer::new();
    g.bench_function("cedar_only_ldap", |b| {
        b.iter(|| {
            let r = authorizer.is_authorized(
                std::hint::black_box(&request),
                std::hint::black_box(&set),
                &entities,
            );
            assert_eq!(r.decision(), cedar_policy::Decision::Allow);
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
