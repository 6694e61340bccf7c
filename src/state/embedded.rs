//! `[state] backend = "embedded"`: aggregates in memory and persists to a local SQLite file
//! (WAL mode) on flush, or keeps everything in memory (`demo`, tests). All database work runs on
//! tokio's blocking pool, never on a request's task.
//!
//! One replica only: revocations made through another replica's admin API are not seen here.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use futures_util::future::BoxFuture;
use rusqlite::{params, Connection, OptionalExtension};

use super::pending::Pending;
use super::revocations::RevocationSet;
use super::sources::{SourceRef, MAX_SOURCES};
use super::{
    kind_from_str, Access, AccessRow, InventoryEntry, Revocation, Source, SourceRow, StateError,
    StateStore, Target, Usage, UsageRow, MAX_ACCESS_ROWS_PER_IDENTITY, MAX_ACCESS_ROWS_PER_ROUTE,
};
use crate::time::{Date, Timestamp};

/// Bumped when an existing table changes meaning. Adding a table (as `access` was) keeps it: an
/// older binary simply does not read the new table.
const SCHEMA_VERSION: i64 = 1;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS usage (
    day        INTEGER NOT NULL,
    route      TEXT    NOT NULL,
    plan       TEXT    NOT NULL,   -- '' for a route without a plan
    credential TEXT    NOT NULL,
    kind       TEXT    NOT NULL,
    count      INTEGER NOT NULL,
    PRIMARY KEY (day, route, plan, credential)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS inventory (
    credential     TEXT    NOT NULL,
    key            TEXT    NOT NULL, -- principal, or identity when there is none
    kind           TEXT    NOT NULL,
    principal      TEXT,
    identity       TEXT    NOT NULL,
    first_seen     INTEGER NOT NULL,
    last_seen      INTEGER NOT NULL,
    count          INTEGER NOT NULL,
    cert_not_after INTEGER,
    PRIMARY KEY (credential, key)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS inventory_routes (
    credential TEXT NOT NULL,
    key        TEXT NOT NULL,
    route      TEXT NOT NULL,
    PRIMARY KEY (credential, key, route)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS access (
    route      TEXT    NOT NULL,
    identity   TEXT    NOT NULL,
    method     TEXT    NOT NULL,
    path       TEXT    NOT NULL, -- templated: identifier-like segments are '*'
    first_seen INTEGER NOT NULL,
    last_seen  INTEGER NOT NULL,
    count      INTEGER NOT NULL,
    PRIMARY KEY (route, identity, method, path)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS sources (
    day        INTEGER NOT NULL,
    route      TEXT    NOT NULL,
    plan       TEXT    NOT NULL, -- '' for a route without a plan
    credential TEXT    NOT NULL,
    key        TEXT    NOT NULL, -- principal, or identity when there is none
    overflow   INTEGER NOT NULL, -- 1: the requests from sources beyond the cap (ip, agent '')
    ip         TEXT    NOT NULL,
    agent      TEXT    NOT NULL,
    count      INTEGER NOT NULL,
    last_seen  INTEGER NOT NULL,
    PRIMARY KEY (day, route, plan, credential, key, overflow, ip, agent)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS password_verifiers (
    key TEXT PRIMARY KEY,  -- credential and LDAP account
    phc TEXT NOT NULL      -- Argon2id PHC string of the last password that bound
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS revocations (
    target TEXT PRIMARY KEY,
    reason TEXT    NOT NULL,
    at     INTEGER NOT NULL
) WITHOUT ROWID;
";

// The statements of a flush, prepared once when the store opens (`warm_flush_statements`) and
// then taken from the connection's statement cache: the first flush otherwise compiles all ten
// while requests are being served (about 70k instructions each, issue 22).
const UP_USAGE: &str =
    "INSERT INTO usage (day, route, plan, credential, kind, count) VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT (day, route, plan, credential) DO UPDATE SET
                    count = count + excluded.count, kind = excluded.kind";
const UP_INVENTORY: &str = "INSERT INTO inventory (credential, key, kind, principal, identity, first_seen, last_seen, count, cert_not_after)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
                 ON CONFLICT (credential, key) DO UPDATE SET
                    count = count + excluded.count,
                    first_seen = min(first_seen, excluded.first_seen),
                    last_seen = max(last_seen, excluded.last_seen),
                    identity = CASE WHEN excluded.last_seen >= last_seen THEN excluded.identity ELSE identity END,
                    kind = CASE WHEN excluded.last_seen >= last_seen THEN excluded.kind ELSE kind END,
                    cert_not_after = CASE WHEN excluded.last_seen >= last_seen AND excluded.cert_not_after IS NOT NULL
                                          THEN excluded.cert_not_after ELSE cert_not_after END";
const UP_ROUTE: &str =
    "INSERT OR IGNORE INTO inventory_routes (credential, key, route) VALUES (?1, ?2, ?3)";
const ACCESS_ROWS: &str = "SELECT count(*) FROM access WHERE route = ?1";
const ACCESS_ROWS_OF_IDENTITY: &str =
    "SELECT count(*) FROM access WHERE route = ?1 AND identity = ?2";
const ACCESS_UPDATE: &str =
    "UPDATE access SET count = count + ?5, first_seen = min(first_seen, ?6),
                last_seen = max(last_seen, ?7)
             WHERE route = ?1 AND identity = ?2 AND method = ?3 AND path = ?4";
const ACCESS_INSERT: &str =
    "INSERT INTO access (route, identity, method, path, count, first_seen, last_seen)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)";
const SOURCES_UPDATE: &str =
    "UPDATE sources SET count = count + ?9, last_seen = max(last_seen, ?10)
             WHERE day = ?1 AND route = ?2 AND plan = ?3 AND credential = ?4 AND key = ?5
               AND overflow = ?6 AND ip = ?7 AND agent = ?8";
const SOURCES_DISTINCT: &str =
    "SELECT count(*) FROM sources WHERE day = ?1 AND route = ?2 AND plan = ?3
               AND credential = ?4 AND key = ?5 AND overflow = 0";
const SOURCES_INSERT: &str =
    "INSERT INTO sources (day, route, plan, credential, key, overflow, ip, agent, count, last_seen)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)";

/// The statements [`write_pending`] runs.
const FLUSH_STATEMENTS: [&str; 10] = [
    UP_USAGE,
    UP_INVENTORY,
    UP_ROUTE,
    ACCESS_ROWS,
    ACCESS_ROWS_OF_IDENTITY,
    ACCESS_UPDATE,
    ACCESS_INSERT,
    SOURCES_UPDATE,
    SOURCES_DISTINCT,
    SOURCES_INSERT,
];

/// Statements kept compiled: the flush's ten, the reads of the admin API and `policy suggest`
/// (five), and room to spare, so that no read evicts a flush statement (rusqlite's default is 16).
const STATEMENT_CACHE: usize = 32;

/// Compile the flush's statements into the connection's cache (the schema must exist).
fn warm_flush_statements(conn: &Connection) -> Result<(), StateError> {
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    for sql in FLUSH_STATEMENTS {
        // Dropped at once: a cached statement goes back to the cache.
        conn.prepare_cached(sql).map_err(db_err)?;
    }
    Ok(())
}

fn db_err(e: rusqlite::Error) -> StateError {
    StateError(e.to_string())
}

/// The embedded store.
#[derive(Debug)]
pub struct EmbeddedStore {
    db: Arc<Mutex<Connection>>,
    pending: Mutex<Pending>,
    revoked: ArcSwap<RevocationSet>,
    /// Serializes revoke/unrevoke so the database and the in-memory set cannot disagree.
    revoke_lock: tokio::sync::Mutex<()>,
    /// Held for a whole flush, from taking the pending counts to their commit. Every read
    /// flushes first, so a read that comes while the periodic flush has taken the counts and not
    /// yet written them waits for that write instead of missing them (they are in neither place
    /// meanwhile).
    flush_lock: tokio::sync::Mutex<()>,
    path: Option<PathBuf>,
    /// Set once the access cap has dropped a row (logged once, not per request).
    access_capped: std::sync::atomic::AtomicBool,
    /// `[state] retention` of usage and access rows.
    retention: super::retention::Retention,
}

impl EmbeddedStore {
    /// Open (creating if needed) the SQLite file at `path` (`[state] path`); its directory must
    /// exist. Loads the revocations into memory.
    pub async fn open(path: &Path) -> Result<EmbeddedStore, StateError> {
        let p = path.to_path_buf();
        let conn = blocking(move || {
            let conn =
                Connection::open(&p).map_err(|e| StateError(format!("{}: {e}", p.display())))?;
            conn.busy_timeout(std::time::Duration::from_secs(5))
                .map_err(db_err)?;
            // WAL: readers (the admin API) never block the flusher, and a crash mid-write
            // leaves the last committed flush intact.
            let mode: String = conn
                .query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))
                .map_err(db_err)?;
            if !mode.eq_ignore_ascii_case("wal") {
                return Err(StateError(format!(
                    "{}: cannot enable WAL (journal_mode={mode})",
                    p.display()
                )));
            }
            conn.pragma_update(None, "synchronous", "NORMAL")
                .map_err(db_err)?;
            Ok(conn)
        })
        .await?;
        Self::init(conn, Some(path.to_path_buf())).await
    }

    /// A store that keeps everything in memory (lost on exit): `demo` and tests.
    pub async fn in_memory() -> Result<EmbeddedStore, StateError> {
        let conn = Connection::open_in_memory().map_err(db_err)?;
        Self::init(conn, None).await
    }

    async fn init(conn: Connection, path: Option<PathBuf>) -> Result<EmbeddedStore, StateError> {
        let (conn, revs) = blocking(move || {
            let version: i64 = conn
                .query_row("PRAGMA user_version", [], |r| r.get(0))
                .map_err(db_err)?;
            if version > SCHEMA_VERSION {
                return Err(StateError(format!(
                    "state file has schema version {version}, newer than this portcullis understands ({SCHEMA_VERSION})"
                )));
            }
            conn.execute_batch(SCHEMA).map_err(db_err)?;
            conn.pragma_update(None, "user_version", SCHEMA_VERSION).map_err(db_err)?;
            warm_flush_statements(&conn)?;
            let revs = read_revocations(&conn)?;
            Ok((conn, revs))
        })
        .await?;
        Ok(EmbeddedStore {
            db: Arc::new(Mutex::new(conn)),
            pending: Mutex::new(Pending::default()),
            revoked: ArcSwap::from_pointee(RevocationSet::new(&revs)),
            revoke_lock: tokio::sync::Mutex::new(()),
            flush_lock: tokio::sync::Mutex::new(()),
            path,
            access_capped: std::sync::atomic::AtomicBool::new(false),
            retention: super::retention::Retention::default(),
        })
    }

    /// Keep usage and access rows for `keep` (`[state] retention`) instead of the default.
    pub fn with_retention(mut self, keep: std::time::Duration) -> Self {
        self.retention = super::retention::Retention::new(keep);
        self
    }

    /// Delete usage and access rows older than the retention at `now`; how many went.
    pub async fn expire(&self, now: std::time::SystemTime) -> Result<u64, StateError> {
        let cut = self.retention.cutoff(now);
        self.with_db(move |c| {
            let usage = c
                .execute("DELETE FROM usage WHERE day < ?1", [cut.day.days()])
                .map_err(db_err)?;
            let access = c
                .execute("DELETE FROM access WHERE last_seen < ?1", [cut.seen.0])
                .map_err(db_err)?;
            // Where each principal's requests came from: kept as long as its usage.
            let sources = c
                .execute("DELETE FROM sources WHERE day < ?1", [cut.day.days()])
                .map_err(db_err)?;
            Ok(u64::try_from(usage + access + sources).unwrap_or(u64::MAX))
        })
        .await
    }

    /// The periodic flush, then the retention sweep when one is due.
    async fn flush_and_expire(&self) -> Result<(), StateError> {
        self.do_flush().await?;
        let now = std::time::SystemTime::now();
        if self.retention.due(now).is_some() {
            match self.expire(now).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(rows = n, "state: expired usage and access rows deleted"),
                Err(e) => {
                    tracing::warn!(error = %e, "state: retention sweep failed; retried next hour")
                }
            }
        }
        Ok(())
    }

    /// The file, if persistent.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// Whether the store answers (for `/readyz`).
    pub async fn ping(&self) -> Result<(), StateError> {
        self.with_db(|c| c.query_row("SELECT 1", [], |_| Ok(())).map_err(db_err))
            .await
    }

    async fn with_db<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T, StateError> + Send + 'static,
    ) -> Result<T, StateError> {
        let db = self.db.clone();
        blocking(move || {
            let mut conn = db
                .lock()
                .map_err(|_| StateError("database lock poisoned".into()))?;
            f(&mut conn)
        })
        .await
    }

    async fn do_flush(&self) -> Result<(), StateError> {
        let _flushing = self.flush_lock.lock().await;
        let taken = {
            let mut g = self
                .pending
                .lock()
                .map_err(|_| StateError("pending lock poisoned".into()))?;
            if g.is_empty() {
                return Ok(());
            }
            std::mem::take(&mut *g)
        };
        let taken = Arc::new(taken);
        let writing = taken.clone();
        let result = self.with_db(move |c| write_pending(c, &writing)).await;
        if let Ok(Some(route)) = &result {
            self.access_capped_once(route);
        }
        if let Err(e) = result {
            // Nothing is lost: put the counts back for the next attempt.
            if let (Ok(mut g), Some(taken)) = (self.pending.lock(), Arc::into_inner(taken)) {
                g.merge(taken);
            }
            return Err(e);
        }
        Ok(())
    }
}

impl EmbeddedStore {
    fn access_capped_once(&self, route: &str) {
        if !self
            .access_capped
            .swap(true, std::sync::atomic::Ordering::Relaxed)
        {
            tracing::warn!(
                route,
                cap = MAX_ACCESS_ROWS_PER_ROUTE,
                per_identity = MAX_ACCESS_ROWS_PER_IDENTITY,
                "observed-access rows for policy suggestion reached the per-route cap or a \
                 caller's share of it; new (identity, method, path) combinations are not \
                 recorded (logged once)"
            );
        }
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StateError> + Send + 'static,
) -> Result<T, StateError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| StateError(format!("state task failed: {e}")))?
}

/// Write `p` in one transaction. Returns a route whose access rows hit the cap, if any did.
fn write_pending(c: &mut Connection, p: &Pending) -> Result<Option<String>, StateError> {
    let tx = c.transaction().map_err(db_err)?;
    let capped = write_access(&tx, p)?;
    write_sources(&tx, p)?;
    {
        let mut up_usage = tx.prepare_cached(UP_USAGE).map_err(db_err)?;
        for r in p.usage_rows() {
            up_usage
                .execute(params![
                    r.day.days(),
                    r.route,
                    r.plan.unwrap_or_default(),
                    r.credential,
                    r.kind.as_str(),
                    i64::try_from(r.count).unwrap_or(i64::MAX)
                ])
                .map_err(db_err)?;
        }
        // SQLite evaluates every SET expression against the old row, so the order below does
        // not matter; "latest wins" fields compare last_seen.
        let mut up_inv = tx.prepare_cached(UP_INVENTORY).map_err(db_err)?;
        let mut up_route = tx.prepare_cached(UP_ROUTE).map_err(db_err)?;
        for e in p.inventory_entries() {
            let key = e.principal.as_deref().unwrap_or(&e.identity);
            up_inv
                .execute(params![
                    e.credential,
                    key,
                    e.kind.as_str(),
                    e.principal,
                    e.identity,
                    e.first_seen.0,
                    e.last_seen.0,
                    i64::try_from(e.count).unwrap_or(i64::MAX),
                    e.cert_not_after.map(|t| t.0)
                ])
                .map_err(db_err)?;
            for route in &e.routes {
                up_route
                    .execute(params![e.credential, key, route])
                    .map_err(db_err)?;
            }
        }
    }
    tx.commit().map_err(db_err)?;
    Ok(capped)
}

/// Add the pending access rows, keeping at most [`MAX_ACCESS_ROWS_PER_ROUTE`] per route in the
/// file: a new row is inserted only while its route is below the cap (counted once per route per
/// flush, then tracked as rows go in) and its identity below [`MAX_ACCESS_ROWS_PER_IDENTITY`] on
/// that route (counted when a new row would go in: rare, as rows are templates).
fn write_access(tx: &rusqlite::Transaction<'_>, p: &Pending) -> Result<Option<String>, StateError> {
    let mut rows = p.access_rows();
    if rows.is_empty() {
        return Ok(None);
    }
    rows.sort_by(|a, b| a.route.cmp(&b.route));
    let mut count_rows = tx.prepare_cached(ACCESS_ROWS).map_err(db_err)?;
    let mut count_identity = tx.prepare_cached(ACCESS_ROWS_OF_IDENTITY).map_err(db_err)?;
    let mut update = tx.prepare_cached(ACCESS_UPDATE).map_err(db_err)?;
    let mut insert = tx.prepare_cached(ACCESS_INSERT).map_err(db_err)?;
    let mut capped = None;
    let mut current: Option<(&str, usize)> = None;
    for r in &rows {
        let stored = match current {
            Some((route, n)) if route == r.route => n,
            _ => {
                let n: i64 = count_rows
                    .query_row([&r.route], |row| row.get(0))
                    .map_err(db_err)?;
                usize::try_from(n).unwrap_or(usize::MAX)
            }
        };
        let values = params![
            r.route,
            r.identity,
            r.method,
            r.path,
            i64::try_from(r.count).unwrap_or(i64::MAX),
            r.first_seen.0,
            r.last_seen.0
        ];
        let mut n = stored;
        if update.execute(values).map_err(db_err)? == 0 {
            let mine: i64 = count_identity
                .query_row([&r.route, &r.identity], |row| row.get(0))
                .map_err(db_err)?;
            let mine = usize::try_from(mine).unwrap_or(usize::MAX);
            if stored < MAX_ACCESS_ROWS_PER_ROUTE && mine < MAX_ACCESS_ROWS_PER_IDENTITY {
                insert.execute(values).map_err(db_err)?;
                n = stored.saturating_add(1);
            } else {
                capped = Some(r.route.clone());
            }
        }
        current = Some((r.route.as_str(), n));
    }
    Ok(capped)
}

/// Add the pending source rows, keeping at most [`MAX_SOURCES`] distinct sources per (day, route,
/// plan, credential, key) in the file; requests from further sources go to the overflow row.
/// Rows older than `[state] retention` are dropped by [`EmbeddedStore::expire`] with the usage.
fn write_sources(tx: &rusqlite::Transaction<'_>, p: &Pending) -> Result<(), StateError> {
    let rows = p.source_rows();
    if rows.is_empty() {
        return Ok(());
    }
    let mut update = tx.prepare_cached(SOURCES_UPDATE).map_err(db_err)?;
    let mut distinct = tx.prepare_cached(SOURCES_DISTINCT).map_err(db_err)?;
    let mut insert = tx.prepare_cached(SOURCES_INSERT).map_err(db_err)?;
    for r in &rows {
        let plan = r.plan.as_deref().unwrap_or_default();
        let count = i64::try_from(r.count).unwrap_or(i64::MAX);
        let group = params![r.day.days(), r.route, plan, r.credential, r.key];
        let mut source = r.source.as_ref();
        if let Some(s) = source {
            let known = update
                .execute(params![
                    r.day.days(),
                    r.route,
                    plan,
                    r.credential,
                    r.key,
                    0,
                    s.ip,
                    s.user_agent,
                    count,
                    r.last_seen.0
                ])
                .map_err(db_err)?;
            if known > 0 {
                continue;
            }
            let n: i64 = distinct.query_row(group, |x| x.get(0)).map_err(db_err)?;
            if usize::try_from(n).unwrap_or(usize::MAX) >= MAX_SOURCES {
                source = None;
            }
        }
        let (overflow, ip, agent) = match source {
            Some(s) => (0, s.ip.as_str(), s.user_agent.as_str()),
            None => (1, "", ""),
        };
        let values = params![
            r.day.days(),
            r.route,
            plan,
            r.credential,
            r.key,
            overflow,
            ip,
            agent,
            count,
            r.last_seen.0
        ];
        if update.execute(values).map_err(db_err)? == 0 {
            insert.execute(values).map_err(db_err)?;
        }
    }
    Ok(())
}

fn read_sources(c: &Connection, since: Date) -> Result<Vec<SourceRow>, StateError> {
    let mut st = c
        .prepare_cached(
            "SELECT day, route, plan, credential, key, overflow, ip, agent, count, last_seen
             FROM sources WHERE day >= ?1
             ORDER BY day, route, plan, credential, key, overflow, ip, agent",
        )
        .map_err(db_err)?;
    let rows = st
        .query_map([since.days()], |r| {
            let plan: String = r.get(2)?;
            let overflow: i64 = r.get(5)?;
            Ok(SourceRow {
                day: Date::from_days(r.get(0)?),
                route: r.get(1)?,
                plan: (!plan.is_empty()).then_some(plan),
                credential: r.get(3)?,
                key: r.get(4)?,
                source: if overflow == 0 {
                    Some(Source {
                        ip: r.get(6)?,
                        user_agent: r.get(7)?,
                    })
                } else {
                    None
                },
                count: u64::try_from(r.get::<_, i64>(8)?).unwrap_or(0),
                last_seen: Timestamp(r.get(9)?),
            })
        })
        .map_err(db_err)?;
    rows.collect::<Result<Vec<_>, _>>().map_err(db_err)
}

fn read_access(c: &Connection, route: &str, since: Date) -> Result<Vec<AccessRow>, StateError> {
    let mut st = c
        .prepare_cached(
            "SELECT identity, method, path, first_seen, last_seen, count FROM access
             WHERE route = ?1 AND last_seen >= ?2 ORDER BY identity, method, path",
        )
        .map_err(db_err)?;
    let rows = st
        .query_map(params![route, since.unix_seconds()], |r| {
            Ok(AccessRow {
                route: route.to_owned(),
                identity: r.get(0)?,
                method: r.get(1)?,
                path: r.get(2)?,
                first_seen: Timestamp(r.get(3)?),
                last_seen: Timestamp(r.get(4)?),
                count: u64::try_from(r.get::<_, i64>(5)?).unwrap_or(0),
            })
        })
        .map_err(db_err)?;
    rows.collect::<Result<Vec<_>, _>>().map_err(db_err)
}

fn read_usage(c: &Connection, since: Date) -> Result<Vec<UsageRow>, StateError> {
    let mut st = c
        .prepare_cached(
            "SELECT day, route, plan, credential, kind, count FROM usage WHERE day >= ?1
             ORDER BY day, route, plan, credential",
        )
        .map_err(db_err)?;
    let rows = st
        .query_map([since.days()], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, String>(4)?,
                r.get::<_, i64>(5)?,
            ))
        })
        .map_err(db_err)?;
    let mut out = Vec::new();
    for row in rows {
        let (day, route, plan, credential, kind, count) = row.map_err(db_err)?;
        let Some(kind) = kind_from_str(&kind) else {
            continue; // written by a newer version; not ours to interpret
        };
        out.push(UsageRow {
            day: Date::from_days(day),
            route,
            plan: (!plan.is_empty()).then_some(plan),
            credential,
            kind,
            count: u64::try_from(count).unwrap_or(0),
        });
    }
    Ok(out)
}

