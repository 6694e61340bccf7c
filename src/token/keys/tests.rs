use super::*;

fn b64(s: &str) -> Vec<u8> {
    URL_SAFE_NO_PAD.decode(s).unwrap()
}

#[test]
fn es256_kid_is_the_rfc7638_thumbprint_and_jwk_matches_the_key() {
    let key = SigningKey::from_pem(generate(Alg::Es256).unwrap().as_bytes(), "t").unwrap();
    let jwk = key.public_jwk();
    assert_eq!(
        (jwk.kty, jwk.crv, jwk.alg, jwk.use_),
        ("EC", "P-256", "ES256", "sig")
    );
    let y = jwk.y.clone().unwrap();
    // Independent computation: the canonical JSON written out by hand, hashed.
    let canonical = format!(
        "{{\"crv\":\"P-256\",\"kty\":\"EC\",\"x\":\"{}\",\"y\":\"{}\"}}",
        jwk.x, y
    );
    let expected = URL_SAFE_NO_PAD.encode(Sha256::digest(canonical.as_bytes()));
    assert_eq!(&**key.kid(), expected);
    assert_eq!(key.kid().len(), 43);
    // x and y are the public point.
    let Signer::Es256(kp) = &key.signer else {
        panic!("not ES256")
    };
    let mut point = vec![4u8];
    point.extend(b64(&jwk.x));
    point.extend(b64(&y));
    assert_eq!(b64(&jwk.x).len(), 32);
    assert_eq!(point, kp.public_key().as_ref());
    // And jsonwebtoken agrees on the thumbprint.
    let parsed: jsonwebtoken::jwk::Jwk =
        serde_json::from_value(serde_json::to_value(jwk).unwrap()).unwrap();
    assert_eq!(
        parsed.thumbprint(jsonwebtoken::jwk::ThumbprintHash::SHA256),
        Ok(expected)
    );
}

#[test]
fn eddsa_kid_is_the_rfc7638_thumbprint() {
    let key = SigningKey::from_pem(generate(Alg::EdDsa).unwrap().as_bytes(), "t").unwrap();
    let jwk = key.public_jwk();
    assert_eq!((jwk.kty, jwk.crv, jwk.alg), ("OKP", "Ed25519", "EdDSA"));
    assert!(jwk.y.is_none());
    let canonical = format!(
        "{{\"crv\":\"Ed25519\",\"kty\":\"OKP\",\"x\":\"{}\"}}",
        jwk.x
    );
    let expected = URL_SAFE_NO_PAD.encode(Sha256::digest(canonical.as_bytes()));
    assert_eq!(&**key.kid(), expected);
    let Signer::EdDsa(kp) = &key.signer else {
        panic!("not EdDSA")
    };
    assert_eq!(b64(&jwk.x), kp.public_key().as_ref());
    let json = serde_json::to_value(jwk).unwrap();
    assert!(json.get("y").is_none());
    assert_eq!(json["use"], "sig");
}

#[test]
fn rfc8037_ed25519_example_thumbprint() {
    // RFC 8037 appendix A.3: the thumbprint of the A.2 public key.
    let x = "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo";
    assert_eq!(
        thumbprint("OKP", "Ed25519", x, None),
        "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"
    );
}

#[test]
fn headers_are_exactly_alg_kid_typ() {
    let key = SigningKey::generate(Alg::Es256).unwrap();
    let h = b64(key.encoded_header(Typ::Jwt));
    let v: serde_json::Value = serde_json::from_slice(&h).unwrap();
    assert_eq!(
        v,
        serde_json::json!({"alg": "ES256", "kid": &**key.kid(), "typ": "JWT"})
    );
    let h = b64(key.encoded_header(Typ::AtJwt));
    let v: serde_json::Value = serde_json::from_slice(&h).unwrap();
    assert_eq!(v["typ"], "at+jwt");
}

#[test]
fn rejects_non_pkcs8_and_unsupported_keys() {
    let sec1 = "-----BEGIN EC PRIVATE KEY-----\nMHcCAQEEIA==\n-----END EC PRIVATE KEY-----\n";
    assert!(matches!(
        SigningKey::from_pem(sec1.as_bytes(), "t"),
        Err(KeyError::NotPkcs8(_))
    ));
    assert!(matches!(
        SigningKey::from_pem(b"nothing here", "t"),
        Err(KeyError::NoKey(_))
    ));
    // A P-384 key is valid PKCS#8 but not a key we sign with.
    let p384 = aws_lc_rs::signature::EcdsaKeyPair::generate_pkcs8(
        &aws_lc_rs::signature::ECDSA_P384_SHA384_FIXED_SIGNING,
        &SystemRandom::new(),
    )
    .unwrap();
    assert!(matches!(
        SigningKey::from_pkcs8_der(p384.as_ref(), "t"),
        Err(KeyError::Unsupported(_))
    ));
    assert_eq!("ES256".parse::<Alg>().unwrap(), Alg::Es256);
    assert_eq!("eddsa".parse::<Alg>().unwrap(), Alg::EdDsa);
    assert!("hs256".parse::<Alg>().is_err());
}
