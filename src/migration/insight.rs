//! Per-principal figures from the recorded sources ([`crate::state::sources`]): how many requests
//! a legacy principal made on one plan's routes over its window, and from how many distinct
//! sources (client IP + User-Agent) — the question that decides whether a static credential can
//! be retired as one caller or must first be split.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::identity::Kind;
use crate::state::{Source, SourceRow};
use crate::time::{Date, Timestamp};

/// One source of a principal, as the screens list it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SourceSeen {
    pub ip: String,
    /// `""` when the client sent none.
    pub user_agent: String,
    pub requests: u64,
    pub last_seen: Timestamp,
}

/// What one principal did within a set of source rows.
#[derive(Debug, Clone, Default)]
pub struct Figures {
    pub requests: u64,
    pub last_seen: Option<Timestamp>,
    pub sources: BTreeMap<Source, (u64, Timestamp)>,
    /// Requests from sources beyond the per-day cap (their number is unknown: at least one).
    pub overflow: u64,
}

impl Figures {
    /// Distinct sources seen; with `overflow`, at least this many plus one.
    pub fn distinct_sources(&self) -> u64 {
        let listed = u64::try_from(self.sources.len()).unwrap_or(u64::MAX);
        listed.saturating_add(u64::from(self.overflow > 0))
    }

    /// Whether more sources were seen than could be kept (then `distinct_sources` is a floor).
    pub fn capped(&self) -> bool {
        self.overflow > 0
    }

    /// The sources, busiest first.
    pub fn listed(&self) -> Vec<SourceSeen> {
        let mut v: Vec<SourceSeen> = self
            .sources
            .iter()
            .map(|(s, (n, last))| SourceSeen {
                ip: s.ip.clone(),
                user_agent: s.user_agent.clone(),
                requests: *n,
                last_seen: *last,
            })
            .collect();
        v.sort_by(|a, b| {
            b.requests
                .cmp(&a.requests)
                .then_with(|| (&a.ip, &a.user_agent).cmp(&(&b.ip, &b.user_agent)))
        });
        v
    }
}

/// (credential, key) → figures, over the rows from `start` on that `keep` selects.
pub fn figures(
    rows: &[SourceRow],
    start: Date,
    keep: impl Fn(&SourceRow) -> bool,
) -> BTreeMap<(&str, &str), Figures> {
    let mut out: BTreeMap<(&str, &str), Figures> = BTreeMap::new();
    for r in rows.iter().filter(|r| r.day >= start && keep(r)) {
        let f = out.entry((&r.credential, &r.key)).or_default();
        f.requests = f.requests.saturating_add(r.count);
        f.last_seen = f.last_seen.max(Some(r.last_seen));
        match &r.source {
            Some(s) => {
                let e = f.sources.entry(s.clone()).or_insert((0, r.last_seen));
                e.0 = e.0.saturating_add(r.count);
                e.1 = e.1.max(r.last_seen);
            }
            None => f.overflow = f.overflow.saturating_add(r.count),
        }
    }
    out
}

/// Whether a principal seen from `distinct` sources is suspected of being shared by several
/// workloads. Only static credentials a workload holds are: a workload identity is shared by a
/// workload's replicas by design, and a webhook's sender is one provider with many addresses.
pub fn shared_suspected(kind: Kind, distinct: u64, threshold: u32) -> bool {
    kind.is_legacy() && kind != Kind::Webhook && distinct >= u64::from(threshold)
}
