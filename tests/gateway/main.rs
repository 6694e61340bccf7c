//! Integration tests: one binary, a module per area (STYLE.md).
#![expect(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "a panic in a test is a failed test, not a crashed gateway"
)]

mod support;

mod accepting;
mod admin;
mod admin_hardening;
mod auth_failures;
mod bodies;
mod caller_gone;
mod canonical;
mod cluster;
mod config_check;
mod controls;
mod decision;
mod decision_source;
mod demo;
mod differential;
mod docs_drift;
mod docs_support;
mod front_proxies;
mod hardening;
mod identity;
mod idle;
mod insight;
mod issuer;
mod jwt_svid_flight;
mod kept_entries;
mod ldap;
mod legacy;
mod lineage;
mod memos;
mod metric_labels;
mod metrics_exported;
mod migration;
mod native_h1;
mod openapi;
mod ops;
mod outage_support;
mod outages;
mod package;
mod paths;
mod phases;
mod principals;
mod proxy;
mod redis_tls;
mod relayed_answers;
mod reload;
mod shared_state;
mod shutdown;
mod slow_callers;
mod streaming;
mod target_form;
mod telemetry;
mod tls_reload;
#[cfg(feature = "otel")]
mod traces;
mod untraced;
mod upgrades;
mod upstream_answers;
mod upstream_client;
mod upstream_head;
mod upstream_pool;
mod usage_sources;
mod workload_api;
mod workload_api_support;
