//! The in-memory aggregate between flushes, laid out for the request path. A request builds one
//! key, (day, route, plan, credential, principal), in a reused buffer and makes one lookup: the
//! entry holds that key's source counts and the positions of its usage cell and inventory
//! sighting, which it then updates in place. The usage and inventory maps are consulted only the
//! first time a key is seen in a flush interval (and when a failed flush is put back), so a steady
//! stream of requests hashes once per request and allocates nothing; an allowed access is one
//! more lookup. Every map keeps std's `RandomState` (SipHash with a random per-process key):
//! principals, source addresses and paths are chosen by callers, so the maps must stay
//! HashDoS-resistant; making fewer hash operations is where the time went, not the hasher.
//!
//! Fewer still: each data-plane worker's last group and last access row are remembered
//! ([`Memo`]), and a request that names the same group (or row) again, compared field by field,
//! takes it without building its key or hashing it (a keep-alive caller's requests are the same
//! group and row one after another; issue 22). A memo is a position in this aggregate's own
//! vectors, which only grow: it goes with the aggregate when a flush takes it, and a position
//! that names another group is simply not taken (the full comparison fails).

use std::collections::{BTreeSet, HashMap};

use super::sources::{Cell, SourceRef, SourceRow};
use super::{
    Access, AccessRow, InventoryEntry, Usage, UsageRow, MAX_ACCESS_ROWS_PER_IDENTITY,
    MAX_ACCESS_ROWS_PER_ROUTE,
};
use crate::fast_eq;
use crate::time::{Date, Timestamp};

/// A map keyed by the bytes [`Keys::of`] builds.
type ByKey<V> = HashMap<Box<[u8]>, V>;

/// A reused buffer for composite keys. Each part is length-prefixed, so two different tuples
/// never make the same bytes; a lookup borrows the buffer and allocates nothing.
#[derive(Debug, Default)]
struct Keys(Vec<u8>);

impl Keys {
    fn of(&mut self, day: Option<Date>, parts: &[&str]) -> &[u8] {
        self.0.clear();
        if let Some(d) = day {
            self.0.extend_from_slice(&d.days().to_le_bytes());
        }
        for p in parts {
            let len = u32::try_from(p.len()).unwrap_or(u32::MAX);
            self.0.extend_from_slice(&len.to_le_bytes());
            self.0.extend_from_slice(p.as_bytes());
        }
        &self.0
    }
}

/// Slots of a [`Memo`]: one per data-plane worker (slot 0 for other threads); workers past
/// that share a slot, which is only missed more often, never wrong.
const MEMO_SLOTS: usize = 16;

/// Per data-plane worker, the position of the entry its last request used in one of the
/// aggregate's vectors (`usize::MAX`: none). Only a hint: the entry at that position is compared
/// in full with the request's key before it is used, as a map hit would be, so a position from
/// another caller's request never counts this request anywhere but where its own key is.
#[derive(Debug, Clone)]
struct Memo([usize; MEMO_SLOTS]);

impl Default for Memo {
    fn default() -> Self {
        Memo([usize::MAX; MEMO_SLOTS])
    }
}

impl Memo {
    fn slot() -> usize {
        crate::conn::worker_index() % MEMO_SLOTS
    }

    /// This worker's remembered position (`usize::MAX`, which no vector reaches, when none).
    fn get(&self) -> usize {
        self.0.get(Self::slot()).copied().unwrap_or(usize::MAX)
    }

    /// Remember `i` for this worker.
    fn set(&mut self, i: usize) {
        if let Some(s) = self.0.get_mut(Self::slot()) {
            *s = i;
        }
    }
}

/// Counts and sightings not yet written.
#[derive(Debug, Default)]
pub(crate) struct Pending {
    /// Per (day, route, plan or "", credential, principal-or-identity): what a request adds to,
    /// in the order first seen, and where each is.
    groups: Vec<Group>,
    groups_at: ByKey<usize>,
    /// Each worker's last group.
    group_memo: Memo,
    /// Usage per (day, route, plan, credential), in the order first seen, and where each is.
    usage: Vec<UsageRow>,
    usage_at: ByKey<usize>,
    /// Sightings per (credential, principal-or-identity), and where each is.
    inventory: Vec<InventoryEntry>,
    inventory_at: ByKey<usize>,
    /// Allowed access (policy suggestion).
    access: PendingAccess,
    keys: Keys,
}

