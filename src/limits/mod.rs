//! Rate and concurrency limits (`docs/configuration.md` `[routes.limits]`, `docs/http.md` `rate-limited`/`overloaded`).
//!
//! Per route, in the request path after authorization:
//! 1. [`RouteLimits::check_rate`] with the caller's identity: a GCRA bucket per identity
//!    (`rate` + `burst`) and, optionally, one for the whole route (`total_rate`). Refused → 429
//!    with `Retry-After` and the `RateLimit-Policy`/`RateLimit` fields; allowed → a
//!    [`RateHeaders`] to put on the response.
//! 2. [`RouteLimits::try_acquire`]: an owned permit for one of `concurrency` in-flight slots,
//!    held until the response body is finished. None free → 503 `Retry-After: 1`.
//!
//! Before authentication, [`SourceLimiter::check_source`] slows sources that keep failing it
//! (credential stuffing); the authenticate stage reports failures with
//! [`SourceLimiter::note_auth_failure`].
//!
//! Header syntax follows draft-ietf-httpapi-ratelimit-headers-11 (May 2026; unchanged in shape
//! since -08): `RateLimit-Policy: "identity";q=100;w=2` (quota = burst, window = seconds to
//! refill it) and `RateLimit: "identity";r=37;t=2` (remaining now, seconds until the quota is
//! whole again). No `pk` (partition key) parameter: the key is the caller's identity, which the
//! caller knows and which need not be echoed.
//!
//! Memory: each limiter tracks at most `max_keys` keys. Keys whose bucket is full again carry no
//! information and are swept (on the request path when a shard fills up, and by [`sweep`] which
//! the integrator runs every few seconds). When the table is still full, a new *identity*
//! shares one overflow bucket with all other untracked identities (bounded, still limited,
//! tracked callers unaffected — not fail-closed, because identities are authenticated callers
//! and a cap reached by legitimate growth must not lock everyone new out); a new *failing
//! source* is simply not tracked (per-source throttling is defence in depth; a botnet large
//! enough to fill the table defeats it anyway, and refusing every new address would hand that
//! botnet a lockout of all new clients).
//!
//! [`sweep`]: RouteLimits::sweep

pub mod bodies;
pub mod cluster;
mod concurrency;
mod gcra;
mod rate;
pub mod settings;
pub mod shared_failures;
mod source;

use std::sync::Arc;
use std::time::UNIX_EPOCH;

use http::header::{HeaderMap, HeaderName, HeaderValue};

use crate::clock::Clock;
use crate::problem::{Code, Refusal};

pub use concurrency::{ConcurrencyLimit, InFlight};
pub use rate::Rate;
pub use source::SourceLimiter;

use gcra::{ceil_secs, Decision, KeyedGcra, Overflow, Quota};

/// Keys tracked per limiter unless configured otherwise (about 100 bytes each).
pub const DEFAULT_MAX_KEYS: usize = 100_000;

/// `RateLimit-Policy` (draft-ietf-httpapi-ratelimit-headers).
pub const RATELIMIT_POLICY: HeaderName = HeaderName::from_static(POLICY_NAME);
/// `RateLimit` (draft-ietf-httpapi-ratelimit-headers).
pub const RATELIMIT: HeaderName = HeaderName::from_static(LIMIT_NAME);
/// Their names, as a writer that writes fields itself writes them.
const POLICY_NAME: &str = "ratelimit-policy";
const LIMIT_NAME: &str = "ratelimit";

/// Policy names in the header fields.
const IDENTITY_POLICY: &str = "identity";
const ROUTE_POLICY: &str = "route";

/// A route's limits, resolved from config.
#[derive(Debug, Clone, Default)]
pub struct RouteLimitSettings {
    /// `rate`: per identity. None: no per-identity limit.
    pub rate: Option<Rate>,
    /// `burst`: requests an idle identity may send at once. Default: the rate's count (50 for
    /// `"50/s"`).
    pub burst: Option<u32>,
    /// `total_rate`: all identities together on this route. None: no route-wide limit.
    pub total_rate: Option<Rate>,
    /// `total_burst`: default the total rate's count.
    pub total_burst: Option<u32>,
    /// `concurrency`: requests in flight to the upstream. None: unlimited.
    pub concurrency: Option<u32>,
    /// Identities tracked at most; default [`DEFAULT_MAX_KEYS`].
    pub max_keys: Option<usize>,
    /// `scope = "cluster"`: the route's name and the shared store (see [`cluster`]). None: the
    /// rates are this replica's own.
    pub cluster: Option<(String, cluster::ClusterSettings)>,
}

