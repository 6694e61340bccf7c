//! Proxying through TLS over HTTP/1.1 and h2 to a real upstream; header hygiene; upstream
//! failures; pass-through of upstream statuses; audit lines.

use std::time::Duration;

use crate::support::*;

async fn setup(
    listen_extra: &str,
    extra_routes: &str,
) -> (Pki, Upstream, portcullis::server::Running) {
    let pki = Pki::new();
    let up = Upstream::start().await;
    let routes = format!(
        "{}{}",
        route(
            "api",
            "/api",
            &up.url(),
            "[routes.limits]\nmax_body = \"64KiB\""
        ),
        extra_routes
    );
    let toml = base_config(pki.dir.path(), listen_extra, &pki.tls_section(), &routes);
    let gw = start_in_process(pki.dir.path(), &toml).await;
    (pki, up, gw)
}

#[tokio::test]
async fn http1_and_h2_through_tls_reach_the_upstream() {
    let (pki, up, gw) = setup("", "").await;
    for (h1, version) in [
        (true, http::Version::HTTP_11),
        (false, http::Version::HTTP_2),
    ] {
        let client = pki.client(h1);
        let resp = client
            .post(format!(
                "https://localhost:{}/api/orders/42?x=1&y=two",
                gw.data_addr.port()
            ))
            .header("x-request-id", "caller-id.123")
            .body("hello")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.version(), version);
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.headers()["x-request-id"], "caller-id.123");
        assert_eq!(resp.headers()["x-upstream"], "yes");
        let seen = up.last();
        assert_eq!(seen.method, "POST");
        assert_eq!(seen.path_and_query, "/api/orders/42?x=1&y=two");
        assert_eq!(seen.body_bytes, 5);
        assert_eq!(seen.headers["x-request-id"], "caller-id.123");
        let fwd = seen.headers["forwarded"].to_str().unwrap();
        assert!(fwd.starts_with("for=\"127.0.0.1:"), "{fwd}");
        assert!(fwd.contains(";proto=https;host=\"localhost\""), "{fwd}");
        assert_eq!(seen.headers["x-forwarded-for"], "127.0.0.1");
        assert_eq!(seen.headers["x-forwarded-proto"], "https");
        assert_eq!(seen.headers["host"], up.addr.to_string().as_str());
    }
    gw.stop().await;
}

#[tokio::test]
async fn request_ids_are_generated_when_absent_or_malformed() {
    let (pki, up, gw) = setup("", "").await;
    let client = pki.client(true);
    let url = format!("https://localhost:{}/api/x", gw.data_addr.port());
    let a = client.get(&url).send().await.unwrap();
    let generated = a.headers()["x-request-id"].to_str().unwrap().to_string();
    assert_eq!(generated.len(), 32);
    assert!(
        generated
            .bytes()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()),
        "{generated}"
    );
    assert_eq!(up.last().headers["x-request-id"], generated.as_str());
    let b = client
        .get(&url)
        .header("x-request-id", "bad id with spaces")
        .send()
        .await
        .unwrap();
    let replaced = b.headers()["x-request-id"].to_str().unwrap();
    assert_ne!(replaced, "bad id with spaces");
    assert_eq!(replaced.len(), 32);
    gw.stop().await;
}

#[tokio::test]
async fn upstream_statuses_pass_through_unchanged() {
    let (pki, _up, gw) = setup("", "").await;
    let client = pki.client(true);
    for code in [401u16, 403, 429, 500] {
        let resp = client
            .get(format!(
                "https://localhost:{}/api/s?status={code}",
                gw.data_addr.port()
            ))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), code);
        assert_eq!(resp.headers()["x-upstream"], "yes");
        if code == 401 {
            assert_eq!(resp.headers()["www-authenticate"], "Basic realm=\"legacy\"");
        }
        if code == 429 {
            assert_eq!(resp.headers()["retry-after"], "7");
        }
        assert!(resp
            .text()
            .await
            .unwrap()
            .starts_with("{\"received_bytes\""));
    }
    gw.stop().await;
}

