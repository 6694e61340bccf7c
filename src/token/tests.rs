//! Tests across the issuer: minted tokens verified by `jsonwebtoken` from the JWKS alone, the
//! cache, rotation and `token inspect`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{json, Value};

use super::jwks::{render_jwks, WellKnown};
use super::keys::{generate, write_private};
use super::mint::x5t_s256;
use super::*;
use crate::identity::profile::Profile;
use crate::identity::{Credential, Kind};
use crate::metrics::Metrics;

pub(super) const T0: u64 = 1_800_000_000;

pub(super) fn at(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(secs)
}

pub(super) fn fixed(algs: &[Alg]) -> Arc<KeySet> {
    let keys = algs
        .iter()
        .map(|a| (a.to_string(), SigningKey::generate(*a).unwrap()))
        .collect();
    Arc::new(KeySet::from_ring(
        KeyRing::new(keys).unwrap(),
        Arc::new(Metrics::default()),
    ))
}

pub(super) fn issuer(keys: Arc<KeySet>) -> Issuer {
    Issuer::new(
        "https://portcullis.corp.example",
        "spiffe://corp.example/portcullis",
        Duration::from_secs(300),
        keys,
    )
    .unwrap()
}

pub(super) fn racf() -> Credential {
    Credential {
        name: "racf".into(),
        kind: Kind::Ldap,
        identity: "spiffe://corp.example/legacy/racf/alice".into(),
        principal: Some("ALICE".into()),
        groups: vec![],
        jti: None,
        lineage: None,
    }
}

/// Verify as a relying party would: only the JWKS document, key chosen by `kid`.
fn verify(token: &str, jwks: &[u8], alg: Algorithm) -> (Value, Value) {
    install_jwt_provider();
    let header = jsonwebtoken::decode_header(token).unwrap();
    let set: JwkSet = serde_json::from_slice(jwks).unwrap();
    let jwk = set.find(header.kid.as_deref().unwrap()).unwrap();
    let mut v = Validation::new(alg);
    v.set_audience(&["cics-payments"]);
    v.set_issuer(&["https://portcullis.corp.example"]);
    v.validate_exp = false; // tokens are minted at a fixed, past instant
    let data =
        jsonwebtoken::decode::<Value>(token, &DecodingKey::from_jwk(jwk).unwrap(), &v).unwrap();
    let raw_header = token.split('.').next().unwrap();
    let raw_header: Value = serde_json::from_slice(
        &base64::Engine::decode(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
            raw_header,
        )
        .unwrap(),
    )
    .unwrap();
    (raw_header, data.claims)
}

#[test]
fn jwt_svid_token_verifies_from_the_jwks_with_every_claim() {
    let keys = fixed(&[Alg::Es256]);
    let iss = issuer(keys.clone());
    let cred = racf();
    let cnf = x5t_s256(b"not really a certificate");
    let req = MintRequest::for_credential(&cred, "cics-payments", Profile::JwtSvid, Some(&cnf));
    let minted = iss.mint(&req, at(T0) + Duration::from_millis(700)).unwrap();
    let jwks = render_jwks(&keys.current());
    let (header, claims) = verify(&minted.token, &jwks, Algorithm::ES256);

    let kid = keys.current().signer().kid().to_string();
    assert_eq!(header, json!({"alg": "ES256", "kid": kid, "typ": "JWT"}));
    assert_eq!(
        claims,
        json!({
            "iss": "https://portcullis.corp.example",
            "sub": "spiffe://corp.example/legacy/racf/alice",
            "aud": "cics-payments",
            "iat": T0, "nbf": T0, "exp": T0 + 300,
            "jti": &*minted.jti,
            "amr": ["ldap"],
            "act": {
                "sub": "spiffe://corp.example/portcullis",
                "lineage": {"credential": "racf", "kind": "ldap", "principal": "ALICE"},
            },
            "cnf": {"x5t#S256": cnf},
            "legacy": {"credential": "racf", "principal": "ALICE"},
        })
    );
    assert_eq!(minted.jti.len(), 22, "128 bits, base64url");
    assert_eq!(minted.exp, at(T0 + 300));
    assert_eq!(minted.expires_in(at(T0 + 100)), Duration::from_secs(200));
    // ES256 signature is the fixed 64-byte form.
    let sig = minted.token.rsplit('.').next().unwrap();
    assert_eq!(sig.len(), 86);
    // Unique jti.
    assert_ne!(iss.mint(&req, at(T0)).unwrap().jti, minted.jti);
    // The header values the pipeline sends, built once with the token and kept out of logs.
    assert_eq!(minted.bearer, format!("Bearer {}", minted.token).as_str());
    assert_eq!(minted.bare, &*minted.token);
    assert!(minted.bearer.is_sensitive() && minted.bare.is_sensitive());
}

