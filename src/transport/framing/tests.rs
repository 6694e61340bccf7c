use super::*;

fn run(chunks: &[&[u8]]) -> bool {
    let flag = Arc::new(AtomicBool::new(false));
    let mut g = FramingGuard::new((), 64 * 1024, 100, flag.clone());
    for c in chunks {
        g.observe(c);
    }
    flag.load(Ordering::Acquire)
}

#[test]
fn ambiguous_heads_are_flagged() {
    assert!(run(&[
        b"POST / HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"
    ]));
    assert!(run(&[
        b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n"
    ]));
    assert!(run(&[
        b"POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello"
    ]));
    assert!(run(&[
        b"POST / HTTP/1.1\r\nContent-Length: 5, 5\r\n\r\nhello"
    ]));
    assert!(run(&[
        b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"
    ]));
    assert!(run(&[
        b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n"
    ]));
    assert!(run(&[
        b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
    ]));
}

#[test]
fn well_framed_pipelines_are_followed_across_reads() {
    // A fixed body, then a chunked one split at awkward places, then a smuggling attempt:
    // the third head is only found if both bodies were skipped exactly.
    let stream: &[u8] = b"POST /a HTTP/1.1\r\nContent-Length: 3\r\n\r\nabcPOST /b HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3;ext=1\r\nxyz\r\n0\r\nX-Trailer: 1\r\n\r\nGET /c HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n";
    assert!(!run(&[stream.get(..120).unwrap()]));
    for split in [1, 7, 40, 45, 60, 100, 118, 130] {
        let (a, b) = stream.split_at(split);
        assert!(run(&[a, b]), "split at {split}");
    }
    assert!(!run(&[
        b"GET / HTTP/1.1\r\nHost: a\r\n\r\n\r\nGET / HTTP/1.1\r\n\r\n"
    ]));
    // Every split point, including inside the blank line that ends a head.
    for split in 1..stream.len() {
        let (a, b) = stream.split_at(split);
        assert!(run(&[a, b]), "split at {split}");
        let (a, c) = a.split_at(split / 2);
        assert!(run(&[a, c, b]), "split at {} and {split}", split / 2);
    }
}

const CHUNKED: &str = "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n";

#[test]
fn chunked_lines_other_parsers_read_differently_are_flagged() {
    // Found by the differential test against h11 (tests/gateway/differential.rs): hyper
    // accepts or waits on these where h11 refuses, or the guard skipped what it never read.
    for body in [
        "5\nhello\r\n0\r\n\r\n",          // bare LF after the size
        "5 ;ext=1\r\nhello\r\n0\r\n\r\n", // whitespace before an extension
        " 5\r\nhello\r\n0\r\n\r\n",       // leading whitespace
        "+5\r\nhello\r\n0\r\n\r\n",       // a sign (Rust's radix parser takes it)
        "0x5\r\nhello\r\n0\r\n\r\n",
        "\r\nhello\r\n0\r\n\r\n",                  // no size at all
        "5\r\nhelloXX0\r\n\r\n",                   // data not followed by CRLF
        "5\r\nhello\n0\r\n\r\n",                   // data followed by a bare LF
        "5\r\nhello\r\n0\r\n\n",                   // trailer section ended by a bare LF
        "5\r\nhello\r\n0\r\nX-T: 1\n\r\n",         // trailer line ended by a bare LF
        "10000000000000005\r\nhello\r\n0\r\n\r\n", // 17 digits: overflow territory
        // A request line where a trailer field belongs (no blank line after the last chunk).
        "5\r\nhello\r\n0\r\nGET /x HTTP/1.1\r\nHost: a\r\n\r\n",
        "5\r\nhello\r\n0\r\nX-T: 1\r\nPOST /x HTTP/1.0\r\n\r\n",
        "5\r\nhello\r\n0\r\n folded\r\n\r\n",
        "5\r\nhello\r\n0\r\nX-T: a\x00b\r\n\r\n",
    ] {
        assert!(run(&[format!("{CHUNKED}{body}").as_bytes()]), "{body:?}");
    }
    for body in [
        "5\r\nhello\r\n0\r\n\r\n",
        "005\r\nhello\r\n000\r\n\r\n",
        "5;ext=1;b=\"x y\"\r\nhello\r\n0;e\r\n\r\n",
        "5 \r\nhello\r\n0\t\r\n\r\n",
        "A\r\n0123456789\r\n0\r\nX-T: 1\r\n\r\n",
    ] {
        let stream = format!(
            "{CHUNKED}{body}GET / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n"
        );
        // The pipelined smuggling attempt after the body is found only if the body was
        // followed exactly.
        let (first, _) = stream.split_at(stream.find("GET").unwrap());
        assert!(!run(&[first.as_bytes()]), "{body:?}");
        assert!(run(&[stream.as_bytes()]), "{body:?}");
    }
}

