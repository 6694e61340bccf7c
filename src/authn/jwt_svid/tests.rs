use serde_json::json;

use super::*;
use crate::identity::TrustDomain;
use crate::spiffe::testing::{at, store_with, JwtSigner};

const SUB: &str = "spiffe://corp.example/ns/pay/sa/api";

fn parts(auth: &[&str]) -> Parts {
    let mut b = http::Request::builder();
    for a in auth {
        b = b.header(AUTHORIZATION, *a);
    }
    b.body(()).unwrap().into_parts().0
}

fn setup() -> (JwtSigner, JwtSvidAuthenticator, String) {
    let k = JwtSigner::es256("k1");
    let store = Arc::new(store_with(&[], &[("corp.example", &[&k])]));
    let tds = vec![TrustDomain::parse("corp.example").unwrap()];
    let a = JwtSvidAuthenticator::new(
        "workload-jwt".into(),
        store,
        JwtSvidSettings::new(tds, "portcullis"),
    );
    let t = crate::spiffe::testing::unix(at(2030, 6, 1));
    let tok = k.sign(&json!({"sub": SUB, "aud": "portcullis", "exp": t + 300}));
    (k, a, tok)
}

async fn run(a: &JwtSvidAuthenticator, auth: &[&str]) -> Outcome {
    let conn = ConnInfo::for_tests(None);
    a.authenticate(&parts(auth), &conn, at(2030, 6, 1)).await
}

fn code(o: &Outcome) -> Option<Code> {
    match o {
        Outcome::Rejected(r) => Some(r.code),
        _ => None,
    }
}

#[tokio::test]
async fn bearer_outcomes() {
    let (_k, a, tok) = setup();
    assert_eq!(a.kind(), Kind::JwtSvid);
    assert_eq!(a.challenge().unwrap(), "Bearer");
    assert!(matches!(run(&a, &[]).await, Outcome::NotPresent));
    assert!(matches!(
        run(&a, &["Basic dXNlcjpwYXNz"]).await,
        Outcome::NotPresent
    ));
    assert!(matches!(
        run(&a, &["Bearerish x"]).await,
        Outcome::NotPresent
    ));
    for auth in [
        format!("Bearer {tok}"),
        format!("bearer  {tok}"),
        format!("BEARER {tok}"),
    ] {
        match run(&a, &[&auth]).await {
            Outcome::Authenticated(c) => {
                assert_eq!(c.identity, SUB);
                assert_eq!(c.kind, Kind::JwtSvid);
                assert_eq!(&*c.name, "workload-jwt");
            }
            other => panic!("{auth}: {other:?}"),
        }
    }
    let bearer = format!("Bearer {tok}");
    let refused = [
        vec!["Bearer".to_owned()],
        vec!["Bearer   ".to_owned()],
        vec!["Bearer abc".to_owned()],
        vec!["Bearer a b c".to_owned()],
        vec![format!("Bearer {tok}=")],
        vec![format!("Bearer {}", "A".repeat(MAX_TOKEN_BYTES + 1))],
        vec![format!("Bearer {}", "A".repeat(1024 * 1024))],
        vec![bearer.clone(), "Basic dXNlcjpwYXNz".to_owned()],
        vec![bearer.clone(), bearer.clone()],
    ];
    for auth in refused {
        let auth: Vec<&str> = auth.iter().map(String::as_str).collect();
        let o = run(&a, &auth).await;
        assert_eq!(code(&o), Some(Code::InvalidCredential), "{:.40?}", auth);
    }
}

#[tokio::test]
async fn cache_and_revocation() {
    let (_k, a, tok) = setup();
    let auth = format!("Bearer {tok}");
    for _ in 0..3 {
        assert!(matches!(run(&a, &[&auth]).await, Outcome::Authenticated(_)));
    }
    assert_eq!(a.validator().verifications(), 1);
    assert_eq!(a.evict_identity(SUB), 1);
    assert!(matches!(run(&a, &[&auth]).await, Outcome::Authenticated(_)));
    assert_eq!(a.validator().verifications(), 2);
}

#[tokio::test]
async fn refusal_details_name_no_secret() {
    let (k, a, _) = setup();
    let t = crate::spiffe::testing::unix(at(2030, 6, 1));
    let expired = k.sign(&json!({"sub": SUB, "aud": "portcullis", "exp": t - 100}));
    match run(&a, &[&format!("Bearer {expired}")]).await {
        Outcome::Rejected(r) => {
            assert_eq!(r.detail, "the JWT-SVID has expired");
            assert!(!r.detail.contains(&expired));
        }
        other => panic!("{other:?}"),
    }
}
