//! API-key check: target ≤ 2 µs per request (header form, 1000 keys configured), including the
//! SHA-256 of the key and the store lookup; and the query-parameter form with stripping.

#![expect(
    clippy::unwrap_used,
    clippy::panic,
    reason = "benchmark setup: a failure must abort the run"
)]

use std::sync::Arc;
use std::time::SystemTime;

use criterion::{criterion_group, criterion_main, Criterion};
use http::HeaderName;
use portcullis::authn::apikey::{hash_key, ApiKeyAuthenticator, KeyStore};
use portcullis::authn::{Authenticator as _, Outcome};

const KEY: &str = "pcs_k8J2mQ0xV7nR4tY1wE9uI3oP6aS5dF0gH2jK4lZ7xC8";

fn bench(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keys.toml");
    let mut text = String::new();
    for i in 0..1000 {
        let key = if i == 500 {
            KEY.to_owned()
        } else {
            format!("pcs_other-{i}")
        };
        text.push_str(&format!(
            "[[keys]]\nid = \"k{i}\"\nsha256 = \"{}\"\nidentity = \"spiffe://corp.example/partner/p{i}\"\nexpires = \"2099-12-31\"\n",
            hex::encode(hash_key(key.as_bytes()))
        ));
    }
    std::fs::write(&path, text).unwrap();
    let a = ApiKeyAuthenticator::new(
        Arc::from("partner-keys"),
        HeaderName::from_static("x-api-key"),
        Some("api_key".into()),
        Arc::new(KeyStore::load(&path).unwrap()),
    );
    let now = SystemTime::now();

    let (header_req, ()) = http::Request::builder()
        .uri("/orders?page=2")
        .header("x-api-key", KEY)
        .body(())
        .unwrap()
        .into_parts();
    c.bench_function("apikey/header valid (1000 keys)", |b| {
        b.iter(|| match a.check(&header_req, now) {
            Outcome::Authenticated(c) => c,
            other => panic!("{other:?}"),
        })
    });

    let (unknown, ()) = http::Request::builder()
        .uri("/orders")
        .header(
            "x-api-key",
            "pcs_not-a-configured-key-0000000000000000000000",
        )
        .body(())
        .unwrap()
        .into_parts();
    c.bench_function("apikey/header unknown", |b| {
        b.iter(|| assert!(matches!(a.check(&unknown, now), Outcome::Rejected(_))))
    });

    let (query_req, ()) = http::Request::builder()
        .uri(format!("/orders?page=2&api_key={KEY}&sort=desc"))
        .body(())
        .unwrap()
        .into_parts();
    c.bench_function("apikey/query valid + strip", |b| {
        b.iter(|| {
            assert!(matches!(
                a.check(&query_req, now),
                Outcome::Authenticated(_)
            ));
            let mut r = query_req.clone();
            a.strip(&mut r);
            r
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