#[tokio::test]
async fn upstream_down_is_502_and_slow_is_504() {
    // Nothing listens there (the port is held, so no other test's listener takes it).
    let (_held, dead) = refusing_addr();
    let extra = route("dead", "/dead", &format!("http://{dead}"), "");
    let (pki, _up, gw) = setup("", &extra).await;
    let client = pki.client(true);
    let base = format!("https://localhost:{}", gw.data_addr.port());

    let resp = client.get(format!("{base}/dead/x")).send().await.unwrap();
    assert_eq!(resp.status(), 502);
    assert_eq!(resp.headers()["content-type"], "application/problem+json");
    let p: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(p["type"], "urn:portcullis:upstream-unavailable");
    assert_eq!(p["status"], 502);

    // The route timeout is 2s (see support::route); the upstream sleeps 5s.
    let started = std::time::Instant::now();
    let resp = client
        .get(format!("{base}/api/slow?sleep_ms=5000"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 504);
    assert!(started.elapsed() < Duration::from_millis(4500));
    let p: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(p["type"], "urn:portcullis:upstream-timeout");
    assert!(p["request_id"].as_str().unwrap().len() == 32);
    gw.stop().await;
}

#[tokio::test]
async fn routing_by_host_prefix_and_method() {
    let pki = Pki::new();
    let up = Upstream::start().await;
    let routes = format!(
        "{}{}{}",
        route("general", "/svc", &up.url(), ""),
        RouteToml::new("admin-get", "/svc/admin", &up.url()).methods(&["GET"]),
        RouteToml::new("hosted", "/svc", &up.url()).host("*.corp.example"),
    );
    let toml = base_config(pki.dir.path(), "", "", &routes);
    let gw = start_in_process(pki.dir.path(), &toml).await;
    let client = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{}", gw.data_addr.port());

    // The most specific prefix decides; a method it does not allow is 405, not a fall-through.
    let r = client
        .delete(format!("{base}/svc/admin/users"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 405);
    assert_eq!(r.headers()["allow"], "GET");
    assert_eq!(
        client
            .get(format!("{base}/svc/admin/users"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    // Segment boundaries: /svcx is not under /svc.
    assert_eq!(
        client
            .get(format!("{base}/svcx"))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
    assert_eq!(
        client
            .get(format!("{base}/svc"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    // Host routing: the wildcard host route wins for its hosts.
    let r = client
        .get(format!("{base}/svc/a"))
        .header("host", "api.corp.example")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // The audit writer is asynchronous: wait for this request's line, not for a count.
    let mut routed = None;
    for _ in 0..100 {
        let lines = audit_lines(pki.dir.path(), 1).await;
        if let Some(l) = lines.iter().find(|l| l["path"] == "/svc/a") {
            routed = Some(l["route"].clone());
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(routed.expect("no audit line for /svc/a"), "hosted");
    gw.stop().await;
}

#[tokio::test]
async fn every_request_is_audited_with_query_values_redacted() {
    let (pki, _up, gw) = setup("", "").await;
    let client = pki.client(true);
    let base = format!("https://localhost:{}", gw.data_addr.port());
    client
        .get(format!("{base}/api/a?api_key=s3cr3t-value&n=1"))
        .send()
        .await
        .unwrap();
    client.get(format!("{base}/nope")).send().await.unwrap();
    let lines = audit_lines(pki.dir.path(), 2).await;
    let ok = &lines[0];
    assert_eq!(ok["route"], "api");
    assert_eq!(ok["decision"], "allow");
    assert_eq!(ok["reason"], "ok");
    assert_eq!(ok["status"], 200);
    assert_eq!(ok["upstream_status"], 200);
    assert_eq!(ok["path"], "/api/a?api_key=REDACTED&n=REDACTED");
    assert!(ok["source"].as_str().unwrap().starts_with("127.0.0.1:"));
    assert!(ok["ts"].as_str().unwrap().ends_with('Z'));
    let denied = &lines[1];
    assert_eq!(denied["decision"], "deny");
    assert_eq!(denied["reason"], "no-route");
    assert_eq!(denied["status"], 404);
    let all = std::fs::read_to_string(pki.dir.path().join("audit.jsonl")).unwrap();
    assert!(!all.contains("s3cr3t-value"));
    gw.stop().await;
}