fn read_inventory(c: &Connection) -> Result<Vec<InventoryEntry>, StateError> {
    let mut st = c
        .prepare_cached(
            "SELECT i.credential, i.key, i.kind, i.principal, i.identity, i.first_seen, i.last_seen, i.count,
                    i.cert_not_after, group_concat(r.route, char(31))
             FROM inventory i LEFT JOIN inventory_routes r ON r.credential = i.credential AND r.key = i.key
             GROUP BY i.credential, i.key ORDER BY i.credential, i.key",
        )
        .map_err(db_err)?;
    let rows = st
        .query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(2)?,
                r.get::<_, Option<String>>(3)?,
                r.get::<_, String>(4)?,
                r.get::<_, i64>(5)?,
                r.get::<_, i64>(6)?,
                r.get::<_, i64>(7)?,
                r.get::<_, Option<i64>>(8)?,
                r.get::<_, Option<String>>(9)?,
            ))
        })
        .map_err(db_err)?;
    let mut out = Vec::new();
    for row in rows {
        let (credential, kind, principal, identity, first, last, count, cert, routes) =
            row.map_err(db_err)?;
        let Some(kind) = kind_from_str(&kind) else {
            continue;
        };
        out.push(InventoryEntry {
            credential,
            kind,
            principal,
            identity,
            // Unit separator: route names cannot contain control characters.
            routes: routes
                .map(|r| r.split('\u{1f}').map(str::to_owned).collect())
                .unwrap_or_else(BTreeSet::new),
            first_seen: Timestamp(first),
            last_seen: Timestamp(last),
            count: u64::try_from(count).unwrap_or(0),
            cert_not_after: cert.map(Timestamp),
        });
    }
    Ok(out)
}

