//! The LDAP credential against a real slapd (see `tests/slapd.rs`): a RACF-shaped tree bound by
//! DN template and an OpenLDAP tree bound by search-then-bind with groups from memberOf.

mod slapd;

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use base64::Engine as _;
use futures_util::FutureExt as _;
use http::header::AUTHORIZATION;
use http::request::Parts;
use http::{HeaderValue, Request};

use self::slapd::Slapd;
use super::*;
use crate::authn::{Authenticator, Outcome};
use crate::conn::ConnInfo;
use crate::identity::Kind;
use crate::problem::{Code, Refusal};

const RACF_JOB_DN: &str = "racfid=GWJOB01,profiletype=user,cn=RACF";
const RACF_VICTIM_DN: &str = "racfid=VICTIM,profiletype=user,cn=RACF";
const RACF_NOGROUP_DN: &str = "racfid=NOGROUP,profiletype=user,cn=RACF";
const ALICE_DN: &str = "uid=alice,ou=people,dc=example,dc=org";
const IP: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

fn adapter(name: &str) -> Profile {
    let a = crate::adapters::builtin().unwrap().get_ldap(name).unwrap();
    Profile::from_adapter(&a)
}

fn racf(url: &str) -> LdapSettings {
    LdapSettings::new(
        url,
        "profiletype=user,cn=RACF",
        adapter("zos-racf"),
        IdentityTemplate::parse("spiffe://corp.example/legacy/racf/{user}").unwrap(),
    )
}

fn openldap(url: &str) -> LdapSettings {
    let mut s = LdapSettings::new(
        url,
        "ou=people,dc=example,dc=org",
        adapter("openldap"),
        IdentityTemplate::parse("spiffe://corp.example/legacy/ldap/{user}").unwrap(),
    );
    s.bind_dn = Some("uid=gwsearch,ou=services,dc=example,dc=org".into());
    s.bind_password = Some(BindSecret::new("search-secret\n"));
    s
}

fn build(s: LdapSettings) -> LdapAuthenticator {
    LdapAuthenticator::new("racf".into(), s).unwrap()
}

fn basic(user: &str, pw: &str) -> Parts {
    let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pw}"));
    with_auth(&format!("Basic {token}"))
}

fn with_auth(value: &str) -> Parts {
    Request::builder()
        .uri("/x")
        .header(AUTHORIZATION, value)
        .body(())
        .unwrap()
        .into_parts()
        .0
}

async fn auth(a: &LdapAuthenticator, user: &str, pw: &str) -> Outcome {
    a.authenticate(
        &basic(user, pw),
        &ConnInfo::for_tests(None),
        SystemTime::now(),
    )
    .await
}

