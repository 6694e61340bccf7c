use super::*;
use crate::token::keys::SigningKey;

#[test]
fn generate_writes_0600_and_loads_back_and_never_overwrites() {
    let dir = tempfile::tempdir().unwrap();
    for alg in [Alg::Es256, Alg::EdDsa] {
        let path = dir.path().join(format!("{alg}.pem"));
        let pem = generate(alg).unwrap();
        write_private(&path, &pem).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let key = SigningKey::load(&path).unwrap();
        assert_eq!(key.alg(), alg);
        let err = write_private(&path, &generate(alg).unwrap()).unwrap_err();
        assert!(matches!(err, KeyError::Exists(_)), "{err}");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), pem);
    }
}
