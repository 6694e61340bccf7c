//! The parser and the chunked decoder with their hostile twins, and the driver over an in-memory
//! stream with a handler that echoes what it was given.

use bytes::BytesMut;
use http::{Method, StatusCode, Version};

use super::chunked::{Chunked, Step, MAX_LINE, MAX_TRAILERS};
use super::parse::{parse, Framing, Head, Limits, Scan};
use crate::problem::Refusal;

const LIMITS: Limits = Limits {
    max_bytes: 16 * 1024,
    max_fields: 100,
};

fn one(raw: &[u8]) -> Result<Option<Head>, Refusal> {
    let mut buf = BytesMut::from(raw);
    parse(&mut buf, &mut Scan::default(), LIMITS, &mut None)
}

fn status(raw: &[u8]) -> u16 {
    match one(raw) {
        Ok(Some(_)) => 200,
        Ok(None) => 0,
        Err(r) => {
            assert!(
                r.close,
                "{}: a refused head must close",
                String::from_utf8_lossy(raw)
            );
            r.code.status().as_u16()
        }
    }
}

#[test]
fn a_plain_head_becomes_http_types() {
    let h = one(b"GET /a/b?c=d HTTP/1.1\r\nHost: a.example\r\nX-Many: 1\r\nx-many: 2\r\n\r\n")
        .unwrap()
        .unwrap();
    assert_eq!(h.method, Method::GET);
    assert_eq!(h.uri.path(), "/a/b");
    assert_eq!(h.uri.query(), Some("c=d"));
    assert_eq!(h.version, Version::HTTP_11);
    assert_eq!(h.headers.get_all("x-many").iter().count(), 2);
    assert_eq!(h.framing, Framing::None);
    assert!(h.keep_alive);
    assert!(!h.expect_continue);
}

#[test]
fn framing_rules_refuse_every_spelling_of_an_ambiguity() {
    let cases: &[&[u8]] = &[
        // CL + TE, both orders, any case.
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: a\r\ntransfer-encoding: CHUNKED\r\ncontent-length: 5\r\n\r\n",
        // Repeated or ill-formed Content-Length.
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\ncontent-length: 6\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 5\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +5\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0x5\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: \r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5 5\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999999999999999\r\n\r\n",
        // Any Transfer-Encoding but one final `chunked`.
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, identity\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: xchunked\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: \"chunked\"\r\n\r\n",
        // Transfer-Encoding in HTTP/1.0.
        b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",
        // obs-fold, hiding a Transfer-Encoding or not.
        b"POST / HTTP/1.1\r\nHost: a\r\nX-A: b\r\n Transfer-Encoding: chunked\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: a\r\nX-A: b\r\n\tc\r\n\r\n",
        // Whitespace before the colon.
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding : chunked\r\n\r\n",
        // Bare LF / CR anywhere in the head.
        b"GET / HTTP/1.1\nHost: a\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\n\n",
        b"GET / HTTP/1.1\r\nHost: a\rX: b\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\n\n",
        // Host missing or repeated in 1.1; repeated in 1.0.
        b"GET / HTTP/1.1\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nhost: b\r\n\r\n",
        b"GET / HTTP/1.0\r\nHost: a\r\nHost: a\r\n\r\n",
        // Not HTTP/1.x, or no request line at all.
        b"GET / HTTP/2.0\r\nHost: a\r\n\r\n",
        b"GET /\r\nHost: a\r\n\r\n",
        b"GET  / HTTP/1.1\r\nHost: a\r\n\r\n",
        b"G\x01T / HTTP/1.1\r\nHost: a\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nX-Bad: a\x00b\r\n\r\n",
    ];
    for raw in cases {
        assert_eq!(status(raw), 400, "{}", String::from_utf8_lossy(raw));
    }
}