#[test]
fn rfc9068_token_with_eddsa_and_no_optional_claims() {
    let keys = fixed(&[Alg::EdDsa]);
    let iss = issuer(keys.clone());
    let req = MintRequest {
        identity: "spiffe://corp.example/ns/payments/sa/batch",
        audience: "cics-payments",
        kind: Kind::Mtls,
        profile: Profile::Rfc9068,
        cnf: None,
        legacy: None,
        lineage: None,
    };
    let minted = iss.mint(&req, at(T0)).unwrap();
    let (header, claims) = verify(
        &minted.token,
        &render_jwks(&keys.current()),
        Algorithm::EdDSA,
    );
    assert_eq!(header["typ"], "at+jwt");
    assert_eq!(header["alg"], "EdDSA");
    assert_eq!(header.as_object().unwrap().len(), 3);
    assert_eq!(claims["client_id"], claims["sub"]);
    assert_eq!(claims["amr"], json!(["mtls"]));
    assert!(claims.get("cnf").is_none() && claims.get("legacy").is_none());

    // JWT-SVID allows no EdDSA: refused at mint time and flagged by check_profile.
    let svid = MintRequest {
        profile: Profile::JwtSvid,
        ..req
    };
    assert!(matches!(
        iss.mint(&svid, at(T0)),
        Err(IssuerError::ProfileAlg { .. })
    ));
    assert!(iss.check_profile(Profile::JwtSvid).is_err());
    assert!(iss.check_profile(Profile::Rfc9068).is_ok());
}

#[test]
fn issuer_config_is_checked() {
    let k = fixed(&[Alg::Es256]);
    let ok = |url: &str, id: &str, ttl: u64| {
        Issuer::new(url, id, Duration::from_secs(ttl), k.clone()).is_ok()
    };
    assert!(ok("https://gw", "spiffe://td/gw", 300));
    assert!(!ok("gw.example", "spiffe://td/gw", 300));
    assert!(!ok("https://gw", "td/gw", 300));
    assert!(!ok("https://gw", "spiffe://td/gw", 0));
    assert!(!ok("https://gw", "spiffe://td/gw", 200_000));
    assert_eq!("rfc9068".parse::<Profile>().unwrap(), Profile::Rfc9068);
    assert!("jwt".parse::<Profile>().is_err());
}

#[test]
fn cache_reuses_until_refresh_point_and_keys_on_every_input() {
    let iss = issuer(fixed(&[Alg::Es256]));
    let cache = TokenCache::new(1000);
    let m = Metrics::default();
    let cred = racf();
    let req = MintRequest::for_credential(&cred, "cics-payments", Profile::JwtSvid, None);

    let first = cache.get_or_mint(&iss, &req, at(T0), &m).unwrap();
    assert!(!first.from_cache);
    // ttl 300 s: refresh 60 s before exp, so hits up to T0 + 239.
    let hit = cache.get_or_mint(&iss, &req, at(T0 + 239), &m).unwrap();
    assert!(hit.from_cache);
    assert_eq!(hit.minted.token, first.minted.token);
    let fresh = cache.get_or_mint(&iss, &req, at(T0 + 240), &m).unwrap();
    assert!(!fresh.from_cache);
    assert_ne!(fresh.minted.token, first.minted.token);
    assert_eq!(
        (m.tokens_minted_total.get(), m.token_cache_hits_total.get()),
        (2, 1)
    );

    // Any difference in the claims' inputs is a different token.
    let cnf = MintRequest {
        cnf: Some("abc"),
        ..req
    };
    let other_principal = MintRequest {
        legacy: Some(Legacy {
            credential: "racf",
            principal: Some("BOB"),
        }),
        ..req
    };
    let other_profile = MintRequest {
        profile: Profile::Rfc9068,
        ..req
    };
    for r in [cnf, other_principal, other_profile] {
        let t = cache.get_or_mint(&iss, &r, at(T0 + 241), &m).unwrap();
        assert!(!t.from_cache, "{r:?}");
        assert_ne!(t.minted.token, fresh.minted.token);
        assert!(
            cache
                .get_or_mint(&iss, &r, at(T0 + 242), &m)
                .unwrap()
                .from_cache
        );
    }
    assert_eq!(cache.len(), 4);
}

