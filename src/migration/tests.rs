use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, SystemTime};

use super::report::{inventory_report, migration_report, Recorded, Status};
use super::*;
use crate::clock::{Clock, FakeClock};
use crate::identity::Kind;
use crate::problem::Code;
use crate::state::{InventoryEntry, Revocation, RevocationSet, Target, UsageRow};
use crate::time::{Date, Timestamp};

fn day(s: &str) -> Date {
    Date::parse(s).unwrap()
}

fn at(s: &str, secs: u64) -> SystemTime {
    day(s).midnight() + Duration::from_secs(secs)
}

const GOOD: &str = r#"
name = "payments-cics"
owner = "team-payments <payments@corp.example>"
docs = "https://wiki.corp.example/migrations/payments-cics"
legacy_credentials = ["racf"]
[phases]
observe = 2026-11-01
bridge  = 2026-12-01
enforce = 2027-03-01
[exit_criteria]
max_legacy_share = 0.01
window = "14d"
"#;

fn good() -> Plan {
    parse_plan("p.toml", "payments-cics", GOOD).unwrap()
}

fn problems(stem: &str, text: &str) -> Vec<String> {
    parse_plan("p.toml", stem, text)
        .unwrap_err()
        .into_iter()
        .map(|p| format!("{}: {}", p.key, p.message))
        .collect()
}

#[test]
fn shipped_examples_load() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("migration-plans");
    let plans = Plans::load_dir(&dir).unwrap();
    let names: Vec<_> = plans.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["partner-api", "payments-cics", "stripe-callbacks"]);
    let stripe = plans.get("stripe-callbacks").unwrap();
    assert!(stripe.exception.is_some());
    assert!(stripe.sunset_headers().is_none());
    assert_eq!(plans.get("partner-api").unwrap().exit.window_days, 28);
    assert!(plans.get("payments-cics").unwrap().retires("racf"));
}

#[test]
fn every_problem_is_reported_with_its_key() {
    let p = problems(
        "other-name",
        r#"
name = "payments-cics"
owner = " "
docs = "https://x/<evil>"
legacy_credentials = ["racf", "racf"]
[phases]
bridge  = 2026-12-01
enforce = 2026-11-01T10:00:00Z
[exit_criteria]
max_legacy_share = 1.5
window = "36h"
"#,
    );
    let keys: BTreeSet<&str> = p.iter().map(|s| s.split(':').next().unwrap()).collect();
    assert_eq!(
        keys,
        BTreeSet::from([
            "name",
            "owner",
            "docs",
            "legacy_credentials",
            "phases.observe",
            "phases.enforce",
            "exit_criteria.max_legacy_share",
            "exit_criteria.window",
        ]),
        "{p:#?}"
    );
    assert!(
        p.iter().any(|m| m.contains("must match the file name")),
        "{p:#?}"
    );
    assert!(p.iter().any(|m| m.contains("00:00 UTC")), "{p:#?}");
}

#[test]
fn date_order_and_bridge_before_enforce() {
    let p = problems(
        "x",
        r#"
name = "x"
owner = "o"
legacy_credentials = ["racf"]
[phases]
observe = 2026-12-01
bridge  = 2026-11-01
enforce = 2026-10-01
[exit_criteria]
max_legacy_share = 0.0
window = "7d"
"#,
    );
    assert_eq!(
        p,
        [
            "phases.bridge: 2026-11-01 is before observe (2026-12-01)",
            "phases.enforce: 2026-10-01 is before bridge (2026-11-01)"
        ]
    );
    let p = problems(
        "x",
        r#"
name = "x"
owner = "o"
legacy_credentials = ["racf"]
[phases]
observe = 2026-12-01
enforce = 2027-01-01
[exit_criteria]
max_legacy_share = 0.0
window = "7d"
"#,
    );
    assert_eq!(p.len(), 1);
    assert!(
        p[0].starts_with("phases.enforce: needs a bridge date"),
        "{p:?}"
    );
}

