use super::*;

#[test]
fn essence_ignores_parameters_and_case() {
    assert_eq!(
        essence("Application/JSON; charset=UTF-8"),
        Some(("application".into(), "json".into()))
    );
    assert_eq!(essence("json"), None);
    assert_eq!(essence("application/"), None);
    assert_eq!(essence("appli cation/json"), None);
}

#[test]
fn patterns() {
    let p = |s| Pattern::parse(s).unwrap();
    assert!(allowed(&[p("application/json")], "application", "json"));
    assert!(!allowed(&[p("application/json")], "application", "xml"));
    assert!(allowed(&[p("text/*")], "text", "plain"));
    assert!(allowed(&[p("*/*")], "image", "png"));
    assert!(allowed(&[], "anything", "goes"));
    assert!(Pattern::parse("application/json; charset=utf-8").is_err());
    assert!(Pattern::parse("*/json").is_err());
}

fn with_type(ct: &str) -> Parts {
    let mut p = http::Request::new(()).into_parts().0;
    p.headers.insert(CONTENT_TYPE, ct.parse().unwrap());
    p
}

#[test]
fn only_utf8_charsets() {
    for ok in [
        "application/json",
        "application/json; charset=utf-8",
        "text/xml;charset=\"UTF-8\"",
        "text/xml; Charset=utf8",
    ] {
        assert!(check_charset(&with_type(ok)).is_ok(), "{ok}");
    }
    for bad in [
        "text/xml; charset=utf-7",
        "text/xml; charset=\"UTF-7\"",
        "application/json; charset=utf-16le",
        "text/xml; charset=iso-8859-1",
        "text/xml; charset=us-ascii",
        "text/xml; charset=utf-8; charset=utf-7",
        "text/xml; charset=",
    ] {
        let r = check_charset(&with_type(bad)).unwrap_err();
        assert_eq!(r.code, Code::UnsupportedMediaType, "{bad}");
    }
    assert!(check_bom(b"\xEF\xBB\xBF{}").is_ok());
    assert!(check_bom(b"{}").is_ok());
    for bom in [
        &b"\xFF\xFE<\0"[..],
        b"\xFE\xFF\0<",
        b"\0\0\xFE\xFF",
        b"+/v8-<r/>",
    ] {
        assert_eq!(check_bom(bom).unwrap_err().code, Code::UnsupportedMediaType);
    }
}

#[test]
fn kinds() {
    assert_eq!(kind("application", "json"), BodyKind::Json);
    assert_eq!(kind("application", "problem+json"), BodyKind::Json);
    assert_eq!(kind("application", "soap+xml"), BodyKind::Xml);
    assert_eq!(kind("text", "xml"), BodyKind::Xml);
    assert_eq!(kind("application", "xml"), BodyKind::Xml);
    assert_eq!(kind("text", "plain"), BodyKind::Other);
}
