use super::*;
use PathError::*;

fn cases() -> Vec<(String, Result<String, PathError>)> {
    let table: &[(&str, Result<&str, PathError>)] = &[
        // Accepted, already canonical.
        ("/", Ok("/")),
        ("/a/b", Ok("/a/b")),
        ("/a/b/", Ok("/a/b/")),
        ("/cics/payments/123", Ok("/cics/payments/123")),
        ("/a;b=c/d", Ok("/a;b=c/d")),
        ("/...", Ok("/...")),
        ("/a/.hidden", Ok("/a/.hidden")),
        ("/a/..b/c.", Ok("/a/..b/c.")),
        ("/a%20b", Ok("/a%20b")),
        ("/a%25", Ok("/a%25")),
        ("/a%25zz", Ok("/a%25zz")),
        ("/a%25%25", Ok("/a%25%25")),
        ("/caf%C3%A9", Ok("/caf%C3%A9")),
        ("/café", Ok("/café")),
        ("/%E2%82%AC/x", Ok("/%E2%82%AC/x")),
        ("/a%3Bb", Ok("/a%3Bb")),
        ("/shop/;jsessionid=1", Ok("/shop/;jsessionid=1")),
        // Accepted, rewritten.
        ("/a%41b", Ok("/aAb")),
        ("/a%7eb", Ok("/a~b")),
        ("/a%3fb", Ok("/a%3Fb")),
        ("/caf%c3%a9", Ok("/caf%C3%A9")),
        ("/%2D%5f%2E%30", Ok("/-_.0")),
        ("/a/%2e%2e%2e", Ok("/a/...")),
        ("/%7Euser/%3a%3A", Ok("/~user/%3A%3A")),
        // Not absolute / too long.
        ("", Err(NotAbsolute)),
        ("a/b", Err(NotAbsolute)),
        ("%2Fa", Err(NotAbsolute)),
        ("*", Err(NotAbsolute)),
        // Dot segments.
        ("/%2e%2e/etc/passwd", Err(DotSegment)),
        ("/a/../b", Err(DotSegment)),
        ("/a/./b", Err(DotSegment)),
        ("/..", Err(DotSegment)),
        ("/.", Err(DotSegment)),
        ("/a/..", Err(DotSegment)),
        ("/a/../", Err(DotSegment)),
        ("/a/.%2e/b", Err(DotSegment)),
        ("/a/%2E%2E/b", Err(DotSegment)),
        ("/a/%2e", Err(DotSegment)),
        ("/a/..;/b", Err(DotSegment)),
        ("/a/..;x/b", Err(DotSegment)),
        ("/a/.;jsessionid=1/b", Err(DotSegment)),
        ("/a/..;", Err(DotSegment)),
        ("/a/..%3B/b", Err(DotSegment)),
        // Empty segments.
        ("//evil.com/x", Err(EmptySegment)),
        ("/a//b", Err(EmptySegment)),
        ("/a/b//", Err(EmptySegment)),
        ("/;x/admin", Err(EmptySegment)),
        ("/a/%3Bx/b", Err(EmptySegment)),
        // Separators.
        ("/a%2fb", Err(EncodedSeparator)),
        ("/a%2Fb", Err(EncodedSeparator)),
        ("/a%5cb", Err(EncodedSeparator)),
        ("/a%5Cb", Err(EncodedSeparator)),
        ("/a\\b", Err(Backslash)),
        ("/..\\x", Err(Backslash)),
        // Control characters.
        ("/a%00b", Err(ControlCharacter)),
        ("/a%0d%0aSet-Cookie:x", Err(ControlCharacter)),
        ("/a%7F", Err(ControlCharacter)),
        ("/a\nb", Err(ControlCharacter)),
        ("/a\0b", Err(ControlCharacter)),
        ("/a\u{7f}", Err(ControlCharacter)),
        ("/a\tb", Err(ControlCharacter)),
        // Malformed percent-encoding.
        ("/a%zz", Err(BadPercentEncoding)),
        ("/a%", Err(BadPercentEncoding)),
        ("/a%4", Err(BadPercentEncoding)),
        ("/a%u002e", Err(BadPercentEncoding)),
        ("/a%%41", Err(BadPercentEncoding)),
        ("/a%4%31", Err(BadPercentEncoding)),
        ("/a%é", Err(BadPercentEncoding)),
        // Double encoding.
        ("/a%252e%252e/b", Err(DoubleEncoding)),
        ("/a%252F", Err(DoubleEncoding)),
        ("/a%2525", Err(DoubleEncoding)),
        ("/a%25%32%65", Err(DoubleEncoding)),
        ("/a%252%65", Err(DoubleEncoding)),
        ("/a%25u002e", Err(DoubleEncoding)),
        ("/a%25U002E", Err(DoubleEncoding)),
        // Invalid UTF-8 after decoding.
        ("/a%c0%ae%c0%ae/b", Err(InvalidUtf8)),
        ("/a%e0%80%ae", Err(InvalidUtf8)),
        ("/a%C0%AF", Err(InvalidUtf8)),
        ("/a%ed%a0%80", Err(InvalidUtf8)),
        ("/a%f4%90%80%80", Err(InvalidUtf8)),
        ("/a%C3", Err(InvalidUtf8)),
        ("/a%C3/b", Err(InvalidUtf8)),
        ("/a%A9", Err(InvalidUtf8)),
        ("/a%C3é", Err(InvalidUtf8)),
        ("/a%FF", Err(InvalidUtf8)),
    ];
    let mut v: Vec<(String, Result<String, PathError>)> = table
        .iter()
        .map(|(i, e)| (i.to_string(), e.map(str::to_string)))
        .collect();
    let max = format!("/{}", "a".repeat(MAX_PATH_LEN - 1));
    v.push((max.clone(), Ok(max)));
    v.push((format!("/{}", "a".repeat(MAX_PATH_LEN)), Err(TooLong)));
    v.push((format!("/{}", "%2e".repeat(3000)), Err(TooLong)));
    v
}

