//! Metric labels are config-defined or fixed strings, never chosen by a caller: a caller-chosen
//! label would let anyone grow the registry without bound (one child per value, kept for the
//! process's life) and flood the scrape. Here callers vary everything they control (wrong keys,
//! another header spelling, hostile Host headers and paths, unrouted targets) over many
//! connections, so both data-plane workers serve them; `/metrics` must show only config-defined
//! and fixed label values, and count every request exactly once.

use crate::support::*;

const ACME: &str = "pcs_labels_acme_7f3b9d2e4c1a6b8d0e5f";
const ACME_ID: &str = "spiffe://corp.example/partner/acme";
const PLAIN: &str = "dangerous_allow_plaintext_credentials = true";

/// `(labels, value)` of each sample of `family` (exactly that name, no suffix).
fn samples<'a>(text: &'a str, family: &str) -> Vec<(&'a str, f64)> {
    let prefix = format!("{family}{{");
    text.lines()
        .filter_map(|l| l.strip_prefix(&prefix))
        .filter_map(|l| l.rsplit_once("} "))
        .map(|(labels, v)| (labels, v.trim().parse().unwrap()))
        .collect()
}

/// The value of `name="…"` in a rendered label set.
fn label<'a>(labels: &'a str, name: &str) -> &'a str {
    let start = format!("{name}=\"");
    let rest = &labels[labels.find(&start).unwrap() + start.len()..];
    &rest[..rest.find('"').unwrap()]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn caller_chosen_strings_never_become_labels_and_every_request_counts_once() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write_api_keys(d, &[("acme", ACME_ID, ACME)]);
    let up = Upstream::start().await;
    let routes = format!(
        "{ISSUER}{keys}{partner}",
        keys = partner_keys(d),
        partner = partner_route(
            "partner",
            r#"path_prefix = "/partner/""#,
            &format!("{ALLOW_PARTNERS}\n{PLAIN}"),
            &up.url(),
            "",
            ""
        ),
    );
    let gw = start_in_process(d, &base_config(d, "", "", &routes)).await;
    let base = format!("http://{}", gw.data_addr);
    // What a caller controls, each a would-be label: keys (right, wrong, another spelling),
    // Host headers, paths and targets no route answers.
    let hostile: &[(&str, &[(&str, &str)])] = &[
        ("/partner/a", &[("X-API-Key", ACME)]),
        ("/partner/a", &[("x-api-key", ACME)]),
        ("/partner/b", &[("X-API-Key", "pcs_labels_evil\"route=\"x")]),
        (
            "/partner/c",
            &[("X-API-Key", "wrong"), ("Host", "partner-keys2")],
        ),
        ("/partner/d", &[("Host", "evil.label:1")]),
        ("/evil-route/", &[("X-API-Key", ACME)]),
        ("/(unrouted)x", &[]),
        ("/partner%2Fe", &[("X-Route", "evil")]),
    ];
    let mut tasks = Vec::new();
    // A fresh client per task: separate connections, spread round robin over the workers.
    for round in 0..8 {
        let base = base.clone();
        tasks.push(tokio::spawn(async move {
            let c = reqwest::Client::new();
            let mut sent = 0u32;
            for (path, headers) in hostile.iter().cycle().skip(round).take(40) {
                let mut rb = c.get(format!("{base}{path}"));
                for (k, v) in *headers {
                    rb = rb.header(*k, *v);
                }
                rb.send().await.unwrap();
                sent += 1;
            }
            sent
        }));
    }
    let mut sent = 0;
    for t in tasks {
        sent += t.await.unwrap();
    }
    let text = scrape(&gw).await;
    gw.stop().await;

    let requests = samples(&text, "portcullis_requests_total");
    let total: f64 = requests.iter().map(|(_, v)| v).sum();
    assert_eq!(total, f64::from(sent), "{text}");
    for (labels, _) in &requests {
        assert!(
            ["partner", "(unrouted)"].contains(&label(labels, "route")),
            "{labels}"
        );
    }
    for (labels, _) in samples(&text, "portcullis_refusals_total") {
        assert!(
            ["partner", "(unrouted)"].contains(&label(labels, "route")),
            "{labels}"
        );
    }
    let failures = samples(&text, "portcullis_auth_failures_total");
    assert!(!failures.is_empty(), "{text}");
    for (labels, _) in failures {
        assert_eq!(label(labels, "credential"), "partner-keys", "{labels}");
    }
    for family in [
        "portcullis_request_duration_seconds_count",
        "portcullis_upstream_duration_seconds_count",
    ] {
        for (labels, _) in samples(&text, family) {
            assert!(
                ["partner", "(unrouted)"].contains(&label(labels, "route")),
                "{family}: {labels}"
            );
        }
    }
    let timed: f64 = samples(&text, "portcullis_request_duration_seconds_count")
        .iter()
        .map(|(_, v)| v)
        .sum();
    assert_eq!(timed, f64::from(sent));
    // Nothing a caller sent appears anywhere in the exposition.
    for needle in ["evil", "pcs_labels", "partner-keys2", "\u{1f}"] {
        assert!(!text.contains(needle), "{needle} in /metrics");
    }
}
