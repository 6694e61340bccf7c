//! Property tests of the JWT header and claims path ([`crate::spiffe::jwt`]) for JWT-SVIDs of a
//! trust domain and the gateway's own tokens (`trust_issuer`): arbitrary and mutated tokens never
//! panic and never verify; other encodings of a valid token (padding, whitespace, the standard
//! base64 alphabet) are refused, and its high-S twin is read as the same token; arbitrary claims verify only within the rules.
//!
//! Budget: 256 cases per property, or `PROPTEST_CASES`.

use std::sync::Arc;
use std::time::SystemTime;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jsonwebtoken::Algorithm;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use serde_json::{json, Value};

use super::tests::{at, fixed, issuer, racf, T0};
use super::{Alg, MintRequest};
use crate::identity::profile::Profile;
use crate::identity::TrustDomain;
use crate::spiffe::jwt::{JwtSvidSettings, JwtSvidValidator, MAX_EXP_AHEAD};
use crate::spiffe::testing::{store_with, JwtSigner};

const AUD: &str = "portcullis";
const SUB: &str = "spiffe://corp.example/ns/pay/sa/api";

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256)
}

fn runner() -> TestRunner {
    TestRunner::new(Config::with_cases(cases()))
}

struct Fx {
    es256: JwtSigner,
    es384: JwtSigner,
    v: JwtSvidValidator,
    /// Valid tokens: a JWT-SVID per key and a gateway token.
    valid: Vec<String>,
}

fn now() -> SystemTime {
    at(T0)
}

fn fx() -> Fx {
    let (es256, es384) = (JwtSigner::es256("k1"), JwtSigner::es384("k2"));
    let store = store_with(&[], &[("corp.example", &[&es256, &es384])]);
    let keys = fixed(&[Alg::Es256]);
    let mut settings = JwtSvidSettings::new(vec![TrustDomain::parse("corp.example").unwrap()], AUD);
    // Every case verifies afresh: a cache hit would hide the path under test.
    settings.cache_entries = 0;
    let v = JwtSvidValidator::new(Arc::new(store), settings).trusting_issuer(keys.clone());
    let claims = json!({"sub": SUB, "aud": AUD, "exp": T0 + 300, "jti": "j1"});
    let cred = racf();
    let minted = issuer(keys)
        .mint(
            &MintRequest::for_credential(&cred, AUD, Profile::JwtSvid, None),
            now(),
        )
        .unwrap();
    let valid = vec![
        es256.sign(&claims),
        es384.sign(&claims),
        minted.token.to_string(),
    ];
    for t in &valid {
        assert!(v.validate(t, now()).is_ok(), "{t}");
    }
    Fx {
        es256,
        es384,
        v,
        valid,
    }
}

/// Group orders, to build the high-S twin of a signature.
fn order(len: usize) -> Option<Vec<u8>> {
    let hex = match len {
        64 => "ffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551",
        96 => "ffffffffffffffffffffffffffffffffffffffffffffffffc7634d81f4372ddf581a0db248b0a77aecec196accc52973",
        _ => return None,
    };
    hex::decode(hex).ok()
}

/// `(r, n - s)`: the other signature of the same token.
fn high_s(token: &str) -> Option<String> {
    let (signed, sig) = token.rsplit_once('.')?;
    let mut sig = URL_SAFE_NO_PAD.decode(sig).ok()?;
    let n = order(sig.len())?;
    let half = sig.len() / 2;
    let mut borrow = 0i16;
    for i in (0..half).rev() {
        let d = i16::from(n[i]) - i16::from(sig[half + i]) - borrow;
        borrow = i16::from(d < 0);
        sig[half + i] = (d + 256 * borrow) as u8;
    }
    Some(format!("{signed}.{}", URL_SAFE_NO_PAD.encode(sig)))
}

#[test]
fn arbitrary_tokens_never_panic_and_never_verify() {
    let f = fx();
    let strategy = prop_oneof![
        any::<String>(),
        "[A-Za-z0-9_-]{0,120}\\.[A-Za-z0-9_-]{0,300}\\.[A-Za-z0-9_-]{0,130}",
        "[A-Za-z0-9_=+/ .-]{0,600}",
        // Well-formed JSON parts, garbage signature.
        (any::<String>(), any::<String>(), "[A-Za-z0-9_-]{0,130}").prop_map(|(h, c, s)| {
            format!(
                "{}.{}.{s}",
                URL_SAFE_NO_PAD.encode(h),
                URL_SAFE_NO_PAD.encode(c)
            )
        }),
    ];
    runner()
        .run(&strategy, |t| {
            prop_assert!(f.v.validate(&t, now()).is_err(), "{t:?}");
            Ok(())
        })
        .unwrap();
}

#[test]
fn mutated_tokens_never_verify() {
    let f = fx();
    let strategy = (
        0..f.valid.len(),
        any::<prop::sample::Index>(),
        0u8..4,
        any::<u8>(),
    );
    runner()
        .run(&strategy, |(which, at_idx, op, byte)| {
            let original = &f.valid[which];
            let mut b = original.clone().into_bytes();
            let i = at_idx.index(b.len());
            match op {
                0 => b[i] = byte,
                1 => b.insert(i, byte),
                2 => {
                    b.remove(i);
                }
                _ => b.truncate(i),
            }
            let Ok(t) = String::from_utf8(b) else {
                return Ok(());
            };
            if t != *original {
                prop_assert!(f.v.validate(&t, now()).is_err(), "{t}");
            }
            Ok(())
        })
        .unwrap();
}

