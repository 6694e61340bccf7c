use rcgen::{IsCa, KeyUsagePurpose, SanType};
use rustls::{CertificateError, Error};

use super::*;
use crate::spiffe::testing::{at, store_with, TestCa};

fn store(cas: &[&TestCa]) -> TrustStore {
    store_with(cas, &[])
}

const NOW: (i32, u8, u8) = (2030, 6, 1);

fn now() -> SystemTime {
    at(NOW.0, NOW.1, NOW.2)
}

#[test]
fn valid_svid_accepted() {
    let ca = TestCa::new("corp.example");
    let chain = ca.leaf("spiffe://corp.example/ns/pay/sa/api");
    let v = verify_chain(&chain, &store(&[&ca]), now()).unwrap();
    assert_eq!(v.id.as_str(), "spiffe://corp.example/ns/pay/sa/api");
}

#[test]
fn intermediate_chain_accepted() {
    let root = TestCa::new("corp.example");
    let mid = root.intermediate("corp.example");
    let chain = mid.leaf("spiffe://corp.example/svc");
    assert_eq!(chain.len(), 2);
    let v = verify_chain(&chain, &store(&[&root]), now()).unwrap();
    assert_eq!(v.id.as_str(), "spiffe://corp.example/svc");
    // Without the intermediate the path cannot be built.
    let leaf_only = &chain[..1];
    assert!(matches!(
        verify_chain(leaf_only, &store(&[&root]), now()),
        Err(SvidError::Path(_))
    ));
}

#[test]
fn leaf_that_is_a_ca_refused() {
    let ca = TestCa::new("corp.example");
    let chain = ca.leaf_with("spiffe://corp.example/x", |p| {
        p.is_ca = IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    });
    let err = verify_chain(&chain, &store(&[&ca]), now()).unwrap_err();
    assert!(matches!(err, SvidError::LeafIsCa), "{err}");
}

#[test]
fn uri_san_count_and_validity() {
    let ca = TestCa::new("corp.example");
    let s = store(&[&ca]);
    let two = ca.leaf_with("spiffe://corp.example/a", |p| {
        p.subject_alt_names
            .push(SanType::URI("spiffe://corp.example/b".try_into().unwrap()));
    });
    assert!(matches!(
        verify_chain(&two, &s, now()),
        Err(SvidError::UriSanCount(2))
    ));
    let none = ca.leaf_with("spiffe://corp.example/a", |p| {
        p.subject_alt_names = vec![SanType::DnsName("svc.corp.example".try_into().unwrap())];
    });
    assert!(matches!(
        verify_chain(&none, &s, now()),
        Err(SvidError::UriSanCount(0))
    ));
    let bad = ca.leaf("spiffe://Corp.example/a");
    assert!(matches!(
        verify_chain(&bad, &s, now()),
        Err(SvidError::BadId(_))
    ));
    let https = ca.leaf("https://corp.example/a");
    assert!(matches!(
        verify_chain(&https, &s, now()),
        Err(SvidError::BadId(_))
    ));
    let root = ca.leaf("spiffe://corp.example");
    assert!(matches!(
        verify_chain(&root, &s, now()),
        Err(SvidError::RootId)
    ));
    // A DNS SAN next to the one URI SAN is fine.
    let dns = ca.leaf_with("spiffe://corp.example/a", |p| {
        p.subject_alt_names
            .push(SanType::DnsName("a.corp.example".try_into().unwrap()));
    });
    assert!(verify_chain(&dns, &s, now()).is_ok());
}

#[test]
fn other_trust_domains_ca_cannot_mint_ids() {
    let a = TestCa::new("a.example");
    let b = TestCa::new("b.example");
    let s = store(&[&a, &b]);
    // Claims td A, signed by td B's CA (which the store trusts, for td B).
    let forged = b.leaf("spiffe://a.example/admin");
    let err = verify_chain(&forged, &s, now()).unwrap_err();
    assert!(
        matches!(
            err,
            SvidError::Path(Error::InvalidCertificate(CertificateError::UnknownIssuer))
        ),
        "{err:?}"
    );
    assert!(verify_chain(&b.leaf("spiffe://b.example/x"), &s, now()).is_ok());
    // A trust domain the store does not know.
    let c = b.leaf("spiffe://c.example/x");
    assert!(matches!(
        verify_chain(&c, &s, now()),
        Err(SvidError::UnknownTrustDomain(_))
    ));
}

#[test]
fn validity_window_uses_now() {
    let ca = TestCa::new("corp.example");
    let chain = ca.leaf("spiffe://corp.example/a");
    let s = store(&[&ca]);
    let expired = verify_chain(&chain, &s, at(2031, 6, 1)).unwrap_err();
    assert!(
        matches!(
            expired,
            SvidError::Path(Error::InvalidCertificate(
                CertificateError::ExpiredContext { .. }
            ))
        ),
        "{expired:?}"
    );
    let early = verify_chain(&chain, &s, at(2029, 6, 1)).unwrap_err();
    assert!(
        matches!(
            early,
            SvidError::Path(Error::InvalidCertificate(
                CertificateError::NotValidYetContext { .. }
            ))
        ),
        "{early:?}"
    );
}

#[test]
fn key_usage_rules() {
    let ca = TestCa::new("corp.example");
    let s = store(&[&ca]);
    let cert_sign = ca.leaf_with("spiffe://corp.example/a", |p| {
        p.key_usages.push(KeyUsagePurpose::KeyCertSign);
    });
    assert!(matches!(
        verify_chain(&cert_sign, &s, now()),
        Err(SvidError::SigningUsage)
    ));
    let crl_sign = ca.leaf_with("spiffe://corp.example/a", |p| {
        p.key_usages.push(KeyUsagePurpose::CrlSign);
    });
    assert!(matches!(
        verify_chain(&crl_sign, &s, now()),
        Err(SvidError::SigningUsage)
    ));
    let none = ca.leaf_with("spiffe://corp.example/a", |p| p.key_usages.clear());
    assert!(matches!(
        verify_chain(&none, &s, now()),
        Err(SvidError::NoKeyUsage)
    ));
    let no_ds = ca.leaf_with("spiffe://corp.example/a", |p| {
        p.key_usages = vec![KeyUsagePurpose::KeyEncipherment];
    });
    assert!(matches!(
        verify_chain(&no_ds, &s, now()),
        Err(SvidError::NoDigitalSignature)
    ));
}

#[test]
fn server_only_eku_refused_for_clients() {
    let ca = TestCa::new("corp.example");
    let chain = ca.leaf_with("spiffe://corp.example/a", |p| {
        p.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    });
    assert!(matches!(
        verify_chain(&chain, &store(&[&ca]), now()),
        Err(SvidError::Path(_))
    ));
}

#[test]
fn garbage_and_empty() {
    let s = store(&[]);
    assert!(matches!(
        verify_chain(&[], &s, now()),
        Err(SvidError::Empty)
    ));
    let junk = CertificateDer::from(vec![0x30, 0x03, 0x02, 0x01, 0x00]);
    assert!(matches!(
        verify_chain(&[junk], &s, now()),
        Err(SvidError::Malformed(_))
    ));
    assert_eq!(crate::conn::leaf_thumbprint(&[]), None);
}