#[track_caller]
fn refused(o: &Outcome) -> &Refusal {
    match o {
        Outcome::Rejected(r) => r,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[track_caller]
fn assert_invalid(o: &Outcome) {
    let r = refused(o);
    assert_eq!(r.code, Code::InvalidCredential, "{r:?}");
    assert_eq!(r.code.status(), 401);
}

/// slapd writes its stats line around the time it answers; give it a moment before counting.
async fn settle() {
    tokio::time::sleep(Duration::from_millis(150)).await;
}

#[tokio::test]
async fn racf_dn_template_bind_maps_identity_and_groups() {
    let slapd = Slapd::start();
    let a = build(racf(&slapd.url()));
    // RACF ids are case-insensitive: the adapter upper-cases, the identity is lower-case.
    let Outcome::Authenticated(c) = auth(&a, "gwjob01", "job-pass-1").await else {
        panic!("bind should succeed");
    };
    assert_eq!(&*c.name, "racf");
    assert_eq!(c.kind, Kind::Ldap);
    assert_eq!(c.identity, "spiffe://corp.example/legacy/racf/gwjob01");
    assert_eq!(c.principal.as_deref(), Some("GWJOB01"));
    let mut groups = c.groups.clone();
    groups.sort();
    assert_eq!(groups, ["BATCH", "PAYMENTS"]);
    settle().await;
    assert_eq!(slapd.good_binds(RACF_JOB_DN), 1);

    // No groups is fine too.
    let Outcome::Authenticated(c) = auth(&a, "NOGROUP", "nogroup-pass").await else {
        panic!("bind should succeed");
    };
    assert!(c.groups.is_empty());

    // The Basic header never reaches an upstream; other schemes are left alone.
    let mut parts = basic("GWJOB01", "job-pass-1");
    parts
        .headers
        .append(AUTHORIZATION, HeaderValue::from_static("Bearer abc"));
    a.strip(&mut parts);
    let left: Vec<_> = parts.headers.get_all(AUTHORIZATION).iter().collect();
    assert_eq!(left, [HeaderValue::from_static("Bearer abc")]);
    let mut parts = basic("GWJOB01", "job-pass-1");
    a.strip(&mut parts);
    assert!(parts.headers.get(AUTHORIZATION).is_none());
    assert_eq!(
        a.challenge().unwrap(),
        HeaderValue::from_static("Basic realm=\"portcullis\"")
    );
}

#[tokio::test]
async fn openldap_search_then_bind_reads_member_of() {
    let slapd = Slapd::start();
    let a = build(openldap(&slapd.url()));
    let Outcome::Authenticated(c) = auth(&a, "alice", "alice-pass").await else {
        panic!("bind should succeed");
    };
    assert_eq!(c.identity, "spiffe://corp.example/legacy/ldap/alice");
    assert_eq!(c.principal.as_deref(), Some("alice"));
    let mut groups = c.groups.clone();
    groups.sort();
    assert_eq!(groups, ["ops", "payments"]);
    let Outcome::Authenticated(c) = auth(&a, "bob", "bob-pass").await else {
        panic!("bind should succeed");
    };
    assert_eq!(c.groups, ["ops"]);
    assert_invalid(&auth(&a, "nobody", "x").await);
    settle().await;
    assert_eq!(slapd.good_binds(ALICE_DN), 1);
}

#[tokio::test]
async fn wrong_password_is_401_and_says_nothing_about_which_half() {
    let slapd = Slapd::start();
    for a in [build(racf(&slapd.url())), build(openldap(&slapd.url()))] {
        for (u, p) in [("GWJOB01", "nope"), ("alice", "nope"), ("nosuchusr", "x")] {
            let o = auth(&a, u, p).await;
            assert_invalid(&o);
            assert_eq!(
                refused(&o).detail,
                "the user name or password was not accepted"
            );
        }
    }
}

#[tokio::test]
async fn absent_malformed_and_empty_credentials() {
    let slapd = Slapd::start();
    let a = build(openldap(&slapd.url()));
    let conn = ConnInfo::for_tests(None);
    let now = SystemTime::now();
    let none = Request::builder().body(()).unwrap().into_parts().0;
    assert!(matches!(
        a.authenticate(&none, &conn, now).await,
        Outcome::NotPresent
    ));
    for other in ["Bearer x.y.z", "Basicx", "Negotiate abc"] {
        let o = a.authenticate(&with_auth(other), &conn, now).await;
        assert!(matches!(o, Outcome::NotPresent), "{other}: {o:?}");
    }
    let no_colon = base64::engine::general_purpose::STANDARD.encode("alice");
    let latin1 = base64::engine::general_purpose::STANDARD.encode(b"al\xe9:pw");
    for bad in [
        "Basic !!!".to_owned(),
        "Basic".to_owned(),
        format!("Basic {no_colon}"),
        format!("basic {latin1}"),
        format!("Basic {}", "A".repeat(5000)),
    ] {
        assert_invalid(&a.authenticate(&with_auth(&bad), &conn, now).await);
    }
    // Two Authorization headers, one Basic: ambiguous.
    let mut two = basic("alice", "alice-pass");
    two.headers
        .append(AUTHORIZATION, HeaderValue::from_static("Bearer x"));
    assert_invalid(&a.authenticate(&two, &conn, now).await);
    // The anonymous-bind trap: an empty password would "succeed" as an anonymous bind.
    assert_invalid(&auth(&a, "alice", "").await);
    assert_invalid(&auth(&a, "", "x").await);
    assert_invalid(&auth(&a, "alice", &"p".repeat(2000)).await);
    assert_eq!(
        a.stats().operations(),
        0,
        "nothing above may reach the directory"
    );
    // Case-insensitive scheme works.
    let token = base64::engine::general_purpose::STANDARD.encode("alice:alice-pass");
    let o = a
        .authenticate(&with_auth(&format!("bAsIc   {token}")), &conn, now)
        .await;
    assert!(matches!(o, Outcome::Authenticated(_)), "{o:?}");
}

#[tokio::test]
async fn injection_attempts_never_authenticate() {
    let slapd = Slapd::start();
    let long = "a".repeat(1024);
    let users = [
        "*",
        "a*",
        "*)(uid=*",
        ")(uid=*)",
        "alice)(|(uid=*",
        "*)(|(uid=*))",
        "alice\0",
        "alice\\00",
        "alice\\2a",
        long.as_str(),
        ",+\"\\<>;=",
        "alice,ou=people,dc=example,dc=org",
        "uid=alice,ou=people,dc=example,dc=org",
        "GWJOB01,profiletype=user",
        "GWJOB01+racfid=X",
        " GWJOB01",
        "#GWJOB01",
        "GWJOB01 ",
        "../admin",
        "{base_dn}",
    ];
    let passwords = ["alice-pass", "job-pass-1", "*", "x"];
    let mut settings = [racf(&slapd.url()), openldap(&slapd.url())];
    for s in &mut settings {
        // Injection attempts must fail as wrong credentials, not trip the lockout.
        s.max_source_failures = 10_000;
    }
    for s in settings {
        let a = build(s);
        for u in users {
            for p in passwords {
                let o = auth(&a, u, p).await;
                assert_invalid(&o);
            }
        }
    }
    settle().await;
    // And slapd never saw a successful bind for a real user.
    let seen = slapd.bind_results();
    for dn in [ALICE_DN, RACF_JOB_DN] {
        assert_eq!(seen.get(&dn.to_lowercase()).map_or(0, |r| r.0), 0, "{dn}");
    }
}

#[tokio::test]
async fn directory_down_is_503_and_recovers_without_rebuilding() {
    let mut slapd = Slapd::start();
    let mut s = racf(&slapd.url());
    s.cache_ttl = Duration::ZERO; // every request asks the directory
    s.connect_timeout = Duration::from_millis(500);
    let a = build(s);
    assert!(matches!(
        auth(&a, "GWJOB01", "job-pass-1").await,
        Outcome::Authenticated(_)
    ));

    slapd.stop();
    for _ in 0..3 {
        let o = auth(&a, "GWJOB01", "job-pass-1").await;
        let r = refused(&o);
        assert_eq!(r.code, Code::DirectoryUnavailable, "{r:?}");
        assert_eq!(r.code.status(), 503);
        assert_eq!(r.retry_after, Some(5));
    }
    // A down directory does not count as failures: no lockout afterwards.
    assert_eq!(a.stats().locked_out.get(), 0);

    slapd.restart();
    let o = auth(&a, "GWJOB01", "job-pass-1").await;
    assert!(matches!(o, Outcome::Authenticated(_)), "{o:?}");
    assert_invalid(&auth(&a, "GWJOB01", "wrong").await);
}

#[tokio::test]
async fn unroutable_directory_times_out_as_503() {
    // Nothing listens on this port: refused at once.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let a = build(racf(&format!("ldap://127.0.0.1:{port}")));
    let r = refused(&auth(&a, "GWJOB01", "x").await).clone();
    assert_eq!(r.code, Code::DirectoryUnavailable);

    // A listener that accepts and never answers: the operation timeout fires.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = silent.local_addr().unwrap().port();
    let hold = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = silent.accept().await {
            held.push(s);
        }
    });
    let mut s = racf(&format!("ldap://127.0.0.1:{port}"));
    s.op_timeout = Duration::from_millis(300);
    let a = build(s);
    let t = std::time::Instant::now();
    let r = refused(&auth(&a, "GWJOB01", "x").await).clone();
    assert_eq!(r.code, Code::DirectoryUnavailable);
    assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
    hold.abort();
}

