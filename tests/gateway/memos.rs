//! The per-thread memos of the request path (issue 22): the canonical `Host` of the last request
//! (`routing::shared_host`) and the field names by position in the head
//! (`transport::h1::parse`). Each answers only for the very bytes it saw: here, on one
//! keep-alive connection (so on one worker, whose memo the previous request filled), every
//! other spelling, a second field of the same name, and the same host named another way are
//! routed, framed or refused exactly as on a fresh gateway, against real upstreams.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::*;

/// Two host routes, `a.example` and `b.example`, each to its own upstream.
async fn two_hosts() -> (
    tempfile::TempDir,
    Upstream,
    Upstream,
    portcullis::server::Running,
) {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (Upstream::start().await, Upstream::start().await);
    let routes = format!(
        "{}{}",
        RouteToml::new("a", "/", &a.url()).host("a.example"),
        RouteToml::new("b", "/", &b.url()).host("b.example"),
    );
    let toml = base_config(dir.path(), "", "", &routes);
    let gw = start_in_process(dir.path(), &toml).await;
    (dir, a, b, gw)
}

/// One response off `s` (head and, by `Content-Length`, body): its status, or 0 when the
/// connection closed or nothing came within 5 s.
async fn answer(s: &mut TcpStream) -> u16 {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let text = String::from_utf8_lossy(&buf).into_owned();
        if let Some(end) = text.find("\r\n\r\n") {
            let length = text[..end]
                .lines()
                .find_map(|l| {
                    let (n, v) = l.split_once(':')?;
                    n.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse::<usize>().ok())
                        .flatten()
                })
                .unwrap_or(0);
            if buf.len() >= end + 4 + length {
                return status_of(&text);
            }
        }
        match tokio::time::timeout(Duration::from_secs(5), s.read(&mut chunk)).await {
            Ok(Ok(n)) if n > 0 => buf.extend_from_slice(&chunk[..n]),
            _ => return 0,
        }
    }
}

#[tokio::test]
async fn the_host_memo_routes_every_spelling_as_a_fresh_reading_would() {
    let (_d, a, b, gw) = two_hosts().await;
    let mut s = TcpStream::connect(gw.data_addr).await.unwrap();
    // Each request right after one that filled the memo with `a.example`; the upstream that
    // got it, or the refusal.
    let cases: &[(&str, u16, Option<char>)] = &[
        ("a.example", 200, Some('a')),
        ("a.example", 200, Some('a')),
        ("b.example", 200, Some('b')),
        ("A.EXAMPLE", 200, Some('a')),
        ("a.example:8080", 200, Some('a')),
        ("a.example:8080", 200, Some('a')),
        ("B.example:80", 200, Some('b')),
        ("a.exampl", 404, None),
        ("a.example.b", 404, None),
        ("c.example", 404, None),
    ];
    for (host, want, to) in cases {
        s.write_all(b"GET / HTTP/1.1\r\nHost: a.example\r\n\r\n")
            .await
            .unwrap();
        assert_eq!(answer(&mut s).await, 200, "the memo's own request");
        let (before_a, before_b) = (a.count(), b.count());
        s.write_all(format!("GET /x HTTP/1.1\r\nHost: {host}\r\n\r\n").as_bytes())
            .await
            .unwrap();
        assert_eq!(answer(&mut s).await, *want, "Host: {host}");
        let reached = (a.count() - before_a, b.count() - before_b);
        let expected = match to {
            Some('a') => (1, 0),
            Some('b') => (0, 1),
            _ => (0, 0),
        };
        assert_eq!(reached, expected, "Host: {host}");
    }
    // The memo holding `a.example`: two `Host` fields of that value, and an absolute-form
    // target naming another host, are refused and reach no upstream.
    let (before_a, before_b) = (a.count(), b.count());
    for raw in [
        &b"GET /x HTTP/1.1\r\nHost: a.example\r\nHost: a.example\r\nConnection: close\r\n\r\n"[..],
        b"GET http://b.example/x HTTP/1.1\r\nHost: a.example\r\nConnection: close\r\n\r\n",
        b"GET /x HTTP/1.1\r\nConnection: close\r\n\r\n",
    ] {
        let (text, _) = raw_exchange(gw.data_addr, raw, Duration::from_secs(5)).await;
        assert_eq!(status_of(&text), 400, "{}", String::from_utf8_lossy(raw));
    }
    assert_eq!((a.count(), b.count()), (before_a, before_b));
    gw.stop().await;
}