#[test]
fn accepted_framings_are_read_as_written() {
    let h = one(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 17\r\n\r\n")
        .unwrap()
        .unwrap();
    assert_eq!(h.framing, Framing::Length(17));
    let h = one(b"POST / HTTP/1.1\r\nHost: a\r\ntransfer-encoding:  Chunked \r\n\r\n")
        .unwrap()
        .unwrap();
    assert_eq!(h.framing, Framing::Chunked);
    let h = one(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n")
        .unwrap()
        .unwrap();
    assert_eq!(h.framing, Framing::None);
    // 1.0: no Host needed; keep-alive only when asked.
    let h = one(b"GET / HTTP/1.0\r\n\r\n").unwrap().unwrap();
    assert!(!h.keep_alive);
    let h = one(b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n")
        .unwrap()
        .unwrap();
    assert!(h.keep_alive);
    let h = one(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: x, close\r\n\r\n")
        .unwrap()
        .unwrap();
    assert!(!h.keep_alive);
    // 100-continue: 1.1 only.
    let h = one(b"PUT / HTTP/1.1\r\nHost: a\r\nExpect: 100-Continue\r\nContent-Length: 1\r\n\r\n")
        .unwrap()
        .unwrap();
    assert!(h.expect_continue);
    let h = one(b"PUT / HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\n")
        .unwrap()
        .unwrap();
    assert!(!h.expect_continue);
    // Leading blank lines between requests.
    let h = one(b"\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n")
        .unwrap()
        .unwrap();
    assert_eq!(h.method, Method::GET);
}

#[test]
fn a_head_split_at_every_byte_parses_the_same() {
    let raw: &[u8] =
        b"\r\nPOST /p?q HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nX-A: b\r\n\r\nabcGET";
    for cut in 0..raw.len() {
        let mut buf = BytesMut::new();
        let mut scan = Scan::default();
        let mut got = None;
        for piece in [&raw[..cut], &raw[cut..]] {
            buf.extend_from_slice(piece);
            if let Some(h) = parse(&mut buf, &mut scan, LIMITS, &mut None).unwrap() {
                got = Some(h);
                break;
            }
        }
        let h = got.unwrap_or_else(|| panic!("cut at {cut}"));
        assert_eq!(h.framing, Framing::Length(3), "cut at {cut}");
        assert_eq!(h.uri, "/p?q", "cut at {cut}");
        // Whatever followed the head stays in the buffer for the body and the next request.
        assert!(
            b"abcGET".starts_with(&buf[..buf.len().min(6)]),
            "cut at {cut}"
        );
    }
    // Byte by byte.
    let mut buf = BytesMut::new();
    let mut scan = Scan::default();
    let mut done = false;
    for (i, b) in raw.iter().enumerate() {
        buf.extend_from_slice(&[*b]);
        if parse(&mut buf, &mut scan, LIMITS, &mut None)
            .unwrap()
            .is_some()
        {
            assert_eq!(i, raw.len() - 7);
            done = true;
            break;
        }
    }
    assert!(done);
}

#[test]
fn heads_beyond_the_limits_are_431() {
    let mut many = String::from("GET / HTTP/1.1\r\nHost: a\r\n");
    for i in 0..120 {
        many.push_str(&format!("X-F{i}: v\r\n"));
    }
    many.push_str("\r\n");
    assert_eq!(status(many.as_bytes()), 431);
    let big = format!(
        "GET / HTTP/1.1\r\nHost: a\r\nX-Big: {}\r\n\r\n",
        "v".repeat(20_000)
    );
    assert_eq!(status(big.as_bytes()), 431);
    // An endless head is refused as soon as it passes the limit, before its end arrives.
    let endless = format!("GET / HTTP/1.1\r\nHost: a\r\nX-Big: {}", "v".repeat(17_000));
    assert_eq!(status(endless.as_bytes()), 431);
    // Within the limit, it waits.
    assert_eq!(status(b"GET / HTTP/1.1\r\nHost: a\r\nX-Big: vvv"), 0);
    // More fields than the stack slots but within the limit: parsed on the heap.
    let mut fine = String::from("GET / HTTP/1.1\r\nHost: a\r\n");
    for i in 0..90 {
        fine.push_str(&format!("X-F{i}: v\r\n"));
    }
    fine.push_str("\r\n");
    assert_eq!(one(fine.as_bytes()).unwrap().unwrap().headers.len(), 91);
}

/// Decode `raw` fed in `pieces`; the data, or the error.
fn decode(pieces: &[&[u8]]) -> Result<(Vec<u8>, Vec<u8>), &'static str> {
    let mut c = Chunked::Size;
    let mut buf = BytesMut::new();
    let mut data = Vec::new();
    for (i, p) in pieces.iter().enumerate() {
        buf.extend_from_slice(p);
        loop {
            match c.step(&mut buf)? {
                Step::Data(d) => data.extend_from_slice(&d),
                Step::More => break,
                Step::End => {
                    // What follows the body stays for the next request.
                    let rest: Vec<u8> = pieces[i + 1..].concat();
                    buf.extend_from_slice(&rest);
                    return Ok((data, buf.to_vec()));
                }
            }
        }
    }
    Err("incomplete")
}

#[test]
fn chunked_bodies_decode_split_at_every_byte() {
    let raw: &[u8] =
        b"5\r\nhello\r\n1;ext=\"x\"\r\n \r\nA  \r\n0123456789\r\n0\r\nX-T: 1\r\n\r\nNEXT";
    let want = b"hello 0123456789".to_vec();
    assert_eq!(decode(&[raw]).unwrap(), (want.clone(), b"NEXT".to_vec()));
    for cut in 0..raw.len() {
        assert_eq!(
            decode(&[&raw[..cut], &raw[cut..]]).unwrap(),
            (want.clone(), b"NEXT".to_vec()),
            "cut at {cut}"
        );
    }
    let bytes: Vec<&[u8]> = raw.chunks(1).collect();
    assert_eq!(decode(&bytes).unwrap(), (want, b"NEXT".to_vec()));
}

#[test]
fn chunked_hostile_twins_fail() {
    let cases: &[&[u8]] = &[
        // Bare LF as a line end, in each kind of line.
        b"5\nhello\r\n0\r\n\r\n",
        b"5\r\nhello\n0\r\n\r\n",
        b"5\r\nhello\r\n0\n\r\n",
        b"5\r\nhello\r\n0\r\n\n",
        b"5\r\nhello\r\n0\r\nX-T: 1\n\r\n",
        // Chunk data not followed by CRLF (too long, too short).
        b"5\r\nhelloX\r\n0\r\n\r\n",
        b"5\r\nhell\r\n0\r\n\r\n",
        // Sizes: sign, 0x, leading space, space before `;`, none, 17 digits, not hex.
        b"+5\r\nhello\r\n0\r\n\r\n",
        b"0x5\r\nhello\r\n0\r\n\r\n",
        b" 5\r\nhello\r\n0\r\n\r\n",
        b"5 ;x\r\nhello\r\n0\r\n\r\n",
        b"\r\nhello\r\n0\r\n\r\n",
        b"00000000000000005\r\nhello\r\n0\r\n\r\n",
        b"g\r\n",
        // A request line where a trailer should be, obs-fold in trailers.
        b"0\r\nGET /smuggled HTTP/1.1\r\n\r\n",
        b"0\r\nX-T: 1\r\n folded\r\n\r\n",
    ];
    for raw in cases {
        assert!(decode(&[raw]).is_err(), "{}", String::from_utf8_lossy(raw));
        // Split at every byte: the same verdict.
        for cut in 0..raw.len() {
            assert!(
                decode(&[&raw[..cut], &raw[cut..]]).is_err(),
                "{} cut at {cut}",
                String::from_utf8_lossy(raw)
            );
        }
    }
    // 16 digits are fine (the size is what it says).
    let mut c = Chunked::Size;
    let mut buf = BytesMut::from(&b"000000000000000f\r\n"[..]);
    assert_eq!(c.step(&mut buf), Ok(Step::More));
    assert_eq!(c, Chunked::Data(15));
}

#[test]
fn chunked_lines_and_trailers_are_bounded() {
    // A size line that never ends.
    let long = format!("5;{}", "x".repeat(MAX_LINE + 10));
    assert_eq!(
        decode(&[long.as_bytes()]),
        Err("chunked body line too long")
    );
    // Trailers: each line, and all of them together.
    let one_long = format!("0\r\nX-T: {}\r\n\r\n", "v".repeat(MAX_LINE));
    assert!(decode(&[one_long.as_bytes()]).is_err());
    let mut many = String::from("0\r\n");
    for i in 0..(MAX_TRAILERS / 100 + 2) {
        many.push_str(&format!("X-T{i}: {}\r\n", "v".repeat(90)));
    }
    many.push_str("\r\n");
    assert_eq!(decode(&[many.as_bytes()]), Err("trailers too long"));
}

#[test]
fn an_endless_chunked_body_streams_without_growing() {
    // Data comes out as it arrives; nothing accumulates in the decoder or the buffer.
    let mut c = Chunked::Size;
    let mut buf = BytesMut::new();
    let mut total = 0usize;
    for _ in 0..10_000 {
        buf.extend_from_slice(b"400\r\n");
        buf.extend_from_slice(&[b'a'; 1024]);
        buf.extend_from_slice(b"\r\n");
        loop {
            match c.step(&mut buf).unwrap() {
                Step::Data(d) => total += d.len(),
                Step::More => break,
                Step::End => panic!("no end was sent"),
            }
        }
        assert!(buf.is_empty());
    }
    assert_eq!(total, 10_000 * 1024);
}

#[test]
fn status_helpers_match_the_pipeline() {
    // The parser's refusals are the pipeline's problem types.
    let r = one(b"GET / HTTP/1.1\r\n\r\n").unwrap_err();
    assert_eq!(r.code.status(), StatusCode::BAD_REQUEST);
}

#[test]
fn a_bare_lf_is_refused_before_the_head_ends() {
    // No need to wait for the blank line: the first bare LF settles it.
    assert_eq!(status(b"GET / HTTP/1.1\nHost: a"), 400);
    assert_eq!(status(b"GET / HTTP/1.1\r\nHost: a\nX"), 400);
    // Arriving in pieces, the same: the LF is looked at when it arrives.
    let mut buf = BytesMut::from(&b"GET / HTTP/1.1\r"[..]);
    let mut scan = Scan::default();
    assert!(parse(&mut buf, &mut scan, LIMITS, &mut None)
        .unwrap()
        .is_none());
    buf.extend_from_slice(b"\nHost: a\r");
    assert!(parse(&mut buf, &mut scan, LIMITS, &mut None)
        .unwrap()
        .is_none());
    buf.extend_from_slice(b"\n\n");
    assert_eq!(
        parse(&mut buf, &mut scan, LIMITS, &mut None)
            .unwrap_err()
            .code
            .status(),
        StatusCode::BAD_REQUEST
    );
}

/// The driver over an in-memory stream, with a handler that answers what the test asks for.
mod driver {
    use std::net::SocketAddr;
    use std::sync::atomic::AtomicBool;
    use std::sync::Arc;
    use std::time::Duration;

    use bytes::Bytes;
    use http::{Request, Response};
    use http_body_util::{BodyExt, StreamBody};
    use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

    use crate::body::{full, BoxError, CallerBody, ProxyBody};
    use crate::conn::ConnInfo;
    use crate::transport::settings::Listen;
    use crate::transport::Handler;

    /// Answers by path: `/echo` the body's length (read whole), `/spawned` never (its body read
    /// elsewhere), `/stream` a body of unknown
    /// size, `/names` the request's field names, `/broken` a body that fails after its first bytes, `/short` a `Content-Length`
    /// the body does not keep, `/nocontent` 204; anything else 200 "ok" without reading.
    struct Answer;

    impl Handler for Answer {
        async fn handle(
            &self,
            _conn: &ConnInfo,
            req: Request<CallerBody>,
        ) -> crate::transport::Answer {
            (Answer::answer(req).await, None, None)
        }
    }

    impl Answer {
        async fn answer(req: Request<CallerBody>) -> Response<ProxyBody> {
            let (parts, body) = req.into_parts();
            let stream = |items: Vec<Result<&'static str, &'static str>>| {
                let frames = futures_util::stream::iter(items.into_iter().map(|r| {
                    r.map(|s| http_body::Frame::data(Bytes::from_static(s.as_bytes())))
                        .map_err(BoxError::from)
                }));
                StreamBody::new(frames).boxed()
            };
            match parts.uri.path() {
                "/echo" => {
                    let n = body.collect().await.map(|b| b.to_bytes().len());
                    Response::new(full(Bytes::from(format!("{n:?}"))))
                }
                "/spawned" => {
                    // The body read to its end in another task (as hyper's client for `https`
                    // upstreams reads it), and no answer ever.
                    tokio::spawn(async move { body.collect().await.map(|_| ()) });
                    std::future::pending().await
                }
                "/stream" => Response::new(stream(vec![Ok("ab"), Ok("cde")])),
                "/broken" => Response::new(stream(vec![Ok("ab"), Err("upstream reset")])),
                "/short" => {
                    let mut r = Response::new(stream(vec![Ok("ab")]));
                    r.headers_mut()
                        .insert("content-length", "10".parse().unwrap());
                    r
                }
                "/nocontent" => {
                    let mut r = Response::new(crate::body::empty());
                    *r.status_mut() = http::StatusCode::NO_CONTENT;
                    r
                }
                "/names" => {
                    let mut names: Vec<&str> = parts.headers.keys().map(|k| k.as_str()).collect();
                    names.sort_unstable();
                    Response::new(full(Bytes::from(names.join(","))))
                }
                _ => {
                    let mut r = Response::new(full(Bytes::from_static(b"ok")));
                    r.headers_mut().insert("x-resp", "1".parse().unwrap());
                    r
                }
            }
        }
    }

    /// Serve one connection; the test talks through the returned end.
    pub(super) fn start() -> DuplexStream {
        let (client, server) = tokio::io::duplex(64 * 1024);
        let peer: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let info = Arc::new(ConnInfo::new(peer, None, Arc::new(AtomicBool::new(false))));
        let (_tx, rx) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            let _keep = _tx;
            super::super::serve(server, info, &Listen::for_tests(), Arc::new(Answer), rx).await;
        });
        client
    }

    pub(super) async fn exchange(
        c: &mut DuplexStream,
        send: &[u8],
        wait: Duration,
    ) -> (String, bool) {
        c.write_all(send).await.unwrap();
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            match tokio::time::timeout(wait, c.read(&mut buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) => return (String::from_utf8_lossy(&got).into(), true),
                Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
                Err(_) => return (String::from_utf8_lossy(&got).into(), false),
            }
        }
    }

    const WAIT: Duration = Duration::from_millis(300);

    #[tokio::test]
    async fn responses_are_framed_as_hyper_frames_them() {
        let mut c = start();
        // Known size: Content-Length; unknown: chunked (1.1); 204: neither; HEAD: no body.
        let (text, closed) = exchange(
            &mut c,
            b"GET /x HTTP/1.1\r\nHost: a\r\n\r\nGET /stream HTTP/1.1\r\nHost: a\r\n\r\n\
              GET /nocontent HTTP/1.1\r\nHost: a\r\n\r\nHEAD /x HTTP/1.1\r\nHost: a\r\n\r\n",
            WAIT,
        )
        .await;
        assert!(!closed, "{text}");
        let answers: Vec<&str> = text.split("HTTP/1.1 ").skip(1).collect();
        assert_eq!(answers.len(), 4, "{text}");
        assert!(answers[0].starts_with("200 OK\r\n"), "{text}");
        assert!(answers[0].contains("content-length: 2\r\n"), "{text}");
        assert!(answers[0].contains("date: "), "{text}");
        assert!(answers[0].ends_with("\r\n\r\nok"), "{text}");
        assert!(
            answers[1].contains("transfer-encoding: chunked\r\n"),
            "{text}"
        );
        assert!(
            answers[1].ends_with("\r\n\r\n2\r\nab\r\n3\r\ncde\r\n0\r\n\r\n"),
            "{text}"
        );
        assert!(answers[2].starts_with("204 No Content\r\n"), "{text}");
        assert!(!answers[2].contains("content-length"), "{text}");
        assert!(answers[3].contains("content-length: 2\r\n"), "{text}");
        assert!(answers[3].ends_with("\r\n\r\n"), "{text}");
        // HTTP/1.0: answered in 1.0; an unknown size is delimited by the close.
        let (text, closed) = exchange(&mut c, b"GET /stream HTTP/1.0\r\n\r\n", WAIT).await;
        assert!(text.starts_with("HTTP/1.0 200 OK\r\n"), "{text}");
        assert!(text.contains("connection: close\r\n"), "{text}");
        assert!(text.ends_with("\r\n\r\nabcde"), "{text}");
        assert!(closed);
        // 1.0 with keep-alive and a known size: kept open, and said so.
        let mut c = start();
        let (text, closed) = exchange(
            &mut c,
            b"GET /x HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
            WAIT,
        )
        .await;
        assert!(text.contains("connection: keep-alive\r\n"), "{text}");
        assert!(!closed, "{text}");
    }

    #[tokio::test]
    async fn a_response_body_that_fails_or_falls_short_cuts_the_connection() {
        for path in ["/broken", "/short"] {
            let mut c = start();
            let req =
                format!("GET {path} HTTP/1.1\r\nHost: a\r\n\r\nGET /x HTTP/1.1\r\nHost: a\r\n\r\n");
            let (text, closed) = exchange(&mut c, req.as_bytes(), WAIT).await;
            assert!(closed, "{path}: {text}");
            // Never a complete-looking answer, and the next request is not served.
            assert!(!text.ends_with("0\r\n\r\n"), "{path}: {text}");
            assert_eq!(text.matches("HTTP/1.1 ").count(), 1, "{path}: {text}");
        }
    }

    #[tokio::test]
    async fn bodies_in_pieces_reach_the_handler_whole() {
        let mut c = start();
        let (text, _) = exchange(
            &mut c,
            b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 11\r\n\r\nhello",
            Duration::from_millis(100),
        )
        .await;
        assert_eq!(text, "", "answered before the body ended");
        let (text, _) = exchange(&mut c, b" world", WAIT).await;
        assert!(text.ends_with("Ok(11)"), "{text}");
        // Chunked, the size line split, then another request on the same connection.
        let (text, _) = exchange(
            &mut c,
            b"POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n1",
            Duration::from_millis(100),
        )
        .await;
        assert_eq!(text, "");
        let (text, closed) = exchange(
            &mut c,
            b"0\r\n0123456789abcdef\r\n0\r\n\r\nGET /x HTTP/1.1\r\nHost: a\r\n\r\n",
            WAIT,
        )
        .await;
        assert!(!closed, "{text}");
        assert!(text.contains("Ok(16)"), "{text}");
        assert!(text.ends_with("\r\n\r\nok"), "{text}");
        // A body read to its end in another task: the driver, waiting for that before it
        // watches for the caller, is woken by it, and then notices the caller leave.
        let mut c = start();
        c.write_all(b"POST /spawned HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello")
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        c.shutdown().await.unwrap();
        let (text, closed) = exchange(&mut c, b"", WAIT).await;
        assert!(closed, "the caller's leaving went unnoticed: {text}");
        assert_eq!(text, "");
        // The caller closing mid-body: the handler sees an error, the connection ends.
        let mut c = start();
        c.write_all(b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 11\r\n\r\nhel")
            .await
            .unwrap();
        c.shutdown().await.unwrap();
        let (text, closed) = exchange(&mut c, b"", WAIT).await;
        assert!(closed, "{text}");
        assert!(!text.contains("Ok(11)"), "{text}");
    }
}

#[tokio::test]
async fn the_previous_answer_s_fields_never_reach_the_next_request() {
    // The response's emptied map is reused for the next request's fields.
    let mut c = driver::start();
    let (text, _) = driver::exchange(
        &mut c,
        b"GET /x HTTP/1.1\r\nHost: a\r\nX-One: 1\r\n\r\nGET /names HTTP/1.1\r\nHost: a\r\nX-Two: 2\r\n\r\n",
        std::time::Duration::from_millis(300),
    )
    .await;
    assert!(text.contains("x-resp: 1\r\n"), "{text}");
    assert!(text.ends_with("\r\n\r\nhost,x-two"), "{text}");
}

mod against_the_guard {
    use bytes::BytesMut;
    use proptest::prelude::*;

    use super::LIMITS;
    use crate::transport::framing::framing_verdict;
    use crate::transport::h1::parse::{parse, Framing, Scan};

    /// Field lines around framing, in spellings parsers disagree on.
    const FIELDS: &[&str] = &[
        "Host: a",
        "Host: b",
        "X-A: b",
        "Content-Length: 5",
        "Content-Length: 05",
        "Content-Length: 0",
        "content-length:5 ",
        "Content-Length: +5",
        "Content-Length: 5, 5",
        "Content-Length: 5 5",
        "Content-Length: ",
        "Content-Length: 1e3",
        "Content-Length: 18446744073709551616",
        "Transfer-Encoding: chunked",
        "transfer-encoding: Chunked ",
        "Transfer-Encoding:\tchunked",
        "Transfer-Encoding: gzip, chunked",
        "Transfer-Encoding: chunked, identity",
        "Transfer-Encoding : chunked",
        " Transfer-Encoding: chunked",
        "\tX: y",
        "Transfer-Encoding: \"chunked\"",
        "Connection: close",
        "Expect: 100-continue",
    ];
    const LINE_ENDS: &[&str] = &["\r\n", "\r\n", "\r\n", "\r\n", "\n", "\r"];
    const REQUEST_LINES: &[&str] = &[
        "POST / HTTP/1.1",
        "POST / HTTP/1.0",
        "GET http://a/x HTTP/1.1",
        "POST  / HTTP/1.1",
    ];

    fn head() -> impl Strategy<Value = String> {
        (
            prop::sample::select(REQUEST_LINES),
            prop::collection::vec(
                (
                    prop::sample::select(FIELDS),
                    prop::sample::select(LINE_ENDS),
                ),
                0..6,
            ),
            prop::sample::select(LINE_ENDS),
        )
            .prop_map(|(line, fields, end)| {
                let mut h = format!("{line}\r\n");
                for (f, e) in fields {
                    h.push_str(f);
                    h.push_str(e);
                }
                h.push_str(end);
                h.push_str("\r\n");
                h
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::default())]

        /// The native parser may be stricter than the framing guard in front of it, never
        /// looser: a head it accepts, the guard frames the same way (and a head the guard flags,
        /// it refuses).
        #[test]
        fn the_native_parser_never_frames_a_head_the_guard_reads_otherwise(h in head()) {
            let bytes = h.as_bytes();
            let mut buf = BytesMut::from(bytes);
            let native = parse(&mut buf, &mut Scan::default(), LIMITS, &mut None);
            let guard = framing_verdict(bytes, LIMITS.max_fields);
            if let Ok(Some(parsed)) = native {
                let expected = match parsed.framing {
                    Framing::None => Some(Some(0)),
                    Framing::Length(n) => Some(Some(n)),
                    Framing::Chunked => Some(None),
                };
                prop_assert_eq!(guard, expected, "{:?}", h);
            }
        }
    }
}

/// Memory a connection keeps after one large message, and back-pressure on large answers.
mod bounded {
    use std::future::poll_fn;

    use bytes::Bytes;
    use http::Response;
    use http_body_util::{BodyExt, StreamBody};
    use tokio::io::AsyncWriteExt;

    use super::super::conn::{Conn, READ_KEEP};
    use super::super::parse::{parse, Limits, Scan};
    use super::super::write::{self, For, OUT_KEEP};
    use crate::body::{full, BoxError, ProxyBody};

    #[tokio::test]
    async fn the_read_buffer_is_given_back_after_one_large_head() {
        let (mut client, server) = tokio::io::duplex(256 * 1024);
        let mut conn = Conn::new(server);
        let big = format!(
            "GET / HTTP/1.1\r\nHost: a\r\nX-Big: {}\r\n\r\n",
            "x".repeat(60_000)
        );
        client.write_all(big.as_bytes()).await.unwrap();
        let limits = Limits {
            max_bytes: 128 * 1024,
            max_fields: 100,
        };
        let mut scan = Scan::default();
        let head = loop {
            if let Some(h) = parse(&mut conn.rbuf, &mut scan, limits, &mut None).unwrap() {
                break h;
            }
            poll_fn(|cx| conn.poll_fill(cx)).await.unwrap();
        };
        assert_eq!(head.headers["x-big"].len(), 60_000);
        drop(head);
        // The requests that follow are read into a buffer of the usual size, not the grown one
        // (the tail of the large allocation would be reclaimed whole once it filled up).
        let small = format!(
            "GET / HTTP/1.1\r\nHost: a\r\nX-Pad: {}\r\n\r\n",
            "p".repeat(1000)
        );
        let mut most = 0;
        for _ in 0..20 {
            client.write_all(small.as_bytes()).await.unwrap();
            let head = loop {
                if let Some(h) = parse(&mut conn.rbuf, &mut scan, limits, &mut None).unwrap() {
                    break h;
                }
                poll_fn(|cx| conn.poll_fill(cx)).await.unwrap();
                most = most.max(conn.rbuf.capacity());
            };
            assert_eq!(head.headers["x-pad"].len(), 1000);
        }
        assert!(most <= READ_KEEP, "{most} bytes kept");
    }

    fn one_frame(data: Bytes) -> ProxyBody {
        let frames = futures_util::stream::iter([Ok::<_, BoxError>(http_body::Frame::data(data))]);
        StreamBody::new(frames).boxed()
    }

    /// `write::response` of a plain answer (nothing relayed, no spare map, the caller not
    /// asking to close) for an HTTP/1.1 request, `HEAD` or not.
    pub(super) async fn write_plain(
        wire: &mut Vec<u8>,
        out: &mut Vec<u8>,
        resp: Response<ProxyBody>,
        head_method: bool,
    ) -> std::io::Result<bool> {
        let req = For {
            version: http::Version::HTTP_11,
            head_method,
        };
        write::response(wire, out, resp, &mut None, None, req, false, &mut None).await
    }

    /// The `RateLimit` fields beside the response (`transport::Answer`) are written as a map
    /// insert would have put them: the same bytes, after the map's `X-Request-Id`, and the
    /// upstream's fields of their names left out (they would describe its limits, not ours).
    #[tokio::test]
    async fn rate_fields_beside_the_map_are_written_as_the_map_would_write_them() {
        use std::sync::Arc;
        use std::time::Duration;

        let limits = crate::limits::RouteLimits::new(
            &crate::limits::RouteLimitSettings {
                rate: crate::limits::Rate::new(10, Duration::from_secs(1)),
                total_rate: crate::limits::Rate::new(100, Duration::from_secs(60)),
                ..Default::default()
            },
            Arc::new(crate::clock::SystemClock),
        )
        .unwrap();
        let rate = limits.check_rate("spiffe://x/a").unwrap();
        assert!(rate.is_set());
        let upstream = "HTTP/1.1 200 OK\r\nRateLimit: \"up\";r=1;t=1\r\nX-A: 1\r\n\
                        ratelimit-policy: \"up\";q=1;w=1\r\nContent-Length: 2\r\n\r\n";
        let write = |beside: bool| {
            let rate = rate.clone();
            async move {
                let mut resp = Response::new(full(Bytes::from_static(b"ok")));
                resp.headers_mut()
                    .insert("x-request-id", http::HeaderValue::from_static("rid"));
                if !beside {
                    rate.apply_to(resp.headers_mut());
                }
                let mut relayed = Some(crate::proxy::relayed_for_tests(upstream));
                let (mut wire, mut out) = (Vec::new(), Vec::new());
                let req = For {
                    version: http::Version::HTTP_11,
                    head_method: false,
                };
                let rate = beside.then_some(&rate);
                write::response(
                    &mut wire,
                    &mut out,
                    resp,
                    &mut relayed,
                    rate,
                    req,
                    false,
                    &mut None,
                )
                .await
                .unwrap();
                // The date may turn between the two writes.
                let text = String::from_utf8(wire).unwrap();
                let kept: Vec<String> = text
                    .split("\r\n")
                    .filter(|l| !l.starts_with("date: "))
                    .map(str::to_owned)
                    .collect();
                kept
            }
        };
        let (beside, inserted) = (write(true).await, write(false).await);
        assert_eq!(beside, inserted);
        let policy = rate.pairs()[0].1.to_str().unwrap().to_owned();
        let current = rate.pairs()[1].1.to_str().unwrap().to_owned();
        assert_eq!(
            beside,
            [
                "HTTP/1.1 200 OK".to_owned(),
                "x-a: 1".into(),
                "x-request-id: rid".into(),
                format!("ratelimit-policy: {policy}"),
                format!("ratelimit: {current}"),
                "content-length: 2".into(),
                "".into(),
                "ok".into(),
            ]
        );
        assert_eq!(policy, "\"identity\";q=10;w=1, \"route\";q=100;w=60");
        assert!(
            current.starts_with("\"identity\";r=9;t=1, \"route\";r=99;t="),
            "{current}"
        );
    }

    #[tokio::test]
    async fn a_large_response_is_written_from_its_own_buffer_never_copied_into_the_kept_one() {
        let big = Bytes::from(vec![b'x'; 1 << 20]);
        // Known size (first frame in hand), and chunked (size unknown).
        for (body, chunked) in [(full(big.clone()), false), (one_frame(big.clone()), true)] {
            let mut wire: Vec<u8> = Vec::new();
            let mut out = Vec::with_capacity(1024);
            let close = write_plain(&mut wire, &mut out, Response::new(body), false)
                .await
                .unwrap();
            assert!(!close);
            assert!(
                out.capacity() <= OUT_KEEP,
                "chunked {chunked}: {}",
                out.capacity()
            );
            let text = String::from_utf8_lossy(&wire);
            let end = text.find("\r\n\r\n").unwrap() + 4;
            if chunked {
                assert!(
                    text[..end].contains("transfer-encoding: chunked"),
                    "{text:.200}"
                );
                assert_eq!(&wire[end..end + 7], b"100000\r");
                assert!(wire.ends_with(b"xx\r\n0\r\n\r\n"));
                assert_eq!(wire.len(), end + 8 + (1 << 20) + 2 + 5);
            } else {
                assert!(
                    text[..end].contains("content-length: 1048576"),
                    "{text:.200}"
                );
                assert_eq!(wire.len(), end + (1 << 20));
            }
        }
    }

    #[tokio::test]
    async fn a_first_frame_longer_than_its_content_length_is_never_written() {
        let mut resp = Response::new(one_frame(Bytes::from_static(
            b"okHTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nevil",
        )));
        resp.headers_mut()
            .insert("content-length", "2".parse().unwrap());
        let mut wire: Vec<u8> = Vec::new();
        let got = write_plain(&mut wire, &mut Vec::new(), resp, false).await;
        assert!(got.is_err());
        assert!(
            !String::from_utf8_lossy(&wire).contains("evil"),
            "{}",
            String::from_utf8_lossy(&wire)
        );
    }
}

/// The connection's shutdown watch (`Watch`): polled once it is registered, and only the
/// channel's change makes it look again; the change wakes the connection's task, and the
/// sender's end counts as shutdown, as `stopped` has it.
mod shutdown_watch {
    use std::time::Duration;

    use super::super::Watch;

    /// Wait on a watch as the connection does, in a task of its own; what `stopping` says after.
    fn waiting(rx: tokio::sync::watch::Receiver<bool>) -> tokio::task::JoinHandle<(bool, bool)> {
        tokio::spawn(async move {
            let mut shutdown = rx.clone();
            let mut watch = Watch {
                seen: rx,
                armed: false,
            };
            let before = watch.stopping();
            let stop = tokio::task::unconstrained(async move {
                crate::transport::stopped(&mut shutdown).await;
            });
            tokio::pin!(stop);
            std::future::poll_fn(|cx| watch.poll(&mut stop, cx)).await;
            (before, watch.stopping())
        })
    }

    #[tokio::test]
    async fn a_shutdown_wakes_the_waiting_connection() {
        let (tx, rx) = tokio::sync::watch::channel(false);
        let task = waiting(rx);
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!task.is_finished());
        tx.send(true).unwrap();
        let got = tokio::time::timeout(Duration::from_secs(5), task).await;
        assert_eq!(got.unwrap().unwrap(), (false, true));
    }

    #[tokio::test]
    async fn the_senders_end_counts_as_shutdown() {
        let (tx, rx) = tokio::sync::watch::channel(false);
        let task = waiting(rx);
        tokio::time::sleep(Duration::from_millis(20)).await;
        drop(tx);
        let got = tokio::time::timeout(Duration::from_secs(5), task).await;
        assert_eq!(got.unwrap().unwrap(), (false, true));
    }

    #[tokio::test]
    async fn a_shutdown_before_the_connection_began_is_seen_at_once() {
        let (tx, rx) = tokio::sync::watch::channel(false);
        tx.send(true).unwrap();
        let got = tokio::time::timeout(Duration::from_secs(5), waiting(rx.clone())).await;
        // `has_changed` of a receiver cloned after the send says no: the value is read too.
        assert_eq!(got.unwrap().unwrap(), (true, true));
        drop(tx);
    }
}