#[test]
fn unknown_keys_and_exception_rules() {
    let p = problems("x", &GOOD.replace("docs =", "dokumentation ="));
    assert_eq!(p.len(), 1);
    assert!(p[0].contains("dokumentation"), "{p:?}");
    assert!(
        p[0].starts_with("dokumentation: line 4: unknown field"),
        "{p:?}"
    );

    let p = problems(
        "x",
        r#"
name = "x"
owner = "o"
legacy_credentials = ["stripe"]
[phases]
observe = 2026-11-01
bridge = 2026-11-02
enforce = 2027-01-01
[exception]
reason = "SaaS"
"#,
    );
    assert_eq!(
        p,
        [
            "exception.review_by: required: a standing exception must be reviewed",
            "phases.enforce: an [exception] never enforces: remove enforce or the exception"
        ]
    );
    // An exception without a bridge date would observe (never block) forever.
    let p = problems(
        "x",
        "name = \"x\"\nowner = \"o\"\nlegacy_credentials = [\"a\"]\n[phases]\nobserve = 2026-11-01\n[exception]\nreason = \"SaaS\"\nreview_by = 2027-06-01\n",
    );
    assert_eq!(p.len(), 1, "{p:?}");
    assert!(
        p[0].starts_with("phases.bridge: required with an [exception]"),
        "{p:?}"
    );
    // Without an exception, exit criteria are required.
    let p = problems(
        "x",
        "name = \"x\"\nowner = \"o\"\nlegacy_credentials = [\"a\"]\n[phases]\nobserve = 2026-11-01\n",
    );
    assert_eq!(p.len(), 1);
    assert!(p[0].starts_with("exit_criteria: required"), "{p:?}");
}

#[test]
fn load_dir_reports_duplicates_and_missing_dir() {
    let err = Plans::load_dir(Path::new("/nonexistent/plans")).unwrap_err();
    assert_eq!(err.len(), 1);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("payments-cics.toml"), GOOD).unwrap();
    std::fs::write(dir.path().join("broken.toml"), "name = ").unwrap();
    std::fs::write(dir.path().join("README.md"), "not a plan").unwrap();
    let err = Plans::load_dir(dir.path()).unwrap_err();
    assert_eq!(err.len(), 1, "{err:?}");
    assert!(err[0].file.ends_with("broken.toml"));
}

#[test]
fn cross_checks_against_config() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("migration-plans");
    let plans = Plans::load_dir(&dir).unwrap();
    let creds = BTreeMap::from([
        ("racf".to_string(), Kind::Ldap),
        ("partner-keys".to_string(), Kind::Mtls),
        ("workload-mtls".to_string(), Kind::Mtls),
    ]);
    let accept_racf = vec!["workload-mtls".to_string(), "racf".to_string()];
    let accept_mtls = vec!["workload-mtls".to_string()];
    let routes = [
        RouteUse {
            route: "cics",
            plan: "payments-cics",
            accept: &accept_racf,
        },
        RouteUse {
            route: "cics",
            plan: "payments-cics",
            accept: &accept_racf,
        },
        RouteUse {
            route: "billing",
            plan: "stripe-callback",
            accept: &accept_mtls,
        },
        RouteUse {
            route: "partners",
            plan: "partner-api",
            accept: &accept_mtls,
        },
    ];
    let p: Vec<String> = check_against_config(&plans, &creds, &routes, "portcullis.toml")
        .iter()
        .map(ToString::to_string)
        .collect();
    assert!(
        p.iter()
            .any(|m| m.contains("\"partner-keys\" is a mtls credential")),
        "{p:#?}"
    );
    assert!(
        p.iter()
            .any(|m| m
                .contains("stripe-callbacks.toml: legacy_credentials: no credential \"stripe\"")),
        "{p:#?}"
    );
    assert!(
        p.contains(
            &"portcullis.toml: routes[1].plan: route \"cics\" is listed twice: one plan per route"
                .to_string()
        ),
        "{p:#?}"
    );
    assert!(
        p.iter().any(|m| m
            .starts_with("portcullis.toml: routes[2].plan: no migration plan \"stripe-callback\"")),
        "{p:#?}"
    );
    assert!(
        p.iter()
            .any(|m| m
                .starts_with("portcullis.toml: routes[3].plan: route \"partners\" accepts none")),
        "{p:#?}"
    );
    assert_eq!(p.len(), 5, "{p:#?}");
}

