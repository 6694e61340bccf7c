//! Each provider's signature is computed here from its documented algorithm with `hmac` directly,
//! not through the adapter, plus the vectors the providers publish.

mod providers;
mod sdk;
mod vectors;

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use hmac::{Hmac, Mac};
use http::{HeaderMap, HeaderName, HeaderValue};
use sha1::Sha1;
use sha2::Sha256;

use super::*;
use crate::adapters;
use crate::authn::{Authenticator, Outcome};
use crate::problem::Code;

const NOW: u64 = 1_700_000_000;

fn at(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(secs)
}

fn adapter(name: &str) -> Arc<crate::adapters::WebhookAdapter> {
    adapters::builtin().unwrap().get_webhook(name).unwrap()
}

fn verifier(name: &str, secrets: &[&str]) -> WebhookVerifier {
    let secrets = secrets.iter().map(|s| WebhookSecret::new(*s)).collect();
    WebhookVerifier::new(adapter(name), secrets, None).unwrap()
}

fn authenticator(name: &str, secrets: &[&str]) -> WebhookAuthenticator {
    WebhookAuthenticator::new(
        Arc::from(format!("{name}-hooks")),
        format!("spiffe://corp.example/external/{name}"),
        verifier(name, secrets),
        Arc::new(MemoryReplayGuard::new(1000)),
    )
}

fn hmac_sha256(key: &[u8], msg: &[u8]) -> Vec<u8> {
    let mut m = Hmac::<Sha256>::new_from_slice(key).unwrap();
    m.update(msg);
    m.finalize().into_bytes().to_vec()
}

fn hmac_sha1(key: &[u8], msg: &[u8]) -> Vec<u8> {
    let mut m = Hmac::<Sha1>::new_from_slice(key).unwrap();
    m.update(msg);
    m.finalize().into_bytes().to_vec()
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in pairs {
        h.append(
            HeaderName::from_bytes(k.as_bytes()).unwrap(),
            HeaderValue::from_str(v).unwrap(),
        );
    }
    h
}

fn parts(h: HeaderMap) -> http::request::Parts {
    let (mut parts, ()) = http::Request::builder()
        .uri("/hooks")
        .body(())
        .unwrap()
        .into_parts();
    parts.headers = h;
    parts
}

#[derive(Debug)]
struct FailingStore;

impl ReplayGuard for FailingStore {
    fn first_seen<'a>(
        &'a self,
        _key: &'a str,
        _now: SystemTime,
        _until: SystemTime,
    ) -> futures_util::future::BoxFuture<'a, Result<bool, StoreError>> {
        Box::pin(async { Err(StoreError("connection refused".into())) })
    }
}

