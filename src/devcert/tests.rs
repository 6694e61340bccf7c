use std::time::{Duration, SystemTime, UNIX_EPOCH};

use x509_parser::extensions::ParsedExtension;
use x509_parser::prelude::{parse_x509_pem, X509Certificate};

use super::*;

struct Facts {
    ski: Option<Vec<u8>>,
    aki: Option<Vec<u8>>,
    ca: Option<bool>,
    ca_critical: bool,
    from: u64,
    until: u64,
}

fn facts(pem: &str) -> Facts {
    let (_, pem) = parse_x509_pem(pem.as_bytes()).unwrap();
    let cert: X509Certificate<'_> = pem.parse_x509().unwrap();
    let mut f = Facts {
        ski: None,
        aki: None,
        ca: None,
        ca_critical: false,
        from: cert.validity().not_before.timestamp() as u64,
        until: cert.validity().not_after.timestamp() as u64,
    };
    for ext in cert.extensions() {
        match ext.parsed_extension() {
            ParsedExtension::SubjectKeyIdentifier(k) => f.ski = Some(k.0.to_vec()),
            ParsedExtension::AuthorityKeyIdentifier(a) => {
                f.aki = a.key_identifier.as_ref().map(|k| k.0.to_vec())
            }
            ParsedExtension::BasicConstraints(bc) => {
                f.ca = Some(bc.ca);
                f.ca_critical = ext.critical;
            }
            _ => {}
        }
    }
    f
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

const DAY: u64 = 86_400;

#[test]
fn ca_has_ski_critical_basic_constraints_and_thirty_days() {
    let ca = DevCa::new("test CA").unwrap();
    let f = facts(&ca.cert_pem());
    assert!(f.ski.is_some(), "a CA needs a Subject Key Identifier");
    assert_eq!(f.ca, Some(true));
    assert!(f.ca_critical, "basicConstraints of a CA is critical");
    assert!(f.from <= now() && now() - f.from <= 2 * DAY);
    assert!(f.until > now() + (CA_DAYS as u64 - 1) * DAY);
    assert!(f.until - f.from <= (CA_DAYS as u64 + 1) * DAY);
}

#[test]
fn leaves_name_their_ca_and_live_a_week() {
    let ca = DevCa::new("test CA").unwrap();
    let ca_ski = facts(&ca.cert_pem()).ski.unwrap();
    for leaf in [
        ca.server(&["localhost", "127.0.0.1"]).unwrap(),
        ca.svid("spiffe://demo.example/ns/a/sa/b").unwrap(),
    ] {
        let f = facts(&leaf.cert_pem);
        assert_eq!(f.aki.as_deref(), Some(&ca_ski[..]), "AKI = the CA's SKI");
        assert!(f.ski.is_some(), "leaves carry a Subject Key Identifier too");
        assert_eq!(f.ca, Some(false));
        assert!(f.until - f.from <= (LEAF_DAYS as u64 + 1) * DAY);
        assert!(f.until > now() + Duration::from_secs(6 * DAY).as_secs());
    }
}

#[test]
fn sign_never_makes_a_ca() {
    let ca = DevCa::new("test CA").unwrap();
    let mut p = CertificateParams::new(vec!["x.test".to_string()]).unwrap();
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let f = facts(&ca.sign(p).unwrap().cert_pem);
    assert_eq!(f.ca, Some(false));
    assert!(f.aki.is_some());
}
