use super::*;

#[test]
fn filter_escaping() {
    assert_eq!(filter_value("alice"), "alice");
    assert_eq!(filter_value("*"), "\\2a");
    assert_eq!(filter_value(")(uid=*)"), "\\29\\28uid=\\2a\\29");
    assert_eq!(filter_value("a\\b"), "a\\5cb");
    assert_eq!(filter_value("a\0b"), "a\\00b");
    assert_eq!(filter_value("é"), "é");
    // The result is a valid filter that matches only the literal.
    let f = format!("(uid={})", filter_value("*)(|(uid=*"));
    assert!(ldap3::parse_filter(&f).is_ok(), "{f}");
}

#[test]
fn dn_escaping() {
    assert_eq!(dn_value("GWJOB01"), "GWJOB01");
    assert_eq!(dn_value(",+\"\\<>;="), "\\2c\\2b\\22\\5c\\3c\\3e\\3b\\3d");
    assert_eq!(dn_value("#a#"), "\\23a#");
    assert_eq!(dn_value(" a "), "\\20a\\20");
    assert_eq!(dn_value(" "), "\\20");
    assert_eq!(dn_value("a\0"), "a\\00");
    assert_eq!(dn_value("x,cn=admin"), "x\\2ccn\\3dadmin");
}

#[test]
fn fill_is_one_pass() {
    let vals = [("user", "{base_dn}"), ("base_dn", "cn=RACF")];
    assert_eq!(
        fill("racfid={user},{base_dn}", &vals),
        "racfid={base_dn},cn=RACF"
    );
    assert_eq!(
        fill("(|(a={user})(b={user}))", &[("user", "x")]),
        "(|(a=x)(b=x))"
    );
    assert_eq!(fill("{other}{user", &[("user", "x")]), "{other}{user");
    assert_eq!(fill("", &[("user", "x")]), "");
}
