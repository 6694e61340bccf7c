//! Cluster-wide rate limits (`[routes.limits] scope = "cluster"`): one budget shared by every
//! replica, with no Redis round trip on the request path.
//!
//! The shared bucket lives in Redis (`state::redis::lease`). Each replica holds, per key, a
//! *lease*: tokens it took from the shared bucket ahead of need. A request spends one token of
//! the local lease (a mutex and a decrement). When the lease runs below half of the next lease's
//! size, the key is queued and a background task leases more, for every queued key in one
//! atomic script call, at most once per [`TICK`]. So Redis sees at most `1 / TICK` calls per
//! replica and route, whatever the request rate.
//!
//! **Lease size** follows the replica's own recent demand: what it saw in the last
//! [`WINDOW_NS`] scaled to [`HORIZON_NS`], at least 1 and at most `burst / (2 × expected
//! replicas)`. A replica thus never hoards more than a small share of the burst, and tokens a
//! replica leased but did not use (at most one lease per replica) are the only error: they are
//! never *extra* tokens (Redis handed each out once), so the cluster never admits more than
//! `burst + rate × t`, and under-admits by at most the unused leases.
//!
//! **Borrowing:** the first requests for a key, before any lease arrived, and a request that
//! finds its lease spent while the shared bucket still had tokens at the last lease (the next
//! lease is on its way), are decided by the local fallback limiter (below) instead of waiting or
//! refusing; the fallback limiter holds borrowing to this replica's share (`rate ÷ expected
//! replicas`). What it admits that way is a debt, repaid from the next leases (the lease asks
//! for it on top), so it shifts admissions by a few milliseconds but adds nothing over time,
//! except when the shared bucket runs dry before the debt is repaid: then the cluster
//! over-admits by at most the unrepaid debt (bounded by the fallback's burst per replica), once.
//! Under sustained overload the bucket stays empty, nothing is borrowed, and a spent lease is a
//! refusal. A Redis that hangs thus costs no refusals during the [`CALL_TIMEOUT`] it takes to
//! notice.
//!
//! **Redis unreachable** (a lease call fails or takes longer than [`CALL_TIMEOUT`]): the route
//! switches to its *fallback*, a local limiter at `rate ÷ expected_replicas` (burst likewise),
//! shown as `portcullis_rate_limit_fallback{route} 1` and in `/readyz` detail. Queued keys are
//! retried every tick; the first lease that succeeds switches the route back to the shared budget.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;

use futures_util::future::BoxFuture;

use super::gcra::Quota;

/// Shortest time between two lease calls of one route (per replica).
pub const TICK: Duration = Duration::from_millis(20);
/// A lease call slower than this counts as Redis unreachable (the route falls back).
pub const CALL_TIMEOUT: Duration = Duration::from_millis(250);
/// Demand is measured over windows of this length.
const WINDOW_NS: u64 = 100_000_000;
/// A lease covers this much of the replica's recent demand.
const HORIZON_NS: u64 = 100_000_000;
/// A key unused this long is forgotten.
const IDLE_NS: u64 = 10_000_000_000;
/// Keys tracked by one route's leases at most; beyond that, new keys are decided by the local
/// fallback limiter (bounded memory, still limited).
const MAX_SLOTS: usize = 100_000;

/// One bucket's share of a lease call (see `state::redis::lease`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ask {
    /// Unique per route, policy and key.
    pub bucket: String,
    pub interval_us: u64,
    pub burst: u64,
    pub want: u64,
}

/// What the shared store granted for one [`Ask`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Grant {
    pub granted: u64,
    pub remaining: u64,
    pub wait_us: u64,
}

/// Leases from the shared store, all asks in one atomic call. Errors mean "unreachable".
pub type LeaseFn =
    Arc<dyn Fn(Vec<Ask>) -> BoxFuture<'static, Result<Vec<Grant>, String>> + Send + Sync>;

/// Leases from Redis (the state backend's buckets) as a [`LeaseFn`].
pub fn lease_fn(leases: crate::state::redis::lease::RedisLeases) -> LeaseFn {
    use crate::state::redis::lease::LeaseAsk;
    Arc::new(move |asks: Vec<Ask>| {
        let leases = leases.clone();
        Box::pin(async move {
            let asks: Vec<LeaseAsk> = asks
                .into_iter()
                .map(|a| LeaseAsk {
                    bucket: a.bucket,
                    interval_us: a.interval_us,
                    burst: a.burst,
                    want: a.want,
                })
                .collect();
            let grants = leases.lease(&asks).await?;
            Ok(grants
                .into_iter()
                .map(|g| Grant {
                    granted: g.granted,
                    remaining: g.remaining,
                    wait_us: g.wait_us,
                })
                .collect())
        })
    })
}