#[tokio::test]
async fn cache_hit_makes_no_ldap_request_and_evict_forgets() {
    let slapd = Slapd::start();
    let a = build(openldap(&slapd.url()));
    assert!(matches!(
        auth(&a, "alice", "alice-pass").await,
        Outcome::Authenticated(_)
    ));
    settle().await;
    let ops = a.stats().operations();
    let slapd_results = slapd.results();
    assert!(ops >= 2, "search + bind: {ops}");
    for _ in 0..20 {
        let Outcome::Authenticated(c) = auth(&a, "alice", "alice-pass").await else {
            panic!("cached bind should succeed");
        };
        assert_eq!(c.groups.len(), 2);
    }
    settle().await;
    assert_eq!(a.stats().operations(), ops);
    assert_eq!(a.stats().cache_hits.get(), 20);
    assert_eq!(
        slapd.results(),
        slapd_results,
        "slapd answered nothing more"
    );
    assert_eq!(slapd.good_binds(ALICE_DN), 1);
    // A hit is answered before any `await`: its future is the answer, not the directory
    // path's state machine (kilobytes, which boxing copied for every request).
    let (parts, conn) = (basic("alice", "alice-pass"), ConnInfo::for_tests(None));
    let hit = a.authenticate(&parts, &conn, SystemTime::now());
    let size = std::mem::size_of_val(&*hit);
    assert!(size <= 512, "a cache hit's future is {size} bytes");
    assert!(matches!(
        hit.now_or_never(),
        Some(Outcome::Authenticated(_))
    ));
    assert_eq!(a.stats().cache_hits.get(), 21);
    // A different password is not a cache hit.
    assert_invalid(&auth(&a, "alice", "alice-pass2").await);

    // Revocation: the next request binds again.
    assert_eq!(a.evict_principal("alice"), 1);
    assert!(matches!(
        auth(&a, "alice", "alice-pass").await,
        Outcome::Authenticated(_)
    ));
    settle().await;
    assert_eq!(slapd.good_binds(ALICE_DN), 2);
}

