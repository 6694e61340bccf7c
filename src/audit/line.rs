//! Rendering a [`Record`] as its JSON line, by hand (issue 22). The line is the one serde_json
//! wrote from a derived `Serialize` (same field order, escaping and number formatting; the unit
//! tests render many hostile records both ways and compare bytes), at a fraction of the cost:
//! no formatter machinery per fragment, no `fmt` for the timestamp or an IPv4 source, the
//! date-time prefix of the timestamp rendered once per second, the redacted path written
//! straight into the line.

use std::io::Write;
use std::net::SocketAddr;
use std::time::{SystemTime, UNIX_EPOCH};

use super::{redacted_pieces, Record};

/// `,"NAME":"VALUE"` with the value escaped: the key and the opening quote written as one piece.
macro_rules! str_field {
    ($out:expr, $name:literal, $value:expr) => {{
        $out.extend_from_slice(concat!(",\"", $name, "\":\"").as_bytes());
        escaped($out, $value);
        $out.push(b'"');
    }};
}

/// `,"NAME":"VALUE"`, or `,"NAME":null` as one piece (most of these fields are null on most
/// lines).
macro_rules! opt_field {
    ($out:expr, $name:literal, $value:expr) => {
        match $value {
            Some(v) => str_field!($out, $name, v),
            None => $out.extend_from_slice(concat!(",\"", $name, "\":null").as_bytes()),
        }
    };
}

/// The last second whose `YYYY-MM-DDTHH:MM:SS` was rendered. One per writer thread: audit
/// lines come in time order, so this is rendered about once a second, not once a line.
pub(super) struct Renderer {
    second: Option<u64>,
    prefix: [u8; 19],
}

/// Seconds since the epoch of 10000-01-01T00:00:00Z: RFC 3339 has four year digits.
const YEAR_10000: u64 = 253_402_300_800;

impl Renderer {
    pub(super) fn new() -> Renderer {
        Renderer {
            second: None,
            prefix: [0; 19],
        }
    }

    /// Append the record's JSON object (without the newline) to `out`.
    pub(super) fn render(&mut self, r: &Record, out: &mut Vec<u8>) {
        out.extend_from_slice(b"{\"ts\":\"");
        self.timestamp(r.ts, out);
        out.push(b'"');
        str_field!(out, "request_id", r.request_id.to_str().unwrap_or("-"));
        opt_field!(out, "route", r.route.as_deref());
        str_field!(out, "method", r.method.as_str());
        out.extend_from_slice(b",\"path\":\"");
        redacted_pieces(r.target.path(), r.target.query(), |piece| {
            escaped(out, piece);
        });
        out.extend_from_slice(b"\",\"source\":\"");
        source(out, r.source);
        // One of four fixed words (an enum): nothing in it to escape.
        out.extend_from_slice(b"\",\"decision\":\"");
        out.extend_from_slice(r.decision.as_str().as_bytes());
        out.push(b'"');
        str_field!(out, "reason", r.reason);
        opt_field!(out, "credential", r.credential.as_deref());
        opt_field!(out, "kind", r.kind);
        opt_field!(out, "principal", r.principal.as_deref());
        opt_field!(out, "identity", r.identity.as_deref());
        opt_field!(out, "plan", r.plan.as_deref());
        opt_field!(out, "phase", r.phase);
        out.extend_from_slice(b",\"status\":");
        decimal(out, r.status.into());
        match r.upstream_status {
            Some(s) => {
                out.extend_from_slice(b",\"upstream_status\":");
                decimal(out, s.into());
            }
            None => out.extend_from_slice(b",\"upstream_status\":null"),
        }
        out.extend_from_slice(b",\"latency_ms\":");
        float(out, r.latency_ms);
        opt_field!(out, "jti", r.jti.as_deref());
        opt_field!(out, "trace_id", r.trace_id.as_deref());
        str_field!(out, "mode", r.mode);
        out.push(b'}');
    }

