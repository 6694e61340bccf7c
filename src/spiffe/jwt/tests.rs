//! Tests of JWT-SVID validation: tokens signed for real with aws-lc-rs keys.

use jsonwebtoken::{Algorithm, EncodingKey};
use serde_json::{json, Value};

use super::*;
use crate::spiffe::testing::{at, jwks, store_with, JwtSigner};

fn now() -> SystemTime {
    at(2030, 6, 1)
}

fn t() -> i64 {
    unix_secs(now()) as i64
}

fn claims(sub: &str) -> Value {
    json!({"sub": sub, "aud": "portcullis", "iat": t(), "exp": t() + 300})
}

fn b64(v: &Value) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).unwrap())
}

/// Sign exactly this header and these claims.
fn sign_raw(key: &EncodingKey, alg: Algorithm, header: &Value, claims: &Value) -> String {
    let msg = format!("{}.{}", b64(header), b64(claims));
    let sig = jsonwebtoken::crypto::sign(msg.as_bytes(), key, alg).unwrap();
    crate::low_s::normalize_jws(&format!("{msg}.{sig}"))
}

struct Fx {
    k1: JwtSigner,
    e384: JwtSigner,
    r1: JwtSigner,
    k2: JwtSigner,
    v: JwtSvidValidator,
}

fn tds(names: &[&str]) -> Vec<TrustDomain> {
    names
        .iter()
        .map(|n| TrustDomain::parse(n).unwrap())
        .collect()
}

fn fx() -> Fx {
    let (k1, e384) = (JwtSigner::es256("k1"), JwtSigner::es384("e384"));
    let r1 = JwtSigner::rsa("r1", Algorithm::RS256);
    let k2 = JwtSigner::es256("k2");
    let store = store_with(
        &[],
        &[
            ("corp.example", &[&k1, &e384, &r1]),
            ("other.example", &[&k2]),
        ],
    );
    let settings = JwtSvidSettings::new(tds(&["corp.example", "other.example"]), "portcullis");
    let v = JwtSvidValidator::new(Arc::new(store), settings);
    Fx {
        k1,
        e384,
        r1,
        k2,
        v,
    }
}

const SUB: &str = "spiffe://corp.example/ns/pay/sa/api";

#[test]
fn valid_tokens_accepted() {
    let f = fx();
    for k in [&f.k1, &f.e384, &f.r1] {
        let id = f.v.validate(&k.sign(&claims(SUB)), now()).unwrap();
        assert_eq!(id.as_str(), SUB);
    }
    let mut c = claims(SUB);
    c["aud"] = json!(["other", "portcullis"]);
    assert!(f.v.validate(&f.k1.sign(&c), now()).is_ok());
    // typ JOSE or absent: fine.
    let h = json!({"alg": "ES256", "kid": "k1", "typ": "JOSE"});
    assert!(f
        .v
        .validate(
            &sign_raw(&f.k1.key, Algorithm::ES256, &h, &claims(SUB)),
            now()
        )
        .is_ok());
    let h = json!({"alg": "ES256", "kid": "k1"});
    assert!(f
        .v
        .validate(&sign_raw(&f.k1.key, Algorithm::ES256, &h, &c), now())
        .is_ok());
}

#[test]
fn numeric_dates_are_whole_seconds_within_the_horizon() {
    let f = fx();
    let h = json!({"alg": "ES256", "kid": "k1"});
    let ahead = MAX_EXP_AHEAD.as_secs() as i64;
    let with = |k: &str, v: Value| {
        let mut c = claims(SUB);
        c[k] = v;
        f.v.validate(&sign_raw(&f.k1.key, Algorithm::ES256, &h, &c), now())
    };
    assert!(with("exp", json!(t() + ahead)).is_ok());
    for exp in [
        json!(t() + ahead + 3600),
        json!(1e300),
        json!(f64::MAX),
        json!(u64::MAX),
        json!(t() as f64 + 10.5),
        json!("1800000000"),
        json!(-1),
        json!(null),
    ] {
        let r = with("exp", exp.clone());
        assert!(
            matches!(
                r,
                Err(JwtSvidError::Horizon | JwtSvidError::Expired | JwtSvidError::NoExp)
            ),
            "{exp}: {r:?}"
        );
    }
    assert_eq!(
        with("nbf", json!(t() as f64 - 0.5)),
        Err(JwtSvidError::Horizon)
    );
    assert!(with("nbf", json!(t() - 1)).is_ok());
    // Present as null is not absent (a property test found `"nbf": null` accepted).
    assert_eq!(with("nbf", json!(null)), Err(JwtSvidError::Horizon));
    assert_eq!(with("cnf", json!(null)), Err(JwtSvidError::Cnf));
}