#[test]
fn phase_switches_exactly_at_utc_midnight() {
    let plan = good();
    let clock = FakeClock::new(at("2026-10-31", 86_399));
    let before = plan.phases.at(clock.now());
    assert_eq!(before.phase, Phase::Observe);
    assert_eq!(
        before.since, None,
        "before observe: observe behaviour, not started"
    );
    assert_eq!(
        before.next,
        Some((Phase::Observe, day("2026-11-01"))),
        "the plan starts"
    );
    // Not started: the route behaves as without the plan, for every credential.
    assert_eq!(active_phase(Some(&plan), clock.now()), None);
    assert_eq!(route_phase(Some(&plan), clock.now()), Phase::Bridge);
    for c in ["racf", "workload-mtls"] {
        assert_eq!(treatment(Some(&plan), c, clock.now()), Treatment::Normal);
    }

    clock.advance(Duration::from_secs(1));
    // observe relaxes only what the plan lists.
    assert_eq!(
        treatment(Some(&plan), "racf", clock.now()),
        Treatment::Observe
    );
    assert_eq!(
        treatment(Some(&plan), "workload-mtls", clock.now()),
        Treatment::Normal
    );
    let p = plan.phases.at(clock.now());
    assert_eq!(
        (p.phase, p.since),
        (Phase::Observe, Some(day("2026-11-01")))
    );
    assert_eq!(p.next, Some((Phase::Bridge, day("2026-12-01"))));

    clock.set(at("2026-12-01", 0) - Duration::from_micros(1));
    assert_eq!(plan.phases.at(clock.now()).phase, Phase::Observe);
    clock.advance(Duration::from_micros(1));
    let p = plan.phases.at(clock.now());
    assert_eq!(p.phase, Phase::Bridge);
    assert_eq!(p.next, Some((Phase::Enforce, day("2027-03-01"))));
    assert_eq!(
        treatment(Some(&plan), "racf", clock.now()),
        Treatment::Bridge
    );
    assert_eq!(
        treatment(Some(&plan), "workload-mtls", clock.now()),
        Treatment::Normal
    );

    clock.set(at("2027-03-01", 0) - Duration::from_secs(1));
    assert_eq!(
        treatment(Some(&plan), "racf", clock.now()),
        Treatment::Bridge
    );
    clock.advance(Duration::from_secs(1));
    let p = plan.phases.at(clock.now());
    assert_eq!((p.phase, p.next), (Phase::Enforce, None));
    assert_eq!(
        treatment(Some(&plan), "racf", clock.now()),
        Treatment::Refuse
    );
    assert_eq!(
        treatment(Some(&plan), "workload-jwt", clock.now()),
        Treatment::Normal
    );

    // No plan: bridge forever.
    assert_eq!(route_phase(None, clock.now()), Phase::Bridge);
    assert_eq!(treatment(None, "racf", clock.now()), Treatment::Normal);
}

#[test]
fn equal_dates_skip_a_phase() {
    let plan = parse_plan(
        "p.toml",
        "payments-cics",
        &GOOD.replace("observe = 2026-11-01", "observe = 2026-12-01"),
    )
    .unwrap();
    let p = plan.phases.at(at("2026-12-01", 5));
    assert_eq!((p.phase, p.since), (Phase::Bridge, Some(day("2026-12-01"))));
    let p = plan.phases.at(at("2026-11-30", 5));
    assert_eq!(p.next, Some((Phase::Bridge, day("2026-12-01"))));
}

