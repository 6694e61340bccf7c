use super::*;

#[test]
fn form_decoding() {
    let pairs = parse_form(b"b=2&a=x+y%21&&c").unwrap();
    assert_eq!(
        pairs,
        vec![
            (b"b".to_vec(), b"2".to_vec()),
            (b"a".to_vec(), b"x y!".to_vec()),
            (b"c".to_vec(), b"".to_vec()),
        ]
    );
    assert!(parse_form(b"a=%2").is_none());
    assert!(parse_form(b"a=%zz").is_none());
    assert_eq!(
        query_param("https://h/p?x=1&bodySHA256=ab#f", "bodySHA256").unwrap(),
        b"ab"
    );
    assert!(query_param("https://h/p", "x").is_none());
}
