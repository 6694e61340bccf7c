//! Equality of byte strings that may be empty, without `memcmp` for the empty ones.
//!
//! Rust compares two slices of the same length with `memcmp`, also when that length is zero, and
//! an empty slice's pointer is dangling (`0x1`, an unmapped page), even for a `""` literal.
//! glibc's AVX-512 `memcmp` (`__memcmp_evex_movbe`, what glibc 2.36 picks on the AMD EPYC bench
//! machine) reads the first bytes with a masked load; for length 0 the mask is empty and the load
//! of that unmapped page is a fault the CPU has to suppress. On that CPU the suppression is a
//! microcode assist: **127 ns per compare of two empty strings against 1.1 ns for two equal
//! 11-byte ones** (measured). The request path compares strings that are often empty (a route
//! without a plan, a caller without a `User-Agent`): two such compares were 6.8% of
//! `portcullis-full`'s user time (issue 22). Compare with these there.

/// `a == b`, without calling `memcmp` when both are empty.
#[inline]
pub fn bytes(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && (a.is_empty() || a == b)
}

/// `a == b` for text, as [`bytes`].
#[inline]
pub fn text(a: &str, b: &str) -> bool {
    bytes(a.as_bytes(), b.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_answers_as_eq_for_empty_and_other_strings() {
        let empty_box: Box<str> = "".into();
        let empty_default: &[u8] = Default::default();
        let cases: [(&[u8], &[u8]); 8] = [
            (b"", b""),
            (empty_box.as_bytes(), b""),
            (empty_default, empty_box.as_bytes()),
            (b"", b"a"),
            (b"a", b""),
            (b"billing-api", b"billing-api"),
            (b"billing-api", b"billing-apj"),
            (b"billing", b"billing-api"),
        ];
        for (a, b) in cases {
            assert_eq!(bytes(a, b), a == b, "{a:?} {b:?}");
            let (sa, sb) = (
                std::str::from_utf8(a).unwrap(),
                std::str::from_utf8(b).unwrap(),
            );
            assert_eq!(text(sa, sb), sa == sb, "{sa:?} {sb:?}");
        }
    }
}
