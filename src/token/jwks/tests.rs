use super::*;
use crate::metrics::Metrics;
use crate::token::keys::SigningKey;

fn set(algs: &[Alg]) -> Arc<KeySet> {
    let keys = algs
        .iter()
        .map(|a| (a.to_string(), SigningKey::generate(*a).unwrap()))
        .collect();
    let ring = KeyRing::new(keys).unwrap();
    Arc::new(KeySet::from_ring(ring, Arc::new(Metrics::default())))
}

#[test]
fn jwks_lists_keys_in_order_with_kid_alg_use() {
    let keys = set(&[Alg::EdDsa, Alg::Es256]);
    let wk = WellKnown::new("https://gw.example", keys.clone(), None);
    let v: serde_json::Value = serde_json::from_slice(&wk.jwks()).unwrap();
    let ring = keys.current();
    let listed = v["keys"].as_array().unwrap();
    assert_eq!(listed.len(), 2);
    for (j, k) in listed.iter().zip(ring.keys()) {
        assert_eq!(j["kid"], **k.kid());
        assert_eq!(j["alg"], k.alg().as_str());
        assert_eq!(j["use"], "sig");
        assert!(j.get("d").is_none(), "no private material");
    }
    // Every JWK parses as a standard one.
    let set: jsonwebtoken::jwk::JwkSet = serde_json::from_value(v).unwrap();
    assert_eq!(set.keys.len(), 2);
    // Same bytes every time (rendered once).
    assert_eq!(wk.jwks().as_ptr(), wk.jwks().as_ptr());
}

#[test]
fn discovery_document() {
    let keys = set(&[Alg::Es256, Alg::EdDsa, Alg::Es256]);
    let wk = WellKnown::new(
        "https://gw.example/",
        keys,
        Some(&[Kind::Ldap, Kind::ApiKey, Kind::Mtls, Kind::Ldap]),
    );
    let v: serde_json::Value = serde_json::from_slice(&wk.discovery()).unwrap();
    assert_eq!(
        v,
        serde_json::json!({
            "issuer": "https://gw.example/",
            "jwks_uri": "https://gw.example/.well-known/jwks.json",
            "token_endpoint": "https://gw.example/oauth2/token",
            "grant_types_supported": ["urn:ietf:params:oauth:grant-type:token-exchange"],
            "token_endpoint_auth_methods_supported": ["client_secret_basic", "tls_client_auth"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["ES256", "EdDSA"],
        })
    );
}

#[test]
fn cache_control_matches_max_age() {
    assert_eq!(
        CACHE_CONTROL,
        format!("public, max-age={JWKS_MAX_AGE_SECS}")
    );
    assert_eq!(JWKS_MAX_AGE.as_secs(), JWKS_MAX_AGE_SECS);
}
