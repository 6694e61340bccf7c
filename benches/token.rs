//! Token hot paths: a cached token handed out (every request after the first for an identity),
//! an uncached ES256 mint (first request, or after the cache's refresh point), and a JWT-SVID
//! verified without the validator's cache (a caller's first request with a new token).
//!
//! Budgets (issue 7): cached hand-out ≤ 1 µs, uncached ES256 mint ≤ 25 µs, JWT-SVID verification
//! ≤ 45 µs. Run: `cargo bench --bench token`.

#![expect(
    clippy::unwrap_used,
    reason = "benchmark setup: a failure must abort the run"
)]

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{
    EcdsaKeyPair, ParsedPublicKey, ECDSA_P256_SHA256_FIXED, ECDSA_P256_SHA256_FIXED_SIGNING,
};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use criterion::{criterion_group, criterion_main, Criterion};
use portcullis::identity::profile::Profile;
use portcullis::identity::Kind;
use portcullis::identity::TrustDomain;
use portcullis::metrics::Metrics;
use portcullis::spiffe::{JwtBundle, JwtSvidSettings, JwtSvidValidator, TrustStore};
use portcullis::token::jwks::render_jwks;
use portcullis::token::{
    Alg, Issuer, KeyRing, KeySet, Legacy, MintRequest, SigningKey, TokenCache,
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
        lineage: None,
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

    // The floor under the same machine load: one aws-lc ES256 signature over an input of the
    // size a minted token's signing input has. On this machine the mint is this plus a few %.
    let input = issuer.mint(&req, now).unwrap().token;
    let input = input.rsplit_once('.').unwrap().0.as_bytes().to_vec();
    let rng = SystemRandom::new();
    let pair = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).unwrap();
    c.bench_function("token/baseline: aws-lc ES256 sign alone", |b| {
        b.iter(|| pair.sign(&rng, black_box(&input)).unwrap());
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
        lineage: None,
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

    // The floor under the same machine load: aws-lc's ES256 verification alone, key parsed once.
    let (signed, sig) = token.rsplit_once('.').unwrap();
    let sig = URL_SAFE_NO_PAD.decode(sig).unwrap();
    let jwk = &keys.current().signer().public_jwk().clone();
    let point = [
        &[4u8][..],
        &URL_SAFE_NO_PAD.decode(jwk.x.as_bytes()).unwrap(),
        &URL_SAFE_NO_PAD
            .decode(jwk.y.as_deref().unwrap().as_bytes())
            .unwrap(),
    ]
    .concat();
    let public = ParsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, point).unwrap();
    public.verify_sig(signed.as_bytes(), &sig).unwrap();
    c.bench_function("jwt-svid/baseline: aws-lc ES256 verify alone", |b| {
        b.iter(|| {
            public
                .verify_sig(black_box(signed.as_bytes()), &sig)
                .unwrap()
        });
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
