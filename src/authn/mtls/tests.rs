use rustls::pki_types::CertificateDer;

use std::time::Duration;

use super::*;
use crate::spiffe::svid_cache::REVALIDATE_EVERY;
use crate::spiffe::testing::{at, store_with, TestCa};

fn conn(chain: Option<Vec<CertificateDer<'static>>>) -> ConnInfo {
    ConnInfo::for_tests(chain)
}

fn parts() -> Parts {
    http::Request::new(()).into_parts().0
}

fn authn(store: TrustStore, tds: &[&str]) -> MtlsAuthenticator {
    let tds = tds.iter().map(|t| TrustDomain::parse(t).unwrap()).collect();
    MtlsAuthenticator::new("workload-mtls".into(), Arc::new(store), tds)
}

async fn run(a: &MtlsAuthenticator, c: &ConnInfo, now: SystemTime) -> Outcome {
    a.authenticate(&parts(), c, now).await
}

#[tokio::test]
async fn outcomes() {
    let (corp, other) = (TestCa::new("corp.example"), TestCa::new("other.example"));
    let a = authn(store_with(&[&corp, &other], &[]), &["corp.example"]);
    let now = at(2030, 6, 1);
    assert_eq!(a.kind(), Kind::Mtls);
    assert!(a.challenge().is_none());

    assert!(matches!(
        run(&a, &conn(None), now).await,
        Outcome::NotPresent
    ));
    assert!(matches!(
        run(&a, &conn(Some(vec![])), now).await,
        Outcome::NotPresent
    ));

    let good = conn(Some(corp.leaf("spiffe://corp.example/ns/pay")));
    match run(&a, &good, now).await {
        Outcome::Authenticated(c) => {
            assert_eq!(c.identity, "spiffe://corp.example/ns/pay");
            assert_eq!(c.kind, Kind::Mtls);
            assert_eq!(&*c.name, "workload-mtls");
        }
        other => panic!("{other:?}"),
    }
    // Expired since the handshake.
    let late = run(&a, &good, at(2031, 6, 1)).await;
    assert!(matches!(late, Outcome::Rejected(r) if r.code == Code::InvalidCredential));
    // Valid SVID, but of a trust domain this credential does not accept.
    let foreign = conn(Some(other.leaf("spiffe://other.example/x")));
    assert!(matches!(run(&a, &foreign, now).await, Outcome::Rejected(_)));
    // Signed by the wrong trust domain's CA.
    let forged = conn(Some(other.leaf("spiffe://corp.example/x")));
    assert!(matches!(run(&a, &forged, now).await, Outcome::Rejected(_)));
}

#[tokio::test]
async fn validation_is_reused_on_the_connection_only_while_it_still_holds() {
    let corp = TestCa::new("corp.example");
    let store = Arc::new(store_with(&[&corp], &[]));
    let a = MtlsAuthenticator::new(
        "workload-mtls".into(),
        store.clone(),
        vec![TrustDomain::parse("corp.example").unwrap()],
    );
    let c = conn(Some(corp.leaf("spiffe://corp.example/ns/pay")));
    let now = at(2030, 6, 1);
    assert!(c.svid.get(&store, now).is_none());
    assert!(matches!(run(&a, &c, now).await, Outcome::Authenticated(_)));
    // Kept, and only for REVALIDATE_EVERY.
    assert!(c.svid.get(&store, now).is_some());
    assert!(c.svid.get(&store, now + REVALIDATE_EVERY).is_none());
    assert!(c.svid.get(&store, now - Duration::from_secs(1)).is_none());
    // A copy of the connection info starts empty.
    assert!(c.clone().svid.get(&store, now).is_none());

    // The trust bundle replaced by another CA of the same trust domain: the cached validation
    // is not reused, and the chain no longer verifies.
    let rotated = TestCa::new("corp.example");
    let b = authn(store_with(&[&rotated], &[]), &["corp.example"]);
    assert!(matches!(run(&b, &c, now).await, Outcome::Rejected(_)));
    // Past the leaf's notAfter (2031-01-01), even within REVALIDATE_EVERY of a check.
    let edge = at(2030, 12, 31) + Duration::from_secs(86_400 - 30);
    assert!(matches!(run(&a, &c, edge).await, Outcome::Authenticated(_)));
    let after = edge + Duration::from_secs(31);
    assert!(matches!(run(&a, &c, after).await, Outcome::Rejected(_)));
}
