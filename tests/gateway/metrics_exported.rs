//! The other direction of `docs_drift.rs`'s metric tests (which fail when an exported metric is
//! undocumented): every metric `docs/metrics.md` lists is exported by a running gateway. A row
//! for a name that nothing exports would have an operator alert on a series that never exists.

use std::collections::BTreeSet;

use crate::docs_support::{assert_none_missing, read};
use crate::support::*;

/// Documented families a gateway exports only with a section this test does not configure, and
/// the test that scrapes each one there.
const ELSEWHERE: &[(&str, &str)] = &[
    (
        "portcullis_svid_expiry_seconds",
        "[spiffe]: workload_api.rs",
    ),
    ("portcullis_workload_api_up", "[spiffe]: workload_api.rs"),
];

/// The metric names in the first column of `docs/metrics.md`'s tables (a row may name several).
fn documented(doc: &str) -> BTreeSet<String> {
    doc.lines()
        .filter_map(|l| l.strip_prefix("| `"))
        .filter_map(|l| l.split(" |").next())
        .flat_map(|cell| {
            format!("`{cell}")
                .split('`')
                .skip(1)
                .step_by(2)
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .filter(|n| n.starts_with("portcullis_") || n.starts_with("process_"))
        .collect()
}

/// Every family with a `# TYPE` line (a family is declared even before its first sample).
fn families(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_owned)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_metric_in_docs_metrics_md_is_exported_by_a_running_gateway() {
    let up = Upstream::start().await;
    let pki = Pki::new();
    let dir = pki.dir.path();
    let gw = start_in_process(
        dir,
        &base_config(dir, "", &pki.tls_section(), &route("r", "/", &up.url(), "")),
    )
    .await;
    let text = scrape(&gw).await;
    gw.stop().await;
    let exported = families(&text);
    // The reference, and the overview table in the observability guide.
    for file in ["docs/metrics.md", "docs/observability.md"] {
        let names = documented(&read(file));
        assert!(names.len() >= 20, "{file}: {names:?}");
        let missing: Vec<String> = names
            .iter()
            .filter(|n| !exported.contains(*n) && !ELSEWHERE.iter().any(|(e, _)| e == n))
            .map(|n| format!("`{n}` is documented but not exported"))
            .collect();
        assert_none_missing(&format!("{file} (not exported)"), &missing);
    }
    let reference = documented(&read("docs/metrics.md"));
    for (name, _) in ELSEWHERE {
        assert!(reference.contains(*name), "{name}: no longer documented");
        assert!(!exported.contains(*name), "{name} is exported here now");
    }
}

/// The first column only, every name in it; prose mentions in other columns are not rows.
#[test]
fn a_row_naming_several_metrics_documents_each() {
    let doc =
        "| `portcullis_a_total`, `portcullis_b_total` | counter | | unlike `portcullis_c` |\n\
               | `process_open_fds` | gauge | | |\n\
               | `listen.addr` | key | not a metric |\n\
               see `portcullis_d` in prose\n";
    let want: BTreeSet<String> = [
        "portcullis_a_total",
        "portcullis_b_total",
        "process_open_fds",
    ]
    .map(str::to_owned)
    .into();
    assert_eq!(documented(doc), want);
}