    /// `YYYY-MM-DDTHH:MM:SS.mmmZ`, as `humantime::format_rfc3339_millis`. A time outside what
    /// four year digits can show (a clock set before 1970, or past 9999) is clamped to the
    /// nearest end: serde's rendering panicked on the first and lost the line on the second;
    /// a line with a clamped time is more use than none.
    fn timestamp(&mut self, t: SystemTime, out: &mut Vec<u8>) {
        let (secs, millis) = match t.duration_since(UNIX_EPOCH) {
            Ok(d) if d.as_secs() < YEAR_10000 => (d.as_secs(), d.subsec_millis()),
            Ok(_) => (YEAR_10000 - 1, 999),
            Err(_) => (0, 0),
        };
        if self.second != Some(secs) {
            self.prefix = date_time(secs);
            self.second = Some(secs);
        }
        out.extend_from_slice(&self.prefix);
        // `millis` < 1000.
        out.extend_from_slice(&[
            b'.',
            digit(millis / 100),
            digit(millis / 10 % 10),
            digit(millis % 10),
            b'Z',
        ]);
    }
}

/// `YYYY-MM-DDTHH:MM:SS` of a second since the epoch (before year 10000): the civil-from-days
/// conversion of the proleptic Gregorian calendar (eras of 400 years from 0000-03-01).
fn date_time(secs: u64) -> [u8; 19] {
    let days = secs / 86_400;
    let of_day = secs % 86_400;
    // Days since 0000-03-01; 719_468 is 1970-01-01 on that count.
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    let (h, m, s) = (of_day / 3600, of_day / 60 % 60, of_day % 60);
    let d = |v: u64| digit((v % 10) as u32);
    [
        d(year / 1000),
        d(year / 100),
        d(year / 10),
        d(year),
        b'-',
        d(month / 10),
        d(month),
        b'-',
        d(day / 10),
        d(day),
        b'T',
        d(h / 10),
        d(h),
        b':',
        d(m / 10),
        d(m),
        b':',
        d(s / 10),
        d(s),
    ]
}

/// The ASCII digit of `v` (< 10).
fn digit(v: u32) -> u8 {
    b'0' + (v % 10) as u8
}

/// A `u16` in decimal (status codes), as serde_json writes integers.
fn decimal(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(crate::units::decimal(v.into(), &mut [0; 20]));
}

/// An `f64` exactly as serde_json writes it (shortest round-trip; `null` when not finite). The
/// latency is a whole number of microseconds in milliseconds (`k / 1000`): below 10^9 its
/// shortest round-trip form is that decimal itself (another decimal as short or shorter differs
/// by at least 0.001, far more than the value's rounding interval), and serde_json writes it
/// without an exponent (`12.5`, `3.0`, `0.001`), so it is written by hand; anything else goes
/// to serde_json itself (a unit test compares the two on every `k` below 10^6 and on large ones).
fn float(out: &mut Vec<u8>, v: f64) {
    if let Some((whole, frac)) = thousandths(v) {
        decimal(out, whole);
        let digits = [
            b'.',
            digit(frac / 100),
            digit(frac / 10 % 10),
            digit(frac % 10),
        ];
        // Trailing zeros dropped, but one digit always (`3.0`).
        let keep = if frac % 10 != 0 {
            4
        } else if frac % 100 != 0 {
            3
        } else {
            2
        };
        out.extend_from_slice(digits.get(..keep).unwrap_or(&digits));
        return;
    }
    if serde_json::to_writer(&mut *out, &v).is_err() {
        // Writing into a `Vec` cannot fail; keep the line valid JSON regardless.
        out.extend_from_slice(b"null");
    }
}

