//! Webhook verification of a 16 KiB body: target ≤ 20 µs (HMAC over the body dominates).

#![expect(
    clippy::unwrap_used,
    reason = "benchmark setup: a failure must abort the run"
)]

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use criterion::{criterion_group, criterion_main, Criterion};
use hmac::{Hmac, Mac};
use http::{HeaderMap, HeaderValue};
use portcullis::adapters;
use portcullis::authn::webhook::{WebhookSecret, WebhookVerifier};
use sha2::Sha256;

fn hmac_hex(key: &[u8], msg: &[u8]) -> String {
    let mut m = Hmac::<Sha256>::new_from_slice(key).unwrap();
    m.update(msg);
    hex::encode(m.finalize().into_bytes())
}

fn bench(c: &mut Criterion) {
    let ad = adapters::builtin().unwrap();
    let body: Vec<u8> = (0..16 * 1024).map(|i| b'a' + (i % 26) as u8).collect();
    let ts = 1_750_000_000u64;
    let now = UNIX_EPOCH + Duration::from_secs(ts);

    // Stripe: timestamp in the signature header, one secret.
    let stripe = WebhookVerifier::new(
        ad.get_webhook("stripe").unwrap(),
        vec![WebhookSecret::new("whsec_bench")],
        None,
    )
    .unwrap();
    let msg = [format!("{ts}.").as_bytes(), &body].concat();
    let mut h = HeaderMap::new();
    h.insert(
        "stripe-signature",
        HeaderValue::from_str(&format!("t={ts},v1={}", hmac_hex(b"whsec_bench", &msg))).unwrap(),
    );
    c.bench_function("webhook/stripe 16KiB", |b| {
        b.iter(|| stripe.verify(&h, "", &body, now).unwrap())
    });

    // Baseline under the same machine load: one HMAC-SHA256 pass over the body. `verify` makes
    // two passes for providers without a signed id (the MAC, and the BLAKE3 of the signed
    // content that keys replays), one more per extra secret.
    c.bench_function("webhook/baseline hmac-sha256 16KiB", |b| {
        b.iter(|| hmac_hex(b"whsec_bench", &msg))
    });

    // The hash primitives side by side (RustCrypto with SHA-NI vs aws-lc), to see what one pass
    // over the body costs on this machine.
    c.bench_function("webhook/baseline sha256 16KiB (sha2)", |b| {
        b.iter(|| <Sha256 as sha2::Digest>::digest(&msg))
    });
    c.bench_function("webhook/baseline blake3 16KiB", |b| {
        b.iter(|| blake3::hash(&msg))
    });
    let lc_key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, b"whsec_bench");
    c.bench_function("webhook/baseline hmac-sha256 16KiB (aws-lc)", |b| {
        b.iter(|| aws_lc_rs::hmac::sign(&lc_key, &msg))
    });
    c.bench_function("webhook/baseline sha256 16KiB (aws-lc)", |b| {
        b.iter(|| aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &msg))
    });

    // GitHub while rotating: two secrets, signed with the second (two MACs computed).
    let github = WebhookVerifier::new(
        ad.get_webhook("github").unwrap(),
        vec![WebhookSecret::new("old"), WebhookSecret::new("new")],
        None,
    )
    .unwrap();
    let mut h = HeaderMap::new();
    h.insert(
        "x-hub-signature-256",
        HeaderValue::from_str(&format!("sha256={}", hmac_hex(b"new", &body))).unwrap(),
    );
    c.bench_function("webhook/github 16KiB, 2 secrets", |b| {
        b.iter(|| github.verify(&h, "", &body, SystemTime::now()).unwrap())
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