#[tokio::test]
async fn remembered_field_names_frame_and_forward_every_spelling_as_sent() {
    let (_d, a, _b, gw) = two_hosts().await;
    let mut s = TcpStream::connect(gw.data_addr).await.unwrap();
    // A custom name at position 1, twice (the second from the memo), then another spelling.
    for (name, value) in [("X-Custom", "1"), ("X-Custom", "2"), ("x-CUSTOM", "3")] {
        s.write_all(
            format!("GET / HTTP/1.1\r\nHost: a.example\r\n{name}: {value}\r\n\r\n").as_bytes(),
        )
        .await
        .unwrap();
        assert_eq!(answer(&mut s).await, 200);
        let seen = a.last();
        assert_eq!(seen.headers.get("x-custom").unwrap(), value);
    }
    // Where `X-Custom` was remembered, the framing fields: each read for what it is.
    s.write_all(b"POST / HTTP/1.1\r\nHost: a.example\r\nContent-Length: 5\r\n\r\nhello")
        .await
        .unwrap();
    assert_eq!(answer(&mut s).await, 200);
    assert_eq!(a.last().body_bytes, 5);
    s.write_all(
        b"POST / HTTP/1.1\r\nHost: a.example\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    )
    .await
    .unwrap();
    assert_eq!(answer(&mut s).await, 200);
    assert_eq!(a.last().body_bytes, 5);
    let hits = a.count();
    // A second `Content-Length` (a name the memo now holds at both positions), and
    // `Content-Length` with `Transfer-Encoding`: refused, the connection closed, nothing
    // forwarded.
    s.write_all(
        b"POST / HTTP/1.1\r\nHost: a.example\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello",
    )
    .await
    .unwrap();
    assert_eq!(answer(&mut s).await, 400);
    let mut rest = [0u8; 64];
    let closed = tokio::time::timeout(Duration::from_secs(5), s.read(&mut rest)).await;
    assert!(matches!(closed, Ok(Ok(0)) | Ok(Err(_))), "{closed:?}");
    let (text, _) = raw_exchange(
        gw.data_addr,
        b"POST / HTTP/1.1\r\nHost: a.example\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        Duration::from_secs(5),
    )
    .await;
    assert_eq!(status_of(&text), 400, "{text}");
    // A head whose `Host` is spelled unlike the memo's, and one without it.
    let (text, _) = raw_exchange(
        gw.data_addr,
        b"GET / HTTP/1.1\r\nhOST: a.example\r\nConnection: close\r\n\r\n",
        Duration::from_secs(5),
    )
    .await;
    assert_eq!(status_of(&text), 200, "{text}");
    let (text, _) = raw_exchange(
        gw.data_addr,
        b"GET / HTTP/1.1\r\nHos: a.example\r\nConnection: close\r\n\r\n",
        Duration::from_secs(5),
    )
    .await;
    assert_eq!(status_of(&text), 400, "{text}");
    assert_eq!(a.count(), hits + 1);
    gw.stop().await;
}

/// The connection's `Forwarded`/`X-Forwarded-Host` rendering for the first host it named
/// (`conn::Hop::for_host`, issue 22) answers only for that host: on one keep-alive connection,
/// every request's fields name its own host, whichever host came first, came between or comes
/// back; a host `Forwarded` does not name (`_` is no plain host character) leaves its element
/// bare, on either side of the one kept.
#[tokio::test]
async fn each_request_on_a_connection_forwards_its_own_host() {
    let dir = tempfile::tempdir().unwrap();
    let up = Upstream::start().await;
    let toml = base_config(dir.path(), "", "", &route("any", "/", &up.url(), ""));
    let gw = start_in_process(dir.path(), &toml).await;
    let mut s = TcpStream::connect(gw.data_addr).await.unwrap();
    let port = s.local_addr().unwrap().port();
    let element = format!("for=\"127.0.0.1:{port}\";proto=http");
    for host in [
        "one.example",
        "one.example",
        "two.example",
        "one.example",
        "TWO.example:8080",
        "one.example",
        "[::1]:8080",
        "under_score.example",
        "one.example",
    ] {
        s.write_all(format!("GET /x HTTP/1.1\r\nHost: {host}\r\n\r\n").as_bytes())
            .await
            .unwrap();
        assert_eq!(answer(&mut s).await, 200, "Host: {host}");
        let seen = up.last().headers;
        // What a fresh reading names: the canonical host (lower case, no port).
        let canonical = match host {
            "TWO.example:8080" => "two.example",
            "[::1]:8080" => "[::1]",
            h => h,
        };
        let field = |name: &str| {
            let all: Vec<&str> = seen
                .get_all(name)
                .iter()
                .map(|v| v.to_str().unwrap())
                .collect();
            all.join(" | ")
        };
        let forwarded = if canonical.contains('_') {
            element.clone()
        } else {
            format!("{element};host=\"{canonical}\"")
        };
        assert_eq!(field("forwarded"), forwarded, "Host: {host}");
        assert_eq!(field("x-forwarded-host"), canonical, "Host: {host}");
        assert_eq!(field("x-forwarded-for"), "127.0.0.1", "Host: {host}");
    }
    gw.stop().await;
}
