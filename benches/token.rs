//! Token hot paths: a cached token handed out (every request after the first for an identity),
//! an uncached ES256 mint (first request, or after the cache's refresh point), and a JWT-SVID
//! verified without the validator's cache (a caller's first request with a new token).
//!
//! Budgets (issue 7): cached hand-out ≤ 1 µs, uncached ES256 mint ≤ 25 µs, JWT-SVID verification
//! ≤ 45 µs. Run: `cargo bench --bench token`.

// A measuring harness, not gateway code: failing loudly is the right behaviour here.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use criterion::{criterion_group, criterion_main, Criterion};
use portcullis::authn::Kind;
use portcullis::metrics::Metrics;
use portcullis::spiffe::{JwtBundle, JwtSvidSettings, JwtSvidValidator, TrustDomain, TrustStore};
use portcullis::token::jwks::render_jwks;
use portcullis::token::{
    Alg, Issuer, KeyRing, KeySet, Legacy, MintRequest, Profile, SigningKey, TokenCache,
};

fn keys() -> Arc<KeySet> {
    let key = SigningKey::generate(Alg::Es256).unwrap();
    let ring = KeyRing::new(vec![("bench".to_owned(), key)]).unwrap();
    Arc::new(KeySet::from_ring(ring, Arc::new(Metrics::default())))
}

fn issuer(keys: Arc<KeySet>) -> Issuer {
    Issuer::new(
        "https://portcullis.bench.example",
        "spiffe://bench.example/portcullis",
        Duration::from_secs(300),
        keys,
    )
    .unwrap()
}

fn request() -> MintRequest<'static> {
    MintRequest {
        identity: "spiffe://bench.example/legacy/ldap/alice",
        audience: "orders",
        kind: Kind::Ldap,
        profile: Profile::default(),
        cnf: None,
        legacy: Some(Legacy {
            credential: "directory",
            principal: Some("alice"),
        }),
    }
}

fn mint(c: &mut Criterion) {
    let issuer = issuer(keys());
    let metrics = Metrics::default();
    let req = request();
    let now = SystemTime::now();

    c.bench_function("token/cached hand-out", |b| {
        let cache = TokenCache::new(10_000);
        cache.get_or_mint(&issuer, &req, now, &metrics).unwrap();
        b.iter(|| {
            let issued = cache
                .get_or_mint(&issuer, black_box(&req), now, &metrics)
                .unwrap();
            debug_assert!(issued.from_cache);
            issued
        });
    });

    c.bench_function("token/uncached ES256 mint", |b| {
        b.iter(|| issuer.mint(black_box(&req), now).unwrap());
    });
}

fn verify(c: &mut Criterion) {
    let keys = keys();
    let issuer = issuer(keys.clone());
    let jwks = render_jwks(&keys.current());
    let td = TrustDomain::parse("bench.example").unwrap();
    let mut store = TrustStore::empty();
    store.insert(td.clone(), None, Some(JwtBundle::parse(&jwks).unwrap()));
    let store = Arc::new(store);
    let now = SystemTime::now();
    // The gateway's own mint is a JWT-SVID in all but issuer: a fair, real ES256 JWT-SVID.
    let req = MintRequest {
        identity: "spiffe://bench.example/ns/payments/sa/api",
        audience: "portcullis",
        kind: Kind::JwtSvid,
        profile: Profile::default(),
        cnf: None,
        legacy: None,
    };
    let token = issuer.mint(&req, now).unwrap().token;

    let mut uncached = JwtSvidSettings::new(vec![td.clone()], "portcullis");
    uncached.cache_entries = 0;
    let v = JwtSvidValidator::new(store.clone(), uncached);
    assert_eq!(
        v.validate(&token, now).unwrap().as_str(),
        "spiffe://bench.example/ns/payments/sa/api"
    );
    c.bench_function("jwt-svid/verify ES256 (no cache)", |b| {
        b.iter(|| v.validate(black_box(&token), now).unwrap());
    });

    let cached = JwtSvidValidator::new(store, JwtSvidSettings::new(vec![td], "portcullis"));
    cached.validate(&token, now).unwrap();
    c.bench_function("jwt-svid/verify (cache hit)", |b| {
        b.iter(|| cached.validate(black_box(&token), now).unwrap());
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(30);
    targets = mint, verify
}
criterion_main!(benches);
