//! Routing hot paths: path normalization (canonical and percent-encoded paths) and route
//! selection among 200 routes, the way the pipeline calls them for every request.
//!
//! Run: `cargo bench --bench routing`.

#![expect(
    clippy::unwrap_used,
    reason = "benchmark setup: a failure must abort the run"
)]

use std::fmt::Write as _;
use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use http::Method;
use portcullis::pipeline::route::{Route, Router};
use portcullis::proxy::Upstream;
use portcullis::routing::path;

/// 200 routes: 150 path-only (`/svc{i}/v1/`), 50 with a host (`api{i}.bench.example`).
fn router() -> Router {
    let dir = std::env::temp_dir();
    let mut toml = String::from(
        "version = 1\n[listen]\naddr = \"127.0.0.1:0\"\n[admin]\naddr = \"127.0.0.1:0\"\n",
    );
    for i in 0..200 {
        let host = if i >= 150 {
            format!(", host = \"api{i}.bench.example\"")
        } else {
            String::new()
        };
        write!(
            toml,
            "[[routes]]\nname = \"r{i}\"\nmatch = {{ path_prefix = \"/svc{i}/v1/\", methods = [\"GET\", \"POST\"]{host} }}\n[routes.upstream]\nurl = \"http://127.0.0.1:9\"\n"
        )
        .unwrap();
    }
    let cfg = portcullis::config::from_toml_str(&toml, &dir.join("bench-routing.toml")).unwrap();
    let routes = cfg
        .routes
        .iter()
        .map(|rc| {
            Arc::new(Route {
                config: rc.clone(),
                upstream: Upstream::new(&rc.upstream).unwrap(),
                accept: Vec::new(),
                policy: None,
                plan: None,
                limits: None,
                validator: None,
                inject: None,
                meters: Default::default(),
            })
        })
        .collect();
    Router::new(routes)
}

fn normalize(c: &mut Criterion) {
    let canonical = "/svc149/v1/orders/12345/items";
    let encoded = "/svc149/v1/orders/%7euser/items%41%20x";
    assert!(path::normalize(canonical).is_ok());
    assert!(path::normalize(encoded).is_ok());
    c.bench_function("path/normalize canonical", |b| {
        b.iter(|| path::normalize(black_box(canonical)).unwrap());
    });
    c.bench_function("path/normalize percent-encoded", |b| {
        b.iter(|| path::normalize(black_box(encoded)).unwrap());
    });
    c.bench_function("path/normalize refused (dot segment)", |b| {
        b.iter(|| path::normalize(black_box("/svc1/v1/../admin")).is_err());
    });
}

fn select(c: &mut Criterion) {
    let router = router();
    let get = Method::GET;
    assert_eq!(
        &**router
            .select(None, "/svc149/v1/orders/1", &get)
            .unwrap()
            .name(),
        "r149"
    );
    c.bench_function("route/select 200 routes, last path route", |b| {
        b.iter(|| {
            router
                .select(black_box(None), black_box("/svc149/v1/orders/1"), &get)
                .unwrap()
                .name()
                .len()
        });
    });
    c.bench_function("route/select 200 routes, host route", |b| {
        b.iter(|| {
            router
                .select(
                    black_box(Some("api199.bench.example")),
                    black_box("/svc199/v1/x"),
                    &get,
                )
                .unwrap()
                .name()
                .len()
        });
    });
    c.bench_function("route/select 200 routes, no match (404)", |b| {
        b.iter(|| {
            router
                .select(black_box(None), black_box("/nowhere/at/all"), &get)
                .is_err()
        });
    });
    c.bench_function("route/normalize + select", |b| {
        b.iter(|| {
            let p = path::normalize(black_box("/svc42/v1/orders/%7e1")).unwrap();
            router.select(None, &p, &get).unwrap().name().len()
        });
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(30);
    targets = normalize, select
}
criterion_main!(benches);