/// One (day, route, plan, credential, principal): its sources, and where its usage cell and
/// inventory sighting are.
#[derive(Debug)]
struct Group {
    day: Date,
    route: Box<str>,
    /// `""` for none.
    plan: Box<str>,
    credential: Box<str>,
    key: Box<str>,
    /// Positions in `usage` and `inventory`; the sighting lists `route` already. `None` for a
    /// group that only a put-back source row made, until a request is recorded in it.
    linked: Option<(usize, usize)>,
    sources: Cell,
}

impl Group {
    /// Whether this is the group of (`day`, `route`, `plan`, `credential`, `key`): every part
    /// compared, as the map compares the key they make (with [`fast_eq`]: `plan` is usually
    /// empty).
    fn is(&self, day: Date, route: &str, plan: &str, credential: &str, key: &str) -> bool {
        self.day == day
            && fast_eq::text(&self.key, key)
            && fast_eq::text(&self.credential, credential)
            && fast_eq::text(&self.route, route)
            && fast_eq::text(&self.plan, plan)
    }
}

/// Allowed access rows and what the caps count.
#[derive(Debug, Default)]
struct PendingAccess {
    /// Per (route, identity, method, path template): the row, in the order first seen, and
    /// where each is.
    rows: Vec<AccessRow>,
    rows_at: ByKey<usize>,
    /// Each worker's last row.
    memo: Memo,
    /// route → rows kept.
    per_route: ByKey<usize>,
    /// (route, identity) → rows kept.
    per_identity: ByKey<usize>,
}

/// The position of `k` in `items`, pushing `make()` when it has none.
fn position<V>(
    at: &mut ByKey<usize>,
    items: &mut Vec<V>,
    k: &[u8],
    make: impl FnOnce() -> V,
) -> usize {
    if let Some(&i) = at.get(k) {
        return i;
    }
    let i = items.len();
    items.push(make());
    at.insert(k.into(), i);
    i
}

impl Pending {
    /// Nothing to write.
    pub(crate) fn is_empty(&self) -> bool {
        self.usage.is_empty()
            && self.inventory.is_empty()
            && self.access.rows.is_empty()
            && self.groups.is_empty()
    }

    /// Note one allowed access. `false` when it was dropped: a new row on a route already
    /// holding [`MAX_ACCESS_ROWS_PER_ROUTE`], or of an identity already holding
    /// [`MAX_ACCESS_ROWS_PER_IDENTITY`] on it, in this flush interval (so one caller cannot crowd
    /// the others out of memory either; a caller beyond its share may lose its own counts for
    /// the interval).
    pub(crate) fn record_access(&mut self, a: &Access<'_>) -> bool {
        let at = Timestamp::of(a.at);
        self.add_access(a.route, a.identity, a.method, &a.path, (at, at, 1))
    }

    fn add_access(
        &mut self,
        route: &str,
        identity: &str,
        method: &str,
        path: &str,
        (first, last, count): (Timestamp, Timestamp, u64),
    ) -> bool {
        let a = &mut self.access;
        let remembered = a.memo.get();
        let found = match a.rows.get(remembered) {
            Some(r)
                if fast_eq::text(&r.identity, identity)
                    && fast_eq::text(&r.path, path)
                    && fast_eq::text(&r.method, method)
                    && fast_eq::text(&r.route, route) =>
            {
                Some(remembered)
            }
            _ => {
                let k = self.keys.of(None, &[route, identity, method, path]);
                a.rows_at.get(k).copied()
            }
        };
        if let Some((i, row)) = found.and_then(|i| Some((i, a.rows.get_mut(i)?))) {
            row.first_seen = row.first_seen.min(first);
            row.last_seen = row.last_seen.max(last);
            row.count = row.count.saturating_add(count);
            a.memo.set(i);
            return true;
        }
        let row_key: Box<[u8]> = self.keys.of(None, &[route, identity, method, path]).into();
        let route_key: Box<[u8]> = self.keys.of(None, &[route]).into();
        let identity_key: Box<[u8]> = self.keys.of(None, &[route, identity]).into();
        let rows = a.per_route.get(&route_key).copied().unwrap_or(0);
        let mine = a.per_identity.get(&identity_key).copied().unwrap_or(0);
        if rows >= MAX_ACCESS_ROWS_PER_ROUTE || mine >= MAX_ACCESS_ROWS_PER_IDENTITY {
            return false;
        }
        *a.per_route.entry(route_key).or_default() += 1;
        *a.per_identity.entry(identity_key).or_default() += 1;
        a.rows_at.insert(row_key, a.rows.len());
        a.memo.set(a.rows.len());
        a.rows.push(AccessRow {
            route: route.to_owned(),
            identity: identity.to_owned(),
            method: method.to_owned(),
            path: path.to_owned(),
            first_seen: first,
            last_seen: last,
            count,
        });
        true
    }

