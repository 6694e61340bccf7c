use serde_json::json;

use super::*;
use crate::identity::profile::Profile;
use crate::token::jwks::render_jwks;
use crate::token::tests::{at, fixed, issuer, racf, T0};
use crate::token::{Alg, MintRequest};

#[test]
fn inspect_verifies_and_marks_expired() {
    let keys = fixed(&[Alg::Es256, Alg::EdDsa]);
    let iss = issuer(keys.clone());
    let jwks = render_jwks(&keys.current());
    let cred = racf();
    let req = MintRequest::for_credential(&cred, "cics-payments", Profile::JwtSvid, None);
    let t = iss.mint(&req, at(T0)).unwrap();

    let ok = inspect(&t.token, &jwks, at(T0 + 10)).unwrap();
    assert_eq!(ok.validity, Validity::Valid);
    assert_eq!(ok.claims["sub"], "spiffe://corp.example/legacy/racf/alice");
    assert_eq!(ok.header["typ"], "JWT");
    let text = ok.render();
    assert!(text.contains("status:    valid"), "{text}");

    let bearer = format!("Bearer {}", t.token);
    let late = inspect(&bearer, &jwks, at(T0 + 400)).unwrap();
    assert_eq!(late.validity, Validity::Expired(Duration::from_secs(100)));
    assert!(late.render().contains("EXPIRED 1m 40s ago"));
    assert_eq!(late.to_json()["status"], "EXPIRED");
    assert_eq!(late.to_json()["claims"]["aud"], "cics-payments");

    // A tampered payload, an unknown kid, alg confusion and `none` are refused.
    let mut parts: Vec<String> = t.token.split('.').map(str::to_owned).collect();
    let forged = iss
        .mint(
            &MintRequest {
                identity: "spiffe://corp.example/admin",
                ..req
            },
            at(T0),
        )
        .unwrap();
    parts[1] = forged.token.split('.').nth(1).unwrap().to_owned();
    assert!(matches!(
        inspect(&parts.join("."), &jwks, at(T0)),
        Err(InspectError::BadSignature(_))
    ));
    let other = render_jwks(&fixed(&[Alg::Es256]).current());
    assert!(matches!(
        inspect(&t.token, &other, at(T0)),
        Err(InspectError::UnknownKid(_))
    ));
    let b64 = |v: Value| {
        base64::Engine::encode(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
            v.to_string(),
        )
    };
    let kid = keys.current().signer().kid().to_string();
    let confused = format!(
        "{}.{}.{}",
        b64(json!({"alg": "EdDSA", "kid": kid})),
        parts[1],
        parts[2]
    );
    assert!(matches!(
        inspect(&confused, &jwks, at(T0)),
        Err(InspectError::AlgMismatch { .. })
    ));
    let none = format!("{}.{}.", b64(json!({"alg": "none", "kid": kid})), parts[1]);
    assert!(matches!(
        inspect(&none, &jwks, at(T0)),
        Err(InspectError::ForbiddenAlg(_))
    ));
    assert!(matches!(
        inspect("abc", &jwks, at(T0)),
        Err(InspectError::Malformed)
    ));
}
