use super::*;

#[test]
fn valid_ids() {
    let cases = [
        ("spiffe://corp.example", "corp.example", ""),
        ("spiffe://corp.example/a", "corp.example", "/a"),
        (
            "spiffe://corp.example/ns/payments/sa/api",
            "corp.example",
            "/ns/payments/sa/api",
        ),
        ("spiffe://a", "a", ""),
        ("spiffe://my_td-1.example/x", "my_td-1.example", "/x"),
        ("spiffe://td/Upper/Case", "td", "/Upper/Case"),
        ("spiffe://td/a.b/..c/.d./...", "td", "/a.b/..c/.d./..."),
        ("spiffe://td/a-b_c.d", "td", "/a-b_c.d"),
        ("spiffe://123/456", "123", "/456"),
        (
            "spiffe://td/9eebccd2-12bf-40a6-b262-65fe0487d453",
            "td",
            "/9eebccd2-12bf-40a6-b262-65fe0487d453",
        ),
    ];
    for (s, td, path) in cases {
        let id = SpiffeId::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"));
        assert_eq!(id.trust_domain(), td, "{s}");
        assert_eq!(id.path(), path, "{s}");
        assert_eq!(id.as_str(), s);
        assert_eq!(id.to_string(), s);
        assert_eq!(id.is_root(), path.is_empty());
    }
}

#[test]
fn invalid_ids() {
    let long_td = format!("spiffe://{}", "a".repeat(256));
    let long_id = format!("spiffe://td/{}", "a".repeat(MAX_ID_LEN));
    let cases: Vec<(&str, IdError)> = vec![
        ("", IdError::Empty),
        ("SPIFFE://td/a", IdError::Scheme),
        ("Spiffe://td/a", IdError::Scheme),
        ("https://td/a", IdError::Scheme),
        ("spiffe:/td/a", IdError::Scheme),
        ("spiffe:td", IdError::Scheme),
        ("spiffe://", IdError::MissingTrustDomain),
        ("spiffe:///a", IdError::MissingTrustDomain),
        ("spiffe://TD/a", IdError::TrustDomainChar),
        ("spiffe://Corp.example/a", IdError::TrustDomainChar),
        ("spiffe://td:8443/a", IdError::TrustDomainChar),
        ("spiffe://user@td/a", IdError::TrustDomainChar),
        ("spiffe://td%2e/a", IdError::TrustDomainChar),
        ("spiffe://t d/a", IdError::TrustDomainChar),
        ("spiffe://td?q=1", IdError::TrustDomainChar),
        ("spiffe://td#frag", IdError::TrustDomainChar),
        ("spiffe://tdé/a", IdError::TrustDomainChar),
        (&long_td, IdError::TrustDomainTooLong),
        ("spiffe://td/", IdError::EmptySegment),
        ("spiffe://td/a/", IdError::EmptySegment),
        ("spiffe://td//a", IdError::EmptySegment),
        ("spiffe://td/a//b", IdError::EmptySegment),
        ("spiffe://td/.", IdError::DotSegment),
        ("spiffe://td/..", IdError::DotSegment),
        ("spiffe://td/a/./b", IdError::DotSegment),
        ("spiffe://td/a/../b", IdError::DotSegment),
        ("spiffe://td/a?x=1", IdError::PathChar),
        ("spiffe://td/a#f", IdError::PathChar),
        ("spiffe://td/a%20b", IdError::PathChar),
        ("spiffe://td/a b", IdError::PathChar),
        ("spiffe://td/a:b", IdError::PathChar),
        ("spiffe://td/é", IdError::PathChar),
        ("spiffe://td/a\\b", IdError::PathChar),
        (&long_id, IdError::TooLong),
    ];
    assert!(cases.len() >= 25);
    for (s, want) in cases {
        assert_eq!(SpiffeId::parse(s), Err(want.clone()), "{s:?}");
    }
}

#[test]
fn length_limits_are_inclusive() {
    let td = "a".repeat(MAX_TRUST_DOMAIN_LEN);
    assert!(SpiffeId::parse(&format!("spiffe://{td}")).is_ok());
    let base = "spiffe://td/";
    let id = format!("{base}{}", "b".repeat(MAX_ID_LEN - base.len()));
    assert_eq!(id.len(), MAX_ID_LEN);
    assert!(SpiffeId::parse(&id).is_ok());
}

#[test]
fn trust_domains() {
    assert!(TrustDomain::parse("corp.example").is_ok());
    assert_eq!(TrustDomain::parse(""), Err(IdError::MissingTrustDomain));
    assert_eq!(
        TrustDomain::parse("spiffe://corp.example"),
        Err(IdError::TrustDomainChar)
    );
    assert_eq!(
        TrustDomain::parse("Corp.example"),
        Err(IdError::TrustDomainChar)
    );
    let td = TrustDomain::parse("corp.example").unwrap();
    assert!(SpiffeId::parse("spiffe://corp.example/a")
        .unwrap()
        .is_member_of(&td));
    assert!(!SpiffeId::parse("spiffe://corp.example.evil/a")
        .unwrap()
        .is_member_of(&td));
}