#[test]
fn sunset_headers_byte_exact() {
    let plan = good();
    let h = plan.sunset_headers().unwrap();
    assert_eq!(h.deprecation.as_bytes(), b"@1796083200");
    assert_eq!(h.sunset.as_bytes(), b"Mon, 01 Mar 2027 00:00:00 GMT");
    assert_eq!(
        h.link.as_ref().unwrap().as_bytes(),
        b"<https://wiki.corp.example/migrations/payments-cics>; rel=\"sunset\""
    );
    let mut headers = http::HeaderMap::new();
    headers.insert(
        http::header::LINK,
        http::HeaderValue::from_static("</up>; rel=\"next\""),
    );
    h.apply(&mut headers);
    assert_eq!(headers["deprecation"], "@1796083200");
    assert_eq!(headers["sunset"], "Mon, 01 Mar 2027 00:00:00 GMT");
    assert_eq!(
        headers.get_all(http::header::LINK).iter().count(),
        2,
        "upstream Link kept"
    );

    // No docs: no Link; no enforce date: no headers at all.
    let no_docs = parse_plan(
        "p.toml",
        "payments-cics",
        &GOOD.replace("docs = ", "description = "),
    )
    .unwrap();
    let h = no_docs.sunset_headers().unwrap();
    assert!(h.link.is_none());
    assert_eq!(h.iter().count(), 2);
    let no_enforce = parse_plan(
        "p.toml",
        "payments-cics",
        &GOOD.replace("enforce = 2027-03-01", ""),
    )
    .unwrap();
    assert!(no_enforce.sunset_headers().is_none());
}

#[test]
fn retired_refusal_names_date_and_docs() {
    let r = retired(&good(), "racf");
    assert_eq!(r.code, Code::LegacyCredentialRetired);
    assert_eq!(r.code.status(), http::StatusCode::UNAUTHORIZED);
    assert_eq!(
        r.detail,
        "credential \"racf\" was retired on 2027-03-01 by migration plan \"payments-cics\": present a workload identity instead; see https://wiki.corp.example/migrations/payments-cics"
    );
}

// === reports on a synthetic data set ===

fn row(d: &str, route: &str, plan: Option<&str>, cred: &str, kind: Kind, count: u64) -> UsageRow {
    UsageRow {
        day: day(d),
        route: route.into(),
        plan: plan.map(Into::into),
        credential: cred.into(),
        kind,
        count,
    }
}

fn inv(
    cred: &str,
    kind: Kind,
    principal: Option<&str>,
    identity: &str,
    route: &str,
    last: SystemTime,
) -> InventoryEntry {
    InventoryEntry {
        credential: cred.into(),
        kind,
        principal: principal.map(Into::into),
        identity: identity.into(),
        routes: BTreeSet::from([route.to_string()]),
        first_seen: Timestamp::of(at("2026-11-01", 0)),
        last_seen: Timestamp::of(last),
        count: 10,
        cert_not_after: None,
    }
}

/// Source rows matching `inventory`: each entry's `count` requests on its route's plan, on the day
/// it was last seen, from one source.
fn sources_of(inventory: &[InventoryEntry]) -> Vec<crate::state::SourceRow> {
    inventory
        .iter()
        .flat_map(|e| {
            e.routes.iter().map(move |r| crate::state::SourceRow {
                day: e.last_seen.date(),
                route: r.clone(),
                plan: ROUTES
                    .iter()
                    .find(|(n, _)| n == r)
                    .and_then(|(_, p)| p.map(str::to_owned)),
                credential: e.credential.clone(),
                key: e.principal.clone().unwrap_or_else(|| e.identity.clone()),
                source: Some(crate::state::Source::of([10, 0, 0, 1].into(), None)),
                count: e.count,
                last_seen: e.last_seen,
            })
        })
        .collect()
}

fn recorded<'a>(
    usage: &'a [UsageRow],
    inventory: &'a [InventoryEntry],
    sources: &'a [crate::state::SourceRow],
) -> Recorded<'a> {
    Recorded {
        usage,
        inventory,
        sources,
    }
}

fn plans() -> Plans {
    Plans::load_dir(&Path::new(env!("CARGO_MANIFEST_DIR")).join("migration-plans")).unwrap()
}

