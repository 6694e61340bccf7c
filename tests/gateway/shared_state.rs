//! Two gateways (two replicas) sharing one real `redis-server` through `[state] backend =
//! "redis"`: a webhook delivery accepted by one is refused as a replay by the other, a revocation
//! made through one gateway's admin API refuses the caller at the other, and the inventory counts
//! both gateways' traffic.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use hmac::{Hmac, Mac};
use serde_json::Value;

use crate::support::*;

#[path = "../../src/state/redis/tests/redis_server.rs"]
pub(crate) mod redis_server;
use redis_server::RedisServer;

const KEY: &str = "pcs_shared_state_test_key_0123456789abcdef";
pub(crate) const WHSEC: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

async fn gateway(
    pki: &Pki,
    up: &Upstream,
    redis: &RedisServer,
    n: u32,
) -> portcullis::server::Running {
    let shared = pki.dir.path();
    let dir = shared.join(format!("gw{n}"));
    std::fs::create_dir_all(&dir).unwrap();
    write_api_keys(
        shared,
        &[("partner-acme", "spiffe://corp.example/partner/acme", KEY)],
    );
    std::fs::write(shared.join("whsec"), format!("{WHSEC}\n")).unwrap();
    let extra = format!(
        r#"{ISSUER}[state]
backend = "redis"
url = "{redis}"
prefix = "shared-test:"
flush_every = "200ms"
{}{}{}"#,
        api_key_credential("partner-keys", shared, ""),
        billing_hooks_credential(&shared.join("whsec")),
        partner_and_hooks_routes(&up.url()),
        redis = redis.url(),
    );
    start_in_process(&dir, &base_config(&dir, "", &pki.tls_section(), &extra)).await
}

/// A Standard Webhooks signature (`v1,` base64 HMAC-SHA256 of `id.timestamp.body`).
pub(crate) fn sign(id: &str, ts: u64, body: &str) -> String {
    let b64 = base64::engine::general_purpose::STANDARD;
    let key = b64.decode(WHSEC.trim_start_matches("whsec_")).unwrap();
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(&key).unwrap();
    mac.update(format!("{id}.{ts}.{body}").as_bytes());
    format!("v1,{}", b64.encode(mac.finalize().into_bytes()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_share_replay_memory_revocations_and_inventory() {
    let mut redis = RedisServer::start();
    let pki = Pki::new();
    let up = Upstream::start().await;
    let gw1 = gateway(&pki, &up, &redis, 1).await;
    let gw2 = gateway(&pki, &up, &redis, 2).await;
    let base1 = format!("https://127.0.0.1:{}", gw1.data_addr.port());
    let base2 = format!("https://127.0.0.1:{}", gw2.data_addr.port());
    let client = pki.client(false);

    // A webhook delivery accepted by gateway 1 is a replay at gateway 2.
    let body = r#"{"type":"invoice.paid","data":{"id":"in_123"}}"#;
    let ts = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let sig = sign("msg_shared_1", ts, body);
    let deliver = |base: &str| {
        client
            .post(format!("{base}/hooks/billing"))
            .header("content-type", "application/json")
            .header("webhook-id", "msg_shared_1")
            .header("webhook-timestamp", ts.to_string())
            .header("webhook-signature", sig.clone())
            .body(body)
            .send()
    };
    assert_eq!(deliver(&base1).await.unwrap().status(), 200);
    let hits = up.count();
    assert_eq!(
        deliver(&base2).await.unwrap().status(),
        401,
        "replayed to the other replica"
    );
    assert_eq!(up.count(), hits, "the replay never reached the upstream");

    // The API key works at both, then is revoked through gateway 1's admin API.
    let get = |base: &str| {
        client
            .get(format!("{base}/partner/orders"))
            .header("x-api-key", KEY)
            .send()
    };
    assert_eq!(get(&base1).await.unwrap().status(), 200);
    assert_eq!(get(&base2).await.unwrap().status(), 200);
    assert_eq!(get(&base2).await.unwrap().status(), 200);

    // Both gateways' traffic lands in one inventory (gateway 1 flushes every 200 ms).
    let admin2 = format!("http://{}", gw2.admin_addr);
    let start = Instant::now();
    loop {
        let inv: Value = reqwest::get(format!("{admin2}/admin/v1/inventory"))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let count = inv
            .to_string()
            .contains("partner-acme")
            .then(|| find_count(&inv, "partner-acme"))
            .flatten();
        if count == Some(3) {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "inventory never summed both replicas: {inv}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let r = reqwest::Client::new()
        .post(format!("http://{}/admin/v1/revocations", gw1.admin_addr))
        .header("content-type", "application/json")
        .body(r#"{"credential":"partner-keys:partner-acme","reason":"offboarded"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(
        get(&base1).await.unwrap().status(),
        401,
        "at once where revoked"
    );
    let start = Instant::now();
    loop {
        let r = get(&base2).await.unwrap();
        if r.status() == 401 {
            assert_eq!(
                r.json::<Value>().await.unwrap()["type"],
                "urn:portcullis:invalid-credential"
            );
            break;
        }
        assert_eq!(r.status(), 200);
        assert!(
            start.elapsed() < Duration::from_secs(1),
            "the other replica still serves a revoked caller"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    eprintln!(
        "revocation effective at the other gateway after {:?}",
        start.elapsed()
    );

    // Redis goes away: a replica can no longer vouch for its revocation set, so callers with
    // credentials get 503 (never a pass), and /readyz takes it out of the load balancer.
    redis.stop();
    let readyz = format!("{admin2}/readyz");
    let start = Instant::now();
    loop {
        let r = get(&base2).await.unwrap();
        if r.status() == 503 {
            assert!(r.headers().contains_key("retry-after"));
            assert_eq!(
                r.json::<Value>().await.unwrap()["type"],
                "urn:portcullis:directory-unavailable"
            );
            break;
        }
        assert_eq!(r.status(), 401);
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "still answering without its state backend"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(reqwest::get(&readyz).await.unwrap().status(), 503);
    redis.restart();
    let start = Instant::now();
    while reqwest::get(&readyz).await.unwrap().status() != 200 {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "did not recover after redis came back"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // This throwaway redis-server keeps nothing on disk, so the revocation went with it (in
    // production Redis must persist: deploy/kubernetes/redis.yaml). Revoking again through
    // gateway 1 reaches gateway 2 over the re-established channel.
    let r = reqwest::Client::new()
        .post(format!("http://{}/admin/v1/revocations", gw1.admin_addr))
        .header("content-type", "application/json")
        .body(r#"{"credential":"partner-keys:partner-acme","reason":"offboarded again"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let start = Instant::now();
    while get(&base2).await.unwrap().status() != 401 {
        assert!(
            start.elapsed() < Duration::from_secs(2),
            "revocation lost after recovery"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    gw1.stop().await;
    gw2.stop().await;
}

/// The `count` of the inventory entry whose principal is `principal`, wherever the admin API
/// nests it.
fn find_count(v: &Value, principal: &str) -> Option<u64> {
    match v {
        Value::Object(m) => {
            if m.get("principal").and_then(Value::as_str) == Some(principal) {
                return m.get("count").and_then(Value::as_u64);
            }
            m.values().find_map(|x| find_count(x, principal))
        }
        Value::Array(a) => a.iter().find_map(|x| find_count(x, principal)),
        _ => None,
    }
}