#[tokio::test]
async fn cache_expires_after_ttl() {
    let slapd = Slapd::start();
    let mut s = racf(&slapd.url());
    s.cache_ttl = Duration::from_secs(60);
    let a = build(s);
    let t0 = SystemTime::now();
    let conn = ConnInfo::for_tests(None);
    let req = basic("GWJOB01", "job-pass-1");
    assert!(matches!(
        a.authenticate(&req, &conn, t0).await,
        Outcome::Authenticated(_)
    ));
    let ops = a.stats().operations();
    let later = t0 + Duration::from_secs(59);
    assert!(matches!(
        a.authenticate(&req, &conn, later).await,
        Outcome::Authenticated(_)
    ));
    assert_eq!(a.stats().operations(), ops);
    let expired = t0 + Duration::from_secs(61);
    assert!(matches!(
        a.authenticate(&req, &conn, expired).await,
        Outcome::Authenticated(_)
    ));
    assert!(a.stats().operations() > ops);
}

/// The heart of issue 4's LDAP part: an attacker hammering a mainframe account cannot make the
/// directory see more than `max_failures` bad passwords, and the real job keeps working.
#[tokio::test]
async fn lockout_protects_the_account_and_the_job_keeps_working() {
    let slapd = Slapd::start();
    let mut s = racf(&slapd.url());
    s.cache_ttl = Duration::ZERO; // the hard case: the good password re-binds every time
    s.max_failures = 3;
    s.max_source_failures = 1000; // this test is about the per-user limit
    let a = build(s);
    // The job has authenticated before: its password is known-good.
    assert!(matches!(
        auth(&a, "VICTIM", "victim-pass").await,
        Outcome::Authenticated(_)
    ));
    for i in 0..20 {
        assert_invalid(&auth(&a, "VICTIM", &format!("guess-{i}")).await);
        if i % 4 == 0 {
            let o = auth(&a, "victim", "victim-pass").await;
            assert!(matches!(o, Outcome::Authenticated(_)), "round {i}: {o:?}");
        }
    }
    settle().await;
    let failed = slapd.failed_binds(RACF_VICTIM_DN);
    assert!(failed <= 3, "slapd saw {failed} failed binds");
    assert!(failed >= 1, "some guesses must have reached slapd");
    assert!(a.stats().locked_out.get() >= 17);
    // Still fine at the end.
    assert!(matches!(
        auth(&a, "VICTIM", "victim-pass").await,
        Outcome::Authenticated(_)
    ));

    // A user whose password the gateway never saw succeed: same bound on the directory.
    for i in 0..20 {
        assert_invalid(&auth(&a, "NOGROUP", &format!("guess-{i}")).await);
    }
    settle().await;
    let failed = slapd.failed_binds(RACF_NOGROUP_DN);
    assert_eq!(failed, 3, "slapd saw {failed} failed binds");
}

