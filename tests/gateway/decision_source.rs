//! Decision mode's caller address (issue 18, `docs/decision-mode.md`, "The caller"): the TCP peer
//! is the front proxy; the caller's address is the last `X-Forwarded-For` element, the one the
//! trusted proxy writes. Real nginx (`auth_request`, the documented config and its
//! `$proxy_add_x_forwarded_for` variant) and Caddy (`forward_auth`) sit in front; callers connect
//! to them from distinct loopback addresses (127.0.0.2, 127.0.0.3) and forge every address
//! header a proxy might pass through. Cedar's `context.source_ip`, the failed-authentication
//! throttle and the audit line's `source` must all see the real address, never the forged one.

use std::net::IpAddr;
use std::path::Path;

use serde_json::Value;

use crate::front_proxies::{Front, NGINX_SITE};
use crate::support::*;

const ACME: &str = "pcs_source_acme_7c2d9e4f1a3b5c6d8e0f";
const ACME_ID: &str = "spiffe://corp.example/partner/acme";
const ATTACKER: [u8; 4] = [127, 0, 0, 2];
const INSIDER: [u8; 4] = [127, 0, 0, 3];

/// The gateway (TLS, decision mode for 127.0.0.1, three wrong credentials a minute per source)
/// and its upstream. `/partner/` admits every partner key; `/inside/` only callers at 127.0.0.3
/// or at the proxy's own address (a rule written for the "internal" hosts).
async fn lab() -> (Pki, Upstream, portcullis::server::Running) {
    let pki = Pki::new();
    let dir = pki.dir.path();
    write_api_keys(dir, &[("acme", ACME_ID, ACME)]);
    std::fs::write(
        dir.join("inside.cedar"),
        "permit (principal, action, resource) when {\n  context.source_ip.isInRange(ip(\"127.0.0.3/32\")) ||\n  context.source_ip.isInRange(ip(\"127.0.0.1/32\"))\n};\n",
    )
    .unwrap();
    let up = Upstream::start().await;
    let u = up.url();
    let routes = format!(
        "{ISSUER}\n[decision]\ntrusted_proxies = [\"127.0.0.1/32\"]\n{keys}{partner}{inside}",
        keys = partner_keys(dir),
        partner = partner_route(
            "partner",
            r#"path_prefix = "/partner/""#,
            ALLOW_PARTNERS,
            &u,
            "",
            ""
        ),
        inside = partner_route(
            "inside",
            r#"path_prefix = "/inside/""#,
            &format!("policy = \"{}\"", dir.join("inside.cedar").display()),
            &u,
            "",
            ""
        ),
    );
    let toml = base_config(
        dir,
        "max_auth_failures = \"3/m\"",
        &pki.tls_section(),
        &routes,
    );
    let gw = start_in_process(dir, &toml).await;
    (pki, up, gw)
}

/// A client of the front proxy whose connections come from `from`.
fn client_from(from: [u8; 4]) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(IpAddr::from(from))
        .build()
        .unwrap()
}

/// Every address header a caller could hope a proxy passes through, each naming `forged`.
fn forged(rb: reqwest::RequestBuilder, forged: &str, i: usize) -> reqwest::RequestBuilder {
    match i % 4 {
        0 => rb.header("x-forwarded-for", forged),
        // Two lines: a proxy that appends its own line would leave the caller's last.
        1 => rb
            .header("x-forwarded-for", "198.51.100.7")
            .header("x-forwarded-for", forged),
        2 => rb
            .header("x-real-ip", forged)
            .header("forwarded", format!("for={forged}"))
            .header("true-client-ip", forged),
        _ => rb.header("x-forwarded-for", format!("{forged}, {forged}")),
    }
}

