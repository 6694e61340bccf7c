//! OTLP traces end to end (feature `otel`; `main.rs` leaves this module out of a build without
//! it): traces decoded by a real receiver (trace ids, the stage spans and their parents, the LDAP
//! bind inside `authenticate`, the upstream's `traceparent`, the audit line's `trace_id`), forged
//! and malformed `traceparent`s, a collector that is down, hangs or is not trusted.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use base64::Engine as _;

#[path = "otlp.rs"]
mod otlp;

use crate::support::*;
use crate::telemetry::{sample, serve_json};
use otlp::{Receiver, Span};

const TP_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const TP_SPAN: &str = "00f067aa0ba902b7";

fn traceparent(trace: &str, span: &str) -> String {
    format!("00-{trace}-{span}-01")
}

/// (trace id, parent span id, flags) of a `traceparent` the upstream received.
fn parse(tp: &str) -> (String, String, String) {
    let p: Vec<&str> = tp.split('-').collect();
    assert_eq!(p.len(), 4, "{tp}");
    assert_eq!(p[0], "00");
    assert_eq!(p[1].len(), 32);
    assert_eq!(p[2].len(), 16);
    (p[1].to_owned(), p[2].to_owned(), p[3].to_owned())
}

fn upstream_tp(up: &Upstream) -> Option<String> {
    up.last()
        .headers
        .get("traceparent")
        .map(|v| v.to_str().unwrap().to_owned())
}

/// The `[telemetry]` section (`otlp_endpoint` and any `extra` lines) and one route `name` for
/// every path to `upstream`: what most tests here put after `base_config`'s listeners.
fn traced_routes(endpoint: &str, extra: &str, name: &str, upstream: &str) -> String {
    format!(
        "\n[telemetry]\notlp_endpoint = \"{endpoint}\"\n{extra}{}",
        route(name, "/", upstream, "")
    )
}

fn by_name(spans: &[Span]) -> HashMap<&str, &Span> {
    spans.iter().map(|s| (s.name.as_str(), s)).collect()
}

