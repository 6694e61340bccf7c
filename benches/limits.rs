//! Cost of the per-request limit checks (target: ≤ 1 µs each).

#![expect(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    reason = "bench setup: a panic here is a failed benchmark, not a crashed gateway"
)]

use std::hint::black_box;
use std::net::IpAddr;
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion};
use portcullis::clock::SystemClock;
use portcullis::limits::{Rate, RouteLimitSettings, RouteLimits, SourceLimiter};

fn limits(c: &mut Criterion) {
    let clock = Arc::new(SystemClock);
    let l = RouteLimits::new(
        &RouteLimitSettings {
            // High enough that the bench measures the allowed path, which is the common one.
            rate: Some(Rate::parse("1000000000/s").unwrap()),
            burst: Some(1_000_000),
            total_rate: Some(Rate::parse("1000000000/s").unwrap()),
            concurrency: Some(64),
            ..Default::default()
        },
        clock.clone(),
    )
    .unwrap();
    let ids: Vec<String> = (0..10_000)
        .map(|i| format!("spiffe://corp.example/ns/payments/sa/caller-{i}"))
        .collect();
    for id in &ids {
        l.check_rate(id).unwrap();
    }
    let mut i = 0usize;
    c.bench_function("check_rate (identity + route, 10k identities)", |b| {
        b.iter(|| {
            i = (i + 1) % ids.len();
            black_box(l.check_rate(black_box(&ids[i])).is_ok())
        })
    });
    c.bench_function("check_rate + headers rendered", |b| {
        b.iter(|| {
            i = (i + 1) % ids.len();
            black_box(l.check_rate(black_box(&ids[i])).unwrap().pairs())
        })
    });
    c.bench_function("try_acquire + release", |b| {
        b.iter(|| black_box(l.try_acquire().is_ok()))
    });

    let s = SourceLimiter::new(Rate::parse("10/m").unwrap(), 20, 100_000, clock);
    let ips: Vec<IpAddr> = (0..10_000u32)
        .map(|i| IpAddr::from((0x0a00_0000 + i).to_be_bytes()))
        .collect();
    for ip in &ips {
        s.note_auth_failure(*ip);
    }
    c.bench_function("check_source (10k failing sources)", |b| {
        b.iter(|| {
            i = (i + 1) % ips.len();
            black_box(s.check_source(black_box(ips[i])).is_ok())
        })
    });
}

criterion_group!(benches, limits);
criterion_main!(benches);
