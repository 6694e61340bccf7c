//! Durations and sizes written as strings in the config (`"300ms"`, `"5m"`, `"14d"`, `"1MiB"`),
//! and integers written as decimal digits on the hot path (no `fmt` machinery).

use std::time::Duration;

/// `n` in decimal digits, written into the end of `buf`: the digits are the returned slice. The
/// writers of protocol fields and audit lines use it (`Content-Length`, status codes, the
/// `RateLimit` field), where `write!` would go through `fmt` for a few digits.
pub fn decimal(mut n: u64, buf: &mut [u8; 20]) -> &[u8] {
    let mut i = buf.len();
    loop {
        i -= 1;
        if let Some(d) = buf.get_mut(i) {
            // `n % 10` is a single digit.
            *d = b'0' + (n % 10) as u8;
        }
        n /= 10;
        if n == 0 || i == 0 {
            break;
        }
    }
    buf.get(i..).unwrap_or_default()
}

/// Parse a duration such as `"300ms"`, `"5m"`, `"14d"` or `"1h 30m"`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    if s.is_empty() {
        return Err("empty duration (expected e.g. \"300ms\", \"5m\", \"14d\")".into());
    }
    humantime::parse_duration(s).map_err(|e| {
        format!("invalid duration {s:?}: {e} (expected e.g. \"300ms\", \"5m\", \"14d\")")
    })
}

/// Parse a size such as `"512"`, `"64KiB"`, `"1MiB"`, `"10MB"` or `"2GiB"` into bytes.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, unit) = t.split_at(split);
    let bad = || format!("invalid size {s:?} (expected e.g. \"64KiB\", \"1MiB\", \"10MB\")");
    let n: u64 = digits.parse().map_err(|_| bad())?;
    let mult: u64 = match unit.trim() {
        "" | "B" => 1,
        "KB" | "kB" => 1_000,
        "KiB" | "K" => 1 << 10,
        "MB" => 1_000_000,
        "MiB" | "M" => 1 << 20,
        "GB" => 1_000_000_000,
        "GiB" | "G" => 1 << 30,
        _ => return Err(bad()),
    };
    n.checked_mul(mult).ok_or_else(bad)
}

#[cfg(test)]
mod tests;
