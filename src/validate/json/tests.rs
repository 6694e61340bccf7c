use super::*;
use std::time::{Duration, Instant};

#[test]
fn hundred_thousand_brackets_are_refused_fast_without_recursion() {
    let deep = "[".repeat(100_000) + &"]".repeat(100_000);
    let t = Instant::now();
    let r = check_depth(deep.as_bytes(), 64).unwrap_err();
    assert!(t.elapsed() < Duration::from_millis(10));
    assert_eq!(r.code, Code::InvalidRequest);
    assert_eq!(r.detail, "JSON nested deeper than 64 levels");
}

#[test]
fn brackets_inside_strings_do_not_count() {
    let doc = format!(r#"{{"a": "{}", "b": "\"[[[["}}"#, "[".repeat(1000));
    check_depth(doc.as_bytes(), 2).unwrap();
    parse(doc.as_bytes()).unwrap();
    let nested = "[[[1]]]";
    check_depth(nested.as_bytes(), 3).unwrap();
    assert!(check_depth(nested.as_bytes(), 2).is_err());
}

#[test]
fn duplicate_keys_and_garbage_are_refused_without_echo() {
    let r = parse(br#"{"amount": 1, "nested": {"k": "s3cret", "k": "other"}}"#).unwrap_err();
    assert_eq!(r.code, Code::InvalidRequest);
    assert!(
        r.detail.starts_with("duplicate object key at line 1"),
        "{}",
        r.detail
    );
    assert!(!r.detail.contains("s3cret"));
    for bad in [&b""[..], b"{", b"{\"a\":}", b"[1,]", b"1 2", b"\xff"] {
        let r = parse(bad).unwrap_err();
        assert!(r.detail.starts_with("malformed JSON"), "{}", r.detail);
    }
    assert_eq!(
        parse(b" {\"a\": [1, 2.5, null, true]} ").unwrap()["a"][1],
        2.5
    );
}
