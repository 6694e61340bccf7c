//! `rate = "50/s"`: how many requests per period. Parsed once at load into the GCRA emission
//! interval (the period divided by the count), which is all the limiter needs per request.

use std::fmt;
use std::time::Duration;

/// A sustained rate: `count` requests per `period`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    count: u32,
    period: Duration,
}

impl Rate {
    /// `count` per `period`; `None` if either is zero (a zero rate is a typo, not a policy: a
    /// route that must refuse everything says so in its policy).
    pub fn new(count: u32, period: Duration) -> Option<Rate> {
        (count > 0 && !period.is_zero()).then_some(Rate { count, period })
    }

    /// Parse `N/s`, `N/m`, `N/h`, or `N/<duration>` such as `3/15m`.
    pub fn parse(s: &str) -> Result<Rate, String> {
        let bad = || format!("{s:?} is not a rate: expected N/s, N/m, N/h or N/<duration>");
        let (n, per) = s.trim().split_once('/').ok_or_else(bad)?;
        let count: u32 = n.trim().parse().map_err(|_| bad())?;
        let period = match per.trim() {
            "s" => Duration::from_secs(1),
            "m" => Duration::from_secs(60),
            "h" => Duration::from_secs(3600),
            other => humantime::parse_duration(other).map_err(|_| bad())?,
        };
        Rate::new(count, period).ok_or_else(|| format!("{s:?}: a rate must be above zero"))
    }

    /// Requests per period.
    pub fn count(&self) -> u32 {
        self.count
    }

    /// The period.
    pub fn period(&self) -> Duration {
        self.period
    }

    /// Time between two requests at the sustained rate, in nanoseconds (at least 1).
    pub(crate) fn interval_nanos(&self) -> u64 {
        let ns = self.period.as_nanos() / u128::from(self.count);
        u64::try_from(ns).unwrap_or(u64::MAX).max(1)
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}/{}",
            self.count,
            humantime::format_duration(self.period)
        )
    }
}

#[cfg(test)]
mod tests;
