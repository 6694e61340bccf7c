//! `[state] retention`: usage rows (per day) and observed-access rows (policy suggestion) are
//! deleted once older than the retention, in both backends. Inventory entries and revocations
//! are not rows of traffic and are kept. The sweep piggybacks on the periodic flush, at most
//! once per [`SWEEP_EVERY`], so it needs no task of its own and runs where the writes run.

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, SystemTime};

use crate::time::{Date, Timestamp};

/// Default `[state] retention`: longer than the longest exit-criteria window a plan may have
/// (366 days), so readiness is never computed from expired rows.
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(400 * 86_400);

/// How often expired rows are looked for.
pub const SWEEP_EVERY: Duration = Duration::from_secs(3600);

/// When rows expire, and when the last sweep ran.
#[derive(Debug)]
pub struct Retention {
    keep: Duration,
    /// Unix seconds of the last sweep (`i64::MIN`: never).
    last: AtomicI64,
}

/// The cut-off of one sweep: usage rows of days before `day`, access rows last seen before
/// `seen`, are deleted.
#[derive(Debug, Clone, Copy)]
pub struct Cutoff {
    pub day: Date,
    pub seen: Timestamp,
}

impl Retention {
    pub fn new(keep: Duration) -> Self {
        Retention {
            keep,
            last: AtomicI64::new(i64::MIN),
        }
    }

    /// Whole days kept (at least one).
    pub fn days(&self) -> i64 {
        i64::try_from(self.keep.as_secs() / 86_400)
            .unwrap_or(i64::MAX)
            .max(1)
    }

    /// The cut-off for `now`, without regard to when the last sweep ran.
    pub fn cutoff(&self, now: SystemTime) -> Cutoff {
        let seen = Timestamp::of(now.checked_sub(self.keep).unwrap_or(SystemTime::UNIX_EPOCH));
        Cutoff {
            day: Date::of(now).plus(-self.days()),
            seen,
        }
    }

    /// The cut-off when a sweep is due at `now` (and mark it done), else `None`.
    pub fn due(&self, now: SystemTime) -> Option<Cutoff> {
        let secs = Timestamp::of(now).0;
        let every = i64::try_from(SWEEP_EVERY.as_secs()).unwrap_or(i64::MAX);
        let last = self.last.load(Ordering::Acquire);
        if last != i64::MIN && secs.saturating_sub(last) < every {
            return None;
        }
        self.last
            .compare_exchange(last, secs, Ordering::AcqRel, Ordering::Acquire)
            .ok()
            .map(|_| self.cutoff(now))
    }
}

impl Default for Retention {
    fn default() -> Self {
        Retention::new(DEFAULT_RETENTION)
    }
}

#[cfg(test)]
mod tests;
