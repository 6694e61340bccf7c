//! Per-source throttling of failed authentication (credential stuffing, password spraying).
//!
//! Only failures are charged, so a source that authenticates correctly is never slowed. The
//! check runs before authentication so that a throttled source costs no LDAP bind or hash.
//! Sources are keyed by IPv4 address, or by IPv6 /64: one host usually holds a whole /64, and
//! keying by full address would let it rotate through 2^64 fresh buckets.

use std::net::{IpAddr, Ipv6Addr};
use std::sync::Arc;

use super::gcra::{ceil_secs, Decision, KeyedGcra, Overflow, Quota};
use super::{nanos, Rate};
use crate::clock::Clock;
use crate::problem::{Code, Refusal};

/// Failed-authentication limiter keyed by source address.
#[derive(Debug)]
pub struct SourceLimiter {
    clock: Arc<dyn Clock>,
    table: KeyedGcra<IpAddr>,
}

impl SourceLimiter {
    /// `burst` failures at once, then `rate` (e.g. `"10/m"`, burst 20), at most `max_keys`
    /// sources tracked (beyond that new sources are not tracked; see the module docs).
    pub fn new(rate: Rate, burst: u32, max_keys: usize, clock: Arc<dyn Clock>) -> Self {
        SourceLimiter {
            clock,
            table: KeyedGcra::new(
                Quota::new(rate, burst),
                max_keys.max(1),
                Overflow::Untracked,
            ),
        }
    }

    /// Before authenticating: refuse a source whose failure budget is spent (429). Charges nothing.
    pub fn check_source(&self, ip: IpAddr) -> Result<(), Refusal> {
        match self.table.peek(&source_key(ip), nanos(self.clock.as_ref())) {
            Decision::Allowed { .. } => Ok(()),
            // No RateLimit fields here: the thresholds are not advertised to an attacker.
            Decision::Refused { retry_ns, .. } => Err(Refusal::new(
                Code::RateLimited,
                "too many failed authentication attempts from this address",
            )
            .retry_after(ceil_secs(retry_ns).max(1))),
        }
    }

    /// After a credential was presented and rejected: charge the source.
    pub fn note_auth_failure(&self, ip: IpAddr) {
        let _ = self
            .table
            .check(&source_key(ip), nanos(self.clock.as_ref()));
    }

    /// Drop idle sources; call every few seconds.
    pub fn sweep(&self) {
        self.table.sweep(nanos(self.clock.as_ref()));
    }

    /// Sources tracked now.
    pub fn tracked_keys(&self) -> usize {
        self.table.len()
    }
}

/// IPv4 (also when IPv4-mapped) as is; IPv6 reduced to its /64.
pub(crate) fn source_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let [a, b, c, d, ..] = v6.segments();
                IpAddr::V6(Ipv6Addr::new(a, b, c, d, 0, 0, 0, 0))
            }
        },
    }
}
