//! Low-S ECDSA signatures (ES256, ES384). For every valid signature `(r, s)` the pair
//! `(r, n - s)` verifies too: a second encoding of the same token, with another hash, that could
//! slip past a cache or a replay set keyed on the token's bytes. The gateway signs only the form
//! with `s ≤ n/2`, and a presented token is rewritten to that form ([`canonical_jws`]) before
//! anything hashes or verifies it, so both encodings are one token. Refusing high-S instead is
//! not an option: Go's `crypto/ecdsa` (SPIRE's signer) does not normalize, so about half of
//! genuine JWT-SVIDs are high-S.

/// ⌊n/2⌋ of P-256, big-endian.
const P256_HALF: [u8; 32] = [
    0x7f, 0xff, 0xff, 0xff, 0x80, 0x00, 0x00, 0x00, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    0xde, 0x73, 0x7d, 0x56, 0xd3, 0x8b, 0xcf, 0x42, 0x79, 0xdc, 0xe5, 0x61, 0x7e, 0x31, 0x92, 0xa8,
];
/// n of P-256.
const P256_N: [u8; 32] = [
    0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    0xbc, 0xe6, 0xfa, 0xad, 0xa7, 0x17, 0x9e, 0x84, 0xf3, 0xb9, 0xca, 0xc2, 0xfc, 0x63, 0x25, 0x51,
];
/// ⌊n/2⌋ of P-384.
const P384_HALF: [u8; 48] = [
    0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xe3, 0xb1, 0xa6, 0xc0, 0xfa, 0x1b, 0x96, 0xef,
    0xac, 0x0d, 0x06, 0xd9, 0x24, 0x58, 0x53, 0xbd, 0x76, 0x76, 0x0c, 0xb5, 0x66, 0x62, 0x94, 0xb9,
];
/// n of P-384.
const P384_N: [u8; 48] = [
    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xc7, 0x63, 0x4d, 0x81, 0xf4, 0x37, 0x2d, 0xdf,
    0x58, 0x1a, 0x0d, 0xb2, 0x48, 0xb0, 0xa7, 0x7a, 0xec, 0xec, 0x19, 0x6a, 0xcc, 0xc5, 0x29, 0x73,
];

/// `(half, n)` for a fixed-size `r || s` signature of this length.
fn curve(len: usize) -> Option<(&'static [u8], &'static [u8])> {
    match len {
        64 => Some((&P256_HALF, &P256_N)),
        96 => Some((&P384_HALF, &P384_N)),
        _ => None,
    }
}

/// Whether the `r || s` signature (64 or 96 bytes) has `s ≤ n/2`. Other lengths: false.
pub fn is_low_s(rs: &[u8]) -> bool {
    let Some((half, _)) = curve(rs.len()) else {
        return false;
    };
    // Big-endian byte strings of equal length compare like the numbers they hold.
    rs.get(rs.len() / 2..).is_some_and(|s| s <= half)
}

/// Rewrite a high-S `r || s` signature to its low-S twin (`s := n - s`); others are unchanged.
pub fn normalize(rs: &mut [u8]) {
    if is_low_s(rs) {
        return;
    }
    let Some((_, n)) = curve(rs.len()) else {
        return;
    };
    let half = rs.len() / 2;
    let Some(s) = rs.get_mut(half..) else {
        return;
    };
    let mut borrow = 0u16;
    for (d, m) in s.iter_mut().rev().zip(n.iter().rev()) {
        let v = u16::from(*m)
            .wrapping_sub(u16::from(*d))
            .wrapping_sub(borrow);
        borrow = u16::from(u16::from(*m) < u16::from(*d) + borrow);
        *d = (v & 0xff) as u8;
    }
}

/// The token in the one form every later step sees: an ECDSA signature (64 or 96 bytes) in
/// low-S form. Borrowed (no allocation) when it already is, or is not ECDSA at all.
pub fn canonical_jws(token: &str) -> std::borrow::Cow<'_, str> {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine as _;
    use std::borrow::Cow;
    let Some((signed, sig)) = token.rsplit_once('.') else {
        return Cow::Borrowed(token);
    };
    let mut buf = [0u8; 96];
    let Ok(n) = URL_SAFE_NO_PAD.decode_slice(sig, &mut buf) else {
        return Cow::Borrowed(token);
    };
    match buf.get_mut(..n) {
        Some(rs) if curve(n).is_some() && !is_low_s(rs) => {
            normalize(rs);
            Cow::Owned(format!("{signed}.{}", URL_SAFE_NO_PAD.encode(rs)))
        }
        _ => Cow::Borrowed(token),
    }
}

/// A compact JWS with its ECDSA signature (if it is one: 64 or 96 bytes) in low-S form. For
/// issuers that do not normalize themselves, and tests.
pub fn normalize_jws(token: &str) -> String {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine as _;
    let Some((signed, sig)) = token.rsplit_once('.') else {
        return token.to_owned();
    };
    match URL_SAFE_NO_PAD.decode(sig) {
        Ok(mut rs) if curve(rs.len()).is_some() => {
            normalize(&mut rs);
            format!("{signed}.{}", URL_SAFE_NO_PAD.encode(rs))
        }
        _ => token.to_owned(),
    }
}

#[cfg(test)]
mod tests;