#[test]
fn re_encodings_of_a_valid_token_are_refused() {
    let f = fx();
    for t in &f.valid {
        // The high-S twin is the same token: it verifies to the same identity (it is read in
        // its low-S form, so caches and revocation by jti see one token).
        let twin = high_s(t).unwrap();
        assert_eq!(
            f.v.validate(&twin, now()).ok(),
            f.v.validate(t, now()).ok(),
            "high-S twin of {t}"
        );
        assert_eq!(crate::low_s::canonical_jws(&twin), t.as_str());
        let std_alphabet = t.replace('-', "+").replace('_', "/");
        if std_alphabet != *t {
            assert!(f.v.validate(&std_alphabet, now()).is_err());
        }
        // The original still verifies (nothing above was cached as valid).
        assert!(f.v.validate(t, now()).is_ok());
    }
    let strategy = (
        0..f.valid.len(),
        any::<prop::sample::Index>(),
        prop::sample::select(vec![" ", "\t", "\n", "\r\n", "=", "==", "%3D", "\u{a0}"]),
    );
    runner()
        .run(&strategy, |(which, at_idx, ins)| {
            let mut t = f.valid[which].clone();
            let i = at_idx.index(t.len() + 1);
            t.insert_str(i, ins);
            prop_assert!(f.v.validate(&t, now()).is_err(), "{t:?}");
            // Padding appended to a part.
            let parts: Vec<&str> = f.valid[which].split('.').collect();
            let part = at_idx.index(parts.len());
            let padded: Vec<String> = parts
                .iter()
                .enumerate()
                .map(|(j, p)| {
                    if j == part {
                        format!("{p}=")
                    } else {
                        (*p).to_owned()
                    }
                })
                .collect();
            prop_assert!(f.v.validate(&padded.join("."), now()).is_err());
            Ok(())
        })
        .unwrap();
}

fn json_value() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(|x| json!(x)),
        (0u64..1000).prop_map(|d| json!(T0 + d)),
        (0u64..1000).prop_map(|d| json!(T0 - d)),
        (0u64..1000).prop_map(|d| json!(T0 as f64 + d as f64 + 0.5)),
        Just(json!(1e300)),
        Just(json!(T0 + MAX_EXP_AHEAD.as_secs() + 3600)),
        ".{0,20}".prop_map(Value::from),
        prop::collection::vec(".{0,12}".prop_map(Value::from), 0..3).prop_map(Value::from),
        Just(json!(AUD)),
        Just(json!([AUD, "x"])),
        Just(json!(SUB)),
        Just(json!({"x5t#S256": "abc"})),
        Just(json!({"jkt": "abc"})),
    ]
}

/// Signed, arbitrary claims and header fields: never a panic; accepted only within the rules.
#[test]
fn arbitrary_signed_claims_verify_only_within_the_rules() {
    let f = fx();
    let keys = ["sub", "aud", "exp", "nbf", "jti", "cnf", "act", "legacy"];
    let strategy = (
        prop::collection::vec((prop::sample::select(keys.to_vec()), json_value()), 0..8),
        prop::sample::select(vec![
            "ES256", "ES384", "HS256", "none", "RS256", "es256", "",
        ]),
        prop::option::of(prop::sample::select(vec![
            "JWT", "JOSE", "at+jwt", "jwt", "",
        ])),
        prop::option::of(prop::sample::select(vec!["k1", "k2", "", "nope"])),
        any::<bool>(),
    );
    runner()
        .run(&strategy, |(fields, alg, typ, kid, crit)| {
            let mut claims = json!({"sub": SUB, "aud": AUD, "exp": T0 + 300});
            for (k, v) in fields {
                claims[k] = v;
            }
            let mut header = json!({"alg": alg});
            if let Some(t) = typ {
                header["typ"] = json!(t);
            }
            if let Some(k) = kid {
                header["kid"] = json!(k);
            }
            if crit {
                header["crit"] = json!(["exp"]);
            }
            let msg = format!(
                "{}.{}",
                URL_SAFE_NO_PAD.encode(header.to_string()),
                URL_SAFE_NO_PAD.encode(claims.to_string())
            );
            let (key, alg) = if kid == Some("k2") {
                (&f.es384.key, Algorithm::ES384)
            } else {
                (&f.es256.key, Algorithm::ES256)
            };
            let sig = jsonwebtoken::crypto::sign(msg.as_bytes(), key, alg).unwrap();
            let token = crate::low_s::normalize_jws(&format!("{msg}.{sig}"));
            if let Ok(id) = f.v.validate(&token, now()) {
                let exp = claims["exp"].as_u64();
                prop_assert!(exp.is_some_and(|e| e + 30 > T0), "{claims}");
                prop_assert!(exp.is_some_and(|e| e <= T0 + MAX_EXP_AHEAD.as_secs() + 30));
                prop_assert!(claims.get("nbf").is_none_or(|n| n.as_u64().is_some()));
                let aud_ok = claims["aud"] == json!(AUD)
                    || claims["aud"]
                        .as_array()
                        .is_some_and(|a| a.contains(&json!(AUD)));
                prop_assert!(aud_ok, "{claims}");
                prop_assert_eq!(id.as_str(), claims["sub"].as_str().unwrap_or_default());
                prop_assert!(matches!(alg, Algorithm::ES256 | Algorithm::ES384));
                prop_assert!(matches!(typ, None | Some("JWT" | "JOSE")));
                prop_assert!(!crit);
                prop_assert!(claims
                    .get("cnf")
                    .is_none_or(|c| c.get("x5t#S256").is_some()));
            }
            Ok(())
        })
        .unwrap();
}