#[test]
fn table() {
    let cases = cases();
    assert!(cases.len() >= 40);
    for (input, expected) in &cases {
        let got = normalize(input).map(Cow::into_owned);
        assert_eq!(&got, expected, "input {input:?}");
    }
}

#[test]
fn borrows_when_canonical() {
    for p in [
        "/",
        "/a/b/",
        "/cics/payments/123",
        "/caf%C3%A9",
        "/a%20b",
        "/café",
    ] {
        match normalize(p) {
            Ok(Cow::Borrowed(s)) => assert!(std::ptr::eq(s, p)),
            other => panic!("{p:?} -> {other:?}"),
        }
    }
    assert!(matches!(normalize("/a%41b"), Ok(Cow::Owned(_))));
    assert!(matches!(normalize("/a%3fb"), Ok(Cow::Owned(_))));
}

#[test]
fn display_is_fixed_text() {
    let all = [
        NotAbsolute,
        BadPercentEncoding,
        EncodedSeparator,
        DoubleEncoding,
        ControlCharacter,
        InvalidUtf8,
        DotSegment,
        EmptySegment,
        Backslash,
        TooLong,
    ];
    for e in all {
        assert!(!e.to_string().is_empty());
    }
    assert_eq!(
        EncodedSeparator.to_string(),
        "path contains an encoded '/' or '\\'"
    );
    let _: &dyn std::error::Error = &TooLong;
}

/// Small deterministic PRNG (xorshift64*).
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Full percent-decoding (test oracle).
fn full_decode(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let v = u8::from_str_radix(&s[i + 1..i + 3], 16).unwrap();
            out.push(v);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    out
}

#[test]
fn property_random_paths() {
    const ALPHABET: &[u8] = b"/.%2ef5ca;0";
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut ok = 0;
    for _ in 0..10_000 {
        let len = rng.below(24);
        let mut s = String::new();
        if rng.below(10) != 0 {
            s.push('/');
        }
        for _ in 0..len {
            s.push(ALPHABET[rng.below(ALPHABET.len())] as char);
        }
        let Ok(out) = normalize(&s) else { continue };
        ok += 1;
        // Idempotent, and the canonical form is borrowed back unchanged.
        match normalize(&out) {
            Ok(Cow::Borrowed(again)) => assert_eq!(again, &*out, "input {s:?}"),
            other => panic!("{s:?} -> {out:?} -> {other:?}"),
        }
        assert!(!out.contains("//"), "{s:?} -> {out:?}");
        for seg in out.split('/').skip(1) {
            let before_params = seg.split(';').next().unwrap();
            assert!(
                before_params != "." && before_params != "..",
                "{s:?} -> {out:?}"
            );
        }
        // Canonicalization never changes what the path decodes to.
        assert_eq!(full_decode(&s), full_decode(&out), "{s:?} -> {out:?}");
    }
    assert!(ok > 500, "only {ok} accepted paths; generator too weak");
}

#[test]
fn never_panics_on_arbitrary_input() {
    let pieces = [
        "/", ".", "%", "2", "e", "E", "f", "5", "c", "a", ";", "0", "%25", "%2e", "%C3", "%A9",
        "é", "\\", "\u{0}", "u", "%32", "%65", "%41", "%c0", "%ae", "%ED", "%9F", "%BF", "€",
    ];
    let mut rng = Rng(42);
    for _ in 0..20_000 {
        let mut s = String::new();
        for _ in 0..rng.below(16) {
            s.push_str(pieces[rng.below(pieces.len())]);
        }
        if let Ok(out) = normalize(&s) {
            assert_eq!(normalize(&out).unwrap(), out);
            assert!(std::str::from_utf8(&full_decode(&out)).is_ok());
        }
    }
}

#[test]
fn utf8_validator_matches_std() {
    fn check(bytes: &[u8]) {
        let mut v = Utf8Validator::default();
        let ours = bytes
            .iter()
            .try_for_each(|&b| v.feed(b))
            .and_then(|()| v.finish());
        assert_eq!(
            ours.is_ok(),
            std::str::from_utf8(bytes).is_ok(),
            "{bytes:02X?}"
        );
    }
    // Every 1- and 2-byte sequence, and every 3-byte sequence with a multi-byte lead.
    for a in 0..=255u8 {
        check(&[a]);
        for b in 0..=255u8 {
            check(&[a, b]);
        }
    }
    for a in 0xE0..=0xF4u8 {
        for b in 0..=255u8 {
            for c in (0..=255u8).step_by(3) {
                check(&[a, b, c]);
            }
        }
    }
    // Random longer sequences over boundary bytes.
    let interesting = [
        0x00, 0x41, 0x7F, 0x80, 0x8F, 0x90, 0x9F, 0xA0, 0xBF, 0xC0, 0xC1, 0xC2, 0xDF, 0xE0, 0xE1,
        0xEC, 0xED, 0xEE, 0xEF, 0xF0, 0xF1, 0xF3, 0xF4, 0xF5, 0xFF,
    ];
    let mut rng = Rng(7);
    for _ in 0..200_000 {
        let n = 1 + rng.below(7);
        let seq: Vec<u8> = (0..n)
            .map(|_| interesting[rng.below(interesting.len())])
            .collect();
        check(&seq);
    }
}
