use super::*;

#[test]
fn strips_parameters_per_segment() {
    for (p, want) in [
        ("/admin", "/admin"),
        ("/admin;x/secret", "/admin/secret"),
        ("/admin;/secret", "/admin/secret"),
        ("/admin;jsessionid=1/secret", "/admin/secret"),
        ("/admin%3Bx/secret", "/admin/secret"),
        ("/admin%3bx/secret", "/admin/secret"),
        ("/a;b;c/d;e", "/a/d"),
        ("/shop/;jsessionid=1", "/shop/"),
    ] {
        assert_eq!(strip_params(p), want, "{p}");
    }
    assert!(matches!(strip_params("/a/b"), Cow::Borrowed(_)));
}

#[test]
fn hosts_are_canonical() {
    for (h, want) in [
        ("Admin.Corp.Example", Ok("admin.corp.example")),
        ("admin.corp.example.", Ok("admin.corp.example")),
        ("127.0.0.1", Ok("127.0.0.1")),
        ("[::1]", Ok("[::1]")),
        ("admin.corp.example..", Err(BAD_HOST)),
        (".", Err(BAD_HOST)),
        ("", Err(BAD_HOST)),
        ("%61dmin.corp.example", Err(BAD_HOST)),
        ("a..b", Err(BAD_HOST)),
        ("[]", Err(BAD_HOST)),
    ] {
        assert_eq!(canonical_host(h).as_deref().map_err(|e| *e), want, "{h}");
    }
}

#[test]
fn case_folding_keeps_percent_encodings() {
    assert_eq!(fold_case("/Admin/caf%C3%A9/X%3A"), "/admin/caf%C3%A9/x%3A");
    assert!(matches!(fold_case("/admin/%C3%A9"), Cow::Borrowed(_)));
}

#[test]
fn well_known_hosts_start_with_the_url_host() {
    let hosts = well_known_hosts(
        "https://GW.corp.example:8443/",
        &["gw.corp.example.".into(), "127.0.0.1".into()],
    )
    .unwrap();
    assert_eq!(hosts, ["gw.corp.example", "127.0.0.1"]);
    assert!(well_known_hosts("https://gw", &["gw:443".into()]).is_err());
}