const ROUTES: [(&str, Option<&str>); 4] = [
    ("cics", Some("payments-cics")),
    ("partners", Some("partner-api")),
    ("billing", Some("stripe-callbacks")),
    ("legacy-soap", None),
];

#[test]
fn readiness_and_what_if() {
    let now = at("2026-12-20", 3600);
    let mut usage = Vec::new();
    // payments-cics: 14-day window 2026-12-07..=2026-12-20; 1000 mTLS/day and a few RACF.
    for d in 7..=20 {
        let date = format!("2026-12-{d:02}");
        usage.push(row(
            &date,
            "cics",
            Some("payments-cics"),
            "workload-mtls",
            Kind::Mtls,
            1000,
        ));
        usage.push(row(
            &date,
            "cics",
            Some("payments-cics"),
            "racf",
            Kind::Ldap,
            5,
        ));
    }
    // Outside the window: ignored.
    usage.push(row(
        "2026-12-06",
        "cics",
        Some("payments-cics"),
        "racf",
        Kind::Ldap,
        100_000,
    ));
    // partner-api: enforce 2027-01-31 not reached; all keys, only 3 weeks observed? No: observe 2026-10-01.
    usage.push(row(
        "2026-12-19",
        "partners",
        Some("partner-api"),
        "partner-keys",
        Kind::ApiKey,
        40,
    ));
    usage.push(row(
        "2026-12-19",
        "partners",
        Some("partner-api"),
        "workload-jwt",
        Kind::JwtSvid,
        60,
    ));

    let mut alice = inv(
        "workload-mtls",
        Kind::Mtls,
        None,
        "spiffe://corp.example/ns/payments/batch",
        "cics",
        at("2026-12-20", 60),
    );
    alice.cert_not_after = Some(Timestamp::of(at("2026-12-24", 0)));
    let mut fresh = inv(
        "workload-mtls",
        Kind::Mtls,
        None,
        "spiffe://corp.example/ns/payments/web",
        "cics",
        at("2026-12-20", 60),
    );
    fresh.cert_not_after = Some(Timestamp::of(at("2027-02-24", 0)));
    let inventory = vec![
        inv(
            "racf",
            Kind::Ldap,
            Some("JSMITH"),
            "spiffe://corp.example/legacy/racf/jsmith",
            "cics",
            at("2026-12-19", 0),
        ),
        inv(
            "racf",
            Kind::Ldap,
            Some("BATCH01"),
            "spiffe://corp.example/legacy/racf/batch01",
            "cics",
            at("2026-12-20", 0),
        ),
        inv(
            "racf",
            Kind::Ldap,
            Some("GONE"),
            "spiffe://corp.example/legacy/racf/gone",
            "cics",
            at("2026-11-02", 0),
        ),
        inv(
            "racf",
            Kind::Ldap,
            Some("FIRED"),
            "spiffe://corp.example/legacy/racf/fired",
            "cics",
            at("2026-12-18", 0),
        ),
        inv(
            "partner-keys",
            Kind::ApiKey,
            Some("acme"),
            "spiffe://corp.example/partner/acme",
            "partners",
            at("2026-12-19", 0),
        ),
        alice,
        fresh,
    ];
    let revoked = RevocationSet::new(&[Revocation {
        target: Target::Credential {
            name: "racf".into(),
            principal: "FIRED".into(),
        },
        reason: "left".into(),
        at: Timestamp(0),
    }]);
    let sources = sources_of(&inventory);
    let report = migration_report(
        &plans(),
        &ROUTES,
        recorded(&usage, &inventory, &sources),
        &revoked,
        now,
    );
    assert_eq!(report.today, day("2026-12-20"));
    assert_eq!(report.unplanned_routes.len(), 1);
    assert_eq!(report.unplanned_routes[0].phase, Phase::Bridge);

    let cics = report
        .plans
        .iter()
        .find(|p| p.name == "payments-cics")
        .unwrap();
    assert_eq!(cics.phase, Phase::Bridge);
    assert_eq!(
        (cics.next_phase, cics.next_date),
        (Some(Phase::Enforce), Some(day("2027-03-01")))
    );
    assert_eq!(cics.days_to_sunset, Some(71));
    assert_eq!(cics.window.start, day("2026-12-07"));
    assert_eq!(cics.window.daily.len(), 14);
    assert_eq!(cics.window.legacy_requests, 70);
    assert_eq!(cics.window.total_requests, 14 * 1005);
    let share = cics.window.legacy_share.unwrap();
    assert!((share - 70.0 / 14070.0).abs() < 1e-12);
    assert_eq!(cics.status, Status::Ready, "{:?}", cics.reasons);
    // Active legacy principals: in the window, most recent first; GONE is not active.
    let names: Vec<_> = cics
        .active_legacy_principals
        .iter()
        .map(|p| p.principal.clone().unwrap())
        .collect();
    assert_eq!(names, ["BATCH01", "JSMITH", "FIRED"]);
    assert!(cics.active_legacy_principals[2].revoked);
    // What-if: the revoked one is already refused.
    assert_eq!(cics.what_if_enforced.refused_requests, 70);
    assert_eq!(cics.what_if_enforced.refused_callers, 2);
    assert_eq!(
        cics.what_if_enforced.principals,
        ["racf:BATCH01", "racf:JSMITH"]
    );
    // Only the certificate expiring within 7 days.
    assert_eq!(cics.expiring_certs.len(), 1);
    assert_eq!(
        cics.expiring_certs[0].identity,
        "spiffe://corp.example/ns/payments/batch"
    );
    assert_eq!(cics.expiring_certs[0].days_left, 3);

    let partners = report
        .plans
        .iter()
        .find(|p| p.name == "partner-api")
        .unwrap();
    assert_eq!(partners.status, Status::NotReady);
    assert_eq!(partners.window.legacy_share, Some(0.4));
    assert_eq!(partners.what_if_enforced.principals, ["partner-keys:acme"]);

    let stripe = report
        .plans
        .iter()
        .find(|p| p.name == "stripe-callbacks")
        .unwrap();
    assert_eq!(stripe.status, Status::Exception);
    assert_eq!(stripe.days_to_sunset, None);
    let later = migration_report(
        &plans(),
        &ROUTES,
        recorded(&usage, &inventory, &sources),
        &revoked,
        at("2027-06-02", 0),
    );
    let stripe = later
        .plans
        .iter()
        .find(|p| p.name == "stripe-callbacks")
        .unwrap();
    assert_eq!(stripe.status, Status::OverdueReview);

    // JSON shape the admin API returns.
    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(json["plans"][1]["status"], "ready");
    assert_eq!(json["plans"][1]["phase"], "bridge");
    assert_eq!(json["plans"][1]["next_date"], "2027-03-01");
    assert_eq!(json["generated_at"], "2026-12-20T01:00:00Z");
}