/// A route's rate and concurrency limiters. Cheap to share (`Arc` it per route).
#[derive(Debug)]
pub struct RouteLimits {
    clock: Arc<dyn Clock>,
    identity: Option<KeyedGcra<Box<str>>>,
    total: Option<(Quota, std::sync::Mutex<u64>)>,
    concurrency: Option<ConcurrencyLimit>,
    /// `RateLimit-Policy`, the same on every response: computed once.
    policy: Option<HeaderValue>,
    /// `scope = "cluster"`: the leases and the local fallback.
    cluster: Option<cluster::Cluster>,
}

/// The `RateLimit-Policy`/`RateLimit` fields for a response on a limited route: the policy's
/// value (the same on every response, shared) and the figures of the `RateLimit` items, written
/// out only where the response is. Into a header value for a response map
/// ([`RateHeaders::apply_to`]); the native HTTP/1.1 writer has them written straight into its
/// head ([`RateHeaders::write_lines`]): no `HeaderValue` built and checked, no allocation, no
/// hashed map insert (issue 22). Small, as it travels with the answer (`transport::Answer`).
#[derive(Debug, Clone, Default)]
pub struct RateHeaders {
    policy: Option<HeaderValue>,
    /// The identity's item: (remaining, nanoseconds until the quota is whole).
    identity: Option<(u64, u64)>,
    /// The route's item, after the identity's.
    route: Option<(u64, u64)>,
}

impl RateHeaders {
    /// The header fields to add (none on a route without rate limits).
    pub fn pairs(&self) -> Vec<(HeaderName, HeaderValue)> {
        let mut v = Vec::with_capacity(2);
        if let (Some(p), Some(c)) = (&self.policy, self.current_value()) {
            v.push((RATELIMIT_POLICY, p.clone()));
            v.push((RATELIMIT, c));
        }
        v
    }

    /// Add them to a response's headers, replacing any the upstream sent (they would describe
    /// the upstream's limits, not ours, and a client cannot tell the two apart).
    pub fn apply_to(&self, headers: &mut HeaderMap) {
        // As `pairs`, without building its vector for every response.
        if let (Some(p), Some(c)) = (&self.policy, self.current_value()) {
            headers.insert(RATELIMIT_POLICY, p.clone());
            headers.insert(RATELIMIT, c);
        }
    }

    /// Whether there are fields to add (both, or neither).
    pub fn is_set(&self) -> bool {
        self.policy.is_some()
    }

    /// Append the fields as HTTP/1.1 head lines (`name: value` and CRLF, the names lower-case
    /// as a map's writer writes them): the bytes [`RateHeaders::apply_to`] would put on the
    /// wire. The writer that calls it leaves out relayed fields of these names
    /// ([`RateHeaders::names`]), as the map insert replaces them.
    pub fn write_lines(&self, out: &mut Vec<u8>) {
        let Some(p) = &self.policy else {
            return;
        };
        for piece in [POLICY_NAME.as_bytes(), b": ", p.as_bytes(), b"\r\n"] {
            out.extend_from_slice(piece);
        }
        out.extend_from_slice(LIMIT_NAME.as_bytes());
        out.extend_from_slice(b": ");
        self.put_current(&mut |piece| out.extend_from_slice(piece));
        out.extend_from_slice(b"\r\n");
    }

    /// The names of the fields, lower-case: a relayed field of either name gives way to ours.
    pub fn names() -> [&'static [u8]; 2] {
        [POLICY_NAME.as_bytes(), LIMIT_NAME.as_bytes()]
    }

    /// The `RateLimit` value, piece by piece: the identity's item, then the route's.
    fn put_current(&self, put: &mut impl FnMut(&[u8])) {
        if let Some((remaining, reset_ns)) = self.identity {
            put_limit_item(put, true, IDENTITY_POLICY, remaining, reset_ns);
        }
        if let Some((remaining, reset_ns)) = self.route {
            let first = self.identity.is_none();
            put_limit_item(put, first, ROUTE_POLICY, remaining, reset_ns);
        }
    }

    fn current_value(&self) -> Option<HeaderValue> {
        self.policy.as_ref()?;
        let mut field = Field::new();
        self.put_current(&mut |piece| field.put(piece));
        field_value(field)
    }
}