#[test]
fn forbidden_algorithms() {
    let f = fx();
    let c = claims(SUB);
    // alg none, with and without a signature part.
    let none = format!("{}.{}", b64(&json!({"alg": "none", "kid": "k1"})), b64(&c));
    assert_eq!(
        f.v.validate(&format!("{none}."), now()),
        Err(JwtSvidError::Malformed("empty part"))
    );
    assert_eq!(
        f.v.validate(&format!("{none}.c2ln"), now()),
        Err(JwtSvidError::Alg("none".into()))
    );
    // HS256 keyed with the bundle's public key, in the forms an attacker might try.
    let jwk = f.k1.jwk();
    let raw_x = URL_SAFE_NO_PAD.decode(jwk["x"].as_str().unwrap()).unwrap();
    for secret in [serde_json::to_vec(&jwk).unwrap(), raw_x] {
        let hs = EncodingKey::from_secret(&secret);
        let h = json!({"alg": "HS256", "kid": "k1", "typ": "JWT"});
        let tok = sign_raw(&hs, Algorithm::HS256, &h, &c);
        assert_eq!(
            f.v.validate(&tok, now()),
            Err(JwtSvidError::Alg("HS256".into()))
        );
    }
    // EdDSA is not a JWT-SVID algorithm.
    let ed = JwtSigner::ed25519("k1");
    assert_eq!(
        f.v.validate(&ed.sign(&c), now()),
        Err(JwtSvidError::Alg("EdDSA".into()))
    );
    // The header's alg must fit the key: ES384 claimed for the P-256 key k1.
    let h = json!({"alg": "ES384", "kid": "k1"});
    let tok = sign_raw(&f.e384.key, Algorithm::ES384, &h, &c);
    assert_eq!(f.v.validate(&tok, now()), Err(JwtSvidError::KeyAlg));
    // The JWK says RS256, so PS256 with the same RSA key is refused.
    let h = json!({"alg": "PS256", "kid": "r1"});
    let tok = sign_raw(&f.r1.key, Algorithm::PS256, &h, &c);
    assert_eq!(f.v.validate(&tok, now()), Err(JwtSvidError::KeyAlg));
    assert_eq!(f.v.verifications(), 0);
}

#[test]
fn keys_come_only_from_the_subjects_trust_domain() {
    let f = fx();
    let c = claims(SUB);
    let stranger = JwtSigner::es256("nope");
    assert_eq!(
        f.v.validate(&stranger.sign(&c), now()),
        Err(JwtSvidError::UnknownKey)
    );
    // k2 exists, but only in other.example's bundle; the sub is in corp.example.
    assert_eq!(
        f.v.validate(&f.k2.sign(&c), now()),
        Err(JwtSvidError::UnknownKey)
    );
    assert!(f
        .v
        .validate(&f.k2.sign(&claims("spiffe://other.example/x")), now())
        .is_ok());
    // An attacker's key under a known kid, pointing at its own keys: jku/jwk are never used.
    let evil = JwtSigner::es256("k1");
    let mut h = f.k1.header();
    h.jku = Some("https://evil.example/jwks.json".into());
    h.x5u = Some("https://evil.example/cert.pem".into());
    let tok = evil.sign_with(&h, &c);
    assert_eq!(f.v.validate(&tok, now()), Err(JwtSvidError::Signature));
    let h = json!({"alg": "ES256", "kid": "k1", "jwk": evil.jwk()});
    let tok = sign_raw(&evil.key, Algorithm::ES256, &h, &c);
    assert_eq!(f.v.validate(&tok, now()), Err(JwtSvidError::Signature));
    // A trust domain the validator does not accept, though the store knows it.
    let store = store_with(&[], &[("other.example", &[&f.k2])]);
    let corp_only = JwtSvidSettings::new(tds(&["corp.example"]), "portcullis");
    let v = JwtSvidValidator::new(Arc::new(store), corp_only);
    let tok = f.k2.sign(&claims("spiffe://other.example/x"));
    assert_eq!(
        v.validate(&tok, now()),
        Err(JwtSvidError::TrustDomain("other.example".into()))
    );
}

