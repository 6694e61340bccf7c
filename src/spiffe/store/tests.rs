use std::fs::File;

use super::*;
use crate::spiffe::testing::{jwks, JwtSigner, TestCa};

/// Write `bytes` and move the modification time, so the change shows whatever the
/// file system's timestamp granularity.
fn write(path: &Path, bytes: &[u8], tick: u64) {
    std::fs::write(path, bytes).unwrap();
    let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_900_000_000 + tick);
    File::options()
        .write(true)
        .open(path)
        .unwrap()
        .set_modified(t)
        .unwrap();
}

fn td(s: &str) -> TrustDomain {
    TrustDomain::parse(s).unwrap()
}

#[test]
fn load_poll_reload_and_keep_on_error() {
    let dir = tempfile::tempdir().unwrap();
    let (x_path, j_path) = (dir.path().join("ca.pem"), dir.path().join("jwt.json"));
    let (ca1, ca2) = (TestCa::new("corp.example"), TestCa::new("corp.example"));
    let (k1, k2) = (JwtSigner::es256("k1"), JwtSigner::es256("k2"));
    write(&x_path, ca1.pem().as_bytes(), 1);
    write(&j_path, &jwks(&[&k1]), 1);
    let metrics = Arc::new(Metrics::default());
    let src = TrustSource {
        trust_domain: td("corp.example"),
        x509_bundle: Some(x_path.clone()),
        jwt_bundle: Some(j_path.clone()),
    };
    let store = TrustStore::load(&[src], metrics.clone()).unwrap();
    assert_eq!(store.trust_domains(), vec!["corp.example"]);
    assert!(store.has_x509());
    assert_eq!(store.x509("corp.example").unwrap().roots(), &[ca1.der()]);
    assert!(store.jwt("corp.example").unwrap().get("k1").is_some());
    assert!(store.x509("other.example").is_none());
    assert_eq!(store.poll(), 0);

    // A new file is picked up.
    write(&x_path, ca2.pem().as_bytes(), 2);
    write(&j_path, &jwks(&[&k2]), 2);
    assert_eq!(store.poll(), 2);
    assert_eq!(store.x509("corp.example").unwrap().roots(), &[ca2.der()]);
    let jwt = store.jwt("corp.example").unwrap();
    assert!(jwt.get("k1").is_none() && jwt.get("k2").is_some());
    assert_eq!(metrics.config_reloads_total.with(&["ok"]).get(), 2);

    // A broken file keeps the old bundle, is reported once, and is retried when it changes.
    write(
        &x_path,
        b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        3,
    );
    write(&j_path, b"{\"keys\": [", 3);
    assert_eq!(store.poll(), 0);
    assert_eq!(store.poll(), 0);
    assert_eq!(metrics.config_reloads_total.with(&["error"]).get(), 2);
    assert_eq!(store.x509("corp.example").unwrap().roots(), &[ca2.der()]);
    assert!(store.jwt("corp.example").unwrap().get("k2").is_some());
    std::fs::remove_file(&j_path).unwrap();
    assert_eq!(store.poll(), 0);
    assert!(store.jwt("corp.example").unwrap().get("k2").is_some());
    write(&x_path, ca1.pem().as_bytes(), 4);
    write(&j_path, &jwks(&[&k1]), 4);
    assert_eq!(store.poll(), 2);
    assert_eq!(store.x509("corp.example").unwrap().roots(), &[ca1.der()]);
}

#[test]
fn load_reports_every_problem() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.pem");
    write(&bad, b"not a bundle", 1);
    let big = dir.path().join("big.json");
    write(&big, &vec![b' '; (MAX_BUNDLE_BYTES + 1) as usize], 1);
    let src = |name: &str, x: Option<&Path>, j: Option<&Path>| TrustSource {
        trust_domain: td(name),
        x509_bundle: x.map(Path::to_path_buf),
        jwt_bundle: j.map(Path::to_path_buf),
    };
    let sources = [
        src(
            "a.example",
            Some(&dir.path().join("missing.pem")),
            Some(&big),
        ),
        src("b.example", Some(&bad), None),
        src("c.example", None, None),
        src("b.example", Some(&bad), None),
    ];
    let err = TrustStore::load(&sources, Arc::new(Metrics::default())).unwrap_err();
    assert_eq!(err.0.len(), 5, "{err}");
    assert!(matches!(err.0[0], StoreError::Read { .. }));
    assert!(matches!(err.0[1], StoreError::TooLarge { .. }));
    assert!(matches!(err.0[2], StoreError::Bundle { .. }));
    assert!(matches!(err.0[3], StoreError::NoBundle(_)));
    assert!(matches!(err.0[4], StoreError::Duplicate(_)));
    assert!(err.to_string().contains("missing.pem"));
}

#[tokio::test]
async fn watcher_stops_with_the_store() {
    let mut store = TrustStore::empty();
    store.insert(
        td("corp.example"),
        Some(TestCa::new("corp.example").bundle()),
        None,
    );
    let store = Arc::new(store);
    let handle = store.spawn_watcher(Duration::from_millis(5));
    tokio::time::sleep(Duration::from_millis(20)).await;
    drop(store);
    tokio::time::timeout(Duration::from_secs(5), handle)
        .await
        .unwrap()
        .unwrap();
}
