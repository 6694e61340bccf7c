use super::first_rdn_value;

#[test]
fn first_rdn() {
    let f = |s| first_rdn_value(s);
    assert_eq!(
        f("cn=ops,ou=groups,dc=example,dc=org").as_deref(),
        Some("ops")
    );
    assert_eq!(
        f("racfid=PAYMENTS,profiletype=group,cn=RACF").as_deref(),
        Some("PAYMENTS")
    );
    assert_eq!(f("PAYMENTS").as_deref(), Some("PAYMENTS"));
    assert_eq!(f("cn=a\\2cb,dc=x").as_deref(), Some("a,b"));
    assert_eq!(f("cn=a\\,b,dc=x").as_deref(), Some("a,b"));
    assert_eq!(f("cn=a+uid=b,dc=x").as_deref(), Some("a"));
    assert_eq!(f("cn=trailing\\").as_deref(), None);
}