/// The writer reads the map's framing fields in the pass that writes the others: the first
/// `Content-Length` states the length, a `Connection` listing `close` (in any case, anywhere in
/// a list, in any of several fields) ends the connection, and its look-alikes do not.
mod framing_fields {
    use bytes::Bytes;
    use http::Response;

    use super::bounded::write_plain;
    use crate::body::full;

    /// The head written for a 2-byte body with `fields` in the map, and whether the connection
    /// must end.
    async fn written(fields: &[(&str, &str)]) -> (String, bool) {
        let mut resp = Response::new(full(Bytes::from_static(b"ok")));
        for (n, v) in fields {
            resp.headers_mut().append(
                http::HeaderName::from_bytes(n.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        let mut wire: Vec<u8> = Vec::new();
        let close = write_plain(&mut wire, &mut Vec::new(), resp, true)
            .await
            .unwrap();
        (String::from_utf8(wire).unwrap(), close)
    }

    #[tokio::test]
    async fn a_connection_close_in_the_map_ends_the_connection() {
        for v in [
            vec![("connection", "close")],
            vec![("connection", "Close")],
            vec![("connection", "keep-alive, close")],
            vec![("connection", "keep-alive"), ("connection", " CLOSE ")],
        ] {
            let (head, close) = written(&v).await;
            assert!(close, "{v:?}");
            assert!(head.contains("\r\nconnection: close\r\n"), "{head}");
            assert_eq!(head.matches("connection:").count(), 1, "{head}");
        }
        for v in [
            vec![],
            vec![("connection", "closed")],
            vec![("connection", "keep-alive")],
            vec![("x-connection", "close")],
        ] {
            let (head, close) = written(&v).await;
            assert!(!close, "{v:?}");
            assert!(!head.contains("\r\nconnection:"), "{head}");
        }
    }

    #[tokio::test]
    async fn the_maps_first_length_is_stated_once() {
        let (head, _) = written(&[("content-length", "7"), ("content-length", "9")]).await;
        assert!(head.contains("\r\ncontent-length: 7\r\n"), "{head}");
        assert_eq!(head.matches("content-length:").count(), 1, "{head}");
        // A `Transfer-Encoding` the map holds is never written: the framing is the writer's.
        let (head, _) = written(&[("transfer-encoding", "chunked"), ("x-a", "1")]).await;
        assert!(!head.contains("transfer-encoding"), "{head}");
        assert!(
            head.contains("\r\nx-a: 1\r\ncontent-length: 2\r\n"),
            "{head}"
        );
    }
}