fn read_revocations(c: &Connection) -> Result<Vec<Revocation>, StateError> {
    let mut st = c
        .prepare_cached("SELECT target, reason, at FROM revocations ORDER BY at, target")
        .map_err(db_err)?;
    let rows = st
        .query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, i64>(2)?,
            ))
        })
        .map_err(db_err)?;
    let mut out = Vec::new();
    for row in rows {
        let (target, reason, at) = row.map_err(db_err)?;
        // An unparseable row must not silently un-revoke someone: refuse to start.
        let target = Target::from_key(&target)
            .ok_or_else(|| StateError(format!("unreadable revocation target {target:?}")))?;
        out.push(Revocation {
            target,
            reason,
            at: Timestamp(at),
        });
    }
    Ok(out)
}

impl StateStore for EmbeddedStore {
    fn durable(&self) -> bool {
        self.path.is_some()
    }

    fn record(&self, usage: &Usage<'_>) {
        if let Ok(mut g) = self.pending.lock() {
            g.record(usage);
        }
    }

    fn record_from(&self, usage: &Usage<'_>, ip: IpAddr, user_agent: Option<&[u8]>) {
        if let Ok(mut g) = self.pending.lock() {
            g.record_from(usage, Some(SourceRef::Raw { ip, user_agent }));
        }
    }