impl RouteLimits {
    /// Build a route's limiters. Errors name the offending key.
    pub fn new(settings: &RouteLimitSettings, clock: Arc<dyn Clock>) -> Result<Self, String> {
        let max_keys = settings.max_keys.unwrap_or(DEFAULT_MAX_KEYS);
        if max_keys == 0 {
            return Err("max_keys: must be at least 1".into());
        }
        if settings.rate.is_none() && settings.burst.is_some() {
            return Err("burst: set without rate".into());
        }
        if settings.total_rate.is_none() && settings.total_burst.is_some() {
            return Err("total_burst: set without total_rate".into());
        }
        let quota = |rate: Rate, burst: Option<u32>, key: &str| match burst {
            Some(0) => Err(format!("{key}: must be at least 1")),
            b => Ok(Quota::new(rate, b.unwrap_or(rate.count()))),
        };
        let identity = settings
            .rate
            .map(|r| quota(r, settings.burst, "burst"))
            .transpose()?;
        let total = settings
            .total_rate
            .map(|r| quota(r, settings.total_burst, "total_burst"))
            .transpose()?;
        let concurrency = settings
            .concurrency
            .map(|n| ConcurrencyLimit::new(n).ok_or("concurrency: must be at least 1"))
            .transpose()?;

        let mut items = Vec::new();
        if let Some(q) = &identity {
            items.push(policy_item(IDENTITY_POLICY, q));
        }
        if let Some(q) = &total {
            items.push(policy_item(ROUTE_POLICY, q));
        }
        let policy = if items.is_empty() {
            None
        } else {
            Some(HeaderValue::from_str(&items.join(", ")).map_err(|e| e.to_string())?)
        };
        let cluster = match &settings.cluster {
            Some((route, c)) => Some(cluster::Cluster::new(
                route,
                c,
                settings,
                identity.as_ref(),
                total.as_ref(),
                max_keys,
            )?),
            None => None,
        };
        Ok(RouteLimits {
            clock,
            cluster,
            identity: identity.map(|q| KeyedGcra::new(q, max_keys, Overflow::Shared)),
            total: total.map(|q| (q, std::sync::Mutex::new(0))),
            concurrency,
            policy,
        })
    }

    /// Charge one request by `identity` (the caller's SPIFFE ID) against the route's rates.
    pub fn check_rate(&self, identity: &str) -> Result<RateHeaders, Refusal> {
        let Some(policy) = &self.policy else {
            return Ok(RateHeaders::default());
        };
        let now = nanos(self.clock.as_ref());
        if let Some(c) = &self.cluster {
            return self.check_cluster(c, identity, policy, now);
        }
        let (mut mine, mut route) = (None, None);
        if let Some(table) = &self.identity {
            match table.check(identity, now) {
                Decision::Allowed {
                    remaining,
                    reset_ns,
                } => mine = Some((remaining, reset_ns)),
                Decision::Refused { retry_ns, reset_ns } => {
                    return Err(self.refusal(IDENTITY_POLICY, retry_ns, reset_ns, policy));
                }
            }
        }
        if let Some((quota, tat)) = &self.total {
            let mut tat = tat
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            match quota.check(&mut tat, now) {
                Decision::Allowed {
                    remaining,
                    reset_ns,
                } => route = Some((remaining, reset_ns)),
                Decision::Refused { retry_ns, reset_ns } => {
                    drop(tat);
                    // The request does not happen, so it must not use up the caller's own quota.
                    if let Some(table) = &self.identity {
                        table.refund(identity);
                    }
                    return Err(self.refusal(ROUTE_POLICY, retry_ns, reset_ns, policy));
                }
            }
        }
        Ok(RateHeaders {
            policy: Some(policy.clone()),
            identity: mine,
            route,
        })
    }

    /// Take one in-flight slot; hold the returned value until the response body is done.
    /// `None` on a route without a concurrency limit: nothing to hold, so the response body
    /// need not be wrapped to hold it (about 400 instructions a response, issue 22).
    pub fn try_acquire(&self) -> Result<Option<InFlight>, Refusal> {
        self.concurrency
            .as_ref()
            .map(ConcurrencyLimit::try_acquire)
            .transpose()
    }

    /// Drop idle keys; call every few seconds (cheap: one pass over at most `max_keys`).
    pub fn sweep(&self) {
        if let Some(t) = &self.identity {
            t.sweep(nanos(self.clock.as_ref()));
        }
        if let Some(c) = &self.cluster {
            c.sweep(nanos(self.clock.as_ref()));
        }
    }