#[test]
fn cache_eviction_and_bound() {
    let iss = issuer(fixed(&[Alg::Es256]));
    let m = Metrics::default();
    let cache = TokenCache::new(10);
    let ids: Vec<String> = (0..25).map(|i| format!("spiffe://td/w/{i}")).collect();
    let req = |id: &'static str| MintRequest {
        identity: id,
        audience: "a",
        kind: Kind::Mtls,
        profile: Profile::JwtSvid,
        cnf: None,
        legacy: None,
        lineage: None,
    };
    for (i, id) in ids.iter().enumerate() {
        let id: &'static str = Box::leak(id.clone().into_boxed_str());
        cache
            .get_or_mint(&iss, &req(id), at(T0 + i as u64), &m)
            .unwrap();
        assert!(cache.len() <= 10);
    }
    assert_eq!(cache.len(), 10);
    // The oldest went first: the last ten are still there.
    let last = Box::leak(ids[24].clone().into_boxed_str());
    assert!(
        cache
            .get_or_mint(&iss, &req(last), at(T0 + 30), &m)
            .unwrap()
            .from_cache
    );
    let first = Box::leak(ids[0].clone().into_boxed_str());
    assert!(cache.get(&req(first), "any", at(T0 + 30)).is_none());

    // Revocation of an identity: never handed out again.
    let kid = iss.keys().current().signer().kid().clone();
    assert!(cache.get(&req(last), &kid, at(T0 + 30)).is_some());
    assert_eq!(cache.evict_identity(last), 1);
    assert!(cache.get(&req(last), &kid, at(T0 + 30)).is_none());
    let again = cache
        .get_or_mint(&iss, &req(last), at(T0 + 30), &m)
        .unwrap();
    assert!(!again.from_cache);
    assert_eq!(cache.evict_jti(&again.minted.jti), 1);
    assert_eq!(cache.purge(at(T0 + 1000)), 9);
    assert!(cache.is_empty());

    let cred = racf();
    let legacy = MintRequest::for_credential(&cred, "a", Profile::JwtSvid, None);
    cache.get_or_mint(&iss, &legacy, at(T0), &m).unwrap();
    assert_eq!(cache.evict_credential("racf", "BOB"), 0);
    assert_eq!(cache.evict_credential("racf", "ALICE"), 1);
}

fn key_file(dir: &Path, name: &str) -> PathBuf {
    let p = dir.join(name);
    write_private(&p, &generate(Alg::Es256).unwrap()).unwrap();
    p
}