#[test]
fn short_observation_overdue_and_enforced_clean() {
    let plans = plans();
    // payments-cics on 2026-11-05: observing for 5 of 14 days.
    let r = migration_report(
        &plans,
        &ROUTES,
        recorded(&[], &[], &[]),
        &RevocationSet::default(),
        at("2026-11-05", 0),
    );
    let cics = r.plans.iter().find(|p| p.name == "payments-cics").unwrap();
    assert_eq!(cics.status, Status::NotReady);
    assert_eq!(cics.reasons, ["observed 5 of 14 window days"]);

    // After the enforce date with legacy attempts still coming in: overdue.
    let usage = [row(
        "2027-03-02",
        "cics",
        Some("payments-cics"),
        "racf",
        Kind::Ldap,
        3,
    )];
    let r = migration_report(
        &plans,
        &ROUTES,
        recorded(&usage, &[], &[]),
        &RevocationSet::default(),
        at("2027-03-03", 0),
    );
    let cics = r.plans.iter().find(|p| p.name == "payments-cics").unwrap();
    assert_eq!((cics.phase, cics.status), (Phase::Enforce, Status::Overdue));
    assert_eq!(cics.days_to_sunset, Some(-2));
    // Legacy traffic before the enforce date does not make it overdue.
    let usage = [row(
        "2027-02-28",
        "cics",
        Some("payments-cics"),
        "racf",
        Kind::Ldap,
        3,
    )];
    let r = migration_report(
        &plans,
        &ROUTES,
        recorded(&usage, &[], &[]),
        &RevocationSet::default(),
        at("2027-03-03", 0),
    );
    let cics = r.plans.iter().find(|p| p.name == "payments-cics").unwrap();
    assert_eq!(cics.status, Status::Ready);
}

