use std::sync::Arc;

use http::HeaderName;

use super::*;
use crate::authn::apikey::issue::KEY_PREFIX;
use crate::authn::apikey::{ApiKeyAuthenticator, KeyStore, Keys};
use crate::authn::Outcome;
use crate::time::Date;

#[test]
fn printed_entry_loads_and_the_key_authenticates() {
    let a = new_key(
        "acme-billing",
        "spiffe://corp.example/partner/acme",
        Some("Ops \"team\" \\ 2"),
        Some("2099-12-31"),
    )
    .unwrap();
    let b = new_key("other", "spiffe://corp.example/partner/b", None, None).unwrap();
    assert!(a.key.starts_with(KEY_PREFIX));
    assert_eq!(a.key.len(), 4 + 43);
    assert_ne!(a.key, b.key);
    assert!(!a.entry.contains(&a.key));

    let keys = Keys::parse(&format!("{}\n{}", a.entry, b.entry), "k.toml").unwrap();
    let e = &keys.entries()[0];
    assert_eq!(e.owner.as_deref(), Some("Ops \"team\" \\ 2"));
    assert_eq!(e.expires, Date::parse("2099-12-31"));

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keys.toml");
    std::fs::write(&path, format!("{}\n{}", a.entry, b.entry)).unwrap();
    let auth = ApiKeyAuthenticator::new(
        Arc::from("partner-keys"),
        HeaderName::from_static("x-api-key"),
        Some("api_key".into()),
        Arc::new(KeyStore::load(&path).unwrap()),
    );
    let (req, ()) = http::Request::builder()
        .uri(format!("/x?api_key={}", a.key))
        .body(())
        .unwrap()
        .into_parts();
    match auth.check(&req, std::time::SystemTime::now()) {
        Outcome::Authenticated(c) => assert_eq!(c.principal.as_deref(), Some("acme-billing")),
        other => panic!("{other:?}"),
    }
}

#[test]
fn bad_arguments_are_refused() {
    let id = "spiffe://corp.example/x";
    assert!(new_key("a b", id, None, None).is_err());
    assert!(new_key("a", "corp.example/x", None, None).is_err());
    assert!(new_key("a", id, None, Some("31/12/2099")).is_err());
}
