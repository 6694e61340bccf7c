use super::*;

fn req(method: &str, host: Option<&str>, ct: Option<&str>) -> Request<()> {
    let mut b = Request::builder()
        .method(method)
        .uri("/admin/v1/revocations");
    if let Some(h) = host {
        b = b.header(HOST, h);
    }
    if let Some(c) = ct {
        b = b.header(CONTENT_TYPE, c);
    }
    b.body(()).unwrap()
}

#[test]
fn hosts() {
    let local: SocketAddr = "127.0.0.1:9090".parse().unwrap();
    for ok in [
        "127.0.0.1:9090",
        "127.0.0.1",
        "localhost:9090",
        "LOCALHOST",
        "[::1]:9090",
        "[::1]",
        "10.1.2.3:80",
    ] {
        assert!(check(&req("GET", Some(ok), None), local).is_ok(), "{ok}");
    }
    assert!(check(&req("GET", None, None), local).is_ok());
    for bad in [
        "evil.example",
        "evil.example:9090",
        "127.0.0.1.evil.example",
        "localhost.evil.example:9090",
        "[::1]x",
        "127.0.0.1:90x",
        "::1",
        "",
    ] {
        let e = check(&req("GET", Some(bad), None), local).unwrap_err();
        assert_eq!(e.0, Code::Forbidden, "{bad}");
    }
    let mut two = req("GET", Some("127.0.0.1"), None);
    two.headers_mut()
        .append(HOST, http::HeaderValue::from_static("evil.example"));
    assert!(check(&two, local).is_err());
}

#[test]
fn changes_need_json() {
    let local: SocketAddr = "127.0.0.1:9090".parse().unwrap();
    let h = Some("127.0.0.1:9090");
    for ok in [
        "application/json",
        "application/json; charset=utf-8",
        "Application/JSON",
    ] {
        assert!(check(&req("POST", h, Some(ok)), local).is_ok(), "{ok}");
        assert!(check(&req("DELETE", h, Some(ok)), local).is_ok(), "{ok}");
    }
    for bad in [
        None,
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
        Some("multipart/form-data; boundary=x"),
        Some("application/jsonx"),
    ] {
        for m in ["POST", "DELETE", "PUT"] {
            let e = check(&req(m, h, bad), local).unwrap_err();
            assert_eq!(e.0, Code::UnsupportedMediaType, "{m} {bad:?}");
        }
    }
}
