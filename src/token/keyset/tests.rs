use std::path::Path;

use super::*;
use crate::token::keys::{generate, write_private};

fn key_file(dir: &Path, name: &str, alg: Alg) -> PathBuf {
    let p = dir.join(name);
    write_private(&p, &generate(alg).unwrap()).unwrap();
    p
}

#[test]
fn first_signs_all_published_and_reload_follows_files() {
    let dir = tempfile::tempdir().unwrap();
    let a = key_file(dir.path(), "a.pem", Alg::Es256);
    let b = key_file(dir.path(), "b.pem", Alg::EdDsa);
    let metrics = Arc::new(Metrics::default());
    let set = KeySet::load(
        &[a.clone(), b.clone()],
        SignerRequirement::Any,
        metrics.clone(),
    )
    .unwrap();
    let ring = set.current();
    assert_eq!(ring.keys().len(), 2);
    assert_eq!(ring.signer().alg(), Alg::Es256);
    let kid_a = ring.signer().kid().clone();
    assert!(!set.poll(), "nothing changed");

    // A broken file keeps the previous set.
    std::fs::remove_file(&b).unwrap();
    std::fs::write(&b, "garbage").unwrap();
    assert!(!set.poll());
    assert_eq!(set.current().generation(), ring.generation());
    assert_eq!(metrics.config_reloads_total.with(&["error"]).get(), 1);

    // A good replacement is picked up.
    std::fs::remove_file(&b).unwrap();
    write_private(&b, &generate(Alg::Es256).unwrap()).unwrap();
    assert!(set.poll());
    let ring2 = set.current();
    assert_ne!(ring2.generation(), ring.generation());
    assert_eq!(ring2.signer().kid(), &kid_a);
    assert_eq!(ring2.keys().len(), 2);
}

#[test]
fn jwt_svid_requirement_refuses_an_eddsa_signer() {
    let dir = tempfile::tempdir().unwrap();
    let ed = key_file(dir.path(), "ed.pem", Alg::EdDsa);
    let es = key_file(dir.path(), "es.pem", Alg::Es256);
    let m = Arc::new(Metrics::default());
    let paths = [ed.clone(), es.clone()];
    assert!(matches!(
        KeySet::load(&paths, SignerRequirement::Es256, m.clone()),
        Err(KeyError::SignerNotEs256 { .. })
    ));
    assert!(KeySet::load(&paths, SignerRequirement::Any, m.clone()).is_ok());
    assert!(KeySet::load(&[es, ed], SignerRequirement::Es256, m).is_ok());
    let errs = check_files(
        &[dir.path().join("missing.pem"), paths[0].clone()],
        SignerRequirement::Es256,
    );
    assert_eq!(errs.len(), 2, "{errs:?}");
}

#[test]
fn duplicates_and_empty_are_refused_and_no_paths_is_ephemeral() {
    let dir = tempfile::tempdir().unwrap();
    let a = key_file(dir.path(), "a.pem", Alg::Es256);
    let m = Arc::new(Metrics::default());
    let err = KeySet::load(&[a.clone(), a], SignerRequirement::Any, m.clone()).unwrap_err();
    assert!(matches!(err, KeyError::Duplicate { .. }), "{err}");
    assert!(matches!(KeyRing::new(vec![]), Err(KeyError::Empty)));
    let set = KeySet::load(&[], SignerRequirement::Es256, m).unwrap();
    assert!(!set.is_file_backed());
    assert_eq!(set.current().signer().alg(), Alg::Es256);
    assert!(!set.poll());
}
