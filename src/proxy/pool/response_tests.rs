//! Every response-framing rule with its hostile twins, and the chunked decoder fed in pieces.

use super::*;

fn parse_str(s: &str) -> Result<Parsed, Malformed> {
    parse(&mut BytesMut::from(s.as_bytes()), false)
}

fn framing(s: &str) -> Result<Framing, Malformed> {
    match parse_str(s)? {
        Parsed::Final(h) => Ok(h.framing),
        other => panic!("not a final head: {other:?}"),
    }
}

fn head(s: &str) -> Head {
    match parse_str(s).unwrap() {
        Parsed::Final(h) => h,
        other => panic!("not a final head: {other:?}"),
    }
}

/// The relayed fields as the caller would get them without any of the gateway's.
fn map(h: &Head) -> http::HeaderMap {
    h.fields.clone().into_map(http::HeaderMap::new())
}

/// The relayed fields, in order.
fn fields(h: &Head) -> Vec<(String, String)> {
    h.fields
        .iter()
        .map(|(n, v)| {
            let s = |b: &[u8]| String::from_utf8(b.to_vec()).unwrap();
            (s(n), s(v))
        })
        .collect()
}

#[test]
fn lengths_chunked_and_close_delimited_bodies() {
    assert_eq!(
        framing("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n"),
        Ok(Framing::Length(5))
    );
    assert_eq!(
        framing("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"),
        Ok(Framing::Empty)
    );
    assert_eq!(
        framing("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"),
        Ok(Framing::Chunked)
    );
    // Transfer codings are case-insensitive.
    assert_eq!(
        framing("HTTP/1.1 200 OK\r\nTransfer-Encoding: Chunked\r\n\r\n"),
        Ok(Framing::Chunked)
    );
    assert_eq!(framing("HTTP/1.1 200 OK\r\n\r\n"), Ok(Framing::Close));
    // The same length twice in two fields is one length, kept once.
    let h = head("HTTP/1.1 200 OK\r\nContent-Length: 5\r\ncontent-length: 5\r\n\r\n");
    assert_eq!(h.framing, Framing::Length(5));
    assert_eq!(map(&h).get_all("content-length").iter().count(), 1);
}

