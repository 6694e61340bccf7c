use super::*;

#[test]
fn extra_headers_are_emitted_but_cannot_replace_content_type() {
    let resp = Refusal::new(Code::RateLimited, "slow down")
        .retry_after(2)
        .with_header(
            HeaderName::from_static("ratelimit"),
            HeaderValue::from_static("\"identity\";r=0;t=2"),
        )
        .with_header(CONTENT_TYPE, HeaderValue::from_static("text/html"))
        .into_response("req-1");
    assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
    let h = resp.headers();
    assert_eq!(h["ratelimit"], "\"identity\";r=0;t=2");
    assert_eq!(h[RETRY_AFTER], "2");
    assert_eq!(h.get_all(CONTENT_TYPE).iter().count(), 1);
    assert_eq!(h[CONTENT_TYPE], "application/problem+json");
}
