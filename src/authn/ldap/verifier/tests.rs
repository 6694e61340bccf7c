use super::*;

#[test]
fn verifies_only_the_password_under_its_key() {
    let v = hash("c:uid=a", "pw").unwrap();
    assert!(v.starts_with(PREFIX));
    assert!(matches("c:uid=a", "pw", &v));
    assert!(!matches("c:uid=a", "pw2", &v));
    assert!(!matches("c:uid=b", "pw", &v), "bound to its account");
    // Two verifiers of one password differ (random salt).
    assert_ne!(v, hash("c:uid=a", "pw").unwrap());
    // Other parameters or garbage are never computed.
    let heavier = v.replace("m=19456", "m=4000000");
    assert!(!matches("c:uid=a", "pw", &heavier));
    assert!(!matches("c:uid=a", "pw", "garbage"));
    assert!(!matches("c:uid=a", "pw", &format!("{PREFIX}zz$zz")));
}