/// The shared store and the deployment's size, for every cluster-scoped route.
#[derive(Clone)]
pub struct ClusterSettings {
    /// How to lease.
    pub lease: LeaseFn,
    /// `[routes.limits] expected_replicas`: the fallback is `rate ÷ this`.
    pub expected_replicas: u32,
    /// Set to 1 while the route runs on its local fallback.
    pub fallback_gauge: Option<Arc<crate::metrics::Gauge>>,
}

impl std::fmt::Debug for ClusterSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterSettings")
            .field("expected_replicas", &self.expected_replicas)
            .finish_non_exhaustive()
    }
}

/// A request's fate under the shared budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Taken {
    /// A leased token was spent; `remaining` is this replica's lease plus what the shared
    /// bucket held at the last lease.
    Allowed { remaining: u64, reset_ns: u64 },
    /// No leased token left and the shared bucket was empty at the last lease.
    Refused { retry_ns: u64, reset_ns: u64 },
    /// Redis unreachable (or the key table is full): use the local fallback.
    Fallback,
    /// The lease is spent (or not here yet) but the shared bucket had tokens: use the local
    /// fallback, and report back with [`Leases::unborrow`] if it refused.
    Borrowed,
}

#[derive(Debug)]
struct Slot {
    quota: Quota,
    /// Leased tokens not yet spent.
    balance: u64,
    /// The shared bucket's tokens after the last lease.
    shared: u64,
    /// Nanoseconds (at the last lease) until the shared bucket had a token again.
    wait_ns: u64,
    /// A lease arrived at least once.
    leased: bool,
    /// Requests decided by the local fallback while the shared budget had tokens (a key's first
    /// requests, or a lease running out while the next is on its way): charged to the next
    /// leases, so borrowing never adds to what the cluster admits in the long run.
    debt: u64,
    /// Queued for the background task.
    queued: bool,
    /// Requests (allowed or not) in the current demand window, and in the previous one.
    seen: u64,
    seen_before: u64,
    window_start: u64,
    /// Last request (for sweeping idle keys).
    last: u64,
}

impl Slot {
    fn new(quota: Quota, now: u64) -> Slot {
        Slot {
            quota,
            balance: 0,
            shared: 0,
            wait_ns: 0,
            leased: false,
            debt: 0,
            queued: false,
            seen: 0,
            seen_before: 0,
            window_start: now,
            last: now,
        }
    }

    fn note(&mut self, now: u64) {
        let elapsed = now.saturating_sub(self.window_start);
        if elapsed >= WINDOW_NS {
            self.seen_before = if elapsed >= 2 * WINDOW_NS {
                0
            } else {
                self.seen
            };
            self.seen = 0;
            self.window_start = now;
        }
        self.seen += 1;
        self.last = now;
    }

    /// Tokens to lease next: recent demand over [`HORIZON_NS`], within `1..=cap`.
    fn want(&self, cap: u64) -> u64 {
        let recent = self.seen.max(self.seen_before);
        (recent.saturating_mul(HORIZON_NS) / WINDOW_NS).clamp(1, cap.max(1))
    }
}

/// One route's leases.
pub(crate) struct Leases {
    route: String,
    settings: ClusterSettings,
    fallback: AtomicBool,
    slots: Mutex<HashMap<String, Slot>>,
    queue: Mutex<Vec<String>>,
    wake: tokio::sync::Notify,
}