/// The directory matches names case-insensitively: spelling variants share one count.
#[tokio::test]
async fn name_variants_share_one_failure_count() {
    let slapd = Slapd::start();
    let mut s = openldap(&slapd.url());
    s.max_source_failures = 1000;
    let a = build(s);
    assert!(matches!(
        auth(&a, "alice", "alice-pass").await,
        Outcome::Authenticated(_)
    ));
    let variants = ["alice", "Alice", "ALICE", "aLiCe", "ALIce"];
    for i in 0..20 {
        let u = variants[i % variants.len()];
        assert_invalid(&auth(&a, u, &format!("guess-{i}")).await);
    }
    settle().await;
    let failed = slapd.failed_binds(ALICE_DN);
    assert!(failed <= 3, "slapd saw {failed} failed binds for alice");
    // The known-good password works under any spelling the directory accepts.
    assert!(matches!(
        auth(&a, "ALICE", "alice-pass").await,
        Outcome::Authenticated(_)
    ));
    // Revocation by name reaches every spelling's cache entry.
    assert!(a.evict_principal("alice") >= 1);
}

#[tokio::test]
async fn concurrent_guesses_cannot_overrun_the_limit() {
    let slapd = Slapd::start();
    let a = Arc::new(build(racf(&slapd.url())));
    let tasks: Vec<_> = (0..20)
        .map(|i| {
            let a = a.clone();
            tokio::spawn(async move { auth(&a, "VICTIM", &format!("guess-{i}")).await })
        })
        .collect();
    for t in tasks {
        assert_invalid(&t.await.unwrap());
    }
    settle().await;
    let failed = slapd.failed_binds(RACF_VICTIM_DN);
    assert!(failed <= 3, "slapd saw {failed} failed binds");
}

#[tokio::test]
async fn lockout_window_ends() {
    let slapd = Slapd::start();
    let a = build(racf(&slapd.url()));
    let conn = ConnInfo::for_tests(None);
    let t0 = SystemTime::now();
    for i in 0..5 {
        let o = a
            .authenticate(&basic("NOGROUP", &format!("bad{i}")), &conn, t0)
            .await;
        assert_invalid(&o);
    }
    let good = basic("NOGROUP", "nogroup-pass");
    // Locked: even the right password is unknown to the gateway, so it waits for the window.
    assert_invalid(&a.authenticate(&good, &conn, t0).await);
    let later = t0 + Duration::from_secs(15 * 60 + 1);
    let o = a.authenticate(&good, &conn, later).await;
    assert!(matches!(o, Outcome::Authenticated(_)), "{o:?}");
}

#[tokio::test]
async fn source_address_limit_stops_spraying() {
    let slapd = Slapd::start();
    let mut s = openldap(&slapd.url());
    s.max_source_failures = 5;
    let a = build(s);
    // Learn bob's password first: known-good passes even from a blocked source.
    assert!(matches!(
        auth(&a, "bob", "bob-pass").await,
        Outcome::Authenticated(_)
    ));
    for u in ["u1", "u2", "u3", "u4", "u5", "u6", "u7", "u8"] {
        assert!(a.verify(u, "spray", IP, SystemTime::now()).await.is_err());
    }
    // alice's right password is unknown to the gateway: refused from this source…
    let r = a.verify("alice", "alice-pass", IP, SystemTime::now()).await;
    assert!(r.is_err());
    // …but fine from another one; bob's known-good password is fine from here.
    let other = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 9));
    assert!(a
        .verify("alice", "alice-pass", other, SystemTime::now())
        .await
        .is_ok());
    assert!(a
        .verify("bob", "bob-pass", IP, SystemTime::now())
        .await
        .is_ok());
}

