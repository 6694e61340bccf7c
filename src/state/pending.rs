//! The in-memory aggregate between flushes. `record` looks entries up by borrowed `&str` and
//! allocates only the first time a (day, route, plan, credential) or principal is seen in a flush
//! interval, so a steady stream of requests costs a few hash lookups each.

use std::collections::{BTreeSet, HashMap};
use std::hash::Hash;

use super::{
    Access, AccessRow, InventoryEntry, Usage, UsageRow, MAX_ACCESS_ROWS_PER_IDENTITY,
    MAX_ACCESS_ROWS_PER_ROUTE,
};
use crate::identity::Kind;
use crate::time::{Date, Timestamp};

type ByCredential = HashMap<String, (Kind, u64)>;
type ByPlan = HashMap<String, ByCredential>;
type ByRoute = HashMap<String, ByPlan>;

/// Counts and sightings not yet written.
#[derive(Debug, Default)]
pub(crate) struct Pending {
    /// day → route → plan ("" for none) → credential → (kind, count).
    usage: HashMap<Date, ByRoute>,
    /// credential → principal-or-identity → sighting.
    inventory: HashMap<String, HashMap<String, InventoryEntry>>,
    /// route → allowed access (policy suggestion).
    access: HashMap<String, RouteAccess>,
    /// Where each principal's requests come from (capped per day, route and principal).
    pub(crate) sources: super::sources::PendingSources,
}

/// identity → method → path template → sighting, with the number of leaves (the cap counts them).
#[derive(Debug, Default)]
struct RouteAccess {
    rows: usize,
    by_identity: HashMap<String, HashMap<String, HashMap<String, Seen>>>,
}

/// When and how often one access row was seen.
#[derive(Debug, Clone, Copy)]
struct Seen {
    first: Timestamp,
    last: Timestamp,
    count: u64,
}

impl Seen {
    fn add(&mut self, first: Timestamp, last: Timestamp, count: u64) {
        self.first = self.first.min(first);
        self.last = self.last.max(last);
        self.count = self.count.saturating_add(count);
    }
}

/// The value for `k`, inserting a default (allocating the key) only when missing.
fn slot<'m, V: Default>(m: &'m mut HashMap<String, V>, k: &str) -> Option<&'m mut V> {
    slot_with(m, k, V::default)
}

fn slot_with<'m, V>(
    m: &'m mut HashMap<String, V>,
    k: &str,
    make: impl FnOnce() -> V,
) -> Option<&'m mut V> {
    if !m.contains_key(k) {
        m.insert(k.to_owned(), make());
    }
    m.get_mut(k)
}

fn entry<K: Eq + Hash, V: Default>(m: &mut HashMap<K, V>, k: K) -> &mut V {
    m.entry(k).or_default()
}

impl Pending {
    /// Nothing to write.
    pub(crate) fn is_empty(&self) -> bool {
        self.usage.is_empty()
            && self.inventory.is_empty()
            && self.access.is_empty()
            && self.sources.is_empty()
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
        let Some(r) = slot(&mut self.access, route) else {
            return true;
        };
        if let Some(seen) = r
            .by_identity
            .get_mut(identity)
            .and_then(|m| m.get_mut(method))
            .and_then(|m| m.get_mut(path))
        {
            seen.add(first, last, count);
            return true;
        }
        let mine: usize = r
            .by_identity
            .get(identity)
            .map_or(0, |m| m.values().map(HashMap::len).sum());
        if r.rows >= MAX_ACCESS_ROWS_PER_ROUTE || mine >= MAX_ACCESS_ROWS_PER_IDENTITY {
            return false;
        }
        r.rows += 1;
        if let Some(by_path) = slot(&mut r.by_identity, identity).and_then(|m| slot(m, method)) {
            by_path.insert(path.to_owned(), Seen { first, last, count });
        }
        true
    }

    /// The access not yet written, as rows.
    pub(crate) fn access_rows(&self) -> Vec<AccessRow> {
        let mut rows = Vec::new();
        for (route, r) in &self.access {
            for (identity, by_method) in &r.by_identity {
                for (method, by_path) in by_method {
                    for (path, seen) in by_path {
                        rows.push(AccessRow {
                            route: route.clone(),
                            identity: identity.clone(),
                            method: method.clone(),
                            path: path.clone(),
                            first_seen: seen.first,
                            last_seen: seen.last,
                            count: seen.count,
                        });
                    }
                }
            }
        }
        rows
    }

