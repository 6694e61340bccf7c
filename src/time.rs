//! Time, written once for the whole gateway: calendar dates as plans and key files write them
//! (`2026-12-01`), counted in whole days since the Unix epoch, and [`Timestamp`]s to the second.
//! A date means **00:00:00 UTC** of that day: a phase switches at UTC midnight whatever the
//! gateway's local time zone, so every replica switches at the same instant.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Serialize, Serializer};

const DAY_SECS: u64 = 86_400;

/// A UTC calendar day.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Date(i64);

impl Date {
    /// From days since 1970-01-01.
    pub const fn from_days(days: i64) -> Self {
        Date(days)
    }

    /// Days since 1970-01-01 (negative before).
    pub const fn days(self) -> i64 {
        self.0
    }

    /// The proleptic Gregorian date `y-m-d`, or `None` if it does not exist (Feb 30).
    pub fn from_ymd(y: i64, m: u32, d: u32) -> Option<Self> {
        if !(1..=12).contains(&m) || d == 0 || d > days_in_month(y, m) {
            return None;
        }
        Some(Date(days_from_civil(y, m, d)))
    }

    /// The UTC day that contains `t`.
    pub fn of(t: SystemTime) -> Self {
        match t.duration_since(UNIX_EPOCH) {
            Ok(d) => Date(i64::try_from(d.as_secs() / DAY_SECS).unwrap_or(i64::MAX)),
            Err(e) => {
                // Before 1970: round towards the earlier day.
                let secs = e.duration().as_secs();
                let days = secs.div_ceil(DAY_SECS);
                Date(-i64::try_from(days).unwrap_or(i64::MAX))
            }
        }
    }

    /// 00:00:00 UTC of this day.
    pub fn midnight(self) -> SystemTime {
        let secs = self.0.unsigned_abs().saturating_mul(DAY_SECS);
        if self.0 >= 0 {
            UNIX_EPOCH + Duration::from_secs(secs)
        } else {
            UNIX_EPOCH - Duration::from_secs(secs)
        }
    }

    /// Midnight UTC at the end of this day (00:00:00 of the next): the first instant a thing valid
    /// "through" this day (an API key's `expires`) no longer is.
    pub fn end_of_day_utc(self) -> SystemTime {
        self.plus(1).midnight()
    }

    /// Unix seconds of 00:00:00 UTC of this day.
    pub const fn unix_seconds(self) -> i64 {
        self.0.saturating_mul(DAY_SECS as i64)
    }

    /// `n` days later (earlier when negative).
    pub const fn plus(self, n: i64) -> Self {
        Date(self.0.saturating_add(n))
    }

    /// `(year, month, day)`.
    pub fn ymd(self) -> (i64, u32, u32) {
        civil_from_days(self.0)
    }

    /// Parse `YYYY-MM-DD`.
    pub fn parse(s: &str) -> Option<Self> {
        let mut it = s.splitn(3, '-');
        let (y, m, d) = (it.next()?, it.next()?, it.next()?);
        if y.len() != 4 || m.len() != 2 || d.len() != 2 {
            return None;
        }
        let all_digits = |p: &str| p.bytes().all(|b| b.is_ascii_digit());
        if !(all_digits(y) && all_digits(m) && all_digits(d)) {
            return None;
        }
        Date::from_ymd(y.parse().ok()?, m.parse().ok()?, d.parse().ok()?)
    }
}

impl fmt::Display for Date {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (y, m, d) = self.ymd();
        write!(f, "{y:04}-{m:02}-{d:02}")
    }
}

impl Serialize for Date {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

fn days_in_month(y: i64, m: u32) -> u32 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if is_leap(y) => 29,
        2 => 28,
        _ => 0,
    }
}

// Howard Hinnant's `days_from_civil` / `civil_from_days`
// (https://howardhinnant.github.io/date_algorithms.html): exact for the proleptic Gregorian
// calendar, no tables, no time-zone database.
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    // d is in 1..=31 and m in 1..=12 by construction.
    (
        y,
        u32::try_from(m).unwrap_or(1),
        u32::try_from(d).unwrap_or(1),
    )
}

/// An instant to the second, serialized as RFC 3339 UTC (`2026-12-01T09:30:00Z`): what the
/// admin API and the inventory show for first/last seen, revocation times and cert expiry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(pub i64);

impl Timestamp {
    /// The second containing `t`.
    pub fn of(t: SystemTime) -> Self {
        match t.duration_since(UNIX_EPOCH) {
            Ok(d) => Timestamp(i64::try_from(d.as_secs()).unwrap_or(i64::MAX)),
            Err(e) => Timestamp(-i64::try_from(e.duration().as_secs()).unwrap_or(i64::MAX)),
        }
    }

    /// The UTC day it falls on.
    pub fn date(self) -> Date {
        Date(self.0.div_euclid(DAY_SECS as i64))
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = self.0.rem_euclid(DAY_SECS as i64);
        let (h, m, s) = (secs / 3600, secs % 3600 / 60, secs % 60);
        write!(f, "{}T{h:02}:{m:02}:{s:02}Z", self.date())
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

#[cfg(test)]
mod tests;