fn basic(user: &str, pw: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pw}"))
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn otlp_trace_joins_the_callers_trace_through_every_stage_and_the_upstream() {
    let mut ldap = tokio::task::spawn_blocking(crate::ldap::slapd::Slapd::start)
        .await
        .unwrap();
    let rx = Receiver::start().await;
    let pki = Pki::new();
    let dir = pki.dir.path();
    let up = Upstream::start().await;
    std::fs::write(
        dir.join("payments.cedar"),
        r#"permit (principal, action, resource) when { principal.kind == "ldap" && principal.groups.contains("PAYMENTS") };"#,
    )
    .unwrap();
    let extra = format!(
        r#"{ISSUER}
[telemetry]
otlp_endpoint = "{otlp}"

[credentials.racf]
kind = "ldap"
adapter = "zos-racf"
url = "{url}"
base_dn = "profiletype=user,cn=RACF"
identity = "spiffe://corp.example/legacy/racf/{{user}}"
connect_timeout = "1s"
timeout = "2s"

[[routes]]
name = "cics-payments"
match = {{ path_prefix = "/cics/payments/" }}
accept = ["racf"]
policy = "{d}/payments.cedar"
[routes.upstream]
url = "{up}"
audience = "cics-payments"
[routes.limits]
rate = "100/s"
"#,
        otlp = rx.endpoint(),
        url = ldap.url(),
        d = dir.display(),
        up = up.url(),
    );
    let gw = start_in_process(dir, &base_config(dir, "", &pki.tls_section(), &extra)).await;
    let base = format!("https://127.0.0.1:{}", gw.data_addr.port());
    let client = pki.client(false);
    let get = |headers: Vec<(&'static str, String)>| {
        let c = client.clone();
        let url = format!("{base}/cics/payments/batch?acct=1");
        async move {
            let mut r = c
                .get(url)
                .header("authorization", basic("gwjob01", "job-pass-1"));
            for (k, v) in headers {
                r = r.header(k, v);
            }
            r.send().await.unwrap().status().as_u16()
        }
    };

    let status = get(vec![
        ("traceparent", traceparent(TP_TRACE, TP_SPAN)),
        ("tracestate", "vendor=abc".into()),
    ])
    .await;
    assert_eq!(status, 200);
    // The upstream continues the caller's trace, with the gateway's upstream span as parent.
    let (trace, parent, flags) = parse(&upstream_tp(&up).unwrap());
    assert_eq!(trace, TP_TRACE);
    assert_ne!(
        parent, TP_SPAN,
        "the caller's span id must not be forwarded as the parent"
    );
    assert_eq!(flags, "01");
    assert_eq!(up.last().headers["tracestate"], "vendor=abc");

    let spans = rx.trace(TP_TRACE, 8).await;
    let named = by_name(&spans);
    let server = named["GET cics-payments"];
    assert_eq!(server.kind, 2, "server span kind");
    assert_eq!(
        server.parent_span_id, TP_SPAN,
        "the caller's span is the parent"
    );
    assert_eq!(server.attributes["http.response.status_code"], "200");
    assert_eq!(server.attributes["portcullis.decision"], "allow");
    for stage in [
        "route",
        "authenticate",
        "policy",
        "limits",
        "mint",
        "upstream",
    ] {
        let s = named
            .get(stage)
            .unwrap_or_else(|| panic!("no {stage} span: {spans:#?}"));
        assert_eq!(
            s.parent_span_id, server.span_id,
            "{stage} is a child of the server span"
        );
    }
    let bind = named["ldap bind"];
    assert_eq!(bind.parent_span_id, named["authenticate"].span_id);
    let upstream = named["upstream"];
    assert_eq!(upstream.kind, 3, "client span kind");
    assert_eq!(
        upstream.span_id, parent,
        "the upstream's parent is the gateway's upstream span"
    );
    assert_eq!(upstream.attributes["http.response.status_code"], "200");
    assert_eq!(server.resource["service.name"], "portcullis");
    assert_eq!(
        server.resource["service.version"],
        env!("CARGO_PKG_VERSION")
    );
    assert!(server.resource.contains_key("service.instance.id"));
    // Nothing secret in any span: no password, no query value, no token.
    let dump = format!("{spans:?}");
    assert!(!dump.contains("job-pass-1") && !dump.contains("acct=1"));
    assert!(rx.bad_requests.lock().unwrap().is_empty());

    let audit = audit_lines(dir, 1).await;
    assert_eq!(audit[0]["trace_id"], TP_TRACE);

    // Hostile twins: a malformed traceparent (upper case), two traceparents, a zero trace id:
    // each starts a new trace, and the upstream never sees the caller's value.
    let forged = [
        vec![(
            "traceparent",
            traceparent(&TP_TRACE.to_uppercase(), TP_SPAN),
        )],
        vec![
            ("traceparent", traceparent(TP_TRACE, TP_SPAN)),
            (
                "traceparent",
                traceparent("11111111111111111111111111111111", TP_SPAN),
            ),
        ],
        vec![(
            "traceparent",
            traceparent("00000000000000000000000000000000", TP_SPAN),
        )],
    ];
    for (i, headers) in forged.into_iter().enumerate() {
        assert_eq!(get(headers).await, 200);
        let tp = upstream_tp(&up).unwrap();
        let (trace, _, _) = parse(&tp);
        assert_ne!(trace.to_lowercase(), TP_TRACE, "case {i}");
        assert_ne!(trace, "11111111111111111111111111111111", "case {i}");
        assert_eq!(up.last().headers.get_all("traceparent").iter().count(), 1);
        let audit = audit_lines(dir, i + 2).await;
        assert_eq!(audit[i + 1]["trace_id"], trace.as_str(), "case {i}");
        // 7: the password is in the bind cache now, so no `ldap bind` span.
        let new = rx.trace(&trace, 7).await;
        assert!(!by_name(&new).contains_key("ldap bind"));
        assert_eq!(
            by_name(&new)["GET cics-payments"].parent_span_id,
            "",
            "case {i}: a root"
        );
    }

    // A refusal is traced too: the authenticate span carries the reason, the server span ends.
    let refused = client
        .get(format!("{base}/cics/payments/batch"))
        .header("authorization", basic("GWJOB01", "wrong-password"))
        .header(
            "traceparent",
            traceparent("22222222222222222222222222222222", TP_SPAN),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 401);
    let spans = rx.trace("22222222222222222222222222222222", 4).await;
    let named = by_name(&spans);
    assert_eq!(
        named["authenticate"].attributes["portcullis.reason"],
        "invalid-credential"
    );
    assert!(!named.contains_key("upstream"));

    let metrics = scrape(&gw).await;
    assert!(sample(&metrics, "portcullis_otel_spans_exported_total").unwrap() >= 24.0);
    assert_eq!(
        sample(&metrics, "portcullis_otel_spans_dropped_total"),
        Some(0.0)
    );
    gw.stop().await;
    ldap.stop();
}