#[tokio::test]
async fn an_ambiguous_body_already_streaming_fails_the_read() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    for (body, aborts) in [
        ("5 ;ext=1\r\nhello\r\n0\r\n\r\n", true),
        ("5\r\nhelloXX", true),
        ("5\r\nhello\r\n0\r\n\r\n", false),
        // The body ends well; the next head is the ambiguous one: the flag handles it.
        (
            "0\r\n\r\nGET / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n",
            false,
        ),
    ] {
        let (mut client, server) = tokio::io::duplex(1024);
        let flag = Arc::new(AtomicBool::new(false));
        let mut g = FramingGuard::new(server, 64 * 1024, 100, flag.clone());
        let mut buf = [0u8; 1024];
        client.write_all(CHUNKED.as_bytes()).await.unwrap();
        assert!(g.read(&mut buf).await.is_ok());
        client.write_all(body.as_bytes()).await.unwrap();
        let second = g.read(&mut buf).await;
        assert_eq!(second.is_err(), aborts, "{body:?}");
        if aborts {
            assert!(g.read(&mut buf).await.is_err(), "{body:?}: stays failed");
        }
    }
    // Head and bad body in one read: hyper gets the head, the pipeline answers 400.
    let (mut client, server) = tokio::io::duplex(1024);
    let flag = Arc::new(AtomicBool::new(false));
    let mut g = FramingGuard::new(server, 64 * 1024, 100, flag.clone());
    let mut buf = [0u8; 1024];
    client
        .write_all(format!("{CHUNKED}5 ;e\r\nhello\r\n0\r\n\r\n").as_bytes())
        .await
        .unwrap();
    assert!(g.read(&mut buf).await.is_ok());
    assert!(flag.load(Ordering::Acquire));
}

/// Pieces of HTTP/1 streams, so that generated input reaches every state, not just the
/// head parser's refusals.
const PIECES: &[&str] = &[
    "POST / HTTP/1.1\r\n",
    "GET /a HTTP/1.0\r\n",
    "Host: a\r\n",
    "Content-Length: 3\r\n",
    "Content-Length: 0\r\n",
    "Content-Length: 3, 3\r\n",
    "Transfer-Encoding: chunked\r\n",
    "Transfer-Encoding: chunked, identity\r\n",
    " folded\r\n",
    "\r\n",
    "\n",
    "\r",
    "abc",
    "3\r\n",
    "3;x=y\r\n",
    "3 ;x\r\n",
    "0\r\n",
    "ffffffffffffffffff\r\n",
    "X-T: 1\r\n",
];

fn stream() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::collection::vec(prop::sample::select(PIECES), 0..24)
            .prop_map(|p| p.concat().into_bytes()),
        prop::collection::vec(any::<u8>(), 0..256),
        (
            prop::collection::vec(prop::sample::select(PIECES), 0..24),
            prop::collection::vec(any::<u8>(), 0..16),
        )
            .prop_map(|(p, mut tail)| {
                let mut v = p.concat().into_bytes();
                v.append(&mut tail);
                v
            }),
    ]
}

/// Flag, state and pending bytes after feeding `chunks` one by one.
fn after(chunks: &[&[u8]]) -> (bool, String, Vec<u8>) {
    let flag = Arc::new(AtomicBool::new(false));
    let mut g = FramingGuard::new((), 64 * 1024, 100, flag.clone());
    for c in chunks {
        g.observe(c);
    }
    (
        flag.load(Ordering::Acquire),
        format!("{:?}", g.state),
        g.buf,
    )
}

use proptest::prelude::*;

proptest! {
    // 256 cases in CI (proptest's default); PROPTEST_CASES=100000 runs longer.
    #![proptest_config(ProptestConfig::default())]

    /// However the stream is cut into reads, the guard ends in the same place with the same
    /// verdict as when it reads the whole stream at once (and never panics).
    #[test]
    fn any_split_gives_the_same_verdict(
        bytes in stream(),
        cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..8),
    ) {
        let mut at: Vec<usize> = cuts.iter().map(|i| i.index(bytes.len() + 1)).collect();
        at.sort_unstable();
        let mut chunks = Vec::new();
        let mut from = 0;
        for to in at {
            chunks.push(&bytes[from..to]);
            from = to;
        }
        chunks.push(&bytes[from..]);
        prop_assert_eq!(after(&chunks), after(&[&bytes]));
        // Byte by byte, the hardest split of all.
        let singles: Vec<&[u8]> = bytes.chunks(1).collect();
        prop_assert_eq!(after(&singles), after(&[&bytes]));
    }
}

#[test]
fn heads_with_more_fields_than_the_stack_holds() {
    let head = |n: usize, tail: &str| {
        let mut h = String::from("POST / HTTP/1.1\r\n");
        for i in 0..n {
            h.push_str(&format!("X-F{i}: v\r\n"));
        }
        h.push_str(tail);
        h.push_str("\r\n");
        h.into_bytes()
    };
    let smuggle = "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n";
    // max_headers = 100 (run): a long head is parsed in full, so the ambiguity at its end is seen.
    assert!(run(&[&head(90, smuggle)]));
    assert!(!run(&[&head(90, "Content-Length: 0\r\n")]));
    // More fields than max_headers: hyper refuses the head; the guard fails closed.
    assert!(run(&[&head(120, "")]));
    // A small max_headers is honoured even though the stack holds more.
    let flag = Arc::new(AtomicBool::new(false));
    let mut g = FramingGuard::new((), 64 * 1024, 8, flag.clone());
    g.observe(&head(4, ""));
    assert!(!flag.load(Ordering::Acquire));
    g.observe(&head(9, ""));
    assert!(flag.load(Ordering::Acquire));
}