#[test]
fn rotation_publish_promote_retire() {
    let dir = tempfile::tempdir().unwrap();
    let a = key_file(dir.path(), "a.pem");
    let b = key_file(dir.path(), "b.pem");
    // A change to the `keys` list takes effect on restart: one set per configuration.
    let m = Arc::new(Metrics::default());
    let load = |paths: &[PathBuf]| {
        Arc::new(KeySet::load(paths, SignerRequirement::Es256, m.clone()).unwrap())
    };

    let set_a = load(std::slice::from_ref(&a));
    let iss_a = issuer(set_a.clone());
    let cred = racf();
    let req = MintRequest::for_credential(&cred, "cics-payments", Profile::JwtSvid, None);
    let token = iss_a.mint(&req, at(T0)).unwrap();
    let kid_a = set_a.current().signer().kid().clone();

    // Promoted: B signs, A still published; the old token verifies with [B, A].
    let set_ba = load(&[b.clone(), a.clone()]);
    let wk = WellKnown::new("https://portcullis.corp.example", set_ba.clone(), None);
    let jwks = wk.jwks();
    let listed: JwkSet = serde_json::from_slice(&jwks).unwrap();
    assert_eq!(listed.keys.len(), 2);
    assert_eq!(
        listed.keys[0].common.key_id.as_deref(),
        Some(&**set_ba.current().signer().kid())
    );
    verify(&token.token, &jwks, Algorithm::ES256);

    // The cache stops handing out A's tokens once B signs.
    let cache = TokenCache::default();
    let mm = Metrics::default();
    let t1 = cache.get_or_mint(&iss_a, &req, at(T0), &mm).unwrap();
    let iss_ba = issuer(set_ba.clone());
    let t2 = cache.get_or_mint(&iss_ba, &req, at(T0 + 1), &mm).unwrap();
    assert!(!t2.from_cache);
    assert_ne!(t1.minted.kid, t2.minted.kid);

    // Retired: A's file removed from the list (and from disk); after reload, JWKS lists B only.
    let set = load(&[b.clone(), a.clone()]);
    let wk = WellKnown::new("https://portcullis.corp.example", set.clone(), None);
    std::fs::remove_file(&a).unwrap();
    assert!(!set.poll(), "a missing file keeps the previous set");
    assert_eq!(
        serde_json::from_slice::<JwkSet>(&wk.jwks())
            .unwrap()
            .keys
            .len(),
        2
    );
    let set_b = load(&[b]);
    let wk_b = WellKnown::new("https://portcullis.corp.example", set_b, None);
    let only_b: JwkSet = serde_json::from_slice(&wk_b.jwks()).unwrap();
    assert_eq!(only_b.keys.len(), 1);
    assert!(only_b.find(&kid_a).is_none());
}

#[test]
fn jwks_follows_a_reloaded_key_file() {
    let dir = tempfile::tempdir().unwrap();
    let a = key_file(dir.path(), "current.pem");
    let b = key_file(dir.path(), "previous.pem");
    let set = Arc::new(
        KeySet::load(
            &[a.clone(), b.clone()],
            SignerRequirement::Any,
            Arc::new(Metrics::default()),
        )
        .unwrap(),
    );
    let wk = WellKnown::new("https://gw", set.clone(), None);
    let before: JwkSet = serde_json::from_slice(&wk.jwks()).unwrap();
    let old_b = set.current().keys()[1].kid().clone();
    std::fs::remove_file(&b).unwrap();
    write_private(&b, &generate(Alg::EdDsa).unwrap()).unwrap();
    assert!(set.poll());
    wk.refresh();
    let after: JwkSet = serde_json::from_slice(&wk.jwks()).unwrap();
    assert_eq!(before.keys[0], after.keys[0]);
    assert!(after.find(&old_b).is_none());
    let disco: Value = serde_json::from_slice(&wk.discovery()).unwrap();
    assert_eq!(
        disco["id_token_signing_alg_values_supported"],
        json!(["ES256", "EdDSA"])
    );
}