#[test]
fn time_and_audience() {
    let f = fx();
    let with = |k: &str, v: Value| {
        let mut c = claims(SUB);
        c[k] = v;
        f.k1.sign(&c)
    };
    let check = |tok: String| f.v.validate(&tok, now());
    assert_eq!(
        check(with("exp", json!(t() - 31))),
        Err(JwtSvidError::Expired)
    );
    assert_eq!(
        check(with("exp", json!(t() - 30))),
        Err(JwtSvidError::Expired)
    );
    assert!(
        check(with("exp", json!(t() - 29))).is_ok(),
        "inside the leeway"
    );
    assert_eq!(
        check(with("nbf", json!(t() + 60))),
        Err(JwtSvidError::NotYetValid)
    );
    assert!(
        check(with("nbf", json!(t() + 20))).is_ok(),
        "inside the leeway"
    );
    assert_eq!(
        check(with("aud", json!("someone-else"))),
        Err(JwtSvidError::Audience)
    );
    assert_eq!(
        check(with("aud", json!(["a", "b"]))),
        Err(JwtSvidError::Audience)
    );
    assert_eq!(check(with("aud", json!([]))), Err(JwtSvidError::Audience));
    let mut c = claims(SUB);
    c.as_object_mut().unwrap().remove("aud");
    assert_eq!(check(f.k1.sign(&c)), Err(JwtSvidError::Audience));
    c = claims(SUB);
    c.as_object_mut().unwrap().remove("exp");
    assert_eq!(check(f.k1.sign(&c)), Err(JwtSvidError::NoExp));
    // A token that is fine now is refused later, cached or not.
    let tok = f.k1.sign(&claims(SUB));
    assert!(f.v.validate(&tok, now()).is_ok());
    let later = now() + Duration::from_secs(331);
    assert_eq!(f.v.validate(&tok, later), Err(JwtSvidError::Expired));
}

#[test]
fn subject_rules() {
    let f = fx();
    let check = |sub: Value| {
        let mut c = claims(SUB);
        c["sub"] = sub;
        f.v.validate(&f.k1.sign(&c), now())
    };
    assert!(matches!(
        check(json!("alice")),
        Err(JwtSvidError::Sub(IdError::Scheme))
    ));
    assert!(matches!(
        check(json!("spiffe://Corp.example/a")),
        Err(JwtSvidError::Sub(_))
    ));
    assert_eq!(
        check(json!("spiffe://corp.example")),
        Err(JwtSvidError::RootSub)
    );
    assert!(matches!(
        check(json!(42)),
        Err(JwtSvidError::Malformed("claims"))
    ));
    let mut c = claims(SUB);
    c.as_object_mut().unwrap().remove("sub");
    assert_eq!(
        f.v.validate(&f.k1.sign(&c), now()),
        Err(JwtSvidError::Sub(IdError::Empty))
    );
}