    /// The access not yet written, as rows.
    pub(crate) fn access_rows(&self) -> Vec<AccessRow> {
        self.access.rows.clone()
    }

    /// Count one request (its source, if any, as `u.source` has it).
    pub(crate) fn record(&mut self, u: &Usage<'_>) {
        self.record_from(u, u.source.map(SourceRef::Formatted));
    }

    /// Count one request from `source` (`u.source` is not read).
    pub(crate) fn record_from(&mut self, u: &Usage<'_>, source: Option<SourceRef<'_>>) {
        let at = Timestamp::of(u.at);
        let day = at.date();
        let plan = u.plan.unwrap_or("");
        let key = u.principal.unwrap_or(u.identity);
        let remembered = self.group_memo.get();
        let i = match self.groups.get(remembered) {
            Some(g) if g.is(day, u.route, plan, u.credential, key) => remembered,
            _ => {
                let k = self.keys.of(Some(day), &[u.route, plan, u.credential, key]);
                position(&mut self.groups_at, &mut self.groups, k, || Group {
                    day,
                    route: u.route.into(),
                    plan: plan.into(),
                    credential: u.credential.into(),
                    key: key.into(),
                    linked: None,
                    sources: Cell::default(),
                })
            }
        };
        self.group_memo.set(i);
        let linked = self.groups.get_mut(i).and_then(|g| {
            if let Some(s) = source {
                g.sources.add(Some(s), 1, at);
            }
            g.linked
        });
        let (usage, seen) = match linked {
            Some(linked) => linked,
            // First request of this key in the interval: find or make its usage cell and
            // sighting once, and remember where they are.
            None => {
                let linked = self.link(u, day, at);
                if let Some(g) = self.groups.get_mut(i) {
                    g.linked = Some(linked);
                }
                linked
            }
        };
        if let Some(cell) = self.usage.get_mut(usage) {
            cell.kind = u.kind;
            cell.count = cell.count.saturating_add(1);
        }
        if let Some(e) = self.inventory.get_mut(seen) {
            e.count = e.count.saturating_add(1);
            e.first_seen = e.first_seen.min(at);
            if at >= e.last_seen {
                e.last_seen = at;
                if e.identity != u.identity {
                    u.identity.clone_into(&mut e.identity);
                }
                if let Some(cert) = u.cert_not_after.map(Timestamp::of) {
                    e.cert_not_after = Some(cert);
                }
            }
        }
    }

    /// The positions of `u`'s usage cell and inventory sighting, made (with nothing counted
    /// yet) when missing; the sighting lists `u.route` on return.
    fn link(&mut self, u: &Usage<'_>, day: Date, at: Timestamp) -> (usize, usize) {
        let plan = u.plan.unwrap_or("");
        let k = self.keys.of(Some(day), &[u.route, plan, u.credential]);
        let usage = position(&mut self.usage_at, &mut self.usage, k, || UsageRow {
            day,
            route: u.route.to_owned(),
            plan: (!plan.is_empty()).then(|| plan.to_owned()),
            credential: u.credential.to_owned(),
            kind: u.kind,
            count: 0,
        });
        let key = u.principal.unwrap_or(u.identity);
        let k = self.keys.of(None, &[u.credential, key]);
        let seen = position(&mut self.inventory_at, &mut self.inventory, k, || {
            InventoryEntry {
                credential: u.credential.to_owned(),
                kind: u.kind,
                principal: u.principal.map(str::to_owned),
                identity: u.identity.to_owned(),
                routes: BTreeSet::new(),
                first_seen: at,
                last_seen: at,
                count: 0,
                cert_not_after: None,
            }
        });
        if let Some(e) = self.inventory.get_mut(seen) {
            if !e.routes.contains(u.route) {
                e.routes.insert(u.route.to_owned());
            }
        }
        (usage, seen)
    }

