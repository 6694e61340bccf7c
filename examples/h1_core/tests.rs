//! The prototype's framing rules, each with its hostile twins, and end-to-end runs over real
//! sockets (an in-process upstream that records what it receives).

use super::*;

use std::sync::Mutex;

fn hop() -> HopText {
    HopText::new("127.0.0.1:4000".parse().unwrap())
}

/// Parse `raw`; on success, the upstream head as text.
fn parse(raw: &[u8]) -> Result<Option<(RequestHead, String)>, Refusal> {
    parse_with(raw, &Target::new("10.0.0.9:8080".parse().unwrap()))
}

fn parse_with(raw: &[u8], target: &Target) -> Result<Option<(RequestHead, String)>, Refusal> {
    let mut out = Vec::new();
    let h = parse_request(raw, &hop(), target, &mut out)?;
    Ok(h.map(|h| (h, String::from_utf8(out).unwrap())))
}

fn forwarded(raw: &str) -> (RequestHead, String) {
    parse(raw.as_bytes())
        .unwrap_or_else(|r| panic!("{raw:?} refused: {r:?}"))
        .unwrap_or_else(|| panic!("{raw:?} incomplete"))
}

fn refused(raw: &[u8]) -> u16 {
    match parse(raw) {
        Err(r) => r.status,
        Ok(h) => panic!("{:?} was not refused: {h:?}", String::from_utf8_lossy(raw)),
    }
}

/// Lower-cased `name: value` lines of an upstream head.
fn fields(head: &str) -> Vec<(String, String)> {
    head.split("\r\n")
        .skip(1)
        .filter(|l| !l.is_empty())
        .map(|l| {
            let (n, v) = l.split_once(": ").unwrap();
            (n.to_ascii_lowercase(), v.to_owned())
        })
        .collect()
}

fn values(head: &str, name: &str) -> Vec<String> {
    fields(head)
        .into_iter()
        .filter(|(n, _)| n == name)
        .map(|(_, v)| v)
        .collect()
}

#[test]
fn a_plain_get_is_forwarded_with_the_gateways_headers() {
    let (h, up) = forwarded("GET /a?b=1 HTTP/1.1\r\nHost: api.example\r\nAccept: */*\r\n\r\n");
    assert!(!h.close && !h.head_method && h.body == 0);
    assert!(up.starts_with("GET /a?b=1 HTTP/1.1\r\n"), "{up}");
    assert!(up.ends_with("\r\n\r\n"), "{up}");
    assert_eq!(values(&up, "host"), ["10.0.0.9:8080"]);
    assert_eq!(values(&up, "accept"), ["*/*"]);
    assert_eq!(
        values(&up, "forwarded"),
        ["for=\"127.0.0.1:4000\";proto=http;host=\"api.example\""]
    );
    assert_eq!(values(&up, "x-forwarded-for"), ["127.0.0.1"]);
    assert_eq!(values(&up, "x-forwarded-proto"), ["http"]);
    assert_eq!(values(&up, "x-forwarded-host"), ["api.example"]);
    let id = values(&up, "x-request-id");
    assert_eq!(id.len(), 1);
    assert_eq!(id[0].len(), 32);
    assert!(id[0].bytes().all(|b| b.is_ascii_hexdigit()));
}

#[test]
fn leading_blank_lines_and_pipelined_requests() {
    let raw = b"\r\nGET /1 HTTP/1.1\r\nHost: a\r\n\r\nGET /2 HTTP/1.1\r\nHost: a\r\n\r\n";
    let (h, up) = parse(raw).unwrap().unwrap();
    assert!(up.starts_with("GET /1 "));
    let (h2, up2) = parse(&raw[h.len..]).unwrap().unwrap();
    assert!(up2.starts_with("GET /2 "));
    assert_eq!(h.len + h2.len, raw.len());
}