/// `trust_incoming_traceparent = false`: with tracing on, a new trace and the gateway's own
/// `traceparent` (the caller's `tracestate` dropped); with tracing off, both headers stripped.
/// Tracing off and trusted: passed through untouched, and the audit line joins the trace.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_untrusted_traceparent_never_reaches_the_upstream() {
    let rx = Receiver::start().await;
    let up = Upstream::start().await;
    let caller = traceparent(TP_TRACE, TP_SPAN);
    for (telemetry, trusted) in [
        (
            format!(
                "otlp_endpoint = \"{}\"\ntrust_incoming_traceparent = false",
                rx.endpoint()
            ),
            false,
        ),
        ("trust_incoming_traceparent = false".to_owned(), false),
        (String::new(), true),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let routes = format!(
            "\n[telemetry]\n{telemetry}\n{}",
            route("legacy", "/", &up.url(), "")
        );
        let gw = start_in_process(d, &base_config(d, "", "", &routes)).await;
        let r = reqwest::Client::new()
            .get(format!("http://{}/x", gw.data_addr))
            .header("traceparent", &caller)
            .header("tracestate", "vendor=forged")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{telemetry}");
        let seen = up.last().headers;
        let audit = audit_lines(d, 1).await;
        match (telemetry.contains("otlp_endpoint"), trusted) {
            (true, _) => {
                let (trace, _, _) = parse(seen["traceparent"].to_str().unwrap());
                assert_ne!(trace, TP_TRACE);
                assert!(seen.get("tracestate").is_none());
                assert_eq!(audit[0]["trace_id"], trace.as_str());
                let spans = rx.trace(&trace, 3).await;
                assert_eq!(by_name(&spans)["GET legacy"].parent_span_id, "");
            }
            (false, false) => {
                assert!(seen.get("traceparent").is_none() && seen.get("tracestate").is_none());
                assert!(audit[0]["trace_id"].is_null());
            }
            (false, true) => {
                assert_eq!(seen["traceparent"], caller.as_str());
                assert_eq!(seen["tracestate"], "vendor=forged");
                assert_eq!(audit[0]["trace_id"], TP_TRACE);
            }
        }
        gw.stop().await;
    }
}

/// Spans still queued when the gateway stops are sent before it exits, and the exporter does
/// not hold the exit up: the gateway closes its queue after the drain, and it sends what is
/// left at once (it used to wait out its 5 s shutdown allowance, the tracer still alive).
#[tokio::test]
async fn spans_still_queued_at_sigterm_are_exported_before_the_gateway_exits() {
    let rx = Receiver::start().await;
    let up = Upstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let routes = traced_routes(&rx.endpoint(), "", "legacy", &up.url());
    let gw = Proc::spawn(d, &base_config(d, "", "", &routes));
    let client = reqwest::Client::new();
    let traces: Vec<String> = (1..=3u8)
        .map(|i| format!("{:032x}", 0x4bf9_2f35_77b3_4da6_u128 * 1000 + u128::from(i)))
        .collect();
    for trace in &traces {
        let r = client
            .get(format!("http://{}/x", gw.data_addr))
            .header("traceparent", traceparent(trace, TP_SPAN))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    gw.signal("-TERM");
    let stopping = Instant::now();
    let log = gw.exits_cleanly_within(Duration::from_secs(15)).await;
    assert!(!log.contains("did not finish in time"), "{log}");
    assert!(
        stopping.elapsed() < Duration::from_secs(4),
        "exit took {:?}",
        stopping.elapsed()
    );
    // The process is gone: what it exported has arrived, nothing more will.
    for trace in &traces {
        let names: Vec<String> = rx.received(trace).into_iter().map(|s| s.name).collect();
        assert!(
            names.iter().any(|n| n == "GET legacy") && names.iter().any(|n| n == "upstream"),
            "trace {trace}: {names:?}"
        );
    }
}

/// A collector that refuses connections, or accepts and never answers: requests are as fast as
/// ever, and every lost span is counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_collector_down_or_hung_costs_requests_nothing_and_drops_are_counted() {
    let up = Upstream::start().await;
    let (_held, closed) = refusing_addr();
    // Accepts connections and never reads or answers.
    let hung = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hung_addr = hung.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = hung.accept().await {
            held.push(s);
        }
    });
    let mut gateways = Vec::new();
    for addr in [closed, hung_addr] {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let routes = traced_routes(&format!("http://{addr}"), "", "legacy", &up.url());
        let gw = start_in_process(d, &base_config(d, "", "", &routes)).await;
        let http = reqwest::Client::new();
        for _ in 0..20 {
            let started = Instant::now();
            let r = http
                .get(format!("http://{}/x", gw.data_addr))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
            assert!(
                started.elapsed() < Duration::from_secs(1),
                "{addr}: a request waited"
            );
        }
        gateways.push((gw, dir));
    }
    // Each request makes 7 spans (server, route, authenticate, policy, limits, mint, upstream):
    // 140 per gateway. The refused one fails fast; the hung one times out (10 s), then drops.
    for (gw, _dir) in &gateways {
        let mut dropped = 0.0;
        for _ in 0..150 {
            dropped = sample(&scrape(gw).await, "portcullis_otel_spans_dropped_total").unwrap();
            if dropped >= 140.0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(dropped, 140.0);
        let m = scrape(gw).await;
        assert_eq!(
            sample(&m, "portcullis_otel_spans_exported_total"),
            Some(0.0)
        );
    }
    for (gw, _dir) in gateways {
        gw.stop().await;
    }
}