    /// Put back what a failed flush took, so nothing is lost.
    pub(crate) fn merge(&mut self, other: Pending) {
        for row in other.source_rows() {
            self.add_source_row(&row);
        }
        for r in other.access.rows {
            let _ = self.add_access(
                &r.route,
                &r.identity,
                &r.method,
                &r.path,
                (r.first_seen, r.last_seen, r.count),
            );
        }
        for row in other.usage {
            let plan = row.plan.as_deref().unwrap_or("");
            let k = self
                .keys
                .of(Some(row.day), &[&row.route, plan, &row.credential]);
            let i = position(&mut self.usage_at, &mut self.usage, k, || UsageRow {
                day: row.day,
                route: row.route.clone(),
                plan: (!plan.is_empty()).then(|| plan.to_owned()),
                credential: row.credential.clone(),
                kind: row.kind,
                count: 0,
            });
            if let Some(cell) = self.usage.get_mut(i) {
                cell.kind = row.kind;
                cell.count = cell.count.saturating_add(row.count);
            }
        }
        for e in other.inventory {
            let key = e.principal.as_deref().unwrap_or(&e.identity);
            let k = self.keys.of(None, &[&e.credential, key]);
            match self
                .inventory_at
                .get(k)
                .and_then(|&i| self.inventory.get_mut(i))
            {
                Some(mine) => merge_entry(mine, e),
                None => {
                    let k: Box<[u8]> = k.into();
                    self.inventory_at.insert(k, self.inventory.len());
                    self.inventory.push(e);
                }
            }
        }
    }

    /// Count one source row (put back after a failed flush).
    fn add_source_row(&mut self, row: &SourceRow) {
        let plan = row.plan.as_deref().unwrap_or("");
        let k = self.keys.of(
            Some(row.day),
            &[&row.route, plan, &row.credential, &row.key],
        );
        let i = position(&mut self.groups_at, &mut self.groups, k, || Group {
            day: row.day,
            route: row.route.as_str().into(),
            plan: plan.into(),
            credential: row.credential.as_str().into(),
            key: row.key.as_str().into(),
            linked: None,
            sources: Cell::default(),
        });
        if let Some(g) = self.groups.get_mut(i) {
            g.sources.add(
                row.source.as_ref().map(SourceRef::Formatted),
                row.count,
                row.last_seen,
            );
        }
    }

    /// The usage as rows.
    pub(crate) fn usage_rows(&self) -> Vec<UsageRow> {
        self.usage.clone()
    }

    /// The inventory sightings.
    pub(crate) fn inventory_entries(&self) -> impl Iterator<Item = InventoryEntry> + '_ {
        self.inventory.iter().cloned()
    }

    /// The sources not yet written, as rows (per day, route, plan, credential and principal:
    /// at most [`super::sources::MAX_SOURCES`] sources each, plus one overflow row).
    pub(crate) fn source_rows(&self) -> Vec<SourceRow> {
        let mut out = Vec::new();
        for g in &self.groups {
            out.extend(
                g.sources
                    .rows()
                    .map(|(source, count, last_seen)| SourceRow {
                        day: g.day,
                        route: g.route.to_string(),
                        plan: (!g.plan.is_empty()).then(|| g.plan.to_string()),
                        credential: g.credential.to_string(),
                        key: g.key.to_string(),
                        source,
                        count,
                        last_seen,
                    }),
            );
        }
        out
    }
}

/// Fold a later-flushed sighting `b` into `a` (same credential and principal). Commutative, so
/// flushes may land in any order.
pub(crate) fn merge_entry(a: &mut InventoryEntry, b: InventoryEntry) {
    a.count = a.count.saturating_add(b.count);
    a.first_seen = a.first_seen.min(b.first_seen);
    if b.last_seen >= a.last_seen {
        a.last_seen = b.last_seen;
        a.identity = b.identity;
        a.kind = b.kind;
        if b.cert_not_after.is_some() {
            a.cert_not_after = b.cert_not_after;
        }
    }
    a.routes.extend(b.routes);
}

#[cfg(test)]
mod tests;