#[test]
fn inventory_flags() {
    let now = at("2026-12-20", 0);
    let mut a = inv(
        "workload-mtls",
        Kind::Mtls,
        None,
        "spiffe://corp.example/a",
        "cics",
        at("2026-12-19", 0),
    );
    a.cert_not_after = Some(Timestamp::of(at("2026-12-26", 0)));
    let b = inv(
        "racf",
        Kind::Ldap,
        Some("JSMITH"),
        "spiffe://corp.example/legacy/racf/jsmith",
        "cics",
        at("2026-12-20", 0),
    );
    let revoked = RevocationSet::new(&[Revocation {
        target: Target::Identity("spiffe://corp.example/legacy/racf/jsmith".into()),
        reason: "r".into(),
        at: Timestamp(0),
    }]);
    let r = inventory_report(&[a, b], &[], &plans(), &revoked, now);
    assert_eq!(r.entries[0].entry.principal.as_deref(), Some("JSMITH"));
    assert!(r.entries[0].revoked && !r.entries[0].cert_expiring);
    assert!(!r.entries[1].revoked && r.entries[1].cert_expiring);
    let json = serde_json::to_value(&r).unwrap();
    assert_eq!(json["entries"][0]["kind"], "ldap");
    assert_eq!(json["entries"][0]["routes"], serde_json::json!(["cics"]));
    assert_eq!(json["entries"][1]["cert_not_after"], "2026-12-26T00:00:00Z");
}

/// The phase × outcome table of `docs/migration.md`, at the level of the decision itself.
#[test]
fn admission_relaxes_only_listed_credentials_once_started() {
    use crate::authn::Failure;
    use crate::identity::{Caller, Credential};
    use crate::pipeline::Admission;
    use crate::problem::Refusal;
    let plan = good();
    let cred = |name: &str, kind: Kind| {
        Ok(Caller::Authenticated(std::sync::Arc::new(Credential {
            name: name.into(),
            kind,
            identity: "spiffe://corp.example/x".into(),
            principal: None,
            groups: Vec::new(),
            jti: None,
            lineage: None,
        })))
    };
    let failed = |name: Option<&str>, code: Code| {
        Err(Failure {
            credential: name.map(Into::into),
            refusal: Refusal::new(code, "no"),
        })
    };
    let decide = |a: Result<Caller, Failure>, when: SystemTime| {
        Admission::decide(Some(&plan), true, a, when).map(|(c, a)| (c.credential().is_some(), a))
    };
    let (before, observe, bridge, enforce) = (
        at("2026-10-20", 0),
        at("2026-11-20", 0),
        at("2026-12-20", 0),
        at("2027-03-20", 0),
    );
    // Listed credential, valid.
    assert!(matches!(
        decide(cred("racf", Kind::Ldap), before),
        Ok((true, Admission::Enforced { sunset: false }))
    ));
    assert!(matches!(
        decide(cred("racf", Kind::Ldap), observe),
        Ok((true, Admission::Observed { refused: None, .. }))
    ));
    assert!(matches!(
        decide(cred("racf", Kind::Ldap), bridge),
        Ok((true, Admission::Enforced { sunset: true }))
    ));
    assert!(matches!(
        decide(cred("racf", Kind::Ldap), enforce),
        Ok((true, Admission::Retired(_)))
    ));
    // Workload identity: the full pipeline in every phase.
    for when in [before, observe, bridge, enforce] {
        assert!(matches!(
            decide(cred("workload-mtls", Kind::Mtls), when),
            Ok((true, Admission::Enforced { sunset: false }))
        ));
    }
    // Listed credential present and wrong: relaxed only in observe; twice-presented never.
    assert!(matches!(
        decide(failed(Some("racf"), Code::InvalidCredential), observe),
        Ok((
            false,
            Admission::Observed {
                refused: Some(_),
                ..
            }
        ))
    ));
    for when in [before, bridge, enforce] {
        assert!(decide(failed(Some("racf"), Code::InvalidCredential), when).is_err());
    }
    assert!(decide(failed(Some("racf"), Code::InvalidRequest), observe).is_err());
    // Unlisted credential wrong, or nothing presented: refused in every phase.
    for when in [before, observe, bridge, enforce] {
        assert!(decide(failed(Some("workload-mtls"), Code::InvalidCredential), when).is_err());
        assert!(decide(failed(None, Code::Unauthenticated), when).is_err());
        // `Anonymous` on a route that accepts credentials is never admitted.
        assert!(decide(Ok(Caller::Anonymous), when).is_err());
    }
    // A pass-through route admits the anonymous caller, enforced.
    assert!(matches!(
        Admission::decide(None, false, Ok(Caller::Anonymous), observe),
        Ok((Caller::Anonymous, Admission::Enforced { sunset: false }))
    ));
}

