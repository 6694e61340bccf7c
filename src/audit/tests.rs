use super::*;

#[test]
fn query_values_are_redacted() {
    assert_eq!(
        redact_query("/a", Some("api_key=s3cret&x=1&flag")),
        "/a?api_key=REDACTED&x=REDACTED&REDACTED"
    );
    assert_eq!(redact_query("/a", None), "/a");
}