#[test]
fn a_workers_last_token_goes_only_to_the_same_request_and_not_after_eviction() {
    let iss = issuer(fixed(&[Alg::Es256]));
    let cache = TokenCache::new(1000);
    let m = Metrics::default();
    let cred = racf();
    let a = MintRequest::for_credential(&cred, "cics-payments", Profile::JwtSvid, None);
    let first = cache.get_or_mint(&iss, &a, at(T0), &m).unwrap();
    // Every input of the claims, one at a time, right after this thread kept `a`'s token.
    let twins = [
        MintRequest {
            identity: "spiffe://corp.example/legacy/racf/ALICE",
            ..a
        },
        MintRequest {
            audience: "cics-payment",
            ..a
        },
        MintRequest {
            kind: Kind::Mtls,
            ..a
        },
        MintRequest {
            profile: Profile::Rfc9068,
            ..a
        },
        MintRequest {
            cnf: Some("thumb"),
            ..a
        },
        MintRequest {
            legacy: Some(Legacy {
                credential: "racf",
                principal: Some("alice"),
            }),
            ..a
        },
        MintRequest { legacy: None, ..a },
        MintRequest { lineage: None, ..a },
    ];
    for t in &twins {
        let kept = cache.get_or_mint(&iss, &a, at(T0 + 1), &m).unwrap();
        assert!(kept.from_cache);
        assert_eq!(kept.minted.token, first.minted.token);
        let other = cache.get_or_mint(&iss, t, at(T0 + 1), &m).unwrap();
        assert_ne!(other.minted.token, first.minted.token, "{t:?}");
        // The twin's own token is kept now; `a` still gets its own.
        let back = cache.get_or_mint(&iss, &a, at(T0 + 1), &m).unwrap();
        assert_eq!(back.minted.token, first.minted.token);
    }

    // Kept, then revoked (each way): the kept entry is not handed out again.
    type Evict = fn(&TokenCache, &Minted) -> usize;
    let evictions: [Evict; 4] = [
        |c, _| c.evict_identity("spiffe://corp.example/legacy/racf/alice"),
        |c, _| c.evict_credential("racf", "ALICE"),
        |c, t| c.evict_jti(&t.jti),
        |c, _| c.clear(),
    ];
    for evict in evictions {
        let kept = cache.get_or_mint(&iss, &a, at(T0 + 2), &m).unwrap();
        assert!(
            cache
                .get_or_mint(&iss, &a, at(T0 + 2), &m)
                .unwrap()
                .from_cache
        );
        assert!(evict(&cache, &kept.minted) >= 1);
        let after = cache.get_or_mint(&iss, &a, at(T0 + 2), &m).unwrap();
        assert!(!after.from_cache);
        assert_ne!(after.minted.jti, kept.minted.jti);
    }
    // Past its refresh point the kept token is not handed out either.
    let kept = cache.get_or_mint(&iss, &a, at(T0 + 2), &m).unwrap();
    assert!(
        cache
            .get_or_mint(&iss, &a, at(T0 + 3), &m)
            .unwrap()
            .from_cache
    );
    let late = cache.get_or_mint(&iss, &a, at(T0 + 2 + 240), &m).unwrap();
    assert!(!late.from_cache);
    assert_ne!(late.minted.jti, kept.minted.jti);
}

#[test]
fn a_token_evicted_while_other_threads_keep_it_is_never_handed_out_again() {
    // Every test thread is worker 0: the hammering threads and this one share the kept slot,
    // so each look-up here races their look-ups and keeps. (It fails at once without the epoch
    // check on the kept entry; the narrower race the second bump in `evict` closes, a look-up
    // between the first bump and the removal, is rarely hit here and is argued there.)
    let iss = Arc::new(issuer(fixed(&[Alg::Es256])));
    let cache = Arc::new(TokenCache::new(1000));
    let m = Arc::new(Metrics::default());
    let cred = racf();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let hammers: Vec<_> = (0..3)
        .map(|_| {
            let (iss, cache, m, cred, stop) = (
                iss.clone(),
                cache.clone(),
                m.clone(),
                cred.clone(),
                stop.clone(),
            );
            std::thread::spawn(move || {
                let a = MintRequest::for_credential(&cred, "aud", Profile::JwtSvid, None);
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    cache.get_or_mint(&iss, &a, at(T0), &m).unwrap();
                }
            })
        })
        .collect();
    let a = MintRequest::for_credential(&cred, "aud", Profile::JwtSvid, None);
    for _ in 0..300 {
        let t = cache.get_or_mint(&iss, &a, at(T0), &m).unwrap().minted;
        cache.evict_jti(&t.jti);
        let after = cache.get_or_mint(&iss, &a, at(T0), &m).unwrap().minted;
        assert_ne!(after.jti, t.jti, "an evicted token was handed out again");
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for h in hammers {
        h.join().unwrap();
    }
}
