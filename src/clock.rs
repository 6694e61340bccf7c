//! Time as a parameter: code that checks expiry, tolerances or plan dates asks a [`Clock`], so
//! tests can move time without sleeping.

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A source of wall-clock time.
pub trait Clock: Send + Sync + std::fmt::Debug {
    /// Now.
    fn now(&self) -> SystemTime;
}

/// The system clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }
}

/// A clock that moves only when told to (tests, what-if evaluations).
#[derive(Debug)]
pub struct FakeClock {
    micros: AtomicI64,
}

impl FakeClock {
    /// A fake clock set to `at`.
    pub fn new(at: SystemTime) -> Self {
        let micros = at
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX));
        FakeClock {
            micros: AtomicI64::new(micros),
        }
    }

    /// Move forward.
    pub fn advance(&self, by: Duration) {
        let d = i64::try_from(by.as_micros()).unwrap_or(i64::MAX);
        self.micros.fetch_add(d, Ordering::SeqCst);
    }

    /// Jump to an instant.
    pub fn set(&self, at: SystemTime) {
        let micros = at
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX));
        self.micros.store(micros, Ordering::SeqCst);
    }
}

impl Clock for FakeClock {
    fn now(&self) -> SystemTime {
        let m = self.micros.load(Ordering::SeqCst);
        UNIX_EPOCH + Duration::from_micros(u64::try_from(m).unwrap_or(0))
    }
}
