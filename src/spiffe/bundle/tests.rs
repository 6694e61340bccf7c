use serde_json::json;

use super::*;
use crate::spiffe::testing::{jwks, JwtSigner, TestCa};

fn x5c_entry(ca: &TestCa) -> serde_json::Value {
    json!({"use": "x509-svid", "kty": "EC", "x5c": [STANDARD.encode(ca.der())]})
}

#[test]
fn x509_from_pem() {
    let (a, b) = (TestCa::new("corp.example"), TestCa::new("corp.example"));
    let pem = format!("# comment\n{}\n{}", a.pem(), b.pem());
    let bundle = X509Bundle::parse(pem.as_bytes()).unwrap();
    assert_eq!(bundle.roots(), &[a.der(), b.der()]);
    assert!(bundle.earliest_expiry().is_some());
    assert!(matches!(
        X509Bundle::parse(b"nothing here"),
        Err(BundleError::NoCertificates)
    ));
    let broken = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
    assert!(matches!(
        X509Bundle::parse(broken.as_bytes()),
        Err(BundleError::BadCertificate(_))
    ));
}

#[test]
fn x509_and_jwt_from_one_spiffe_bundle() {
    let (a, b) = (TestCa::new("corp.example"), TestCa::new("corp.example"));
    let k = JwtSigner::es256("k1");
    let mut second = x5c_entry(&b);
    second["x5c"]
        .as_array_mut()
        .unwrap()
        .push(json!("ignored-after-the-first"));
    let doc = json!({
        "spiffe_sequence": 7,
        "spiffe_refresh_hint": 300,
        "keys": [
            x5c_entry(&a),
            {"use": "x509-svid", "kty": "EC"},
            {"use": "x509-svid", "kty": "EC", "x5c": []},
            second,
            k.jwk(),
        ]
    });
    let bytes = serde_json::to_vec_pretty(&doc).unwrap();
    let x = X509Bundle::parse(&bytes).unwrap();
    assert_eq!(x.roots(), &[a.der(), b.der()]);
    let j = JwtBundle::parse(&bytes).unwrap();
    assert_eq!(j.len(), 1);
    assert_eq!(j.get("k1").unwrap().family(), KeyFamily::EcP256);
    // A bundle with no x509-svid entries does not support X509-SVID.
    assert!(matches!(
        X509Bundle::parse(&jwks(&[&k])),
        Err(BundleError::NoCertificates)
    ));
    // JSON-looking garbage.
    assert!(matches!(
        X509Bundle::parse(b"  {nope"),
        Err(BundleError::Json(_))
    ));
}

#[test]
fn jwt_key_families() {
    let (p256, p384) = (JwtSigner::es256("a"), JwtSigner::es384("b"));
    let rsa = JwtSigner::rsa("c", Algorithm::PS256);
    let b = JwtBundle::parse(&jwks(&[&p256, &p384, &rsa])).unwrap();
    assert_eq!(b.len(), 3);
    let (a, bb, c) = (
        b.get("a").unwrap(),
        b.get("b").unwrap(),
        b.get("c").unwrap(),
    );
    assert!(a.allows(Algorithm::ES256) && !a.allows(Algorithm::ES384));
    assert!(bb.allows(Algorithm::ES384) && !bb.allows(Algorithm::ES256));
    // The JWK says `alg: PS256`, which narrows the RSA family to it.
    assert!(c.allows(Algorithm::PS256) && !c.allows(Algorithm::RS256));
    for k in [a, bb, c] {
        assert!(!k.allows(Algorithm::HS256) && !k.allows(Algorithm::EdDSA));
    }
    assert!(b.get("d").is_none());
    let other = JwtBundle::parse(&jwks(&[&p256])).unwrap();
    assert_ne!(b.generation(), other.generation());
}

#[test]
fn jwt_bundle_rules() {
    let k = JwtSigner::es256("k");
    let ok = k.jwk();
    let parse = |keys: Vec<serde_json::Value>| {
        JwtBundle::parse(&serde_json::to_vec(&json!({ "keys": keys })).unwrap())
    };
    // Secrets and EdDSA keys are never JWT-SVID authorities; keys without kid are skipped.
    let oct = json!({"kty": "oct", "kid": "s", "k": "c2VjcmV0"});
    let okp = json!({"kty": "OKP", "kid": "e", "crv": "Ed25519", "x": "AAAA"});
    let mut no_kid = ok.clone();
    no_kid.as_object_mut().unwrap().remove("kid");
    assert!(matches!(
        parse(vec![oct.clone(), okp.clone(), no_kid]),
        Err(BundleError::NoKeys)
    ));
    let b = parse(vec![oct, okp, ok.clone()]).unwrap();
    assert_eq!(b.len(), 1);
    // Other uses are ignored; `sig` and absent are taken.
    let mut enc = ok.clone();
    enc["use"] = json!("enc");
    assert!(matches!(parse(vec![enc]), Err(BundleError::NoKeys)));
    let mut sig = ok.clone();
    sig["use"] = json!("sig");
    assert!(parse(vec![sig]).is_ok());
    // Strict on what it takes.
    assert!(matches!(
        parse(vec![ok.clone(), ok.clone()]),
        Err(BundleError::DuplicateKid(_))
    ));
    let mut wrong_alg = ok.clone();
    wrong_alg["alg"] = json!("ES384");
    assert!(matches!(
        parse(vec![wrong_alg]),
        Err(BundleError::BadKey { .. })
    ));
    let mut hs = ok.clone();
    hs["alg"] = json!("HS256");
    assert!(matches!(parse(vec![hs]), Err(BundleError::BadKey { .. })));
    let mut short = ok.clone();
    short["x"] = json!("AAAA");
    assert!(matches!(
        parse(vec![short]),
        Err(BundleError::BadKey { .. })
    ));
    let small_rsa =
        json!({"kty": "RSA", "kid": "r", "n": URL_SAFE_NO_PAD.encode([0xC1u8; 128]), "e": "AQAB"});
    assert!(matches!(
        parse(vec![small_rsa]),
        Err(BundleError::BadKey { .. })
    ));
}
