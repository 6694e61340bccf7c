use super::*;

#[test]
fn endpoints() {
    assert_eq!(
        endpoint("http://127.0.0.1:4318").unwrap().to_string(),
        "http://127.0.0.1:4318/v1/traces"
    );
    assert_eq!(
        endpoint("https://otel.corp.example/").unwrap().to_string(),
        "https://otel.corp.example/v1/traces"
    );
    assert_eq!(
        endpoint("http://c:4318/custom/traces").unwrap().to_string(),
        "http://c:4318/custom/traces"
    );
    for bad in [
        "127.0.0.1:4318",
        "grpc://c:4317",
        "ftp://c/",
        "http://user:pw@c:4318",
        "",
        "http://",
        "/v1/traces",
    ] {
        assert!(endpoint(bad).is_err(), "{bad:?} accepted");
    }
}
