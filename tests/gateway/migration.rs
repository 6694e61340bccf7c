//! A migration plan in front of an API-key integration, driven through its phases by a fake
//! clock: observe forwards the original credential, bridge translates it and announces the
//! sunset, enforce refuses it; a revocation through the admin API takes effect on the next
//! request; usage survives a restart.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use portcullis::clock::FakeClock;
use serde_json::Value;

use crate::support::*;

const KEY: &str = "pcs_migration_test_key_0123456789abcdef";

fn day(unix_days: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(unix_days * 86400 + 12 * 3600)
}

// 2026-11-01 = day 20758; 2026-12-01 = 20788; 2027-03-01 = 20878.
const OBSERVE_DAY: u64 = 20765;
const BRIDGE_DAY: u64 = 20795;
const ENFORCE_DAY: u64 = 20885;

async fn start(pki: &Pki, up: &Upstream, clock: Arc<FakeClock>) -> portcullis::server::Running {
    let dir = pki.dir.path();
    write_partner_plan(dir);
    write_api_keys(
        dir,
        &[("partner-acme", "spiffe://corp.example/partner/acme", KEY)],
    );
    let keys_credential = partner_keys(dir);
    let extra = format!(
        r#"{ISSUER}[state]
path = "{d}/state.db"
flush_every = "1s"
[migration]
plans_dir = "{d}/plans"
{keys_credential}{route}"#,
        d = dir.display(),
        route = RouteToml::new("partner", "/partner/", &up.url())
            .accept(&["partner-keys"])
            .allow(&["spiffe://corp.example/partner/*"])
            .key("plan = \"partner-api\"")
            .audience("partner-api"),
    );
    let path = dir.join("portcullis.toml");
    std::fs::write(&path, base_config(dir, "", &pki.tls_section(), &extra)).unwrap();
    portcullis::server::install_crypto();
    let cfg = portcullis::config::load(&path).unwrap_or_else(|e| panic!("{e}"));
    portcullis::server::start(cfg, portcullis::server::Options { clock })
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn phases_switch_by_date_and_revocation_and_usage_persist() {
    let pki = Pki::new();
    let up = Upstream::start().await;
    let clock = Arc::new(FakeClock::new(day(OBSERVE_DAY)));
    let gw = start(&pki, &up, clock.clone()).await;
    let base = format!("https://127.0.0.1:{}", gw.data_addr.port());
    let admin = format!("http://{}", gw.admin_addr);
    let client = pki.client(false);
    let get = |key: &'static str| {
        let c = client.clone();
        let url = format!("{base}/partner/orders");
        async move { c.get(url).header("x-api-key", key).send().await.unwrap() }
    };

    // observe: forwarded unchanged (the original key kept, no token), never blocking.
    let r = get(KEY).await;
    assert_eq!(r.status(), 200);
    let seen = up.last();
    assert_eq!(seen.headers["x-api-key"], KEY);
    assert!(seen.headers.get("authorization").is_none());
    assert_eq!(get("pcs_wrong").await.status(), 200, "observe never blocks");

    // bridge: translated, with the sunset announced.
    clock.set(day(BRIDGE_DAY));
    let r = get(KEY).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["deprecation"], "@1796083200");
    assert_eq!(r.headers()["sunset"], "Mon, 01 Mar 2027 00:00:00 GMT");
    assert_eq!(
        r.headers()["link"],
        "<https://wiki.corp.example/migrations/partner-api>; rel=\"sunset\""
    );
    let seen = up.last();
    assert!(seen.headers.get("x-api-key").is_none());
    assert!(seen.headers["authorization"]
        .to_str()
        .unwrap()
        .starts_with("Bearer "));
    assert_eq!(get("pcs_wrong").await.status(), 401);

    // enforce: the static key is retired.
    clock.set(day(ENFORCE_DAY));
    let r = get(KEY).await;
    assert_eq!(r.status(), 401);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["type"], "urn:portcullis:legacy-credential-retired");

    // Revocation (back in bridge): effective on the next request.
    clock.set(day(BRIDGE_DAY));
    let r = reqwest::Client::new()
        .post(format!("{admin}/admin/v1/revocations"))
        .header("content-type", "application/json")
        .body(r#"{"credential":"partner-keys:partner-acme","reason":"offboarded"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let r = get(KEY).await;
    assert_eq!(r.status(), 401);
    assert_eq!(
        r.json::<Value>().await.unwrap()["type"],
        "urn:portcullis:invalid-credential"
    );

    let audit = audit_lines(pki.dir.path(), 6).await;
    assert_eq!(audit[0]["decision"], "observe");
    assert_eq!(audit[0]["phase"], "observe");
    assert_eq!(audit[0]["plan"], "partner-api");
    assert_eq!(audit[1]["decision"], "shadow-deny");
    assert_eq!(audit[2]["phase"], "bridge");

    // Usage and the revocation survive a restart.
    gw.stop().await;
    let gw = start(&pki, &up, clock.clone()).await;
    let admin = format!("http://{}", gw.admin_addr);
    let inv: Value = reqwest::get(format!("{admin}/admin/v1/inventory"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(inv.to_string().contains("partner-acme"), "{inv}");
    let revs: Value = reqwest::get(format!("{admin}/admin/v1/revocations"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        revs.to_string().contains("partner-keys:partner-acme"),
        "{revs}"
    );
    let mig = reqwest::get(format!("{admin}/admin/v1/migration"))
        .await
        .unwrap();
    assert_eq!(mig.status(), 200);
    assert!(mig.text().await.unwrap().contains("partner-api"));
}
