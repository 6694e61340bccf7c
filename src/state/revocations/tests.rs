use super::*;
use crate::time::Timestamp;

fn rev(t: Target) -> Revocation {
    Revocation {
        target: t,
        reason: "test".into(),
        at: Timestamp(0),
    }
}

#[test]
fn matches_each_handle_only() {
    let set = RevocationSet::new(&[
        rev(Target::Identity("spiffe://corp.example/a".into())),
        rev(Target::Credential {
            name: "racf".into(),
            principal: "JSMITH".into(),
        }),
        rev(Target::Jti("t-1".into())),
    ]);
    assert!(set.contains("spiffe://corp.example/a", "workload-mtls", None, None));
    assert!(!set.contains("spiffe://corp.example/b", "workload-mtls", None, None));
    assert!(set.contains("spiffe://x/legacy/jsmith", "racf", Some("JSMITH"), None));
    // Same principal through another credential is another account.
    assert!(!set.contains(
        "spiffe://x/legacy/jsmith",
        "partner-keys",
        Some("JSMITH"),
        None
    ));
    assert!(!set.contains("spiffe://x/legacy/jsmith", "racf", Some("jsmith"), None));
    assert!(set.contains("spiffe://corp.example/b", "workload-jwt", None, Some("t-1")));
    assert!(!set.contains("spiffe://corp.example/b", "workload-jwt", None, Some("t-2")));
    assert!(!RevocationSet::default().contains(
        "spiffe://corp.example/a",
        "x",
        Some("y"),
        Some("z")
    ));
}
