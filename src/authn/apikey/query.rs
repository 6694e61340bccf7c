//! The API key as a query parameter (legacy clients): finding it and removing it.
//!
//! A parameter counts as the key parameter when its name, *after* form-decoding (`%XX` escapes,
//! `+` as a space), equals the configured name ignoring ASCII case and treating `.`, ` ` and `[`
//! as `_`. That is what some backend might read as the same parameter: most frameworks decode
//! names (`api%5Fkey`), some ignore case (ASP.NET), and PHP turns `.`, ` ` and `[` into `_`
//! (`api.key` arrives as `$_GET['api_key']`). The gateway reads and strips every such spelling,
//! so no spelling can carry a key past it to an upstream that would still accept it.
//! Only one decoding pass is made: `api%255Fkey` is `api%5Fkey`, a different name, as for every
//! conforming backend.
//!
//! Pairs are separated by `&`. When stripping, `;` is treated as a separator too (old servlet
//! and CGI parsers split on it), so `a=1;api_key=K` loses `;api_key=K`; everything else is kept
//! byte for byte, in order.

/// Form-decode (`%XX`, `+` as space). Malformed escapes stay as they are (as browsers do).
pub(super) fn form_decode(s: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while let Some(&b) = s.get(i) {
        match b {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = |j: usize| s.get(j).and_then(|c| (*c as char).to_digit(16));
                if let (Some(h), Some(l)) = (hex(i + 1), hex(i + 2)) {
                    // Both digits are < 16, so the value fits a byte.
                    out.push(u8::try_from(h * 16 + l).unwrap_or(b'%'));
                    i += 3;
                    continue;
                }
                out.push(b'%');
            }
            _ => out.push(b),
        }
        i += 1;
    }
    out
}

fn fold(b: u8) -> u8 {
    match b {
        b'.' | b' ' | b'[' => b'_',
        _ => b.to_ascii_lowercase(),
    }
}

/// Whether a raw (undecoded) parameter name stands for `want` (see the module docs).
pub(super) fn name_matches(raw: &str, want: &str) -> bool {
    // Fast path: most names have no escapes and differ in length.
    if !raw.contains(['%', '+']) && raw.len() != want.len() {
        return false;
    }
    let decoded = form_decode(raw.as_bytes());
    decoded.len() == want.len()
        && decoded
            .iter()
            .zip(want.bytes())
            .all(|(a, b)| fold(*a) == fold(b))
}

fn split_pair(pair: &str) -> (&str, &str) {
    pair.split_once('=').unwrap_or((pair, ""))
}

/// What the query holds under the key parameter.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Found<'q> {
    None,
    /// Exactly once: the raw (still encoded) value.
    One(&'q str),
    /// More than once (under any spelling).
    Many,
}

/// Look for the key parameter among `&`-separated pairs.
pub(super) fn find<'q>(query: &'q str, name: &str) -> Found<'q> {
    let mut found = Found::None;
    for pair in query.split('&') {
        let (n, v) = split_pair(pair);
        if name_matches(n, name) {
            if found != Found::None {
                return Found::Many;
            }
            found = Found::One(v);
        }
    }
    found
}

/// The query without any spelling of the key parameter (also in `;`-separated pieces), or
/// `None` when there is nothing to remove. An empty string means no query is left.
pub(super) fn strip(query: &str, name: &str) -> Option<String> {
    let hit = |piece: &str| name_matches(split_pair(piece).0, name);
    if !query.split(['&', ';']).any(hit) {
        return None;
    }
    let mut out = String::with_capacity(query.len());
    let mut first = true;
    for pair in query.split('&') {
        let kept: Vec<&str> = pair.split(';').filter(|p| !hit(p)).collect();
        if kept.is_empty() {
            continue;
        }
        if !first {
            out.push('&');
        }
        first = false;
        out.push_str(&kept.join(";"));
    }
    Some(out)
}

#[cfg(test)]
mod tests;
