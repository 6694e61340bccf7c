//! Where each principal's requests come from, per day, route and plan: the figures behind
//! shared-credential detection (`distinct_sources`, `shared_suspected`) and the per-plan request
//! counts of the migration screens.
//!
//! A *source* is the client's IP address plus its `User-Agent` (a TLS fingerprint such as JA4
//! would need the raw ClientHello, which rustls does not hand out; the User-Agent is what legacy
//! clients reliably send and what tells two services on one host apart). Both are attacker-chosen
//! text from the point of view of the screens: the agent is cut to [`MAX_AGENT_CHARS`] and
//! stripped of control and invisible characters before it is stored.
//!
//! The structure is a capped set: at most [`MAX_SOURCES`] distinct sources are kept per (day,
//! route, credential, principal); requests from further sources are counted in one overflow row
//! (`source: None`). So request counts stay exact whatever the traffic, memory and storage stay
//! bounded, and a count at the cap reads as "at least".

use std::collections::HashMap;
use std::net::IpAddr;

use serde::Serialize;

use crate::time::{Date, Timestamp};

/// Distinct sources kept per (day, route, credential, principal). Far above what one legitimate
/// principal uses (a shared credential is flagged from `[migration] shared_threshold`, default 3);
/// reached only by a client rotating its User-Agent, whose further sources are then counted, not
/// listed.
pub const MAX_SOURCES: usize = 32;

/// Longest User-Agent kept, in characters.
pub const MAX_AGENT_CHARS: usize = 128;

/// One source: the client's address and its User-Agent (`""` when it sent none).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Source {
    pub ip: String,
    pub user_agent: String,
}

impl Source {
    /// The source of a request from `ip` with `user_agent` (the header's bytes, if any).
    pub fn of(ip: IpAddr, user_agent: Option<&[u8]>) -> Source {
        Source {
            ip: ip.to_canonical().to_string(),
            user_agent: user_agent.map(clean_agent).unwrap_or_default(),
        }
    }
}

/// A User-Agent as stored and shown: lossy UTF-8, control and invisible characters replaced by
/// `?`, at most [`MAX_AGENT_CHARS`] characters.
pub fn clean_agent(raw: &[u8]) -> String {
    String::from_utf8_lossy(raw)
        .chars()
        .take(MAX_AGENT_CHARS)
        .map(|c| {
            if c.is_control() || super::is_invisible(c) {
                '?'
            } else {
                c
            }
        })
        .collect()
}

/// Requests of one principal from one source (or, `source: None`, from sources beyond the cap)
/// on one day, route and plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SourceRow {
    pub day: Date,
    pub route: String,
    /// `None` for a route without a plan.
    pub plan: Option<String>,
    pub credential: String,
    /// The inventory key: the principal, or the identity when there is none.
    pub key: String,
    pub source: Option<Source>,
    pub count: u64,
    pub last_seen: Timestamp,
}

/// The sources of one group not yet written.
#[derive(Debug, Default)]
pub(crate) struct Cell {
    pub(crate) by_source: HashMap<Source, (u64, Timestamp)>,
    /// Requests from sources beyond the cap.
    pub(crate) overflow: Option<(u64, Timestamp)>,
}

impl Cell {
    /// Count `count` requests from `source`, last at `last`. Allocates only for a new source.
    pub(crate) fn add(&mut self, source: Option<&Source>, count: u64, last: Timestamp) {
        let room = self.by_source.len() < MAX_SOURCES;
        let slot = match source {
            Some(s) if self.by_source.contains_key(s) => self.by_source.get_mut(s),
            Some(s) if room => Some(self.by_source.entry(s.clone()).or_insert((0, last))),
            _ => None,
        };
        let slot = match slot {
            Some(v) => v,
            None => self.overflow.get_or_insert((0, last)),
        };
        slot.0 = slot.0.saturating_add(count);
        slot.1 = slot.1.max(last);
    }
}