impl std::fmt::Debug for Leases {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Leases")
            .field("route", &self.route)
            .field("fallback", &self.fallback.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl Leases {
    /// Start a route's leases (and its background task, which ends when the route is dropped,
    /// e.g. by a reload). Needs a Tokio runtime.
    pub(crate) fn start(route: &str, settings: ClusterSettings) -> Result<Arc<Leases>, String> {
        let handle = tokio::runtime::Handle::try_current()
            .map_err(|_| "scope = \"cluster\" needs the gateway's runtime".to_string())?;
        let leases = Arc::new(Leases {
            route: route.to_string(),
            settings,
            fallback: AtomicBool::new(false),
            slots: Mutex::new(HashMap::new()),
            queue: Mutex::new(Vec::new()),
            wake: tokio::sync::Notify::new(),
        });
        if let Some(g) = &leases.settings.fallback_gauge {
            g.set(0.0);
        }
        handle.spawn(run(Arc::downgrade(&leases)));
        Ok(leases)
    }

    /// Whether the route runs on its local fallback now.
    pub(crate) fn in_fallback(&self) -> bool {
        self.fallback.load(Ordering::Acquire)
    }

    /// Spend one token of `bucket`'s lease (never waits on Redis).
    pub(crate) fn take(&self, bucket: &str, quota: Quota, now: u64) -> Taken {
        let mut slots = self.slots.lock().unwrap_or_else(PoisonError::into_inner);
        if !slots.contains_key(bucket) {
            if slots.len() >= MAX_SLOTS {
                return Taken::Fallback;
            }
            // Allocates the key once per key, not per request.
            slots.insert(bucket.to_string(), Slot::new(quota, now));
        }
        let Some(slot) = slots.get_mut(bucket) else {
            return Taken::Fallback;
        };
        slot.note(now);
        let cap = self.lease_cap(&quota);
        let taken = if self.in_fallback() {
            Taken::Fallback
        } else if !slot.leased || (slot.balance == 0 && slot.shared > 0) {
            // The shared bucket is not empty, only this replica's lease (or it has none yet):
            // borrow from the local fallback (which holds borrowing to this replica's share of
            // the rate) rather than refuse, and repay from the next leases.
            slot.debt = slot.debt.saturating_add(1).min(quota.burst());
            Taken::Borrowed
        } else if slot.balance > 0 {
            slot.balance -= 1;
            let remaining = slot.balance.saturating_add(slot.shared).min(quota.burst());
            Taken::Allowed {
                remaining,
                reset_ns: quota.interval().saturating_mul(quota.burst() - remaining),
            }
        } else {
            Taken::Refused {
                retry_ns: slot.wait_ns.max(quota.interval()),
                reset_ns: quota.interval().saturating_mul(quota.burst()),
            }
        };
        let low = slot.want(cap) / 2;
        // In fallback (or before the first lease) every request may probe Redis again: one
        // call per tick at most, whatever the traffic.
        let enqueue = !slot.queued
            && (slot.balance <= low || matches!(taken, Taken::Fallback | Taken::Borrowed));
        if enqueue {
            slot.queued = true;
        }
        drop(slots);
        if enqueue {
            self.queue
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(bucket.to_string());
            self.wake.notify_one();
        }
        taken
    }

    /// Give back a token spent by a request that was then refused by another limit.
    pub(crate) fn refund(&self, bucket: &str) {
        let mut slots = self.slots.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(s) = slots.get_mut(bucket) {
            s.balance = s.balance.saturating_add(1);
        }
    }

    /// A borrowed request was refused by the fallback after all: it owes nothing.
    pub(crate) fn unborrow(&self, bucket: &str) {
        let mut slots = self.slots.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(s) = slots.get_mut(bucket) {
            s.debt = s.debt.saturating_sub(1);
        }
    }

    /// Drop keys idle for a while (their unspent lease is lost, which only under-admits).
    pub(crate) fn sweep(&self, now: u64) {
        self.slots
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|_, s| s.queued || now.saturating_sub(s.last) < IDLE_NS);
    }

    /// No replica takes more than half its share of the burst at once.
    fn lease_cap(&self, quota: &Quota) -> u64 {
        quota.burst() / (2 * u64::from(self.settings.expected_replicas.max(1)))
    }

    /// The queued keys' asks (and the keys, in the same order).
    fn asks(&self) -> (Vec<String>, Vec<Ask>) {
        let keys: Vec<String> =
            std::mem::take(&mut *self.queue.lock().unwrap_or_else(PoisonError::into_inner));
        let slots = self.slots.lock().unwrap_or_else(PoisonError::into_inner);
        let mut kept = Vec::with_capacity(keys.len());
        let mut asks = Vec::with_capacity(keys.len());
        for k in keys {
            let Some(s) = slots.get(&k) else { continue };
            asks.push(Ask {
                bucket: format!("route:{}:{k}", self.route),
                interval_us: (s.quota.interval() / 1000).max(1),
                burst: s.quota.burst(),
                want: s.want(self.lease_cap(&s.quota)).saturating_add(s.debt),
            });
            kept.push(k);
        }
        (kept, asks)
    }

    fn apply(&self, keys: &[String], grants: Option<&[Grant]>) {
        let mut slots = self.slots.lock().unwrap_or_else(PoisonError::into_inner);
        for (i, k) in keys.iter().enumerate() {
            let Some(s) = slots.get_mut(k) else { continue };
            s.queued = false;
            if let Some(g) = grants.and_then(|g| g.get(i)) {
                let repaid = g.granted.min(s.debt);
                s.debt -= repaid;
                s.balance = s.balance.saturating_add(g.granted - repaid);
                s.shared = g.remaining;
                s.wait_ns = g.wait_us.saturating_mul(1000);
                s.leased = true;
            }
        }
    }

    fn set_fallback(&self, on: bool, why: &str) {
        if self.fallback.swap(on, Ordering::AcqRel) != on {
            if on {
                tracing::warn!(route = %self.route, error = %why,
                    "cluster rate limit: redis unreachable, using the local fallback limit");
            } else {
                tracing::info!(route = %self.route, "cluster rate limit: shared budget resumed");
            }
        }
        if let Some(g) = &self.settings.fallback_gauge {
            g.set(f64::from(u8::from(on)));
        }
    }
}

/// The background task: lease for queued keys, at most once per [`TICK`].
async fn run(me: Weak<Leases>) {
    loop {
        let wake = {
            let Some(l) = me.upgrade() else { return };
            // Wait for a queued key, but check now and then that the route still exists.
            let notified = async move { l.wake.notified().await };
            tokio::time::timeout(Duration::from_secs(1), notified)
        };
        let _ = wake.await;
        let Some(l) = me.upgrade() else { return };
        let started = tokio::time::Instant::now();
        let (keys, asks) = l.asks();
        if !asks.is_empty() {
            let call = (l.settings.lease)(asks);
            match tokio::time::timeout(CALL_TIMEOUT, call).await {
                Ok(Ok(grants)) if grants.len() == keys.len() => {
                    l.apply(&keys, Some(&grants));
                    l.set_fallback(false, "");
                }
                Ok(Ok(_)) => {
                    l.apply(&keys, None);
                    l.set_fallback(true, "wrong number of grants");
                }
                Ok(Err(e)) => {
                    l.apply(&keys, None);
                    l.set_fallback(true, &e);
                }
                Err(_) => {
                    l.apply(&keys, None);
                    l.set_fallback(true, "lease call timed out");
                }
            }
        }
        drop(l);
        tokio::time::sleep_until(started + TICK).await;
    }
}

/// A cluster-scoped route's limiters: the leases, and the local fallback used while Redis is
/// unreachable (and for a key's first request, before its first lease).
#[derive(Debug)]
pub(crate) struct Cluster {
    leases: Arc<Leases>,
    identity: Option<(Quota, Quota, super::gcra::KeyedGcra<Box<str>>)>,
    total: Option<(Quota, Quota, Mutex<u64>)>,
    /// `RateLimit-Policy` while the fallback decides: its quotas are this replica's share.
    fallback_policy: Option<http::HeaderValue>,
}

/// `quota` divided among `n` replicas: the same period, `1/n` of the rate and of the burst.
fn share(rate: super::Rate, burst: u64, n: u32) -> Option<Quota> {
    let n = n.max(1);
    let period = rate.period().checked_mul(n)?;
    let r = super::Rate::new(rate.count(), period)?;
    let b = u32::try_from((burst / u64::from(n)).max(1)).unwrap_or(u32::MAX);
    Some(Quota::new(r, b))
}

impl Cluster {
    pub(crate) fn new(
        route: &str,
        c: &ClusterSettings,
        settings: &super::RouteLimitSettings,
        identity: Option<&Quota>,
        total: Option<&Quota>,
        max_keys: usize,
    ) -> Result<Cluster, String> {
        if c.expected_replicas == 0 {
            return Err("expected_replicas: must be at least 1".into());
        }
        let n = c.expected_replicas;
        let too_fine = || "rate: too fine to divide among expected_replicas".to_string();
        let identity = match (identity, settings.rate) {
            (Some(q), Some(r)) => {
                let f = share(r, q.burst(), n).ok_or_else(too_fine)?;
                Some((
                    *q,
                    f,
                    super::gcra::KeyedGcra::new(f, max_keys, super::gcra::Overflow::Shared),
                ))
            }
            _ => None,
        };
        let total = match (total, settings.total_rate) {
            (Some(q), Some(r)) => Some((
                *q,
                share(r, q.burst(), n).ok_or_else(too_fine)?,
                Mutex::new(0),
            )),
            _ => None,
        };
        let mut items = Vec::new();
        if let Some((_, f, _)) = &identity {
            items.push(super::policy_item(super::IDENTITY_POLICY, f));
        }
        if let Some((_, f, _)) = &total {
            items.push(super::policy_item(super::ROUTE_POLICY, f));
        }
        let fallback_policy = if items.is_empty() {
            None
        } else {
            Some(http::HeaderValue::from_str(&items.join(", ")).map_err(|e| e.to_string())?)
        };
        Ok(Cluster {
            leases: Leases::start(route, c.clone())?,
            identity,
            total,
            fallback_policy,
        })
    }