#[tokio::test]
async fn store_error_fails_closed_with_503() {
    let a = WebhookAuthenticator::new(
        Arc::from("gh"),
        "spiffe://corp.example/external/github".into(),
        verifier("github", &["s3cret"]),
        Arc::new(FailingStore),
    );
    let body = b"{}";
    let sig = format!("sha256={}", hex::encode(hmac_sha256(b"s3cret", body)));
    let req = parts(headers(&[("x-hub-signature-256", &sig)]));
    match a.authenticate_with_body(&req, body, "", at(NOW)).await {
        Outcome::Rejected(r) => {
            assert_eq!(r.code, Code::DirectoryUnavailable);
            assert_eq!(r.retry_after, Some(5));
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn authenticator_outcomes() {
    let a = authenticator("github", &["s3cret"]);
    assert_eq!(a.kind(), crate::identity::Kind::Webhook);
    assert!(a.challenge().is_none());
    let conn = crate::conn::ConnInfo::for_tests(None);
    // Absent: NotPresent, with or without the body, so the next credential is tried.
    let none = parts(HeaderMap::new());
    assert!(!a.wants_body(&none.headers));
    assert!(matches!(
        a.authenticate(&none, &conn, at(NOW)).await,
        Outcome::NotPresent
    ));
    assert!(matches!(
        a.authenticate_with_body(&none, b"", "", at(NOW)).await,
        Outcome::NotPresent
    ));
    // Present but checked without the body: refused, never accepted.
    let body = br#"{"zen":"Keep it logically awesome."}"#;
    let sig = format!("sha256={}", hex::encode(hmac_sha256(b"s3cret", body)));
    let req = parts(headers(&[
        ("x-hub-signature-256", &sig),
        ("x-github-delivery", "72d3162e-cc78-11e3-81ab-4c9367dc0958"),
    ]));
    assert!(a.wants_body(&req.headers));
    match a.authenticate(&req, &conn, at(NOW)).await {
        Outcome::Rejected(r) => assert_eq!(r.code, Code::InvalidCredential),
        other => panic!("{other:?}"),
    }
    // With the body: the credential.
    match a.authenticate_with_body(&req, body, "", at(NOW)).await {
        Outcome::Authenticated(c) => {
            assert_eq!(&*c.name, "github-hooks");
            assert_eq!(c.kind, crate::identity::Kind::Webhook);
            assert_eq!(c.identity, "spiffe://corp.example/external/github");
            assert_eq!(c.principal.as_deref(), Some("github"));
            assert!(c.groups.is_empty());
        }
        other => panic!("{other:?}"),
    }
    // The same delivery again: a replay, refused without echoing anything secret.
    match a.authenticate_with_body(&req, body, "", at(NOW + 1)).await {
        Outcome::Rejected(r) => {
            assert_eq!(r.code, Code::InvalidCredential);
            assert!(r.detail.contains("replay"), "{}", r.detail);
            assert!(!r.detail.contains(&sig[7..]));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn secret_configuration() {
    let sw = adapter("standard-webhooks");
    let new = |a: &Arc<crate::adapters::WebhookAdapter>, s: &[&str], t| {
        WebhookVerifier::new(
            a.clone(),
            s.iter().map(|s| WebhookSecret::new(*s)).collect(),
            t,
        )
    };
    assert_eq!(
        new(&sw, &[], None).unwrap_err(),
        WebhookConfigError::NoSecrets
    );
    assert_eq!(
        new(&sw, &["whsec_not base64!"], None).unwrap_err(),
        WebhookConfigError::BadSecret {
            index: 1,
            reason: "not valid base64 (after its prefix)"
        }
    );
    assert_eq!(
        new(
            &sw,
            &["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "whsec_"],
            None
        )
        .unwrap_err(),
        WebhookConfigError::BadSecret {
            index: 2,
            reason: "empty"
        }
    );
    assert!(new(&sw, &["MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"], None).is_ok());
    assert_eq!(
        new(
            &sw,
            &["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"],
            Some(Duration::ZERO)
        )
        .unwrap_err(),
        WebhookConfigError::BadTolerance
    );
    assert_eq!(
        new(&sw, &["x"; 9], None).unwrap_err(),
        WebhookConfigError::TooManySecrets
    );
    // Stripe's whsec_ secrets are used raw, prefix included: no decoding error.
    assert!(new(&adapter("stripe"), &["whsec_not base64!"], None).is_ok());
    let secrets = WebhookSecret::from_lines("\n  new-secret \n\nold-secret\n");
    assert_eq!(secrets.len(), 2);
    assert_eq!(format!("{:?}", secrets[0]), "WebhookSecret(<redacted>)");
    let v = new(&adapter("github"), &["x"], None).unwrap();
    assert!(!format!("{v:?}").contains("\"x\""));
}

#[test]
fn request_url_as_called() {
    let (mut p, ()) = http::Request::builder()
        .uri("/hooks/twilio?a=1&b=%20")
        .header("host", "gw.example.com:8443")
        .body(())
        .unwrap()
        .into_parts();
    assert_eq!(
        request_url(&p, "https").as_deref(),
        Some("https://gw.example.com:8443/hooks/twilio?a=1&b=%20")
    );
    p.headers.remove("host");
    assert_eq!(request_url(&p, "https"), None);
    let (p, ()) = http::Request::builder()
        .uri("https://h2.example.com/x")
        .body(())
        .unwrap()
        .into_parts();
    assert_eq!(
        request_url(&p, "https").as_deref(),
        Some("https://h2.example.com/x")
    );
}
