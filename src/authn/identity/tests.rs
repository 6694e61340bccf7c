use super::*;

#[test]
fn maps_and_lower_cases() {
    let t = IdentityTemplate::parse("spiffe://corp.example/legacy/racf/{user}").unwrap();
    assert_eq!(
        t.map("GWJOB01").unwrap().as_str(),
        "spiffe://corp.example/legacy/racf/gwjob01"
    );
    assert_eq!(
        t.map("j.doe_2-x").unwrap().as_str(),
        "spiffe://corp.example/legacy/racf/j.doe_2-x"
    );
    let mid = IdentityTemplate::parse("spiffe://td/u/{user}/batch").unwrap();
    assert_eq!(mid.map("Bob").unwrap().as_str(), "spiffe://td/u/bob/batch");
    let part = IdentityTemplate::parse("spiffe://td/user-{user}").unwrap();
    assert_eq!(part.map("a").unwrap().as_str(), "spiffe://td/user-a");
    assert_eq!(
        t.to_string(),
        "spiffe://corp.example/legacy/racf/{user}".to_owned()
    );
    let canon = |id: &str| t.canonical(id).map(|i| i.as_str().to_owned());
    assert_eq!(
        canon("spiffe://corp.example/legacy/racf/JSMITH").as_deref(),
        Some("spiffe://corp.example/legacy/racf/jsmith")
    );
    assert_eq!(canon("spiffe://corp.example/legacy/other/JSMITH"), None);
    assert_eq!(canon("spiffe://corp.example/legacy/racf/a/b"), None);
    assert_eq!(canon("spiffe://corp.example/legacy/racf/"), None);
}

#[test]
fn refuses_escaping_principals() {
    let t = IdentityTemplate::parse("spiffe://corp.example/legacy/{user}").unwrap();
    let cases = [
        ("", IdentityError::Empty),
        ("..", IdentityError::Dots),
        (".", IdentityError::Dots),
        ("../admin", IdentityError::Chars),
        ("a/b", IdentityError::Chars),
        ("a%2fb", IdentityError::Chars),
        ("OP$ADM", IdentityError::Chars),
        ("OP#1", IdentityError::Chars),
        ("a@b", IdentityError::Chars),
        ("a b", IdentityError::Chars),
        ("a?x", IdentityError::Chars),
        ("a#f", IdentityError::Chars),
        ("é", IdentityError::Chars),
        ("K\u{212a}", IdentityError::Chars), // Kelvin sign: lower-cases to ASCII 'k'
        ("a\0", IdentityError::Chars),
    ];
    for (p, want) in cases {
        assert_eq!(t.map(p), Err(want), "{p:?}");
    }
    assert_eq!(t.map(&"a".repeat(256)), Err(IdentityError::TooLong));
    assert!(t.map(&"a".repeat(255)).is_ok());
    // The whole ID is still bounded by the SPIFFE limit.
    let long =
        IdentityTemplate::parse(&format!("spiffe://td/{}/{{user}}", "p".repeat(1900))).unwrap();
    assert_eq!(
        long.map(&"a".repeat(200)),
        Err(IdentityError::Id(IdError::TooLong))
    );
}

#[test]
fn refuses_bad_templates() {
    let cases = [
        ("spiffe://td/legacy", IdentityError::Placeholder),
        ("spiffe://td/{user}/{user}", IdentityError::Placeholder),
        ("spiffe://{user}/x", IdentityError::PlaceholderInTrustDomain),
        ("spiffe://td{user}", IdentityError::PlaceholderInTrustDomain),
        (
            "https://td/{user}",
            IdentityError::Template(IdError::Scheme),
        ),
        (
            "spiffe://TD/{user}",
            IdentityError::Template(IdError::TrustDomainChar),
        ),
        (
            "spiffe://td/{user}/",
            IdentityError::Template(IdError::EmptySegment),
        ),
        (
            "spiffe://td/a b/{user}",
            IdentityError::Template(IdError::PathChar),
        ),
    ];
    for (t, want) in cases {
        assert_eq!(IdentityTemplate::parse(t), Err(want), "{t}");
    }
}