    /// Whether a `scope = "cluster"` route runs on its local fallback now (Redis unreachable).
    pub fn cluster_fallback(&self) -> bool {
        self.cluster
            .as_ref()
            .is_some_and(cluster::Cluster::in_fallback)
    }

    /// Identities tracked now (for metrics and tests).
    pub fn tracked_keys(&self) -> usize {
        self.identity.as_ref().map_or(0, KeyedGcra::len)
    }

    fn refusal(&self, name: &str, retry_ns: u64, reset_ns: u64, policy: &HeaderValue) -> Refusal {
        let mut r = Refusal::new(
            Code::RateLimited,
            if name == IDENTITY_POLICY {
                "rate limit for this identity on this route exceeded"
            } else {
                "rate limit for this route exceeded"
            },
        )
        .retry_after(ceil_secs(retry_ns).max(1))
        .with_header(RATELIMIT_POLICY, policy.clone());
        let mut item = Field::new();
        push_limit_item(&mut item, name, 0, reset_ns);
        if let Some(v) = field_value(item) {
            r = r.with_header(RATELIMIT, v);
        }
        r
    }
}

/// `"name";q=<burst>;w=<seconds>`.
fn policy_item(name: &str, q: &Quota) -> String {
    format!("\"{name}\";q={};w={}", q.burst(), q.window_secs())
}

/// A `RateLimit` field being written for a header value: on the stack (the longest, two items
/// of two `u64`s, is 111 bytes), then moved once into the `Bytes` behind the value. A plain
/// array and a length, not a `SmallVec`: its `extend_from_slice` (an insert that may spill to
/// the heap) was half of a limited request's rate check (issue 22).
struct Field {
    bytes: [u8; FIELD_ROOM],
    len: usize,
    /// A piece did not fit: the field is not sent at all rather than sent cut short (cannot
    /// happen with the item names of this module; see `FIELD_ROOM`).
    overflow: bool,
}

/// Two items of `"identity"`/`"route"` with two 20-digit numbers each, and the separator.
const FIELD_ROOM: usize = 128;

impl Field {
    fn new() -> Self {
        Field {
            bytes: [0; FIELD_ROOM],
            len: 0,
            overflow: false,
        }
    }

    fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn put(&mut self, piece: &[u8]) {
        let end = self.len + piece.len();
        match self.bytes.get_mut(self.len..end) {
            Some(to) => {
                to.copy_from_slice(piece);
                self.len = end;
            }
            None => self.overflow = true,
        }
    }
}

impl AsRef<[u8]> for Field {
    fn as_ref(&self) -> &[u8] {
        self.bytes.get(..self.len).unwrap_or_default()
    }
}

/// The header value of a written field. Owned by its `Bytes` (one allocation, and the copy a
/// response takes is a reference count): a `String` made into `Bytes` costs a second
/// allocation when the response clones it (issue 22).
fn field_value(field: Field) -> Option<HeaderValue> {
    if field.overflow {
        return None;
    }
    HeaderValue::from_maybe_shared(bytes::Bytes::from_owner(field)).ok()
}

/// Append `"name";r=<remaining>;t=<seconds>` as the next list member.
fn push_limit_item(out: &mut Field, name: &str, remaining: u64, reset_ns: u64) {
    let first = out.is_empty();
    put_limit_item(
        &mut |piece| out.put(piece),
        first,
        name,
        remaining,
        reset_ns,
    );
}

/// `"name";r=<remaining>;t=<seconds>`, after `, ` unless it is the `first` list member, piece
/// by piece: `write!` cost a third of a limited request's rate check (issue 22).
fn put_limit_item(
    put: &mut impl FnMut(&[u8]),
    first: bool,
    name: &str,
    remaining: u64,
    reset_ns: u64,
) {
    if !first {
        put(b", ");
    }
    put(b"\"");
    put(name.as_bytes());
    put(b"\";r=");
    put(crate::units::decimal(remaining, &mut [0; 20]));
    put(b";t=");
    put(crate::units::decimal(ceil_secs(reset_ns), &mut [0; 20]));
}

/// Now, in nanoseconds since the Unix epoch (0 before it: only a broken clock says so).
fn nanos(clock: &dyn Clock) -> u64 {
    nanos_at(clock.now())
}

/// `at` in nanoseconds since the epoch (0 before it, saturating far after it).
fn nanos_at(at: std::time::SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests;
