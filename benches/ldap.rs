//! The LDAP credential's cost per request: a cache hit through `authenticate()` (target ≤ 15 µs),
//! and cache misses against a real slapd on loopback (target: the directory round trips + ≤ 1 ms),
//! next to a bare ldap3 bind on a warm connection as the round-trip baseline.
//!
//! `cargo bench --bench ldap` (needs slapd and ldap-utils, like the tests).

#![expect(
    clippy::unwrap_used,
    clippy::panic,
    reason = "benchmark setup: a failure must abort the run"
)]

#[path = "../src/authn/ldap/tests/slapd.rs"]
mod slapd;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use base64::Engine as _;
use criterion::{criterion_group, criterion_main, Criterion};
use http::request::Parts;
use portcullis::authn::identity::IdentityTemplate;
use portcullis::authn::ldap::{BindSecret, LdapAuthenticator, LdapSettings, Profile};
use portcullis::authn::{Authenticator, Outcome};
use portcullis::conn::ConnInfo;

fn profile(name: &str) -> Profile {
    Profile::from_adapter(
        &portcullis::adapters::builtin()
            .unwrap()
            .get_ldap(name)
            .unwrap(),
    )
}

fn racf(url: &str, cache_ttl: Duration) -> LdapAuthenticator {
    let mut s = LdapSettings::new(
        url,
        "profiletype=user,cn=RACF",
        profile("zos-racf"),
        IdentityTemplate::parse("spiffe://corp.example/legacy/racf/{user}").unwrap(),
    );
    s.cache_ttl = cache_ttl;
    LdapAuthenticator::new("racf".into(), s).unwrap()
}

fn openldap(url: &str) -> LdapAuthenticator {
    let mut s = LdapSettings::new(
        url,
        "ou=people,dc=example,dc=org",
        profile("openldap"),
        IdentityTemplate::parse("spiffe://corp.example/legacy/ldap/{user}").unwrap(),
    );
    s.cache_ttl = Duration::ZERO;
    s.bind_dn = Some("uid=gwsearch,ou=services,dc=example,dc=org".into());
    s.bind_password = Some(BindSecret::new("search-secret"));
    LdapAuthenticator::new("people".into(), s).unwrap()
}

fn basic(user: &str, pw: &str) -> Parts {
    let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pw}"));
    http::Request::builder()
        .header(http::header::AUTHORIZATION, format!("Basic {token}"))
        .body(())
        .unwrap()
        .into_parts()
        .0
}

fn conn() -> ConnInfo {
    let addr = SocketAddr::from(([127, 0, 0, 1], 40000));
    ConnInfo::new(addr, None, Arc::default())
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let slapd = slapd::Slapd::start();
    let conn = conn();
    let check = |a: &LdapAuthenticator, req: &Parts| {
        let o = rt.block_on(a.authenticate(req, &conn, SystemTime::now()));
        assert!(matches!(o, Outcome::Authenticated(_)), "{o:?}");
    };

    let hit = racf(&slapd.url(), Duration::from_secs(3600));
    let req = basic("GWJOB01", "job-pass-1");
    check(&hit, &req);
    let ops = hit.stats().operations();
    c.bench_function("ldap/cache-hit", |b| b.iter(|| check(&hit, &req)));
    assert_eq!(
        hit.stats().operations(),
        ops,
        "cache hits must not reach slapd"
    );

    let miss = racf(&slapd.url(), Duration::ZERO);
    check(&miss, &req);
    c.bench_function("ldap/miss-racf-bind+groups (2 round trips)", |b| {
        b.iter(|| check(&miss, &req))
    });

    let people = openldap(&slapd.url());
    let alice = basic("alice", "alice-pass");
    check(&people, &alice);
    c.bench_function("ldap/miss-openldap-search+bind (2 round trips)", |b| {
        b.iter(|| check(&people, &alice))
    });

    // Baseline: one bare bind on a warm ldap3 connection with TCP_NODELAY.
    let mut ldap = rt.block_on(async {
        let tcp = tokio::net::TcpStream::connect(("127.0.0.1", slapd.port))
            .await
            .unwrap();
        tcp.set_nodelay(true).unwrap();
        let settings = ldap3::LdapConnSettings::new()
            .set_std_stream(ldap3::StdStream::Tcp(tcp.into_std().unwrap()));
        let (conn, ldap) = ldap3::LdapConnAsync::with_settings(settings, &slapd.url())
            .await
            .unwrap();
        tokio::spawn(conn.drive());
        ldap
    });
    c.bench_function("ldap/baseline-one-bind-round-trip", |b| {
        b.iter(|| {
            rt.block_on(async {
                let r = ldap
                    .simple_bind("racfid=GWJOB01,profiletype=user,cn=RACF", "job-pass-1")
                    .await
                    .unwrap();
                assert_eq!(r.rc, 0);
            })
        })
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(50)
        .measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_secs(1));
    targets = bench
}
criterion_main!(benches);
