//! Legacy credentials through the whole gateway: API keys (header and query parameter) and a
//! Standard Webhooks delivery signed by the `svix` SDK, translated to minted tokens; the static
//! secret never reaches the upstream, the audit log or the gateway's diagnostics.

use std::process::Command;

use base64::Engine as _;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::support::*;

const KEY: &str = "pcs_test_5f2b1c9e8d7a6b5c4d3e2f1a0b9c8d7e";
const OLD_KEY: &str = "pcs_test_expired_0000000000000000000000";
const WHSEC: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

async fn gateway(pki: &Pki, up: &Upstream) -> portcullis::server::Running {
    let dir = pki.dir.path();
    let hex = |k: &str| hex::encode(Sha256::digest(k.as_bytes()));
    std::fs::write(
        dir.join("keys.toml"),
        format!(
            r#"
[[keys]]
id = "partner-acme"
sha256 = "{}"
identity = "spiffe://corp.example/partner/acme"
owner = "acme integration team"

[[keys]]
id = "partner-old"
sha256 = "{}"
identity = "spiffe://corp.example/partner/old"
owner = "nobody"
expires = "2020-01-31"
"#,
            hex(KEY),
            hex(OLD_KEY)
        ),
    )
    .unwrap();
    std::fs::write(dir.join("whsec"), format!("{WHSEC}\n")).unwrap();
    let extra = format!(
        "{ISSUER}{}{}{}",
        api_key_credential(
            "partner-keys",
            dir,
            "header = \"X-API-Key\"\nquery_param = \"api_key\""
        ),
        billing_hooks_credential(&dir.join("whsec")),
        partner_and_hooks_routes(&up.url()),
    );
    start_in_process(dir, &base_config(dir, "", &pki.tls_section(), &extra)).await
}

fn claims(token: &str) -> Value {
    let payload = token.split('.').nth(1).unwrap();
    serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .unwrap(),
    )
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_keys_are_translated_and_never_forwarded_or_logged() {
    logs::capture();
    let pki = Pki::new();
    let up = Upstream::start().await;
    let gw = gateway(&pki, &up).await;
    let base = format!("https://127.0.0.1:{}", gw.data_addr.port());
    let client = pki.client(false);

    // Header form.
    let r = client
        .get(format!("{base}/partner/orders?page=2"))
        .header("x-api-key", KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let seen = up.last();
    assert!(seen.headers.get("x-api-key").is_none());
    let token = seen.headers["authorization"].to_str().unwrap()[7..].to_string();
    let c = claims(&token);
    assert_eq!(c["sub"], "spiffe://corp.example/partner/acme");
    assert_eq!(c["amr"], serde_json::json!(["api-key"]));
    assert_eq!(
        c["legacy"],
        serde_json::json!({"credential": "partner-keys", "principal": "partner-acme"})
    );

    // Query-parameter form (old clients): removed before forwarding, other parameters intact.
    let r = client
        .get(format!(
            "{base}/partner/orders?page=2&api_key={KEY}&sort=asc"
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(up.last().path_and_query, "/partner/orders?page=2&sort=asc");

    // Wrong and expired keys: 401 invalid-credential, upstream untouched.
    let hits = up.count();
    for k in ["pcs_wrong", OLD_KEY, ""] {
        let r = client
            .get(format!("{base}/partner/orders"))
            .header("x-api-key", k)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401, "key {k:?}");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["type"], "urn:portcullis:invalid-credential", "{body}");
    }
    let r = client
        .get(format!("{base}/partner/orders"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(
        r.json::<Value>().await.unwrap()["type"],
        "urn:portcullis:unauthenticated"
    );
    assert_eq!(up.count(), hits);

    // The audit log has the key id, never the key; the query value is redacted.
    let lines = audit_lines(pki.dir.path(), 6).await;
    assert!(lines
        .iter()
        .any(|l| l["principal"] == "partner-acme" && l["kind"] == "api-key"));
    assert!(lines.iter().any(|l| l["path"]
        .as_str()
        .is_some_and(|p| p.contains("api_key=REDACTED"))));
    let audit = std::fs::read_to_string(pki.dir.path().join("audit.jsonl")).unwrap();
    assert!(!audit.contains(KEY), "an API key reached the audit log");
    assert!(!audit.contains(OLD_KEY));
    assert!(
        !audit.contains(&token),
        "a minted token reached the audit log"
    );
    // Nor the diagnostics, at any level (the capture does see this test's refusals).
    assert!(logs::contains("API key refused"));
    logs::assert_absent(&[KEY, OLD_KEY, &token]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_signed_by_the_svix_sdk_is_verified_forwarded_unchanged_and_not_replayable() {
    logs::capture();
    let pki = Pki::new();
    let up = Upstream::start().await;
    let gw = gateway(&pki, &up).await;
    let base = format!("https://127.0.0.1:{}", gw.data_addr.port());
    let client = pki.client(false);
    let body = r#"{"type":"invoice.paid","data":{"id":"in_123","amount":4200}}"#;
    let out = Command::new("python3")
        .args([
            "-c",
            "import sys, datetime\nfrom svix.webhooks import Webhook\n\
             ts = datetime.datetime.now(tz=datetime.timezone.utc)\n\
             print(int(ts.timestamp()))\n\
             print(Webhook(sys.argv[1]).sign('msg_2Kx1', ts, sys.argv[2]))",
            WHSEC,
            body,
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let mut lines = text.lines();
    let (Some(ts), Some(sig)) = (lines.next(), lines.next()) else {
        panic!(
            "the svix SDK did not sign (scripts/test installs it): {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let send = |b: &'static str| {
        client
            .post(format!("{base}/hooks/billing"))
            .header("content-type", "application/json")
            .header("webhook-id", "msg_2Kx1")
            .header("webhook-timestamp", ts)
            .header("webhook-signature", sig)
            .body(b)
            .send()
    };
    let r = send(body).await.unwrap();
    assert_eq!(r.status(), 200);
    let seen = up.last();
    assert_eq!(seen.body_bytes, body.len() as u64, "forwarded unchanged");
    let c = claims(&seen.headers["authorization"].to_str().unwrap()[7..]);
    assert_eq!(c["sub"], "spiffe://corp.example/external/billing");
    assert_eq!(c["amr"], serde_json::json!(["webhook"]));
    // Replay of the same delivery, and a tampered body: refused before the upstream.
    let hits = up.count();
    assert_eq!(send(body).await.unwrap().status(), 401);
    let tampered = r#"{"type":"invoice.paid","data":{"id":"in_123","amount":9999}}"#;
    assert_eq!(send(tampered).await.unwrap().status(), 401);
    assert_eq!(up.count(), hits);
    audit_lines(pki.dir.path(), 3).await;
    let audit = std::fs::read_to_string(pki.dir.path().join("audit.jsonl")).unwrap();
    let mac = sig.split(',').nth(1).unwrap();
    assert!(
        mac.len() > 20 && !audit.contains(mac),
        "a signature reached the audit log"
    );
    assert!(logs::contains("webhook refused"));
    logs::assert_absent(&[mac, WHSEC, WHSEC.trim_start_matches("whsec_")]);
}
