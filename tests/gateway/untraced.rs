//! Requests that are not traced, in both builds: a default build with `[telemetry]` absent and a
//! build without the `otel` feature behave the same (docs/observability.md, "Building without
//! OpenTelemetry"). A trusted caller's trace headers reach the upstream byte for byte and only a
//! valid `traceparent` becomes the audit line's `trace_id`; untrusted ones are removed. A build
//! without `otel` refuses an `otlp_endpoint` however it is given, in `check` and in `serve`.

use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::support::*;

const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const TP: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

fn all(h: &http::HeaderMap, name: &str) -> Vec<String> {
    h.get_all(name)
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn untraced_requests_pass_trusted_trace_headers_through_and_audit_only_a_valid_trace_id() {
    let up = Upstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let gw = start_in_process(d, &base_config(d, "", "", &route("r", "/", &up.url(), ""))).await;
    let http = reqwest::Client::new();
    let uppercase = TP.to_uppercase();
    let other = TP.replace("4bf9", "5bf9");
    let long_state = "v=x".repeat(400);
    // (traceparent fields, tracestate fields, the audit's trace_id)
    let cases: [(Vec<&str>, Vec<&str>, Option<&str>); 5] = [
        (vec![TP], vec!["vendor=abc,other=x"], Some(TRACE)),
        // A legacy upstream may trust what it gets; the gateway passes it on as it was sent
        // (it does not trace), but audits no trace id it would not have continued.
        (vec![uppercase.as_str()], vec![], None),
        (
            vec!["00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01"],
            vec![],
            None,
        ),
        // Two `traceparent`s: which one would a downstream believe? Neither is audited.
        (vec![TP, other.as_str()], vec![], None),
        // An oversized `tracestate` does not stop the trace id from being audited.
        (vec![TP], vec![long_state.as_str()], Some(TRACE)),
    ];
    for (i, (tps, tss, audited)) in cases.iter().enumerate() {
        let mut req = http.get(format!("http://{}/x{i}", gw.data_addr));
        for tp in tps {
            req = req.header("traceparent", *tp);
        }
        for ts in tss {
            req = req.header("tracestate", *ts);
        }
        assert_eq!(req.send().await.unwrap().status(), 200, "case {i}");
        let seen = up.last().headers;
        assert_eq!(all(&seen, "traceparent"), *tps, "case {i}");
        assert_eq!(all(&seen, "tracestate"), *tss, "case {i}");
        let audit = audit_lines(d, i + 1).await;
        let line = &audit[i];
        assert_eq!(line["trace_id"].as_str(), *audited, "case {i}: {line}");
    }
    // No `traceparent`: no trace id is made up for the audit line.
    http.get(format!("http://{}/none", gw.data_addr))
        .send()
        .await
        .unwrap();
    assert!(up.last().headers.get("traceparent").is_none());
    assert!(audit_lines(d, cases.len() + 1).await[cases.len()]["trace_id"].is_null());
    gw.stop().await;

    // Untrusted: the headers never reach the upstream, in any spelling or number.
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let toml = base_config(
        d,
        "",
        "",
        &format!(
            "\n[telemetry]\ntrust_incoming_traceparent = false\n{}",
            route("r", "/", &up.url(), "")
        ),
    );
    let gw = start_in_process(d, &toml).await;
    let r = http
        .get(format!("http://{}/x", gw.data_addr))
        .header("traceparent", TP)
        .header("Traceparent", &uppercase)
        .header("TRACESTATE", "vendor=forged")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let seen = up.last().headers;
    assert!(seen.get("traceparent").is_none() && seen.get("tracestate").is_none());
    assert!(audit_lines(d, 1).await[0]["trace_id"].is_null());
    gw.stop().await;
}

fn run(args: &[&str], path: &std::path::Path, env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(bin());
    cmd.args(args).arg("-c").arg(path).stdin(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // A build that ignored the endpoint would start serving: never wait for that forever.
    let started = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > Duration::from_secs(20) {
            child.kill().unwrap();
            let out = child.wait_with_output().unwrap();
            panic!(
                "{args:?} did not exit: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().unwrap()
}

/// `[telemetry] otlp_endpoint` in a build without `otel` is refused by `check` and by `serve`
/// (before it listens), whether written in the file or given as an environment override; the
/// rest of `[telemetry]` is accepted. A default build accepts the same configs.
#[test]
fn a_build_without_otel_refuses_an_otlp_endpoint_in_check_and_serve() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let routes = route("r", "/", "http://127.0.0.1:9", "");
    let in_file = d.join("in-file.toml");
    std::fs::write(
        &in_file,
        base_config(
            d,
            "",
            "",
            &format!("\n[telemetry]\notlp_endpoint = \"http://127.0.0.1:4318\"\n{routes}"),
        ),
    )
    .unwrap();
    let plain = d.join("plain.toml");
    std::fs::write(&plain, base_config(d, "", "", &routes)).unwrap();
    let trust_only = d.join("trust-only.toml");
    std::fs::write(
        &trust_only,
        base_config(
            d,
            "",
            "",
            &format!("\n[telemetry]\ntrust_incoming_traceparent = false\n{routes}"),
        ),
    )
    .unwrap();
    let env = [(
        "PORTCULLIS__TELEMETRY__OTLP_ENDPOINT",
        "http://127.0.0.1:4318",
    )];
    for (path, env) in [(&in_file, &[][..]), (&plain, &env[..])] {
        let out = run(&["check"], path, env);
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        if portcullis::telemetry::OTEL {
            assert!(out.status.success(), "{text}");
            continue;
        }
        assert_eq!(out.status.code(), Some(2), "{text}");
        assert!(text.contains("telemetry.otlp_endpoint"), "{text}");
        assert!(text.contains(portcullis::telemetry::NO_OTEL), "{text}");
        let out = run(&["serve"], path, env);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{err}");
        assert!(err.contains(portcullis::telemetry::NO_OTEL), "{err}");
        assert!(!err.contains("portcullis listening"), "{err}");
    }
    let out = run(&["check"], &trust_only, &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