async fn get(c: &reqwest::Client, front: &Front, path: &str, key: &str) -> (u16, String) {
    let r = c
        .get(front.url(path))
        .header("x-api-key", key)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

async fn get_forged(
    c: &reqwest::Client,
    front: &Front,
    path: &str,
    key: &str,
    addr: &str,
    i: usize,
) -> u16 {
    forged(c.get(front.url(path)).header("x-api-key", key), addr, i)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

fn sources(audit: &[Value]) -> Vec<String> {
    audit
        .iter()
        .map(|l| l["source"].as_str().unwrap_or_default().to_owned())
        .collect()
}

/// The cases every front proxy must get right.
async fn a_forged_address_changes_nothing(front: &Front, up: &Upstream, dir: &Path) {
    let attacker = client_from(ATTACKER);
    let insider = client_from(INSIDER);

    // Policy: the attacker names the insider's address, then the proxy's own; each is refused
    // (Cedar sees 127.0.0.2). The insider itself is let through.
    for (i, addr) in ["127.0.0.3", "127.0.0.1"].iter().enumerate() {
        for j in 0..4 {
            let s = get_forged(&attacker, front, "/inside/x", ACME, addr, i * 4 + j).await;
            assert_eq!(
                s, 403,
                "forged {addr} (variant {j}) passed the source_ip policy"
            );
        }
    }
    assert_eq!(up.count(), 0);
    assert_eq!(get(&insider, front, "/inside/x", ACME).await.0, 200);
    assert_eq!(up.count(), 1);

    // Throttle: wrong keys under the insider's address, each forged another way, are charged to
    // the attacker's; its fourth request is refused before its key is looked at, while the
    // insider it named keeps working.
    for i in 0..3 {
        let s = get_forged(
            &attacker,
            front,
            "/partner/x",
            "pcs_wrong_key_00000000",
            "127.0.0.3",
            i,
        )
        .await;
        assert_eq!(s, 401, "wrong key {i}");
    }
    let s = get_forged(&attacker, front, "/partner/x", ACME, "127.0.0.3", 3).await;
    assert_eq!(
        s, 429,
        "the attacker escaped the throttle by naming another address"
    );
    // Rotating the forged address does not reset it either.
    let s = get_forged(&attacker, front, "/partner/x", ACME, "203.0.113.77", 0).await;
    assert_eq!(s, 429);
    let (s, body) = get(&insider, front, "/partner/x", ACME).await;
    assert_eq!(
        s, 200,
        "the insider was throttled for the attacker's failures: {body}"
    );
    assert_eq!(up.count(), 2);

    // Audit: every line carries the real address; the forged ones appear nowhere.
    let audit = audit_lines(dir, 15).await;
    let srcs = sources(&audit);
    assert!(audit.iter().all(|l| l["mode"] == "decision"), "{audit:?}");
    let attacker_lines = srcs.iter().filter(|s| *s == "127.0.0.2:0").count();
    let insider_lines = srcs.iter().filter(|s| *s == "127.0.0.3:0").count();
    assert_eq!((attacker_lines, insider_lines), (13, 2), "{srcs:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nginx_a_callers_forged_forwarded_for_is_ignored() {
    let (pki, up, gw) = lab().await;
    let gw_url = format!("https://127.0.0.1:{}", gw.data_addr.port());
    let front = Front::nginx(pki.dir.path(), &gw_url, &up.url(), &pki.path("ca.pem"));
    a_forged_address_changes_nothing(&front, &up, pki.dir.path()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nginx_appending_to_forwarded_for_leaves_the_caller_no_say() {
    // The common nginx line: the caller's own X-Forwarded-For, then its real address.
    let site = NGINX_SITE.replace(
        "X-Forwarded-For $remote_addr;",
        "X-Forwarded-For $proxy_add_x_forwarded_for;",
    );
    assert_ne!(site, NGINX_SITE);
    let (pki, up, gw) = lab().await;
    let gw_url = format!("https://127.0.0.1:{}", gw.data_addr.port());
    let front = Front::nginx_site(
        pki.dir.path(),
        &site,
        &gw_url,
        &up.url(),
        &pki.path("ca.pem"),
    );
    a_forged_address_changes_nothing(&front, &up, pki.dir.path()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn caddy_a_callers_forged_forwarded_for_is_ignored() {
    let (pki, up, gw) = lab().await;
    let gw_url = format!("https://127.0.0.1:{}", gw.data_addr.port());
    let front = Front::caddy(pki.dir.path(), &gw_url, &up.url(), &pki.path("ca.pem"));
    a_forged_address_changes_nothing(&front, &up, pki.dir.path()).await;
}

#[tokio::test]
async fn a_forwarded_for_without_an_address_is_refused_not_read_as_the_proxy() {
    // Straight from the trusted peer (as a proxy that passes the caller's header through would
    // send it): a last element that is no address must not make the caller the proxy itself,
    // which `/inside/` admits.
    let (pki, up, gw) = lab().await;
    let c = reqwest::Client::builder()
        .use_preconfigured_tls(pki.client_config())
        .build()
        .unwrap();
    let url = format!(
        "https://localhost:{}/.portcullis/decide",
        gw.data_addr.port()
    );
    for xff in ["unknown", "unix:", "127.0.0.3, ", "127.0.0.3, _hidden"] {
        let r = c
            .get(&url)
            .header("x-forwarded-method", "GET")
            .header("x-forwarded-uri", "/inside/x")
            .header("x-forwarded-host", "api.corp.example")
            .header("x-forwarded-for", xff)
            .header("x-api-key", ACME)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "{xff:?}");
        assert_eq!(r.headers()["content-type"], "application/problem+json");
        let p: Value = r.json().await.unwrap();
        assert!(
            p["detail"].as_str().unwrap().contains("X-Forwarded-For"),
            "{p}"
        );
    }
    // The same request with the caller's address: decided as usual (a 200 for the proxy to act
    // on; nothing is forwarded in decision mode).
    let r = c
        .get(&url)
        .header("x-forwarded-method", "GET")
        .header("x-forwarded-uri", "/inside/x")
        .header("x-forwarded-host", "api.corp.example")
        .header("x-forwarded-for", "127.0.0.3")
        .header("x-api-key", ACME)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(up.count(), 0);
}

/// A decision request as Envoy's ext_authz sends it with `with_request_body`, for `caller`, with
/// `sent` of the `declared` bytes of a JSON body.
fn envoy_with_body(caller: &str, declared: usize, sent: usize) -> Vec<u8> {
    // `connection: close`: the answer ends the exchange at once (the held body must not time
    // out while the test waits for a keep-alive connection to close).
    let pad = declared - r#"{"pad":""}"#.len();
    let body = format!(r#"{{"pad":"{}"}}"#, "x".repeat(pad));
    let mut req = format!(
        "POST /.portcullis/decide/any/x HTTP/1.1\r\nhost: api.corp.example\r\ncontent-type: application/json\r\ncontent-length: {declared}\r\nx-forwarded-for: {caller}\r\nconnection: close\r\n\r\n"
    )
    .into_bytes();
    req.extend_from_slice(&body.as_bytes()[..sent]);
    req
}

#[tokio::test]
async fn buffered_bodies_count_against_the_callers_cap_not_the_proxys() {
    use tokio::io::AsyncWriteExt as _;
    let dir = tempfile::tempdir().unwrap();
    let up = Upstream::start().await;
    let routes = format!(
        "\n[decision]\ntrusted_proxies = [\"127.0.0.1/32\"]\n\n[[routes]]\nname = \"any\"\nmatch = {{ path_prefix = \"/any/\" }}\n[routes.upstream]\nurl = \"{}\"\n[routes.validate]\ncontent_types = [\"application/json\"]\n",
        up.url()
    );
    let listen = "body_timeout = \"20s\"\nbody_min_rate = \"off\"\nmax_buffered_bodies = \"1MiB\"\nmax_buffered_per_source = \"8KiB\"";
    let gw = start_in_process(dir.path(), &base_config(dir.path(), listen, "", &routes)).await;
    let ask = |req: Vec<u8>| async move {
        raw_exchange(gw.data_addr, &req, std::time::Duration::from_secs(5))
            .await
            .0
    };

    // Caller A holds 7 KiB of its 8 KiB through the proxy's connection...
    let mut held = tokio::net::TcpStream::connect(gw.data_addr).await.unwrap();
    held.write_all(&envoy_with_body("10.0.0.1", 10_000, 7_000))
        .await
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    // ...caller B, behind the same proxy, is not refused for it...
    let b = ask(envoy_with_body("10.0.0.2", 2_000, 2_000)).await;
    assert!(b.starts_with("HTTP/1.1 200"), "{b}");
    // ...while A's next body is refused against its own cap.
    let a = ask(envoy_with_body("10.0.0.1", 2_000, 2_000)).await;
    assert!(a.starts_with("HTTP/1.1 503"), "{a}");
    assert!(a.contains("urn:portcullis:overloaded"), "{a}");
    drop(held);
    gw.stop().await;
}
