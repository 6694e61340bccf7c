//! Durations and sizes written as strings in the config (`"300ms"`, `"5m"`, `"14d"`, `"1MiB"`).

use std::time::Duration;

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
