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

/// A source as it reaches [`Cell::add`]: either as a request has it (the address unformatted,
/// the header's raw bytes), formatted into a [`Source`] only when a new source is kept or the
/// rows are written, or an already formatted [`Source`] (a row put back after a failed flush).
#[derive(Debug, Clone, Copy)]
pub(crate) enum SourceRef<'a> {
    Raw {
        ip: IpAddr,
        user_agent: Option<&'a [u8]>,
    },
    Formatted(&'a Source),
}

/// A kept source's address: the address itself when the source came from a request (or its
/// text is exactly an address's canonical spelling), else the text as given, so a source counts
/// as the same source exactly when its [`Source::ip`] text is the same.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Addr {
    Ip(IpAddr),
    Text(Box<str>),
}

impl Addr {
    fn of(text: &str) -> Addr {
        match text.parse::<IpAddr>() {
            Ok(ip) if ip.to_string() == text => Addr::Ip(ip),
            _ => Addr::Text(text.into()),
        }
    }

    fn text(&self) -> String {
        match self {
            Addr::Ip(ip) => ip.to_string(),
            Addr::Text(t) => t.to_string(),
        }
    }
}

/// One kept source of a [`Cell`] and its requests.
#[derive(Debug)]
struct Kept {
    addr: Addr,
    agent: Box<str>,
    count: u64,
    last: Timestamp,
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

/// The sources of one group not yet written: at most [`MAX_SOURCES`], in the order first seen,
/// found by a scan (cheaper than hashing for so few, and no caller can make it slower), the
/// address compared as an address, never formatted on the request path.
#[derive(Debug, Default)]
pub(crate) struct Cell {
    kept: Vec<Kept>,
    /// Requests from sources beyond the cap.
    overflow: Option<(u64, Timestamp)>,
}

impl Cell {
    /// Count `count` requests from `source` (`None`: from beyond the cap), last at `last`.
    /// Allocates only for a new source, or for an agent not stored as sent.
    pub(crate) fn add(&mut self, source: Option<SourceRef<'_>>, count: u64, last: Timestamp) {
        let kept = source
            .and_then(|s| self.find_or_keep(s, last))
            .and_then(|i| self.kept.get_mut(i));
        let (n, at) = match kept {
            Some(k) => (&mut k.count, &mut k.last),
            None => {
                let o = self.overflow.get_or_insert((0, last));
                (&mut o.0, &mut o.1)
            }
        };
        *n = n.saturating_add(count);
        *at = (*at).max(last);
    }

    /// The position of `source` among the kept sources, kept now if new and there is room.
    fn find_or_keep(&mut self, source: SourceRef<'_>, last: Timestamp) -> Option<usize> {
        let (addr, agent) = match source {
            SourceRef::Raw { ip, user_agent } => {
                let addr = Addr::Ip(ip.to_canonical());
                let raw = user_agent.unwrap_or_default();
                // The agent as sent first: what nearly every request finds, with no allocation
                // (stored agents are clean, and cleaning a clean agent changes nothing). Then
                // cleaned, once: bounded work whatever a caller sends.
                if let Some(i) = self.position(&addr, raw) {
                    return Some(i);
                }
                let cleaned = clean_agent(raw);
                if let Some(i) = self.position(&addr, cleaned.as_bytes()) {
                    return Some(i);
                }
                (addr, cleaned)
            }
            SourceRef::Formatted(f) => {
                let addr = Addr::of(&f.ip);
                if let Some(i) = self.position(&addr, f.user_agent.as_bytes()) {
                    return Some(i);
                }
                (addr, f.user_agent.clone())
            }
        };
        if self.kept.len() >= MAX_SOURCES {
            return None;
        }
        self.kept.push(Kept {
            addr,
            agent: agent.into(),
            count: 0,
            last,
        });
        Some(self.kept.len().saturating_sub(1))
    }

    fn position(&self, addr: &Addr, agent: &[u8]) -> Option<usize> {
        self.kept
            .iter()
            // The agent is empty for a caller that sends none: see `fast_eq`.
            .position(|k| k.addr == *addr && crate::fast_eq::bytes(k.agent.as_bytes(), agent))
    }

    /// The kept sources (formatted now) and the overflow (`None`), with their count and last
    /// request.
    pub(crate) fn rows(&self) -> impl Iterator<Item = (Option<Source>, u64, Timestamp)> + '_ {
        self.kept
            .iter()
            .map(|k| {
                let source = Source {
                    ip: k.addr.text(),
                    user_agent: k.agent.to_string(),
                };
                (Some(source), k.count, k.last)
            })
            .chain(self.overflow.map(|(n, at)| (None, n, at)))
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