/// A `[[grace]]` lets one principal through `enforce` until its date, also as the root of an
/// exchanged token; anyone else, a near spelling, or a token whose other retired link has no
/// grace is retired.
#[test]
fn grace_holds_for_the_named_principal_until_its_date() {
    use crate::identity::lineage::Lineage;
    use crate::identity::{Caller, Credential};
    use crate::pipeline::Admission;
    let text = format!(
        "{GOOD}\n[[grace]]\nprincipal = \"racf:BATCH01\"\nuntil = 2027-03-20\nreason = \"vendor release\"\n"
    );
    let plan = parse_plan("p.toml", "payments-cics", &text).unwrap();
    assert_eq!(plan.graces.len(), 1);
    let cred = |name: &str, principal: &str, root: Option<(&str, &str)>| Credential {
        name: name.into(),
        kind: Kind::Ldap,
        identity: "spiffe://corp.example/x".into(),
        principal: Some(principal.into()),
        groups: Vec::new(),
        jti: None,
        lineage: root.map(|(c, p)| {
            std::sync::Arc::new(Lineage {
                credential: c.into(),
                kind: Kind::Ldap,
                principal: Some(p.into()),
                jtis: Vec::new(),
                cnf: None,
                not_after: None,
            })
        }),
    };
    let decide = |c: Credential, when: SystemTime| {
        Admission::decide(
            Some(&plan),
            true,
            Ok(Caller::Authenticated(std::sync::Arc::new(c))),
            when,
        )
        .map(|(_, a)| a)
        .unwrap()
    };
    let during = at("2027-03-19", 86_399);
    let after = at("2027-03-20", 0);
    let a = decide(cred("racf", "BATCH01", None), during);
    assert!(a.graced());
    assert_eq!(
        a.sunset(Some(&plan)).unwrap().sunset.as_bytes(),
        b"Sat, 20 Mar 2027 00:00:00 GMT"
    );
    assert!(a.enforces());
    assert!(matches!(
        decide(cred("racf", "BATCH01", None), after),
        Admission::Retired(_)
    ));
    for other in ["JSMITH", "batch01", "BATCH01 "] {
        assert!(matches!(
            decide(cred("racf", other, None), during),
            Admission::Retired(_)
        ));
    }
    // A token exchanged from the graced principal; from another one.
    assert!(decide(
        cred("gw-token", "BATCH01", Some(("racf", "BATCH01"))),
        during
    )
    .graced());
    assert!(matches!(
        decide(
            cred("gw-token", "BATCH01", Some(("racf", "JSMITH"))),
            during
        ),
        Admission::Retired(_)
    ));
    assert!(matches!(
        decide(cred("racf", "BATCH01", Some(("racf", "JSMITH"))), during),
        Admission::Retired(_)
    ));
}
