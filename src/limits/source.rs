//! Per-source throttling of failed authentication (credential stuffing, password spraying).
//!
//! Only failures are charged, so a source that authenticates correctly is never slowed. The
//! check runs before authentication so that a throttled source costs no LDAP bind or hash.
//! Sources are keyed by IPv4 address, or by IPv6 /64: one host usually holds a whole /64, and
//! keying by full address would let it rotate through 2^64 fresh buckets.

use std::net::{IpAddr, Ipv6Addr};
use std::sync::Arc;
use std::time::SystemTime;

use super::gcra::{ceil_secs, Decision, KeyedGcra, Overflow, Quota};
use super::{nanos, nanos_at, Rate};
use crate::clock::Clock;
use crate::problem::{Code, Refusal};

/// Failed-authentication limiter keyed by source address.
#[derive(Debug)]
pub struct SourceLimiter {
    clock: Arc<dyn Clock>,
    table: KeyedGcra<IpAddr>,
    quota: Quota,
    max_keys: usize,
    /// With a shared state backend: the count across replicas (see [`super::shared_failures`]).
    shared: Option<Arc<super::shared_failures::SharedFailures<IpAddr>>>,
}

impl SourceLimiter {
    /// `burst` failures at once, then `rate` (e.g. `"10/m"`, burst 20), at most `max_keys`
    /// sources tracked (beyond that new sources are not tracked; see the module docs).
    pub fn new(rate: Rate, burst: u32, max_keys: usize, clock: Arc<dyn Clock>) -> Self {
        let quota = Quota::new(rate, burst);
        SourceLimiter {
            clock,
            table: KeyedGcra::new(quota, max_keys.max(1), Overflow::Untracked),
            quota,
            max_keys: max_keys.max(1),
            shared: None,
        }
    }

    /// Also count failures across replicas through `lease` (the state backend's shared buckets),
    /// so a spray spread over the replicas is throttled as one. Needs a Tokio runtime.
    pub fn shared(mut self, lease: super::cluster::LeaseFn) -> Result<Self, String> {
        self.shared = Some(super::shared_failures::SharedFailures::start(
            "authfail:",
            lease,
            self.quota,
            self.max_keys,
            self.clock.clone(),
        )?);
        Ok(self)
    }

    /// Before authenticating: refuse a source whose failure budget is spent (429). Charges nothing.
    pub fn check_source(&self, ip: IpAddr) -> Result<(), Refusal> {
        self.check_source_at(ip, self.clock.now())
    }

    /// [`SourceLimiter::check_source`] at `now`, a reading of this limiter's clock the caller
    /// already made (the pipeline's, for the request's migration phase): one clock reading less
    /// per request.
    pub fn check_source_at(&self, ip: IpAddr, now: SystemTime) -> Result<(), Refusal> {
        let key = source_key(ip);
        let now = nanos_at(now);
        let local = self.table.peek(&key, now);
        // The shared count refuses like the local one, with the shared bucket's wait.
        let shared = self.shared.as_ref().and_then(|s| s.blocked(&key, now));
        let local = match (local, shared) {
            (Decision::Allowed { .. }, Some(wait)) => Decision::Refused {
                retry_ns: wait,
                reset_ns: wait,
            },
            (d, _) => d,
        };
        match local {
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
        let key = source_key(ip);
        let _ = self.table.check(&key, nanos(self.clock.as_ref()));
        if let Some(s) = &self.shared {
            s.note(key);
        }
    }

    /// Drop idle sources; call every few seconds.
    pub fn sweep(&self) {
        self.table.sweep(nanos(self.clock.as_ref()));
        if let Some(s) = &self.shared {
            s.sweep(nanos(self.clock.as_ref()));
        }
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