/// `sample_ratio = 0`: nothing is recorded for new traces, yet the upstream still gets a
/// (not sampled) `traceparent` and the audit line a trace id; a caller's sampled trace is
/// recorded (the caller decided).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sample_ratio_zero_records_only_traces_the_caller_sampled() {
    let rx = Receiver::start().await;
    let up = Upstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let routes = traced_routes(&rx.endpoint(), "sample_ratio = 0.0\n", "legacy", &up.url());
    let gw = start_in_process(d, &base_config(d, "", "", &routes)).await;
    let http = reqwest::Client::new();
    let url = format!("http://{}/x", gw.data_addr);
    assert_eq!(http.get(&url).send().await.unwrap().status(), 200);
    let (trace, _, flags) = parse(&upstream_tp(&up).unwrap());
    assert_eq!(flags, "00");
    assert_eq!(audit_lines(d, 1).await[0]["trace_id"], trace.as_str());
    // A caller's unsampled trace: continued (same trace id, the flag still off) with a span id
    // of the gateway's, never the caller's own, and nothing recorded for it.
    let unsampled = "5bf92f3577b34da6a3ce929d0e0e4736";
    let r = http
        .get(&url)
        .header("traceparent", format!("00-{unsampled}-{TP_SPAN}-00"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let (t, parent, flags) = parse(&upstream_tp(&up).unwrap());
    assert_eq!((t.as_str(), flags.as_str()), (unsampled, "00"));
    assert_ne!(parent, TP_SPAN);
    assert_eq!(audit_lines(d, 2).await[1]["trace_id"], unsampled);
    let r = http
        .get(&url)
        .header("traceparent", traceparent(TP_TRACE, TP_SPAN))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(parse(&upstream_tp(&up).unwrap()).2, "01");
    rx.trace(TP_TRACE, 3).await;
    assert!(rx
        .spans
        .lock()
        .unwrap()
        .iter()
        .all(|s| s.trace_id != trace && s.trace_id != unsampled));
    gw.stop().await;
}

/// An `https://` collector is verified against the system roots (here `SSL_CERT_FILE`, which
/// the system-root loader honours): trusted, the spans arrive over TLS; a collector whose
/// certificate the gateway does not trust gets nothing, and the requests do not notice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_https_collector_is_verified_against_the_system_roots() {
    let pki = Pki::new();
    let d = pki.dir.path();
    let rx = Receiver::start_tls(&pki.path("gateway.pem"), &pki.path("gateway.key")).await;
    assert!(rx.endpoint().starts_with("https://"));
    let up = Upstream::start().await;
    let other = portcullis::devcert::DevCa::new("another CA").unwrap();
    std::fs::write(d.join("other-ca.pem"), other.cert_pem()).unwrap();
    for (roots, trusted, trace) in [
        ("ca.pem", true, "33333333333333333333333333333333"),
        ("other-ca.pem", false, "44444444444444444444444444444444"),
    ] {
        let sub = tempfile::tempdir().unwrap();
        let toml = base_config(
            sub.path(),
            "",
            "",
            &traced_routes(&rx.endpoint(), "", "r", &up.url()),
        );
        let path = sub.path().join("portcullis.toml");
        std::fs::write(&path, toml).unwrap();
        let (child, _rest, lines) = serve_json(&path, &[("SSL_CERT_FILE", &pki.path(roots))]);
        let at = |k: &str| -> std::net::SocketAddr {
            lines.last().unwrap()[k].as_str().unwrap().parse().unwrap()
        };
        let (data, admin) = (at("data_addr"), at("admin_addr"));
        let started = Instant::now();
        let r = reqwest::Client::new()
            .get(format!("http://{data}/x"))
            .header("traceparent", traceparent(trace, TP_SPAN))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert!(started.elapsed() < Duration::from_secs(1));
        if trusted {
            rx.trace(trace, 3).await;
        } else {
            let mut dropped = 0.0;
            for _ in 0..100 {
                let m = reqwest::get(format!("http://{admin}/metrics"))
                    .await
                    .unwrap()
                    .text()
                    .await
                    .unwrap();
                dropped = sample(&m, "portcullis_otel_spans_dropped_total").unwrap();
                if dropped > 0.0 {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            assert!(dropped >= 3.0, "{dropped}");
            assert!(rx.spans.lock().unwrap().iter().all(|s| s.trace_id != trace));
        }
        drop(child);
    }
}