    pub(crate) fn in_fallback(&self) -> bool {
        self.leases.in_fallback()
    }

    pub(crate) fn sweep(&self, now: u64) {
        self.leases.sweep(now);
        if let Some((_, _, t)) = &self.identity {
            t.sweep(now);
        }
    }
}

/// How one policy decided: by a leased token, by the local fallback, or borrowed from it.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Via {
    Lease,
    Fallback,
    Borrowed,
}

impl super::RouteLimits {
    /// [`super::RouteLimits::check_rate`] for a `scope = "cluster"` route.
    pub(super) fn check_cluster(
        &self,
        c: &Cluster,
        identity: &str,
        policy: &http::HeaderValue,
        now: u64,
    ) -> Result<super::RateHeaders, crate::problem::Refusal> {
        use super::gcra::Decision;
        let (mut mine, mut route) = (None, None);
        let mut fell_back = c.in_fallback();
        let id_bucket = format!("id:{identity}");
        let mut id_via = None;
        let decide = |taken: Taken, fallback: &mut dyn FnMut() -> Decision| match taken {
            Taken::Allowed {
                remaining,
                reset_ns,
            } => (
                Decision::Allowed {
                    remaining,
                    reset_ns,
                },
                Via::Lease,
            ),
            Taken::Refused { retry_ns, reset_ns } => {
                (Decision::Refused { retry_ns, reset_ns }, Via::Lease)
            }
            Taken::Fallback => (fallback(), Via::Fallback),
            Taken::Borrowed => (fallback(), Via::Borrowed),
        };
        if let Some((q, _, table)) = &c.identity {
            let taken = c.leases.take(&id_bucket, *q, now);
            let (d, via) = decide(taken, &mut || table.check(identity, now));
            fell_back |= via != Via::Lease;
            let shown = self.shown_policy(c, fell_back, policy);
            match d {
                Decision::Allowed {
                    remaining,
                    reset_ns,
                } => mine = Some((remaining, reset_ns)),
                Decision::Refused { retry_ns, reset_ns } => {
                    if via == Via::Borrowed {
                        c.leases.unborrow(&id_bucket);
                    }
                    return Err(self.refusal(super::IDENTITY_POLICY, retry_ns, reset_ns, shown));
                }
            }
            id_via = Some(via);
        }
        if let Some((q, f, tat)) = &c.total {
            let taken = c.leases.take("total", *q, now);
            let (d, via) = decide(taken, &mut || {
                let mut tat = tat.lock().unwrap_or_else(PoisonError::into_inner);
                f.check(&mut tat, now)
            });
            fell_back |= via != Via::Lease;
            let shown = self.shown_policy(c, fell_back, policy);
            match d {
                Decision::Allowed {
                    remaining,
                    reset_ns,
                } => route = Some((remaining, reset_ns)),
                Decision::Refused { retry_ns, reset_ns } => {
                    if via == Via::Borrowed {
                        c.leases.unborrow("total");
                    }
                    // The request does not happen: give the caller's own token back.
                    match (id_via, &c.identity) {
                        (Some(Via::Lease), _) => c.leases.refund(&id_bucket),
                        (Some(via), Some((_, _, table))) => {
                            table.refund(identity);
                            if via == Via::Borrowed {
                                c.leases.unborrow(&id_bucket);
                            }
                        }
                        _ => {}
                    }
                    return Err(self.refusal(super::ROUTE_POLICY, retry_ns, reset_ns, shown));
                }
            }
        }
        Ok(super::RateHeaders {
            policy: Some(self.shown_policy(c, fell_back, policy).clone()),
            identity: mine,
            route,
        })
    }

    /// The policy the decision followed: the shared one, or this replica's fallback share.
    fn shown_policy<'a>(
        &self,
        c: &'a Cluster,
        fell_back: bool,
        policy: &'a http::HeaderValue,
    ) -> &'a http::HeaderValue {
        match (&c.fallback_policy, fell_back) {
            (Some(f), true) => f,
            _ => policy,
        }
    }
}

#[cfg(test)]
mod tests;