#[test]
fn header_and_shape_rules() {
    let f = fx();
    let c = claims(SUB);
    let signed = |h: Value| sign_raw(&f.k1.key, Algorithm::ES256, &h, &c);
    let check = |tok: &str| f.v.validate(tok, now());
    let h = json!({"alg": "ES256", "kid": "k1", "typ": "at+jwt"});
    assert_eq!(check(&signed(h)), Err(JwtSvidError::Typ));
    let h = json!({"alg": "ES256", "kid": "k1", "crit": ["exp"]});
    assert_eq!(check(&signed(h)), Err(JwtSvidError::Crit));
    assert_eq!(
        check(&signed(json!({"alg": "ES256"}))),
        Err(JwtSvidError::NoKid)
    );
    assert_eq!(
        check(&signed(json!({"alg": "ES256", "kid": ""}))),
        Err(JwtSvidError::NoKid)
    );
    let good = f.k1.sign(&c);
    let (msg, sig) = good.rsplit_once('.').unwrap();
    let (head, _) = msg.split_once('.').unwrap();
    for bad in ["", "a.b", "a.b.c.d", "a.b.c.d.e", "..", "!!.b.c"] {
        assert!(
            matches!(check(bad), Err(JwtSvidError::Malformed(_))),
            "{bad:?}"
        );
    }
    // A signature over different claims.
    let other = format!(
        "{head}.{}.{sig}",
        b64(&claims("spiffe://corp.example/admin"))
    );
    assert_eq!(check(&other), Err(JwtSvidError::Signature));
    assert_eq!(
        check(&format!("{msg}.{}", URL_SAFE_NO_PAD.encode([0u8; 64]))),
        Err(JwtSvidError::Signature)
    );
    // Huge tokens are refused before any work.
    let huge = format!("{msg}.{}", "A".repeat(1024 * 1024));
    assert_eq!(check(&huge), Err(JwtSvidError::TooLarge));
}

#[test]
fn cache_skips_verification_and_can_forget() {
    let f = fx();
    let tok = f.k1.sign(&claims(SUB));
    for _ in 0..3 {
        assert_eq!(f.v.validate(&tok, now()).unwrap().as_str(), SUB);
    }
    assert_eq!(f.v.verifications(), 1);
    assert_eq!(f.v.evict_identity("spiffe://corp.example/someone-else"), 0);
    assert_eq!(f.v.evict_identity(SUB), 1);
    assert!(f.v.validate(&tok, now()).is_ok());
    assert_eq!(f.v.verifications(), 2);
    // Refusals are not cached.
    let bad = f.k2.sign(&claims(SUB));
    let _ = f.v.validate(&bad, now());
    assert_eq!(f.v.cache_len(), 1);
}

#[test]
fn cache_is_bounded() {
    let k = JwtSigner::es256("k");
    let store = Arc::new(store_with(&[], &[("corp.example", &[&k])]));
    let mut settings = JwtSvidSettings::new(tds(&["corp.example"]), "portcullis");
    settings.cache_entries = 2;
    let v = JwtSvidValidator::new(store, settings);
    for i in 0..5 {
        let tok = k.sign(&claims(&format!("spiffe://corp.example/w{i}")));
        assert!(v.validate(&tok, now()).is_ok());
        assert!(v.cache_len() <= 2);
    }
    assert_eq!(v.cache_len(), 2);
}

#[test]
fn bundle_reload_invalidates_cached_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("jwt.json");
    let (old, new) = (JwtSigner::es256("old"), JwtSigner::es256("new"));
    std::fs::write(&path, jwks(&[&old])).unwrap();
    let src = crate::spiffe::TrustSource {
        trust_domain: TrustDomain::parse("corp.example").unwrap(),
        x509_bundle: None,
        jwt_bundle: Some(path.clone()),
    };
    let metrics = Arc::new(crate::metrics::Metrics::default());
    let store = Arc::new(TrustStore::load(&[src], metrics).unwrap());
    let v = JwtSvidValidator::new(
        store.clone(),
        JwtSvidSettings::new(tds(&["corp.example"]), "portcullis"),
    );
    let tok = old.sign(&claims(SUB));
    assert!(v.validate(&tok, now()).is_ok());
    assert!(v.validate(&tok, now()).is_ok());
    assert_eq!(v.verifications(), 1);
    // The old key is rotated out: its cached tokens go with it.
    std::fs::write(&path, jwks(&[&new])).unwrap();
    std::fs::File::options()
        .write(true)
        .open(&path)
        .unwrap()
        .set_modified(SystemTime::UNIX_EPOCH + Duration::from_secs(2_000_000_000))
        .unwrap();
    assert_eq!(store.poll(), 1);
    assert_eq!(v.validate(&tok, now()), Err(JwtSvidError::UnknownKey));
    assert!(v.validate(&new.sign(&claims(SUB)), now()).is_ok());
}