#[tokio::test]
async fn ldaps_and_starttls_with_a_custom_ca() {
    let slapd = Slapd::start();
    let mut s = racf(&slapd.ldaps_url());
    s.ca_file = Some(slapd.ca_file());
    let a = build(s);
    let o = auth(&a, "GWJOB01", "job-pass-1").await;
    assert!(matches!(o, Outcome::Authenticated(_)), "ldaps: {o:?}");

    let mut s = racf(&slapd.url());
    s.starttls = true;
    s.ca_file = Some(slapd.ca_file());
    let a = build(s);
    let o = auth(&a, "GWJOB01", "job-pass-1").await;
    assert!(matches!(o, Outcome::Authenticated(_)), "starttls: {o:?}");

    // A server certificate the configured roots do not vouch for: fail closed, as unavailable.
    let a = build(racf(&slapd.ldaps_url()));
    let o = auth(&a, "GWJOB01", "job-pass-1").await;
    assert_eq!(refused(&o).code, Code::DirectoryUnavailable);
}

#[tokio::test]
async fn users_that_cannot_be_mapped_are_refused_before_ldap() {
    let slapd = Slapd::start();
    let a = build(racf(&slapd.url()));
    // RACF allows '#', SPIFFE paths do not: refused, without asking the directory.
    let o = auth(&a, "OP#1", "x").await;
    assert_invalid(&o);
    assert!(refused(&o).detail.contains("workload identity"));
    assert_eq!(a.stats().operations(), 0);
}

#[test]
fn settings_are_checked() {
    let err = |s: LdapSettings| LdapAuthenticator::new("x".into(), s).unwrap_err().key;
    assert_eq!(err(racf("http://x")), "url");
    assert_eq!(err(racf("ldap://")), "url");
    assert_eq!(err(racf("ldap://h:99999")), "url");
    assert_eq!(err(racf("ldap://u@h")), "url");
    let mut s = racf("ldap://h");
    s.max_failures = 1;
    assert_eq!(err(s), "max_failures");
    let mut s = racf("ldap://h");
    s.bind_dn = Some("cn=x".into());
    assert_eq!(err(s), "bind_dn");
    let mut s = racf("ldap://h");
    s.ca_file = Some("/nonexistent".into());
    assert_eq!(err(s), "ca");
    let mut s = racf("ldaps://h");
    s.ca_file = Some("/nonexistent".into());
    assert_eq!(err(s), "ca");
    let mut s = openldap("ldap://h");
    s.profile.user_filter = Some("(uid={user}".into());
    assert_eq!(err(s), "user_filter");
    let mut s = racf("ldap://h");
    s.profile.dn_template = Some("racfid=x".into());
    assert_eq!(err(s), "dn_template");
    assert!(LdapAuthenticator::new("x".into(), racf("ldap://[::1]:389/")).is_ok());
    // Secrets never show.
    let s = openldap("ldap://h");
    assert!(!format!("{s:?}").contains("search-secret"));
    let a = LdapAuthenticator::new("x".into(), s).unwrap();
    assert!(!format!("{a:?}").contains("search-secret"));
}

/// A config reload rebuilds the credential: the failure counts it has earned carry over (same
/// limits), so a reload in the middle of a password spray gives the attacker no fresh budget,
/// and the known-good password of the job still works.
#[tokio::test]
async fn a_reload_keeps_the_failure_counts() {
    let slapd = Slapd::start();
    let settings = || {
        let mut s = racf(&slapd.url());
        s.cache_ttl = Duration::ZERO;
        s.max_failures = 3;
        s.max_source_failures = 1000;
        s
    };
    let before = build(settings());
    assert!(matches!(
        auth(&before, "VICTIM", "victim-pass").await,
        Outcome::Authenticated(_)
    ));
    for i in 0..5 {
        assert_invalid(&auth(&before, "VICTIM", &format!("guess-{i}")).await);
    }
    let after = build(settings()).keeping_counters_of(&before);
    for i in 5..15 {
        assert_invalid(&auth(&after, "VICTIM", &format!("guess-{i}")).await);
    }
    settle().await;
    let failed = slapd.failed_binds(RACF_VICTIM_DN);
    assert!(
        failed <= 3,
        "slapd saw {failed} failed binds across the reload"
    );
    assert!(matches!(
        auth(&after, "VICTIM", "victim-pass").await,
        Outcome::Authenticated(_)
    ));
    // Other limits: a fresh count (the old one counted against different numbers).
    let mut looser = settings();
    looser.max_failures = 10;
    let other = build(looser).keeping_counters_of(&after);
    assert_invalid(&auth(&other, "VICTIM", "guess-new-limits").await);
    settle().await;
    assert_eq!(slapd.failed_binds(RACF_VICTIM_DN), failed + 1);
}