/// `v` as whole and thousandths when it is the `f64` nearest to `k / 1000` for a whole `k`,
/// `v` below 10^9 and not negative (`-0.0` is written `-0.0`, by serde_json).
fn thousandths(v: f64) -> Option<(u32, u32)> {
    // Also false for NaN.
    if !(v.is_sign_positive() && v < 1e9) {
        return None;
    }
    let k = (v * 1000.0).round();
    if k / 1000.0 != v {
        return None;
    }
    // 0 <= k < 10^12: exact as an integer.
    let k = k as u64;
    Some((u32::try_from(k / 1000).ok()?, u32::try_from(k % 1000).ok()?))
}

/// The source address: IPv4 (nearly every line) by hand, IPv6 through `Display`, which is what
/// serde wrote for both (`[addr%scope]:port` for IPv6).
fn source(out: &mut Vec<u8>, addr: SocketAddr) {
    match addr {
        SocketAddr::V4(a) => {
            for (i, octet) in a.ip().octets().into_iter().enumerate() {
                if i > 0 {
                    out.push(b'.');
                }
                decimal(out, octet.into());
            }
            out.push(b':');
            decimal(out, a.port().into());
        }
        // Only digits, hex, `:`, `.`, `%`, `[` and `]`: nothing to escape.
        SocketAddr::V6(a) => {
            let _ = write!(out, "{a}");
        }
    }
}

/// What serde_json escapes: `"`, `\` and the control characters U+0000–U+001F (the five with
/// a short form as `\b \t \n \f \r`, the others as `\u00xx` in lower-case hex). Everything
/// else, U+007F and non-ASCII included, is written as is (UTF-8).
fn needs_escape(b: u8) -> bool {
    b < 0x20 || b == b'"' || b == b'\\'
}

/// `s` escaped as inside a JSON string. Runs that need no escaping (almost always the whole
/// string) are found eight bytes at a time and copied at once.
fn escaped(out: &mut Vec<u8>, s: &str) {
    let mut rest = s.as_bytes();
    loop {
        let (run, tail) = rest.split_at(clean_prefix(rest));
        out.extend_from_slice(run);
        let Some((&b, tail)) = tail.split_first() else {
            return;
        };
        match b {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            0x08 => out.extend_from_slice(b"\\b"),
            0x09 => out.extend_from_slice(b"\\t"),
            0x0a => out.extend_from_slice(b"\\n"),
            0x0c => out.extend_from_slice(b"\\f"),
            0x0d => out.extend_from_slice(b"\\r"),
            _ => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                let hex = |n: u8| HEX.get(usize::from(n & 0xf)).copied().unwrap_or(b'0');
                out.extend_from_slice(&[b'\\', b'u', b'0', b'0', hex(b >> 4), hex(b)]);
            }
        }
        rest = tail;
    }
}

/// How many leading bytes of `bytes` need no escaping. Eight at a time with the classic
/// "has a byte less than n" word tests (exact for whether the word has one, which is all that
/// is asked: the byte itself is then found one at a time); bytes of 0x80 and above (UTF-8) never
/// match.
fn clean_prefix(bytes: &[u8]) -> usize {
    const ONES: u64 = u64::from_ne_bytes([1; 8]);
    const HIGH: u64 = ONES * 0x80;
    // Some byte of `w` is zero: its high bit is set in the result (others may be, by borrow,
    // only when one is).
    let zero = |w: u64| w.wrapping_sub(ONES) & !w;
    let mut clean = 0;
    for chunk in bytes.chunks_exact(8) {
        let Ok(word) = <[u8; 8]>::try_from(chunk) else {
            break;
        };
        let w = u64::from_ne_bytes(word);
        let control = w.wrapping_sub(ONES * 0x20) & !w;
        let quote = zero(w ^ (ONES * u64::from(b'"')));
        let backslash = zero(w ^ (ONES * u64::from(b'\\')));
        if (control | quote | backslash) & HIGH != 0 {
            break;
        }
        clean += 8;
    }
    let tail = bytes.get(clean..).unwrap_or_default();
    clean
        + tail
            .iter()
            .position(|&b| needs_escape(b))
            .unwrap_or(tail.len())
}

#[cfg(test)]
mod tests;