#[test]
fn an_incomplete_head_waits_and_an_endless_one_is_431() {
    assert_eq!(parse(b"GET / HTTP/1.1\r\nHost: a\r\n").unwrap(), None);
    let mut endless = b"GET / HTTP/1.1\r\nHost: a\r\nX-Pad: ".to_vec();
    endless.resize(MAX_HEAD_BYTES + 1, b'a');
    assert_eq!(refused(&endless), 431);
    // The same size, complete.
    endless.extend_from_slice(b"\r\n\r\n");
    assert_eq!(refused(&endless), 431);
}

#[test]
fn too_many_fields_are_431() {
    let mut raw = String::from("GET / HTTP/1.1\r\nHost: a\r\n");
    for i in 0..MAX_HEADERS - 1 {
        raw.push_str(&format!("X-{i}: 1\r\n"));
    }
    let ok = format!("{raw}\r\n");
    forwarded(&ok);
    raw.push_str("X-Last: 1\r\n\r\n");
    assert_eq!(refused(raw.as_bytes()), 431);
}

#[test]
fn content_length_bodies_and_their_ill_formed_twins() {
    let (h, up) = forwarded("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello");
    assert_eq!(h.body, 5);
    assert_eq!(values(&up, "content-length"), ["5"]);
    for raw in [
        "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello",
        "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
        "POST / HTTP/1.1\r\nHost: a\r\ncontent-length: 5\r\nCONTENT-LENGTH: 5\r\n\r\nhello",
        "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 5\r\n\r\nhello",
        "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +5\r\n\r\nhello",
        "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0x5\r\n\r\nhello",
        "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5 5\r\n\r\nhello",
        "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: \r\n\r\n",
        "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999999999999999\r\n\r\n",
    ] {
        assert_eq!(refused(raw.as_bytes()), 400, "{raw:?}");
    }
    // A space before the colon is not a field httparse accepts: 400 rather than a second name.
    assert_eq!(
        refused(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length : 5\r\n\r\nhello"),
        400
    );
}

#[test]
fn transfer_encoding_with_content_length_in_either_order_is_400() {
    for raw in [
        "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: a\r\ntransfer-encoding: CHUNKED\r\ncontent-length: 0\r\n\r\n0\r\n\r\n",
    ] {
        assert_eq!(refused(raw.as_bytes()), 400, "{raw:?}");
    }
}

#[test]
fn only_a_single_chunked_coding_passes_the_framing_check_and_is_then_501() {
    assert_eq!(
        refused(b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
        501
    );
    for raw in [
        "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: identity, chunked\r\n\r\n0\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: identity\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding:\r\n\r\n",
        // Meaningless in HTTP/1.0: one parser reads a chunked body, another reads none.
        "POST / HTTP/1.0\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    ] {
        assert_eq!(refused(raw.as_bytes()), 400, "{raw:?}");
    }
}

#[test]
fn obs_fold_bare_cr_and_bare_lf_are_400() {
    for raw in [
        &b"GET / HTTP/1.1\r\nHost: a\r\nX-A: 1\r\n folded\r\n\r\n"[..],
        b"GET / HTTP/1.1\r\nHost: a\r\nX-A: 1\r\n\tfolded\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\n Content-Length: 5\r\n\r\nhello",
        b"GET / HTTP/1.1\nHost: a\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\n\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nX-A: 1\r2\r\n\r\n",
        b"GET / HTTP/1.1\rHost: a\r\n\r\n",
        b"GET /\x00 HTTP/1.1\r\nHost: a\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nX-A: \x00\r\n\r\n",
    ] {
        assert_eq!(refused(raw), 400, "{:?}", String::from_utf8_lossy(raw));
    }
}

#[test]
fn host_must_be_there_once_in_http11() {
    assert_eq!(refused(b"GET / HTTP/1.1\r\n\r\n"), 400);
    assert_eq!(
        refused(b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"),
        400
    );
    assert_eq!(
        refused(b"GET / HTTP/1.1\r\nHost: a\r\nhost: a\r\n\r\n"),
        400
    );
    assert_eq!(refused(b"GET / HTTP/2.0\r\nHost: a\r\n\r\n"), 400);
    // HTTP/1.0 needs none, and its connection closes after the answer.
    let (h, up) = forwarded("GET / HTTP/1.0\r\n\r\n");
    assert!(h.close);
    assert!(values(&up, "x-forwarded-host").is_empty());
    assert!(values(&up, "forwarded")[0].ends_with("proto=http"), "{up}");
}

#[test]
fn hop_by_hop_and_connection_named_fields_are_not_forwarded() {
    let (h, up) = forwarded(
        "GET / HTTP/1.1\r\nHost: a\r\nConnection: close, X-Secret\r\nKeep-Alive: 5\r\nTE: trailers\r\nProxy-Connection: x\r\nProxy-Authorization: Basic eA==\r\nX-Secret: s\r\nX-Kept: k\r\n\r\n",
    );
    assert!(h.close);
    let names: Vec<String> = fields(&up).into_iter().map(|(n, _)| n).collect();
    for gone in [
        "connection",
        "keep-alive",
        "te",
        "proxy-connection",
        "proxy-authorization",
        "x-secret",
    ] {
        assert!(!names.iter().any(|n| n == gone), "{gone} forwarded: {up}");
    }
    assert_eq!(values(&up, "x-kept"), ["k"]);
}

#[test]
fn connection_cannot_drop_the_proxys_own_fields() {
    let (_, up) = forwarded(
        "GET / HTTP/1.1\r\nHost: a\r\nConnection: X-Request-Id, Forwarded, X-Forwarded-For, Host, Content-Length\r\nContent-Length: 0\r\n\r\n",
    );
    for kept in [
        "x-request-id",
        "forwarded",
        "x-forwarded-for",
        "host",
        "x-forwarded-proto",
    ] {
        assert_eq!(values(&up, kept).len(), 1, "{kept}: {up}");
    }
    // Content-Length is the caller's framing, and it is forwarded as such.
    assert_eq!(values(&up, "content-length"), ["0"]);
    // With a body: naming the length in `Connection` must not turn the body into a request.
    let (h, up) = forwarded(
        "POST / HTTP/1.1\r\nHost: a\r\nConnection: content-length\r\nContent-Length: 5\r\n\r\nhello",
    );
    assert_eq!(h.body, 5);
    assert_eq!(values(&up, "content-length"), ["5"]);
    // A forwarding list named in `Connection` is dropped, not extended.
    let (_, up) = forwarded(
        "GET / HTTP/1.1\r\nHost: a\r\nConnection: x-forwarded-for\r\nX-Forwarded-For: 192.0.2.7\r\n\r\n",
    );
    assert_eq!(values(&up, "x-forwarded-for"), ["127.0.0.1"]);
}

#[test]
fn identity_claims_in_any_spelling_never_reach_the_upstream() {
    let (_, up) = forwarded(
        "GET / HTTP/1.1\r\nHost: a\r\nX-Remote-User: admin\r\nX_Remote_User: admin\r\nREMOTE-USER: admin\r\nX-Portcullis-Spiffe-Id: spiffe://x/y\r\nX-SSL-Client-S-DN: CN=admin\r\nProxy: http://evil\r\nX-Forwarded-Proto: https\r\nX-Forwarded-Host: evil\r\n\r\n",
    );
    let names: Vec<String> = fields(&up).into_iter().map(|(n, _)| n).collect();
    for n in &names {
        assert!(
            !n.contains("remote") && !n.starts_with("x-portcullis") && !n.starts_with("x-ssl"),
            "{up}"
        );
        assert_ne!(n, "proxy");
    }
    assert_eq!(values(&up, "x-forwarded-proto"), ["http"]);
    assert_eq!(values(&up, "x-forwarded-host"), ["a"]);
}

#[test]
fn forwarding_lists_are_folded_and_extended() {
    let (_, up) = forwarded(
        "GET / HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: 192.0.2.1\r\nX-Forwarded-For: 192.0.2.2\r\nForwarded: for=192.0.2.1\r\n\r\n",
    );
    assert_eq!(
        values(&up, "x-forwarded-for"),
        ["192.0.2.1, 192.0.2.2, 127.0.0.1"]
    );
    assert_eq!(
        values(&up, "forwarded"),
        ["for=192.0.2.1, for=\"127.0.0.1:4000\";proto=http;host=\"a\""]
    );
    // A host that would break out of the quoted string is left out of `Forwarded`.
    let (_, up) = forwarded("GET / HTTP/1.1\r\nHost: a\";for=evil\r\n\r\n");
    assert_eq!(
        values(&up, "forwarded"),
        ["for=\"127.0.0.1:4000\";proto=http"]
    );
}

#[test]
fn a_well_formed_request_id_is_kept_and_any_other_replaced() {
    let (_, up) = forwarded("GET / HTTP/1.1\r\nHost: a\r\nX-Request-Id: abc-1.2:3_x\r\n\r\n");
    assert_eq!(values(&up, "x-request-id"), ["abc-1.2:3_x"]);
    for hostile in [
        "X-Request-Id: a b\r\n",
        "X-Request-Id: \r\n",
        "X-Request-Id: a\r\nX-Request-Id: b\r\n",
        "X-Request-Id: a\"b\r\n",
    ] {
        let (_, up) = forwarded(&format!("GET / HTTP/1.1\r\nHost: a\r\n{hostile}\r\n"));
        let id = values(&up, "x-request-id");
        assert_eq!(id.len(), 1, "{up}");
        assert_eq!(id[0].len(), 32, "{hostile:?}: {up}");
    }
    let long = "a".repeat(129);
    let (_, up) = forwarded(&format!(
        "GET / HTTP/1.1\r\nHost: a\r\nX-Request-Id: {long}\r\n\r\n"
    ));
    assert_eq!(values(&up, "x-request-id")[0].len(), 32);
}

#[test]
fn upgrades_and_connect_are_501() {
    assert_eq!(
        refused(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n"),
        501
    );
    assert_eq!(
        refused(b"CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n"),
        501
    );
}

#[test]
fn the_gateway_view_of_pipeline_mode_refuses_what_the_gateway_refuses_and_changes_nothing_else() {
    let mut target = Target::new("10.0.0.9:8080".parse().unwrap());
    target.router = Some(Router::new(vec![Arc::new(AnyPath)]));
    let raw = b"GET /a/b?x=1 HTTP/1.1\r\nHost: api.example\r\nAccept: */*\r\n\r\n";
    let (h, up) = parse_with(raw, &target).unwrap().unwrap();
    let (h0, up0) = parse(raw).unwrap().unwrap();
    assert_eq!(h, h0);
    let without_id = |s: &str| {
        s.lines()
            .filter(|l| !l.starts_with("X-Request-Id"))
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert_eq!(without_id(&up), without_id(&up0));
    // `;params` in a segment (read as `/admin` by servlet stacks), in any case of spelling:
    // the core alone forwards them, the gateway's view refuses them.
    for raw in [
        &b"GET /admin;x=1 HTTP/1.1\r\nHost: a\r\n\r\n"[..],
        b"GET /admin%3bx=1 HTTP/1.1\r\nHost: a\r\n\r\n",
    ] {
        assert!(parse(raw).unwrap().is_some());
        assert_eq!(
            parse_with(raw, &target).map(|_| ()).unwrap_err().status,
            400,
            "{:?}",
            String::from_utf8_lossy(raw)
        );
    }
}

#[test]
fn head_requests_are_marked() {
    let (h, _) = forwarded("HEAD / HTTP/1.1\r\nHost: a\r\n\r\n");
    assert!(h.head_method);
}

fn response(
    raw: &str,
    head_method: bool,
    close: bool,
) -> Result<(ResponseHead, String), &'static str> {
    let mut out = Vec::new();
    let h = parse_response(raw.as_bytes(), head_method, close, &mut out)?.unwrap();
    Ok((h, String::from_utf8(out).unwrap()))
}

#[test]
fn response_framing() {
    let (h, out) = response("HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: keep-alive, X-Up\r\nX-Up: 1\r\nKeep-Alive: timeout=5\r\nX-App: a\r\n\r\nok", false, false).unwrap();
    assert_eq!(h.framing, Framing::Length(2));
    assert!(h.reusable && !h.interim);
    assert_eq!(
        out,
        "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-App: a\r\n\r\n"
    );
    let (h, out) = response("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n", false, true).unwrap();
    assert_eq!(h.framing, Framing::Length(2));
    assert!(out.ends_with("Connection: close\r\n\r\n"), "{out}");
    let (h, out) = response(
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
        false,
        false,
    )
    .unwrap();
    assert_eq!(h.framing, Framing::Chunked);
    assert!(out.contains("Transfer-Encoding: chunked\r\n"));
    let (h, out) = response(
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n",
        false,
        false,
    )
    .unwrap();
    assert_eq!(h.framing, Framing::Close);
    assert!(!h.reusable);
    assert!(out.contains("Connection: close\r\n"));
    let (h, _) = response("HTTP/1.1 200 OK\r\n\r\n", false, false).unwrap();
    assert_eq!(h.framing, Framing::Close);
    let (h, _) = response(
        "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\n",
        false,
        false,
    )
    .unwrap();
    assert!(!h.reusable);
    let (h, _) = response("HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\n", false, false).unwrap();
    assert!(!h.reusable);
    let (h, _) = response("HTTP/1.1 204 No Content\r\n\r\n", false, false).unwrap();
    assert_eq!(h.framing, Framing::None);
    let (h, _) = response("HTTP/1.1 200 OK\r\nContent-Length: 20\r\n\r\n", true, false).unwrap();
    assert_eq!(h.framing, Framing::None);
    let (h, _) = response("HTTP/1.1 100 Continue\r\n\r\n", false, false).unwrap();
    assert!(h.interim);
    let (h, _) = response(
        "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\n",
        false,
        false,
    )
    .unwrap();
    assert_eq!(h.framing, Framing::Length(2));
}

#[test]
fn ambiguous_responses_are_not_relayed() {
    for raw in [
        "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 2\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: +2\r\n\r\n",
        "HTTP/1.1 200 OK\r\nX-A: 1\r\n folded\r\n\r\n",
        "HTTP/1.1 101 Switching Protocols\r\n\r\n",
    ] {
        assert!(response(raw, false, false).is_err(), "{raw:?}");
    }
}

fn chunks_end(pieces: &[&[u8]]) -> Result<Option<usize>, &'static str> {
    let mut c = Chunks::START;
    let mut seen = 0;
    for p in pieces {
        if let Some(n) = c.feed(p)? {
            return Ok(Some(seen + n));
        }
        seen += p.len();
    }
    Ok(None)
}

#[test]
fn chunked_bodies_end_where_they_end_whatever_the_reads() {
    let body = b"5\r\nhello\r\na;ext=1\r\n0123456789\r\n0\r\nX-T: 1\r\n\r\nGET /next";
    let end = body.len() - "GET /next".len();
    assert_eq!(chunks_end(&[body]), Ok(Some(end)));
    let bytes: Vec<&[u8]> = body.chunks(1).collect();
    assert_eq!(chunks_end(&bytes), Ok(Some(end)));
    let halves: Vec<&[u8]> = body.chunks(7).collect();
    assert_eq!(chunks_end(&halves), Ok(Some(end)));
    assert_eq!(chunks_end(&[b"5\r\nhel"]), Ok(None));
    assert_eq!(chunks_end(&[b"0\r\n\r\n"]), Ok(Some(5)));
}

#[test]
fn ill_formed_chunked_bodies_are_errors() {
    for raw in [
        &b"5\nhello\r\n0\r\n\r\n"[..],
        b"5\r\nhello\n0\r\n\r\n",
        b"5\r\nhelloXX0\r\n\r\n",
        b"5\r\nhello\r\n0\r\n\n",
        b"5\r\nhello\r\n0\r\nX-T: 1\n\r\n",
        b"5\r\nhello\r\n0\r\n folded\r\n\r\n",
        b"+5\r\nhello\r\n0\r\n\r\n",
        b"0x5\r\nhello\r\n0\r\n\r\n",
        b" 5\r\nhello\r\n0\r\n\r\n",
        b"\r\n",
        b";x\r\n",
        b"10000000000000000\r\n",
        b"5\rx",
    ] {
        assert!(
            chunks_end(&[raw]).is_err(),
            "{:?}",
            String::from_utf8_lossy(raw)
        );
    }
}

// ---- End to end, over real sockets ----

/// What the test upstream received: the raw bytes of each connection.
#[derive(Default)]
struct Seen {
    connections: Vec<Arc<Mutex<Vec<u8>>>>,
}

/// A keep-alive upstream: answers each request (head plus `Content-Length` body) with `answer`
/// for its path (`/chunked`, `/close` or anything else).
async fn upstream() -> (SocketAddr, Arc<Mutex<Seen>>) {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Seen::default()));
    let s2 = seen.clone();
    tokio::spawn(async move {
        loop {
            let (mut s, _) = l.accept().await.unwrap();
            let log = Arc::new(Mutex::new(Vec::new()));
            s2.lock().unwrap().connections.push(log.clone());
            tokio::spawn(async move {
                let mut buf = Vec::new();
                loop {
                    let mut headers = [httparse::EMPTY_HEADER; 64];
                    let mut req = httparse::Request::new(&mut headers);
                    if let Ok(httparse::Status::Complete(n)) = req.parse(&buf) {
                        let len: usize = req
                            .headers
                            .iter()
                            .find(|h| h.name.eq_ignore_ascii_case("content-length"))
                            .map(|h| std::str::from_utf8(h.value).unwrap().parse().unwrap())
                            .unwrap_or(0);
                        if buf.len() >= n + len {
                            let path = req.path.unwrap().to_owned();
                            log.lock().unwrap().extend_from_slice(&buf[..n + len]);
                            buf.drain(..n + len);
                            let answer: &[u8] = match path.as_str() {
                                "/chunked" => b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
                                "/close" => b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok",
                                "/continue" => b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
                                _ => b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-Up: 1\r\n\r\nok",
                            };
                            s.write_all(answer).await.unwrap();
                            if path == "/close" {
                                return;
                            }
                            continue;
                        }
                    }
                    let mut chunk = [0u8; 4096];
                    match s.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
            });
        }
    });
    (addr, seen)
}

/// The prototype on a free port, one worker, in front of `up`.
async fn proxy(up: SocketAddr) -> SocketAddr {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let workers = start_workers(1).unwrap();
    tokio::spawn(accept_loop(l, workers, Arc::new(Target::new(up))));
    addr
}

/// Send `parts` (with a short pause between them) and read until the proxy closes or `expect`
/// answers arrived; the text read and whether the connection was closed.
async fn exchange(addr: SocketAddr, parts: &[&[u8]], expect: usize) -> (String, bool) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    for p in parts {
        s.write_all(p).await.unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut got = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let text = String::from_utf8_lossy(&got).into_owned();
        if expect > 0 && complete_answers(&text) >= expect {
            return (text, false);
        }
        match tokio::time::timeout(Duration::from_secs(3), s.read(&mut chunk)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return (text, true),
            Ok(Ok(n)) => got.extend_from_slice(&chunk[..n]),
            Err(_) => return (text, false),
        }
    }
}

/// Answers whose body (by `Content-Length`, or a chunked `0` line) fully arrived.
fn complete_answers(text: &str) -> usize {
    text.split("HTTP/1.1 ")
        .skip(1)
        .filter(|a| {
            let Some((head, body)) = a.split_once("\r\n\r\n") else {
                return false;
            };
            let lower = head.to_ascii_lowercase();
            match lower.split("content-length: ").nth(1) {
                Some(v) => body.len() >= v.split("\r\n").next().unwrap().parse().unwrap(),
                None => body.contains("0\r\n\r\n"),
            }
        })
        .count()
}

#[tokio::test]
async fn keep_alive_requests_share_one_pooled_upstream_connection() {
    let (up, seen) = upstream().await;
    let addr = proxy(up).await;
    let req: &[u8] = b"GET /a HTTP/1.1\r\nHost: api.example\r\nX-Remote-User: admin\r\n\r\n";
    let (text, closed) = exchange(addr, &[req, req, req], 3).await;
    assert!(!closed);
    assert_eq!(text.matches("HTTP/1.1 200 OK").count(), 3, "{text}");
    assert_eq!(text.matches("\r\n\r\nok").count(), 3, "{text}");
    assert!(text.contains("X-Up: 1\r\n"));
    // A second caller connection on the same worker reuses the pooled upstream connection too.
    let (text, _) = exchange(addr, &[req], 1).await;
    assert!(text.starts_with("HTTP/1.1 200 OK"), "{text}");
    let seen = seen.lock().unwrap();
    assert_eq!(seen.connections.len(), 1);
    let sent = String::from_utf8(seen.connections[0].lock().unwrap().clone()).unwrap();
    assert_eq!(sent.matches("GET /a HTTP/1.1\r\n").count(), 4, "{sent}");
    assert_eq!(sent.matches("X-Forwarded-For: 127.0.0.1\r\n").count(), 4);
    assert!(!sent.to_ascii_lowercase().contains("remote-user"), "{sent}");
}

#[tokio::test]
async fn a_smuggled_request_is_never_forwarded() {
    let (up, seen) = upstream().await;
    let addr = proxy(up).await;
    for raw in [
        &b"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n"[..],
        b"POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n",
        b"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 40\r\n\r\nhelloGET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n",
        b"POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n",
        b"GET /x HTTP/1.1\r\nHost: a\r\nX-A: 1\r\n Transfer-Encoding: chunked\r\n\r\n",
        b"GET /x HTTP/1.1\nHost: a\n\nGET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n",
    ] {
        let (text, closed) = exchange(addr, &[raw], 0).await;
        assert!(text.starts_with("HTTP/1.1 400 "), "{text}");
        assert!(text.contains("application/problem+json"), "{text}");
        assert!(text.contains("urn:portcullis:invalid-request"), "{text}");
        assert_eq!(text.matches("HTTP/1.1").count(), 1, "{text}");
        assert!(closed, "{:?}", String::from_utf8_lossy(raw));
    }
    // A good request first, then a bad one on the same connection: only the first is forwarded.
    let (text, closed) = exchange(
        addr,
        &[b"GET /ok HTTP/1.1\r\nHost: a\r\n\r\nPOST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab"],
        0,
    )
    .await;
    assert!(text.starts_with("HTTP/1.1 200 OK"), "{text}");
    assert!(text.contains("HTTP/1.1 400 "), "{text}");
    assert!(closed);
    let seen = seen.lock().unwrap();
    let all: Vec<u8> = seen
        .connections
        .iter()
        .flat_map(|c| c.lock().unwrap().clone())
        .collect();
    let all = String::from_utf8(all).unwrap();
    assert_eq!(all.matches("HTTP/1.1\r\n").count(), 1, "{all}");
    assert!(all.starts_with("GET /ok "), "{all}");
}

#[tokio::test]
async fn bodies_in_pieces_and_pipelined_requests_arrive_intact_and_in_order() {
    let (up, seen) = upstream().await;
    let addr = proxy(up).await;
    let (text, closed) = exchange(
        addr,
        &[
            b"POST /p HTTP/1.1\r\nHost: a\r\nContent-Length: 11\r\n\r\nhel",
            b"lo ",
            b"worldGET /after HTTP/1.1\r\nHost: a\r\n\r\nGET /chunked HTTP/1.1\r\nHost: a\r\n\r\n",
        ],
        3,
    )
    .await;
    assert!(!closed);
    assert_eq!(text.matches("HTTP/1.1 200 OK").count(), 3, "{text}");
    assert!(
        text.ends_with("Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"),
        "{text}"
    );
    let seen = seen.lock().unwrap();
    let sent = String::from_utf8(seen.connections[0].lock().unwrap().clone()).unwrap();
    let body_at = sent.find("\r\n\r\n").unwrap() + 4;
    assert!(
        sent[body_at..].starts_with("hello worldGET /after "),
        "{sent}"
    );
    assert!(sent.contains("GET /chunked "), "{sent}");
}

#[tokio::test]
async fn an_upstream_that_closes_gets_a_fresh_connection_and_a_down_one_is_502() {
    let (up, seen) = upstream().await;
    let addr = proxy(up).await;
    let (text, _) = exchange(
        addr,
        &[
            b"GET /close HTTP/1.1\r\nHost: a\r\n\r\n",
            b"GET /a HTTP/1.1\r\nHost: a\r\n\r\n",
        ],
        2,
    )
    .await;
    assert_eq!(text.matches("HTTP/1.1 200 OK").count(), 2, "{text}");
    assert_eq!(seen.lock().unwrap().connections.len(), 2);
    // Nothing listens there: 502 problem+json, connection closed.
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let addr = proxy(dead).await;
    let (text, closed) = exchange(addr, &[b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"], 0).await;
    assert!(text.starts_with("HTTP/1.1 502 "), "{text}");
    assert!(closed);
}

#[tokio::test]
async fn an_interim_answer_arriving_with_the_final_one_is_skipped_without_waiting() {
    let (up, _seen) = upstream().await;
    let addr = proxy(up).await;
    let (text, closed) = exchange(
        addr,
        &[
            b"GET /continue HTTP/1.1\r\nHost: a\r\n\r\n",
            b"GET /a HTTP/1.1\r\nHost: a\r\n\r\n",
        ],
        2,
    )
    .await;
    assert!(!closed, "{text}");
    assert!(!text.contains("100 Continue"), "{text}");
    assert_eq!(text.matches("HTTP/1.1 200 OK").count(), 2, "{text}");
}

#[tokio::test]
async fn a_head_trickling_in_is_cut_off_at_one_deadline_not_one_per_read() {
    let (up, seen) = upstream().await;
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let mut target = Target::new(up);
    target.head_timeout = Duration::from_millis(300);
    tokio::spawn(accept_loop(l, start_workers(1).unwrap(), Arc::new(target)));
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: a\r\n").await.unwrap();
    let started = std::time::Instant::now();
    // A field every 100 ms: each read comes well within 300 ms, the head never ends.
    let mut got = Vec::new();
    for _ in 0..20 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if s.write_all(b"X-Slow: 1\r\n").await.is_err() {
            break;
        }
        let mut chunk = [0u8; 1024];
        if let Ok(Ok(n)) = tokio::time::timeout(Duration::from_millis(1), s.read(&mut chunk)).await
        {
            got.extend_from_slice(&chunk[..n]);
            if n == 0 || !got.is_empty() {
                break;
            }
        }
    }
    let _ = tokio::time::timeout(Duration::from_secs(2), s.read_to_end(&mut got)).await;
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("HTTP/1.1 408 "), "{text}");
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(seen.lock().unwrap().connections.len(), 0);
}

#[tokio::test]
async fn a_slow_head_does_not_reach_the_upstream_before_it_is_complete() {
    let (up, seen) = upstream().await;
    let addr = proxy(up).await;
    let (text, _) = exchange(
        addr,
        &[b"GET / HT", b"TP/1.1\r\nHo", b"st: a\r", b"\n\r", b"\n"],
        1,
    )
    .await;
    assert!(text.starts_with("HTTP/1.1 200 OK"), "{text}");
    assert_eq!(seen.lock().unwrap().connections.len(), 1);
}