/// route → plan ("" for none) → credential → key → cell.
type ByRoute = HashMap<String, HashMap<String, HashMap<String, HashMap<String, Cell>>>>;

/// Pending sources, by day and group. Looked up by borrowed `&str`, so a steady stream of
/// requests allocates only for the source itself ([`Source::of`]).
#[derive(Debug, Default)]
pub(crate) struct PendingSources {
    cells: HashMap<Date, ByRoute>,
}

/// The value for `k`, inserting a default (allocating the key) only when missing.
fn slot<'m, V: Default>(m: &'m mut HashMap<String, V>, k: &str) -> Option<&'m mut V> {
    if !m.contains_key(k) {
        m.insert(k.to_owned(), V::default());
    }
    m.get_mut(k)
}

impl PendingSources {
    pub(crate) fn is_empty(&self) -> bool {
        self.cells.is_empty()
    }

    /// Count one request of `(route, plan or "", credential, key)` from `source` at `at`.
    pub(crate) fn record(
        &mut self,
        group: (&str, &str, &str, &str),
        source: &Source,
        at: Timestamp,
    ) {
        self.add_to(group, at.date(), Some(source), 1, at);
    }

    fn add_to(
        &mut self,
        (route, plan, credential, key): (&str, &str, &str, &str),
        day: Date,
        source: Option<&Source>,
        count: u64,
        last: Timestamp,
    ) {
        let cell = slot(self.cells.entry(day).or_default(), route)
            .and_then(|m| slot(m, plan))
            .and_then(|m| slot(m, credential))
            .and_then(|m| slot(m, key));
        if let Some(cell) = cell {
            cell.add(source, count, last);
        }
    }

    /// Count one row (put back after a failed flush).
    pub(crate) fn add(&mut self, row: &SourceRow) {
        self.add_to(
            (
                &row.route,
                row.plan.as_deref().unwrap_or_default(),
                &row.credential,
                &row.key,
            ),
            row.day,
            row.source.as_ref(),
            row.count,
            row.last_seen,
        );
    }

    /// Everything pending, as rows.
    pub(crate) fn rows(&self) -> Vec<SourceRow> {
        let mut out = Vec::new();
        for (day, by_route) in &self.cells {
            for (route, by_plan) in by_route {
                for (plan, by_cred) in by_plan {
                    for (credential, by_key) in by_cred {
                        for (key, cell) in by_key {
                            let row =
                                |source: Option<Source>, (count, last_seen): (u64, Timestamp)| {
                                    SourceRow {
                                        day: *day,
                                        route: route.clone(),
                                        plan: (!plan.is_empty()).then(|| plan.clone()),
                                        credential: credential.clone(),
                                        key: key.clone(),
                                        source,
                                        count,
                                        last_seen,
                                    }
                                };
                            out.extend(
                                cell.by_source.iter().map(|(s, v)| row(Some(s.clone()), *v)),
                            );
                            out.extend(cell.overflow.map(|v| row(None, v)));
                        }
                    }
                }
            }
        }
        out
    }
}

/// Fold rows of the same group and source together (rows read from several places: a shared
/// store's replicas, the file and what is not flushed yet).
pub fn merge_rows(rows: impl IntoIterator<Item = SourceRow>) -> Vec<SourceRow> {
    type Key = (Date, String, Option<String>, String, String, Option<Source>);
    let mut by: std::collections::BTreeMap<Key, SourceRow> = std::collections::BTreeMap::new();
    for r in rows {
        let k = (
            r.day,
            r.route.clone(),
            r.plan.clone(),
            r.credential.clone(),
            r.key.clone(),
            r.source.clone(),
        );
        match by.get_mut(&k) {
            Some(m) => {
                m.count = m.count.saturating_add(r.count);
                m.last_seen = m.last_seen.max(r.last_seen);
            }
            None => {
                by.insert(k, r);
            }
        }
    }
    by.into_values().collect()
}
