use super::*;

#[test]
fn identity_failures_are_found_through_nested_io_errors() {
    let id = UpstreamIdError::WrongId {
        expected: "spiffe://corp.example/a".into(),
        got: "spiffe://corp.example/b".into(),
    };
    let tls = rustls::Error::InvalidCertificate(CertificateError::Other(OtherError(Arc::new(id))));
    let inner = std::io::Error::new(std::io::ErrorKind::InvalidData, tls);
    let outer = std::io::Error::other(inner);
    let found = identity_failure(&outer).map(UpstreamIdError::reason);
    assert_eq!(found, Some("upstream-spiffe-id-mismatch"));
    // Another certificate error is not an identity failure.
    let other = std::io::Error::other(rustls::Error::InvalidCertificate(CertificateError::Expired));
    assert!(identity_failure(&other).is_none());
}