    /// Count one request.
    pub(crate) fn record(&mut self, u: &Usage<'_>) {
        let at = Timestamp::of(u.at);
        let by_route = entry(&mut self.usage, at.date());
        if let Some(cell) = slot(by_route, u.route)
            .and_then(|p| slot(p, u.plan.unwrap_or("")))
            .and_then(|c| slot_with(c, u.credential, || (u.kind, 0)))
        {
            cell.0 = u.kind;
            cell.1 = cell.1.saturating_add(1);
        }

        let key = u.principal.unwrap_or(u.identity);
        if let Some(source) = u.source {
            let group = (u.route, u.plan.unwrap_or(""), u.credential, key);
            self.sources.record(group, source, at);
        }
        let Some(by_key) = slot(&mut self.inventory, u.credential) else {
            return;
        };
        let cert = u.cert_not_after.map(Timestamp::of);
        match by_key.get_mut(key) {
            Some(e) => {
                e.count = e.count.saturating_add(1);
                e.first_seen = e.first_seen.min(at);
                if at >= e.last_seen {
                    e.last_seen = at;
                    if e.identity != u.identity {
                        u.identity.clone_into(&mut e.identity);
                    }
                    if cert.is_some() {
                        e.cert_not_after = cert;
                    }
                }
                if !e.routes.contains(u.route) {
                    e.routes.insert(u.route.to_owned());
                }
            }
            None => {
                by_key.insert(
                    key.to_owned(),
                    InventoryEntry {
                        credential: u.credential.to_owned(),
                        kind: u.kind,
                        principal: u.principal.map(str::to_owned),
                        identity: u.identity.to_owned(),
                        routes: BTreeSet::from([u.route.to_owned()]),
                        first_seen: at,
                        last_seen: at,
                        count: 1,
                        cert_not_after: cert,
                    },
                );
            }
        }
    }

    /// Put back what a failed flush took, so nothing is lost.
    pub(crate) fn merge(&mut self, other: Pending) {
        self.merge_access(&other);
        for row in other.sources.rows() {
            self.sources.add(&row);
        }
        for row in other.usage_rows() {
            let by_route = entry(&mut self.usage, row.day);
            if let Some(cell) = slot(by_route, &row.route)
                .and_then(|p| slot(p, row.plan.as_deref().unwrap_or("")))
                .and_then(|c| slot_with(c, &row.credential, || (row.kind, 0)))
            {
                cell.0 = row.kind;
                cell.1 = cell.1.saturating_add(row.count);
            }
        }
        for e in other.inventory_entries() {
            let key = e.principal.clone().unwrap_or_else(|| e.identity.clone());
            let Some(by_key) = slot(&mut self.inventory, &e.credential) else {
                continue;
            };
            match by_key.get_mut(&key) {
                Some(mine) => merge_entry(mine, e),
                None => {
                    by_key.insert(key, e);
                }
            }
        }
    }

    /// Put back the access of a failed flush (the cap still applies).
    fn merge_access(&mut self, other: &Pending) {
        for r in other.access_rows() {
            let _ = self.add_access(
                &r.route,
                &r.identity,
                &r.method,
                &r.path,
                (r.first_seen, r.last_seen, r.count),
            );
        }
    }

    /// The usage as rows.
    pub(crate) fn usage_rows(&self) -> Vec<UsageRow> {
        let mut rows = Vec::new();
        for (day, by_route) in &self.usage {
            for (route, by_plan) in by_route {
                for (plan, by_cred) in by_plan {
                    for (credential, (kind, count)) in by_cred {
                        rows.push(UsageRow {
                            day: *day,
                            route: route.clone(),
                            plan: (!plan.is_empty()).then(|| plan.clone()),
                            credential: credential.clone(),
                            kind: *kind,
                            count: *count,
                        });
                    }
                }
            }
        }
        rows
    }

    /// The inventory sightings.
    pub(crate) fn inventory_entries(&self) -> impl Iterator<Item = InventoryEntry> + '_ {
        self.inventory.values().flat_map(|m| m.values().cloned())
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