#[test]
fn no_body_for_head_204_and_304_whatever_the_head_says() {
    let mut b = BytesMut::from(&b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n"[..]);
    let Ok(Parsed::Final(h)) = parse(&mut b, true) else {
        panic!()
    };
    assert_eq!(h.framing, Framing::Empty);
    assert!(h.keep_alive);
    assert_eq!(map(&h)["content-length"], "5");
    for s in [
        "HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\n",
        "HTTP/1.1 304 Not Modified\r\nTransfer-Encoding: chunked\r\n\r\n",
    ] {
        assert_eq!(framing(s), Ok(Framing::Empty), "{s:?}");
    }
    // Still ambiguous is still refused, even where no body follows.
    assert!(framing(
        "HTTP/1.1 204 No Content\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    .is_err());
}

#[test]
fn length_with_coding_in_either_order_is_refused() {
    for s in [
        "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n",
        "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ncontent-length: 0\r\n\r\n",
    ] {
        assert!(framing(s).is_err(), "{s:?}");
    }
}

#[test]
fn ill_formed_or_conflicting_lengths_are_refused() {
    for v in [
        "5, 5",
        "5, 6",
        "+5",
        "-5",
        "",
        " ",
        "0x5",
        "5 5",
        "5.0",
        "99999999999999999999",
        "00000000000000000005",
        "１",
    ] {
        let s = format!("HTTP/1.1 200 OK\r\nContent-Length: {v}\r\n\r\n");
        assert!(framing(&s).is_err(), "{v:?}");
    }
    assert!(framing("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n").is_err());
    // 19 digits is the longest length read.
    assert_eq!(
        framing("HTTP/1.1 200 OK\r\nContent-Length: 1000000000000000000\r\n\r\n"),
        Ok(Framing::Length(1_000_000_000_000_000_000))
    );
}

#[test]
fn codings_other_than_a_single_chunked_are_refused() {
    for v in [
        "gzip, chunked",
        "chunked, gzip",
        "gzip",
        "chunked, chunked",
        "identity",
        "",
        "chunked;q=1",
        "xchunked",
    ] {
        let s = format!("HTTP/1.1 200 OK\r\nTransfer-Encoding: {v}\r\n\r\n");
        assert!(framing(&s).is_err(), "{v:?}");
    }
    // Two fields make a list, too.
    assert!(framing(
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    .is_err());
    // HTTP/1.0 has no chunked coding.
    assert!(framing("HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n").is_err());
}

#[test]
fn obs_fold_bare_lf_and_bare_cr_are_refused() {
    for s in [
        "HTTP/1.1 200 OK\r\nX-A: a\r\n b\r\nContent-Length: 0\r\n\r\n",
        "HTTP/1.1 200 OK\r\nX-A: a\r\n\tTransfer-Encoding: chunked\r\n\r\n",
        "HTTP/1.1 200 OK\nContent-Length: 0\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: 0\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\n",
        "HTTP/1.1 200 OK\n\n",
        "HTTP/1.1 200 OK\r\nX-A: a\rb\r\n\r\n",
        "HTTP/1.1 200 O\rK\r\n\r\n",
        "HTTP/1.1 200 OK\r\nX-A : a\r\n\r\n",
        "HTTP/2 200 OK\r\n\r\n",
        "NOT HTTP\r\n\r\n",
    ] {
        assert!(parse_str(s).is_err(), "{s:?}");
    }
}

#[test]
fn an_oversized_head_is_refused() {
    let many: String = (0..101).map(|i| format!("X-{i}: v\r\n")).collect();
    assert!(parse_str(&format!("HTTP/1.1 200 OK\r\n{many}\r\n")).is_err());
    let hundred: String = (0..100).map(|i| format!("X-{i}: v\r\n")).collect();
    assert!(parse_str(&format!("HTTP/1.1 200 OK\r\n{hundred}\r\n")).is_ok());
    // A head that never ends is refused once it passes the limit, not read forever.
    let long = format!("HTTP/1.1 200 OK\r\nX-A: {}", "a".repeat(MAX_HEAD_BYTES));
    assert!(parse_str(&long).is_err());
    let short = format!("HTTP/1.1 200 OK\r\nX-A: {}", "a".repeat(1000));
    assert!(matches!(parse_str(&short), Ok(Parsed::Partial)));
}

#[test]
fn interim_answers_are_skipped_and_101_refused() {
    let mut b = BytesMut::from(
        &b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"[..],
    );
    assert!(matches!(parse(&mut b, false), Ok(Parsed::Interim)));
    assert!(matches!(parse(&mut b, false), Ok(Parsed::Interim)));
    let Ok(Parsed::Final(h)) = parse(&mut b, false) else {
        panic!()
    };
    assert_eq!(h.status, 200);
    assert_eq!(&b[..], b"ok");
    assert!(parse_str("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n").is_err());
    // An interim answer is held to the same line ends.
    for s in [
        "HTTP/1.1 100 Continue\n\r\n",
        "HTTP/1.1 103 Early Hints\r\nLink: </a>\n\r\n",
        "HTTP/1.1 103 Early Hints\nLink: </a>\r\n\r\n",
    ] {
        assert!(parse_str(s).is_err(), "{s:?}");
    }
}

#[test]
fn keep_alive_follows_version_and_connection() {
    assert!(head("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n").keep_alive);
    for s in [
        "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nconnection: keep-alive, CLOSE\r\n\r\n",
        "HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n",
        // Close-delimited: the end of the body is the end of the connection.
        "HTTP/1.1 200 OK\r\n\r\n",
    ] {
        assert!(!head(s).keep_alive, "{s:?}");
    }
    assert!(
        head("HTTP/1.0 200 OK\r\nContent-Length: 0\r\nConnection: keep-alive\r\n\r\n").keep_alive
    );
    let h = head("HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n");
    assert_eq!(h.version, Version::HTTP_10);
}

#[test]
fn a_non_canonical_reason_is_kept() {
    assert_eq!(head("HTTP/1.1 200 OK\r\n\r\n").reason, None);
    assert_eq!(
        head("HTTP/1.1 200 Fine\r\n\r\n").reason.as_deref(),
        Some(&b"Fine"[..])
    );
}

#[test]
fn a_head_split_at_every_byte_parses_the_same() {
    let whole = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-A: b\r\n\r\nok";
    for cut in 1..whole.len() {
        let mut b = BytesMut::from(&whole[..cut]);
        let first = parse(&mut b, false).unwrap();
        if cut < whole.len() - 2 {
            assert!(matches!(first, Parsed::Partial), "cut {cut}");
            b.extend_from_slice(&whole[cut..]);
            let Ok(Parsed::Final(h)) = parse(&mut b, false) else {
                panic!("cut {cut}")
            };
            assert_eq!(h.framing, Framing::Length(2));
            assert_eq!(map(&h)["x-a"], "b");
            assert_eq!(&b[..], b"ok");
        } else {
            assert!(matches!(first, Parsed::Final(_)), "cut {cut}");
        }
    }
}

/// Decode `input` fed in pieces of `step` bytes; the data, and whether the end was reached.
fn decode_in_pieces(input: &[u8], step: usize) -> Result<(Vec<u8>, bool, usize), Malformed> {
    let mut dec = Chunked::default();
    let mut buf = BytesMut::new();
    let mut data = Vec::new();
    for piece in input.chunks(step) {
        buf.extend_from_slice(piece);
        loop {
            match dec.decode(&mut buf)? {
                Decoded::Data(d) => data.extend_from_slice(&d),
                Decoded::NeedMore => break,
                Decoded::End => return Ok((data, true, buf.len())),
            }
        }
    }
    Ok((data, false, buf.len()))
}

#[test]
fn chunked_bodies_split_at_every_byte_decode_the_same() {
    let body = b"5\r\nhello\r\n1;name=\"v\"\r\n \r\n10\r\n0123456789abcdef\r\n0\r\nX-Trailer: t\r\n\r\nNEXT";
    for step in 1..body.len() {
        let (data, end, rest) = decode_in_pieces(body, step).unwrap();
        assert_eq!(data, b"hello 0123456789abcdef", "step {step}");
        assert!(end, "step {step}");
        assert!(rest <= 4, "step {step}");
    }
    let (data, end, _) = decode_in_pieces(b"0\r\n\r\n", 1).unwrap();
    assert!(data.is_empty() && end);
    // Upper-case hex and 16 digits (with leading zeros) are sizes.
    let (data, end, _) =
        decode_in_pieces(b"000000000000000A\r\n0123456789\r\n0\r\n\r\n", 3).unwrap();
    assert_eq!(data.len(), 10);
    assert!(end);
}

#[test]
fn ill_formed_chunked_bodies_are_refused() {
    for body in [
        &b" 5\r\nhello\r\n0\r\n\r\n"[..],
        b"5 \r\nhello\r\n0\r\n\r\n",
        b"5\t\r\nhello\r\n0\r\n\r\n",
        b"5 ;x\r\nhello\r\n0\r\n\r\n",
        b"0x5\r\nhello\r\n0\r\n\r\n",
        b"+5\r\nhello\r\n0\r\n\r\n",
        b"00000000000000005\r\nhello\r\n0\r\n\r\n",
        b"\r\nhello\r\n0\r\n\r\n",
        b";x\r\n",
        b"5\nhello\r\n0\r\n\r\n",
        b"5\r\nhello\n0\r\n\r\n",
        b"5\r\nhelloX\r\n0\r\n\r\n",
        b"5\r\nhello\r\n0\r\n\n",
        b"5\r\nhello\r\n0\r\nX: a\n\r\n",
        b"5\r\nhello\r\n0\r\nX: a\r\n b\r\n\r\n",
        b"5;a\nb\r\nhello\r\n0\r\n\r\n",
        b"g\r\n",
    ] {
        for step in [1, 2, body.len()] {
            assert!(
                decode_in_pieces(body, step).is_err(),
                "{:?} step {step}",
                String::from_utf8_lossy(body)
            );
        }
    }
}

#[test]
fn an_endless_trailer_section_or_extension_is_cut_off() {
    let mut dec = Chunked::default();
    let mut buf = BytesMut::from(&b"0\r\n"[..]);
    assert_eq!(dec.decode(&mut buf), Ok(Decoded::NeedMore));
    let mut fed = 0;
    let err = loop {
        buf.extend_from_slice(b"X-Trailer: aaaaaaaaaaaaaaaaaaaa\r\n");
        fed += 1;
        match dec.decode(&mut buf) {
            Ok(Decoded::NeedMore) => assert!(fed < 1000, "never cut off"),
            Ok(other) => panic!("{other:?}"),
            Err(e) => break e,
        }
    };
    assert!(fed <= MAX_FIELDS + 1, "{fed}");
    assert!(err.0.contains("trailer"));
    // One long trailer line.
    let mut dec = Chunked::default();
    let mut buf = BytesMut::from(&b"0\r\nX: "[..]);
    buf.extend_from_slice(&vec![b'a'; MAX_TRAILER_BYTES + 10]);
    assert!(dec.decode(&mut buf).is_err());
    // An endless extension.
    let mut dec = Chunked::default();
    let mut buf = BytesMut::from(&b"5;"[..]);
    buf.extend_from_slice(&vec![b'a'; MAX_EXTENSION_BYTES + 10]);
    assert!(dec.decode(&mut buf).is_err());
}

#[test]
fn an_endless_chunked_body_streams_without_holding_it() {
    let mut dec = Chunked::default();
    let mut buf = BytesMut::new();
    let mut total = 0;
    for _ in 0..10_000 {
        buf.extend_from_slice(b"400\r\n");
        buf.extend_from_slice(&[b'x'; 0x400]);
        buf.extend_from_slice(b"\r\n");
        loop {
            match dec.decode(&mut buf).unwrap() {
                Decoded::Data(d) => total += d.len(),
                Decoded::NeedMore => break,
                Decoded::End => panic!("no end was sent"),
            }
        }
        assert!(buf.is_empty());
    }
    assert_eq!(total, 10_000 * 0x400);
}

#[test]
fn trailer_lines_must_be_field_lines() {
    // A request line (or any text) where a trailer field belongs: the caller side's guard and
    // decoder refuse it, the client read it as a trailer and went on.
    for body in [
        &b"0\r\nGET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n"[..],
        b"0\r\nHTTP/1.1 200 OK\r\n\r\n",
        b"0\r\nno colon\r\n\r\n",
        b"0\r\nX : a\r\n\r\n",
        b"0\r\n: a\r\n\r\n",
        b"0\r\nX\x00: a\r\n\r\n",
        b"0\r\nX: a\x00b\r\n\r\n",
        b"0\r\nX: a\x7f\r\n\r\n",
        b"0\r\nX: a\rb\r\n\r\n",
    ] {
        for step in [1, body.len()] {
            assert!(
                decode_in_pieces(body, step).is_err(),
                "{:?} step {step}",
                String::from_utf8_lossy(body)
            );
        }
    }
    for body in [
        &b"0\r\nX-T: 1\r\n\r\n"[..],
        b"0\r\nX-T:\r\n\r\n",
        b"0\r\nX-T: a\tb caf\xc3\xa9\r\nY: \"q\"\r\n\r\n",
    ] {
        let (data, end, _) = decode_in_pieces(body, 1).unwrap();
        assert!(
            data.is_empty() && end,
            "{:?}",
            String::from_utf8_lossy(body)
        );
    }
}

#[test]
fn control_bytes_in_a_chunk_extension_are_refused() {
    for body in [
        &b"5;a\x00\r\nhello\r\n0\r\n\r\n"[..],
        b"5;a=\x7f\r\nhello\r\n0\r\n\r\n",
        b"5;a\x0bb\r\nhello\r\n0\r\n\r\n",
        b"0;a\x01\r\n\r\n",
    ] {
        assert!(
            decode_in_pieces(body, 1).is_err(),
            "{:?}",
            String::from_utf8_lossy(body)
        );
    }
    let (data, end, _) = decode_in_pieces(b"5;a=\"b\tc\"\r\nhello\r\n0\r\n\r\n", 1).unwrap();
    assert_eq!((&data[..], end), (&b"hello"[..], true));
}

#[test]
fn a_204_that_announces_a_body_does_not_keep_its_connection() {
    // No body is read for a 204; one the upstream sends anyway would be read as the next
    // answer on that connection.
    for s in [
        "HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\n",
        "HTTP/1.1 204 No Content\r\nTransfer-Encoding: chunked\r\n\r\n",
    ] {
        let h = head(s);
        assert_eq!(h.framing, Framing::Empty, "{s}");
        assert!(!h.keep_alive, "{s}");
    }
    for s in [
        "HTTP/1.1 204 No Content\r\n\r\n",
        "HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n",
        "HTTP/1.1 304 Not Modified\r\nContent-Length: 5\r\n\r\n",
    ] {
        assert!(head(s).keep_alive, "{s}");
    }
}

mod properties {
    use proptest::prelude::*;

    use super::*;

    /// Field lines around framing, in spellings parsers disagree on.
    const FIELDS: &[&str] = &[
        "Content-Length: 5",
        "Content-Length: 05",
        "content-length:5 ",
        "Content-Length: 6",
        "Content-Length: 5, 5",
        "Content-Length: +5",
        "Content-Length: ",
        "Transfer-Encoding: chunked",
        "transfer-encoding: Chunked ",
        "Transfer-Encoding: gzip, chunked",
        "Transfer-Encoding : chunked",
        " Transfer-Encoding: chunked",
        "Connection: close",
        "X-A: b",
    ];
    const STATUS_LINES: &[&str] = &[
        "HTTP/1.1 200 OK",
        "HTTP/1.0 200 OK",
        "HTTP/1.1 204 No Content",
        "HTTP/1.1 304 Not Modified",
        "HTTP/1.1 100 Continue",
        "HTTP/1.1 200",
    ];
    const LINE_ENDS: &[&str] = &["\r\n", "\r\n", "\r\n", "\n", "\r"];

    fn answer() -> impl Strategy<Value = (String, usize)> {
        (
            prop::sample::select(STATUS_LINES),
            prop::collection::vec(
                (
                    prop::sample::select(FIELDS),
                    prop::sample::select(LINE_ENDS),
                ),
                0..5,
            ),
            prop::sample::select(&["", "hello", "5\r\nhello\r\n0\r\n\r\n"][..]),
            0usize..200,
        )
            .prop_map(|(line, fields, body, cut)| {
                let mut h = format!("{line}\r\n");
                for (f, e) in fields {
                    h.push_str(f);
                    h.push_str(e);
                }
                h.push_str("\r\n");
                h.push_str(body);
                (h, cut)
            })
    }

    /// The framing fields of a generated head, as written.
    fn declared(text: &str) -> (Vec<String>, usize) {
        let head = text
            .split("\r\n\r\n")
            .next()
            .unwrap_or_default()
            .to_ascii_lowercase();
        let lengths = head
            .split("\r\n")
            .filter_map(|l| l.strip_prefix("content-length:"))
            .map(|v| v.trim().to_string())
            .collect();
        let codings = head
            .split("\r\n")
            .filter(|l| l.starts_with("transfer-encoding"))
            .count();
        (lengths, codings)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        /// A head the client accepts says one thing about its body: never a length and a
        /// coding, two codings, or two different lengths; and the same head split anywhere
        /// parses the same.
        #[test]
        fn the_client_never_accepts_two_framings((text, cut) in answer()) {
            let whole = parse(&mut BytesMut::from(text.as_bytes()), false);
            let mut buf = BytesMut::new();
            let cut = cut.min(text.len());
            buf.extend_from_slice(&text.as_bytes()[..cut]);
            let mut split = parse(&mut buf, false);
            if matches!(split, Ok(Parsed::Partial)) {
                buf.extend_from_slice(&text.as_bytes()[cut..]);
                split = parse(&mut buf, false);
            }
            prop_assert_eq!(format!("{whole:?}"), format!("{split:?}"));
            if let Ok(Parsed::Final(h)) = whole {
                let (lengths, codings) = declared(&text);
                prop_assert!(codings == 0 || lengths.is_empty(), "{text:?}");
                prop_assert!(codings <= 1, "{text:?}");
                // Repeated equal values (`5` and `05` alike) are one length (RFC 9110 §8.6).
                let mut distinct: Vec<Option<u64>> = lengths
                    .iter()
                    .map(|v| v.bytes().all(|b| b.is_ascii_digit()).then(|| v.parse().ok()).flatten())
                    .collect();
                distinct.sort();
                distinct.dedup();
                prop_assert!(distinct.len() <= 1 && !distinct.contains(&None), "{text:?}");
                if codings == 1 && !matches!(h.status.as_u16(), 204 | 304) {
                    prop_assert_eq!(h.framing, Framing::Chunked);
                }
            }
        }

        /// The chunked decoder fed in any two pieces agrees with one pass.
        #[test]
        fn chunked_bodies_decode_the_same_split_anywhere(
            pieces in prop::collection::vec(
                prop::sample::select(&[
                    "5\r\n", "5;a=\"b\"\r\n", "5;a\rb\r\n", "5 \r\n", "0\r\n", "\r\n",
                    "hello", "hello\r\n", "hello\n", "X-T: 1\r\n", "GET / HTTP/1.1\r\n",
                    " x\r\n", "\n",
                ][..]),
                1..8,
            ),
            step in 1usize..12,
        ) {
            let body = pieces.concat();
            let once = decode_in_pieces(body.as_bytes(), body.len().max(1));
            let split = decode_in_pieces(body.as_bytes(), step);
            match (&once, &split) {
                (Ok((d1, e1, _)), Ok((d2, e2, _))) => {
                    prop_assert_eq!((d1, e1), (d2, e2));
                    prop_assert!(d1.len() <= body.len());
                }
                (Err(_), Err(_)) => {}
                // Cut short before the bad byte arrived: the piecewise run may only wait.
                _ => prop_assert!(false, "{body:?}: {once:?} vs {split:?}"),
            }
        }
    }
}

/// The relayed fields are what the head said, in the order it said them (repeated names where
/// they were), names in lower case; as a map, repeated names are kept in order.
#[test]
fn the_fields_are_kept_in_order() {
    let h = head(
        "HTTP/1.1 200 OK\r\nDate: x\r\nX-One: 1\r\nSet-Cookie: a=1\r\nset-cookie: b=2\r\n\
         CONTENT-TYPE: text/plain\r\nVary: a\r\nX-One: 2\r\nContent-Length: 0\r\n\r\n",
    );
    let want = [
        ("date", "x"),
        ("x-one", "1"),
        ("set-cookie", "a=1"),
        ("set-cookie", "b=2"),
        ("content-type", "text/plain"),
        ("vary", "a"),
        ("x-one", "2"),
        ("content-length", "0"),
    ];
    let want = want.map(|(n, v)| (n.to_string(), v.to_string())).to_vec();
    assert_eq!(fields(&h), want);
    let got: Vec<(String, String)> = map(&h)
        .iter()
        .map(|(n, v)| (n.to_string(), v.to_str().unwrap().to_string()))
        .collect();
    let grouped = [0, 1, 6, 2, 3, 4, 5, 7].map(|i| want[i].clone()).to_vec();
    assert_eq!(got, grouped);
}

/// Hop-by-hop fields, in any case, are never relayed, nor the fields a `Connection` field lists
/// (in any case, with spaces and empty elements); everything else is.
#[test]
fn hop_by_hop_fields_are_left_out() {
    for f in [
        "Connection: x-secret",
        "connection: keep-alive",
        "Keep-Alive: timeout=5",
        "TE: trailers",
        "Trailer: x-sum",
        "Upgrade: h2c",
        "Proxy-Authenticate: Basic",
        "Proxy-Authorization: Basic eA==",
        "Proxy-Connection: close",
        "Transfer-Encoding: chunked",
    ] {
        let h = head(&format!("HTTP/1.1 200 OK\r\nDate: x\r\n{f}\r\n\r\n"));
        assert_eq!(fields(&h), [("date".into(), "x".into())], "{f}");
    }
    let h = head(
        "HTTP/1.1 200 OK\r\nDate: x\r\nX-Secret: 1\r\nConnection: , X-SECRET ,,x-other\r\n\
         Server: s\r\nx-other: 2\r\nConnection: content-length\r\nContent-Length: 0\r\n\r\n",
    );
    let names: Vec<String> = fields(&h).into_iter().map(|(n, _)| n).collect();
    assert_eq!(names, ["date", "server"]);
    // The length a `Connection` field named is not the caller's either.
    assert_eq!(h.fields.content_length(), None);
    let h = head(
        "HTTP/1.1 200 OK\r\nDate: x\r\nServer: s\r\nContent-Type: a/b\r\nX-Secret: 1\r\n\
         Content-Length: 0\r\n\r\n",
    );
    assert_eq!(fields(&h).len(), 5);
    assert_eq!(h.fields.content_length(), Some(0));
}

/// The byte rule for hop-by-hop names is the map's rule, name for name.
#[test]
fn hop_by_hop_names_agree_with_the_map_rule() {
    for n in [
        "connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "proxy-authorization",
        "proxy-authenticate",
        "keep-alive",
        "proxy-connection",
        "x-secret",
        "date",
        "tea",
    ] {
        let v = if n == "transfer-encoding" {
            "chunked"
        } else {
            "1"
        };
        let h = head(&format!("HTTP/1.1 200 OK\r\nDate: x\r\n{n}: {v}\r\n\r\n"));
        let relayed = fields(&h).iter().any(|(f, _)| f == n);
        let name = http::HeaderName::from_bytes(n.as_bytes()).unwrap();
        assert_eq!(relayed, !crate::proxy::headers::is_hop_by_hop(&name), "{n}");
    }
}

/// A gateway field replaces every relayed field of its name, except those the gateway appends
/// to; the gateway's fields come after the relayed ones.
#[test]
fn the_gateway_replaces_or_appends() {
    let h = head(
        "HTTP/1.1 200 OK\r\nX-Request-Id: up\r\nRateLimit: up\r\nLink: <up>\r\n\
         Sunset: up\r\nx-request-id: up2\r\nContent-Length: 0\r\n\r\n",
    );
    let mut gw = http::HeaderMap::new();
    gw.insert("x-request-id", "gw".parse().unwrap());
    gw.insert("ratelimit", "gw".parse().unwrap());
    gw.append("link", "<gw>".parse().unwrap());
    gw.append("sunset", "gw".parse().unwrap());
    let m = h.fields.clone().into_map(gw);
    let all = |n: &str| -> Vec<&str> { m.get_all(n).iter().map(|v| v.to_str().unwrap()).collect() };
    assert_eq!(all("x-request-id"), ["gw"]);
    assert_eq!(all("ratelimit"), ["gw"]);
    assert_eq!(all("link"), ["<up>", "<gw>"]);
    assert_eq!(all("sunset"), ["up", "gw"]);
    assert_eq!(all("content-length"), ["0"]);
    // A name the gateway does not set is never replaced, whatever the map holds.
    assert!(!Relayed::replaced(b"x-other", &m));
    assert!(!Relayed::replaced(b"x-request-id", &http::HeaderMap::new()));
}

/// Bytes a `HeaderName` or `HeaderValue` would refuse never get this far: the parse refuses the
/// head (the relayed fields are copied without building either).
#[test]
fn names_and_values_a_map_would_refuse_are_refused() {
    for bad in [
        "X-A: a\x00b",
        "X-A: a\x7fb",
        "X-A: a\x0bb",
        "X A: b",
        ": b",
        "X-\u{e9}: b",
        "X-A\x00: b",
        "X(A): b",
    ] {
        let got = parse_str(&format!(
            "HTTP/1.1 200 OK\r\n{bad}\r\nContent-Length: 0\r\n\r\n"
        ));
        assert!(got.is_err(), "{bad:?}");
    }
}

/// The box an answer's fields travel in is reused by the next answer on the thread (`Relayed`'s
/// spare): the next answer carries its own fields only, never one of the previous answer's
/// (a longer one, with a secret, then a shorter one; then one whose hop-by-hop fields are left
/// out), and its own length.
#[test]
fn a_reused_box_carries_none_of_the_previous_answers_fields() {
    let first = head(
        "HTTP/1.1 200 OK\r\nX-Secret: s3cret\r\nX-A: 1\r\nX-B: 2\r\nContent-Length: 5\r\n\r\n",
    );
    assert_eq!(first.fields.len(), 4);
    drop(first);
    let second = head("HTTP/1.1 200 OK\r\nX-C: 3\r\n\r\n");
    assert_eq!(fields(&second), [("x-c".to_owned(), "3".to_owned())]);
    assert_eq!(second.fields.content_length(), None);
    assert!(!format!("{:?}", second.fields).contains("secret"));
    drop(second);
    let third =
        head("HTTP/1.1 200 OK\r\nConnection: X-C\r\nX-C: 3\r\nX-D: 4\r\nContent-Length: 0\r\n\r\n");
    assert_eq!(
        fields(&third),
        [
            ("x-d".to_owned(), "4".to_owned()),
            ("content-length".to_owned(), "0".to_owned())
        ]
    );
    assert_eq!(third.fields.content_length(), Some(0));
    // A clone is a box of its own: dropping it leaves the original whole.
    let copy = third.fields.clone();
    drop(copy);
    assert_eq!(third.fields.len(), 2);
}
