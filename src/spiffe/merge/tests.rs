use std::collections::HashMap;
use std::time::SystemTime;

use crate::spiffe::testing::{at, store_with, JwtSigner, TestCa};
use crate::spiffe::x509;

fn roots(cas: &[&TestCa]) -> HashMap<String, Vec<rustls::pki_types::CertificateDer<'static>>> {
    let mut m: HashMap<String, Vec<_>> = HashMap::new();
    for ca in cas {
        m.entry(ca.td.clone()).or_default().push(ca.der());
    }
    m
}

fn now() -> SystemTime {
    at(2030, 6, 1)
}

#[test]
fn agent_bundles_merge_with_files_and_replace_whole() {
    let file_ca = TestCa::new("corp.example");
    let agent_ca = TestCa::new("corp.example");
    let partner = TestCa::new("partner.example");
    let store = store_with(&[&file_ca], &[]);
    let from_file = file_ca.leaf("spiffe://corp.example/a");
    let from_agent = agent_ca.leaf("spiffe://corp.example/b");
    let partner_leaf = partner.leaf("spiffe://partner.example/p");
    assert!(x509::verify_chain(&from_agent, &store, now()).is_err());

    store.set_workload_bundles(roots(&[&agent_ca, &partner]), HashMap::new());
    // Both the file's CA and the agent's verify their trust domain; a federated domain too.
    assert!(x509::verify_chain(&from_file, &store, now()).is_ok());
    assert!(x509::verify_chain(&from_agent, &store, now()).is_ok());
    assert!(x509::verify_chain(&partner_leaf, &store, now()).is_ok());
    // A CA vouches only for its own trust domain, merged or not.
    let forged = partner.leaf("spiffe://corp.example/b");
    assert!(x509::verify_chain(&forged, &store, now()).is_err());

    // The agent's next set replaces the last one whole: the partner is gone, the file stays.
    store.set_workload_bundles(roots(&[&agent_ca]), HashMap::new());
    assert!(x509::verify_chain(&partner_leaf, &store, now()).is_err());
    assert!(x509::verify_chain(&from_file, &store, now()).is_ok());
    // The agent stops sending corp.example: the files alone remain.
    store.set_workload_bundles(HashMap::new(), HashMap::new());
    assert!(x509::verify_chain(&from_agent, &store, now()).is_err());
    assert!(x509::verify_chain(&from_file, &store, now()).is_ok());
}

#[test]
fn agent_jwt_keys_merge_with_files_and_a_broken_set_keeps_the_previous() {
    let file_key = JwtSigner::es256("file");
    let agent_key = JwtSigner::es256("agent");
    let store = store_with(&[], &[("corp.example", &[&file_key])]);
    let doc = |keys: &[&JwtSigner]| {
        let v: Vec<_> = keys.iter().map(|k| k.jwk()).collect();
        serde_json::json!({ "keys": v }).to_string().into_bytes()
    };
    let mut jwt = HashMap::new();
    jwt.insert("corp.example".to_string(), doc(&[&agent_key]));
    store.set_workload_bundles(HashMap::new(), jwt);
    let b = store.jwt("corp.example").unwrap();
    assert!(b.get("file").is_some() && b.get("agent").is_some());

    // An unusable set (no keys) keeps what was in use, rather than trusting less or more.
    let mut jwt = HashMap::new();
    jwt.insert("corp.example".to_string(), b"{\"keys\": []}".to_vec());
    store.set_workload_bundles(HashMap::new(), jwt);
    let b = store.jwt("corp.example").unwrap();
    assert!(b.get("agent").is_some());
}
