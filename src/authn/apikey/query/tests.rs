use super::*;

#[test]
fn decoding() {
    assert_eq!(form_decode(b"a%5Fb+c%zz%4"), b"a_b c%zz%4");
    assert_eq!(form_decode(b"%41%62"), b"Ab");
}

#[test]
fn spellings_that_match() {
    for n in [
        "api_key",
        "api%5Fkey",
        "api%5fkey",
        "API_KEY",
        "Api%5FKey",
        "api.key",
        "api+key",
        "api%20key",
        "api[key",
        "%61pi_key",
    ] {
        assert!(name_matches(n, "api_key"), "{n}");
    }
    for n in [
        "api_keys",
        "apikey",
        "api%255Fkey",
        "api_key%00",
        "xapi_key",
        "",
        "api_ke",
    ] {
        assert!(!name_matches(n, "api_key"), "{n}");
    }
}

#[test]
fn find_counts_every_spelling() {
    assert_eq!(find("a=1&api_key=K&b=2", "api_key"), Found::One("K"));
    assert_eq!(find("a=1&b=2", "api_key"), Found::None);
    assert_eq!(find("api_key", "api_key"), Found::One(""));
    assert_eq!(find("api_key=K&api%5Fkey=L", "api_key"), Found::Many);
    assert_eq!(find("api_key=K&api_key=K", "api_key"), Found::Many);
}

#[test]
fn strip_keeps_the_rest_byte_exact() {
    let s = |q| strip(q, "api_key");
    assert_eq!(s("a=1&b=2"), None);
    assert_eq!(s("api_key=K").as_deref(), Some(""));
    assert_eq!(
        s("z=%2F%20x&api_key=K&a=1&&b=+&api%5Fkey=L&c").as_deref(),
        Some("z=%2F%20x&a=1&&b=+&c")
    );
    assert_eq!(s("a=1;api_key=K;b=2&c=3").as_deref(), Some("a=1;b=2&c=3"));
    assert_eq!(s("API.KEY=K&x=y").as_deref(), Some("x=y"));
}
