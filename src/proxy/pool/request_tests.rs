//! The request head and body framing as written to the upstream.

use super::*;
use http::Request;

fn head_of(req: Request<ProxyBody>, in_hand: bool) -> (String, Plan) {
    let (parts, body) = req.into_parts();
    let req = Outbound {
        method: parts.method,
        uri: parts.uri,
        head: UpstreamHead::verbatim(parts.headers),
    };
    let payload = Payload::new(body, in_hand);
    let plan = payload.plan(&req.head);
    let mut out = Vec::new();
    write_head(&req, plan, &mut out);
    (String::from_utf8(out).unwrap(), plan)
}

#[test]
fn the_head_keeps_the_fields_in_order_and_adds_no_host() {
    let req = Request::builder()
        .method("GET")
        .uri("http://up.example/a/b?q=1")
        .header("x-b", "2")
        .header("x-a", "1")
        .header("x-b", "3")
        .body(crate::body::empty())
        .unwrap();
    let (head, plan) = head_of(req, true);
    assert_eq!(plan, Plan::None);
    assert_eq!(
        head,
        "GET /a/b?q=1 HTTP/1.1\r\nx-b: 2\r\nx-b: 3\r\nx-a: 1\r\n\r\n"
    );
}

#[test]
fn a_known_size_gets_its_length_and_an_unknown_one_is_chunked() {
    let req = Request::post("/p")
        .body(crate::body::full(Bytes::from_static(b"hello")))
        .unwrap();
    let (head, plan) = head_of(req, true);
    assert_eq!(plan, Plan::Length(5));
    assert!(head.ends_with("content-length: 5\r\n\r\n"), "{head}");

    // The caller's own Content-Length is kept, not doubled.
    let req = Request::post("/p")
        .header("content-length", "5")
        .body(crate::body::full(Bytes::from_static(b"hello")))
        .unwrap();
    let (head, _) = head_of(req, true);
    assert_eq!(head.matches("content-length").count(), 1, "{head}");

    // A body of unknown size, with a caller's coding and a stale length: ours is chunked, theirs
    // are not forwarded.
    let stream =
        http_body_util::StreamBody::new(futures_util::stream::iter(vec![Ok::<_, BoxError>(
            hyper::body::Frame::data(Bytes::from_static(b"x")),
        )]));
    let req = Request::post("/p")
        .header("transfer-encoding", "gzip")
        .header("content-length", "7")
        .body(http_body_util::BodyExt::boxed(stream))
        .unwrap();
    let (head, plan) = head_of(req, false);
    assert_eq!(plan, Plan::Chunked);
    assert!(
        !head.contains("gzip") && !head.contains("content-length"),
        "{head}"
    );
    assert_eq!(
        head.matches("transfer-encoding: chunked").count(),
        1,
        "{head}"
    );
}

#[test]
fn only_an_empty_or_buffered_body_is_replayable() {
    assert!(Payload::new(crate::body::empty(), false).replayable());
    assert!(Payload::new(crate::body::full(Bytes::from_static(b"b")), true).replayable());
    assert!(!Payload::new(crate::body::full(Bytes::from_static(b"b")), false).replayable());
}

#[test]
fn chunk_sizes_are_lower_case_hex() {
    assert_eq!(hex_len(0, &mut [0; 16]), b"0");
    assert_eq!(hex_len(0x1a2b, &mut [0; 16]), b"1a2b");
    assert_eq!(hex_len(usize::MAX, &mut [0; 16]), b"ffffffffffffffff");
}
