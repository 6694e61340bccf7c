use super::*;
use crate::state::{Access, EmbeddedStore};

#[test]
fn query_is_strict() {
    assert_eq!(
        parse_query(Some("route=cics&since=14d")).unwrap(),
        ("cics".into(), Duration::from_secs(14 * 86_400))
    );
    assert_eq!(parse_query(Some("route=a%20b")).unwrap().0, "a b");
    for bad in [
        None,
        Some("since=7d"),
        Some("route=a&route=b"),
        Some("route=a&since=soon"),
        Some("route=a&since=0s"),
        Some("route=a&since=99999d"),
        Some("route=a&x=1"),
    ] {
        assert!(
            matches!(parse_query(bad), Err(SuggestError::BadRequest(_))),
            "{bad:?}"
        );
    }
}

#[tokio::test]
async fn suggests_from_recorded_access() {
    let store = EmbeddedStore::in_memory().await.unwrap();
    let now = Date::parse("2026-12-10").unwrap().midnight() + Duration::from_secs(3600);
    let id = "spiffe://corp.example/ns/payments/sa/api";
    for p in ["/cics/pay/1", "/cics/pay/2"] {
        store.record_access(&Access::of("cics", id, "GET", p, now).unwrap());
    }
    let old = now - Duration::from_secs(30 * 86_400);
    store.record_access(&Access::of("cics", "spiffe://x/old", "GET", "/cics", old).unwrap());
    let v = suggest_json(&store, &["cics"], Some("route=cics"), 3, now)
        .await
        .unwrap();
    assert_eq!(v["route"], "cics");
    assert_eq!(v["since"], "2026-12-03");
    assert_eq!(v["requests"], 2);
    let policy = v["policy"].as_str().unwrap();
    assert!(policy.contains(id), "{policy}");
    assert!(!policy.contains("spiffe://x/old"), "{policy}");
    assert!(matches!(
        suggest_json(&store, &["cics"], Some("route=nope"), 3, now).await,
        Err(SuggestError::UnknownRoute(_))
    ));
}
