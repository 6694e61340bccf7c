use std::time::Duration;

use super::*;
use crate::identity::Kind;
use crate::state::{EmbeddedStore, Usage};
use crate::time::Date;

fn at(day: &str, secs: u64) -> SystemTime {
    Date::parse(day).unwrap().midnight() + Duration::from_secs(secs)
}

#[tokio::test]
async fn revocations_round_trip_through_the_api() {
    let store = EmbeddedStore::in_memory().await.unwrap();
    let now = at("2026-12-01", 30);
    let (s, v) = revoke(
        &store,
        br#"{"credential":"racf:JSMITH","reason":"left"}"#,
        now,
        &Ok,
    )
    .await
    .unwrap();
    assert_eq!(s, StatusCode::CREATED);
    assert_eq!(v["target"], "credential:racf:JSMITH");
    assert!(store.is_revoked("spiffe://x", "racf", Some("JSMITH"), None));
    let (s, _) = revoke(
        &store,
        br#"{"credential":"racf:JSMITH","reason":"left, really"}"#,
        now,
        &Ok,
    )
    .await
    .unwrap();
    assert_eq!(s, StatusCode::OK);

    for body in [
        &br#"{"credential":"racf:JSMITH"}"#[..],
        br#"{"credential":"racf:JSMITH","reason":"  "}"#,
        br#"{"identity":"jsmith","reason":"r"}"#,
        br#"{"identity":"spiffe://a/b","jti":"x","reason":"r"}"#,
        br#"{"reason":"r"}"#,
        br#"{"jti":"x","reason":"r","extra":1}"#,
        br#"not json"#,
    ] {
        let refused = revoke(&store, body, now, &Ok).await.unwrap_err();
        assert_eq!(
            refused.code,
            Code::InvalidRequest,
            "{}",
            String::from_utf8_lossy(body)
        );
        assert!(!refused.detail.is_empty());
    }
    // Targets that can never match a caller: 422, with the reason.
    let no_racf = |t: Target| match &t {
        Target::Credential { name, .. } if name == "racf" => Ok(t),
        Target::Credential { name, .. } => Err(format!("no credential named {name}")),
        _ => Ok(t),
    };
    for body in [
        &br#"{"identity":"spiffe://a/b/","reason":"r"}"#[..],
        "{\"identity\":\"spiffe://a/\u{202e}b\",\"reason\":\"r\"}".as_bytes(),
        "{\"jti\":\"x\u{200b}\",\"reason\":\"r\"}".as_bytes(),
        br#"{"credential":"other:JSMITH","reason":"r"}"#,
    ] {
        let refused = revoke(&store, body, now, &no_racf).await.unwrap_err();
        assert_eq!(
            refused.code.status(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "{}",
            String::from_utf8_lossy(body)
        );
        assert!(!refused.detail.is_empty());
    }

    let v = revocations_json(&store).await.unwrap();
    assert_eq!(v["revocations"].as_array().unwrap().len(), 1);
    assert_eq!(v["revocations"][0]["reason"], "left, really");

    let (s, _) = unrevoke(&store, br#"{"credential":"racf:JSMITH"}"#, &Ok)
        .await
        .unwrap();
    assert_eq!(s, StatusCode::OK);
    assert!(!store.is_revoked("spiffe://x", "racf", Some("JSMITH"), None));
    let refused = unrevoke(&store, br#"{"credential":"racf:JSMITH"}"#, &Ok)
        .await
        .unwrap_err();
    assert_eq!(refused.code.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn migration_and_inventory_bodies() {
    let plans =
        Plans::load_dir(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("migration-plans"))
            .unwrap();
    let store = EmbeddedStore::in_memory().await.unwrap();
    let now = at("2026-12-20", 0);
    let source = crate::state::Source::of([10, 0, 0, 7].into(), Some(b"batch/1.0"));
    store.record(&Usage {
        at: at("2026-12-19", 5),
        route: "cics",
        plan: Some("payments-cics"),
        credential: "racf",
        kind: Kind::Ldap,
        identity: "spiffe://corp.example/legacy/racf/jsmith",
        principal: Some("JSMITH"),
        cert_not_after: None,
        source: Some(&source),
    });
    let routes = [("cics", Some("payments-cics")), ("other", None)];
    let v = migration_json(&store, &plans, &routes, now).await.unwrap();
    let cics = v["plans"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "payments-cics")
        .unwrap();
    assert_eq!(cics["window"]["legacy_requests"], 1);
    assert_eq!(cics["phases"]["observe"], "2026-11-01");
    assert_eq!(
        cics["what_if_enforced"]["principals"],
        json!(["racf:JSMITH"])
    );
    assert_eq!(cics["status"], "not-ready");
    assert_eq!(v["unplanned_routes"][0]["route"], "other");
    let v = inventory_json(&store, &plans, now).await.unwrap();
    assert_eq!(v["entries"][0]["principal"], "JSMITH");
    assert_eq!(v["entries"][0]["revoked"], false);
    assert_eq!(v["entries"][0]["distinct_sources"], 1);
    assert_eq!(v["entries"][0]["shared_suspected"], false);
    assert_eq!(v["entries"][0]["plans"][0]["plan"], "payments-cics");
}