    fn record_access(&self, access: &Access<'_>) {
        let kept = self.pending.lock().map(|mut g| g.record_access(access));
        if matches!(kept, Ok(false)) {
            self.access_capped_once(access.route);
        }
    }

    fn access<'a>(
        &'a self,
        route: &'a str,
        since: Date,
    ) -> BoxFuture<'a, Result<Vec<AccessRow>, StateError>> {
        Box::pin(async move {
            self.do_flush().await?;
            let route = route.to_owned();
            self.with_db(move |c| read_access(c, &route, since)).await
        })
    }

    fn is_revoked(
        &self,
        identity: &str,
        credential: &str,
        principal: Option<&str>,
        jti: Option<&str>,
    ) -> bool {
        self.revoked
            .load()
            .contains(identity, credential, principal, jti)
    }

    fn flush(&self) -> BoxFuture<'_, Result<(), StateError>> {
        Box::pin(self.flush_and_expire())
    }

    fn usage(&self, since: Date) -> BoxFuture<'_, Result<Vec<UsageRow>, StateError>> {
        Box::pin(async move {
            self.do_flush().await?;
            self.with_db(move |c| read_usage(c, since)).await
        })
    }

    fn inventory(&self) -> BoxFuture<'_, Result<Vec<InventoryEntry>, StateError>> {
        Box::pin(async move {
            self.do_flush().await?;
            self.with_db(|c| read_inventory(c)).await
        })
    }

    fn sources(&self, since: Date) -> BoxFuture<'_, Result<Vec<SourceRow>, StateError>> {
        Box::pin(async move {
            self.do_flush().await?;
            self.with_db(move |c| read_sources(c, since)).await
        })
    }

    fn revocations(&self) -> BoxFuture<'_, Result<Vec<Revocation>, StateError>> {
        Box::pin(self.with_db(|c| read_revocations(c)))
    }

    fn revoke(&self, revocation: Revocation) -> BoxFuture<'_, Result<bool, StateError>> {
        Box::pin(async move {
            let _g = self.revoke_lock.lock().await;
            let (new, all) = self
                .with_db(move |c| {
                    let key = revocation.target.key();
                    let existed: Option<i64> = c
                        .query_row("SELECT 1 FROM revocations WHERE target = ?1", [&key], |r| {
                            r.get(0)
                        })
                        .optional()
                        .map_err(db_err)?;
                    c.execute(
                        "INSERT INTO revocations (target, reason, at) VALUES (?1, ?2, ?3)
                         ON CONFLICT (target) DO UPDATE SET reason = excluded.reason",
                        params![key, revocation.reason, revocation.at.0],
                    )
                    .map_err(db_err)?;
                    Ok((existed.is_none(), read_revocations(c)?))
                })
                .await?;
            self.revoked.store(Arc::new(RevocationSet::new(&all)));
            Ok(new)
        })
    }

    fn unrevoke<'a>(&'a self, target: &'a Target) -> BoxFuture<'a, Result<bool, StateError>> {
        Box::pin(async move {
            let _g = self.revoke_lock.lock().await;
            let key = target.key();
            let (gone, all) = self
                .with_db(move |c| {
                    let n = c
                        .execute("DELETE FROM revocations WHERE target = ?1", [&key])
                        .map_err(db_err)?;
                    Ok((n > 0, read_revocations(c)?))
                })
                .await?;
            self.revoked.store(Arc::new(RevocationSet::new(&all)));
            Ok(gone)
        })
    }

    fn password_verifier<'a>(
        &'a self,
        key: &'a str,
    ) -> BoxFuture<'a, Result<Option<String>, StateError>> {
        let key = key.to_owned();
        Box::pin(self.with_db(move |c| {
            c.query_row(
                "SELECT phc FROM password_verifiers WHERE key = ?1",
                [&key],
                |r| r.get(0),
            )
            .optional()
            .map_err(db_err)
        }))
    }

    fn set_password_verifier<'a>(
        &'a self,
        key: &'a str,
        phc: Option<&'a str>,
    ) -> BoxFuture<'a, Result<(), StateError>> {
        let key = key.to_owned();
        let phc = phc.map(str::to_owned);
        Box::pin(self.with_db(move |c| {
            match phc {
                Some(phc) => c.execute(
                    "INSERT INTO password_verifiers (key, phc) VALUES (?1, ?2)
                     ON CONFLICT (key) DO UPDATE SET phc = excluded.phc",
                    params![key, phc],
                ),
                None => c.execute("DELETE FROM password_verifiers WHERE key = ?1", [&key]),
            }
            .map(|_| ())
            .map_err(db_err)
        }))
    }
}

#[cfg(test)]
mod tests;
