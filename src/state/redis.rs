//! `[state] backend = "redis"`: every replica shares usage, inventory, revocations and the webhook
//! replay memory through one Redis (6.2 or newer: `SET … PXAT`).
//!
//! The request path still only touches memory, exactly like the embedded store:
//! [`StateStore::record`] adds to an in-memory aggregate and [`StateStore::is_revoked`] reads an
//! in-memory set. The only per-request round trip is the webhook replay check (`SET NX PXAT`),
//! which must be shared to mean anything.
//!
//! * **Usage and inventory** are written by [`StateStore::flush`] as one Lua script per chunk of
//!   the aggregate (atomic on the server). Counts are `HINCRBY`s, `first_seen`/`last_seen` are
//!   min/max and the "latest wins" fields follow the newest `last_seen`, so flushes from any
//!   number of replicas commute. Each chunk carries a random id that the script records (for an
//!   hour) before returning: a chunk whose reply was lost is retried verbatim and the script
//!   skips it, so a flush is neither lost nor counted twice. While a chunk is unsent, new requests
//!   keep aggregating in memory (bounded by the number of distinct keys, as for embedded).
//! * **Revocations** are written through on `revoke`/`unrevoke` and announced on a pub/sub
//!   channel; every replica re-reads the whole set when told (revocations are few and rare, so a
//!   full read is simpler and safer than applying deltas) and also on every flush, as a safety
//!   net for a missed message.
//! * **Fail closed.** A store whose revocation set may be stale says so through
//!   [`StateStore::available`]: false until the first read, when no read succeeded for
//!   `3 × flush_every`, or when the pub/sub link dropped and no read succeeded since. The pipeline
//!   then refuses with 503 `directory-unavailable` rather than serve a revoked caller. The replay
//!   guard returns [`StoreError`] when Redis does not answer in time (the webhook credential
//!   answers 503). Recording never fails: counts wait in memory for the next flush.
//!
//! Keys (all under the configured prefix, default `portcullis:`, so several gateways can share
//! one Redis): `usage:days` (sorted set of days with counts), `usage:<YYYY-MM-DD>` (hash
//! `["route","plan","credential","kind"]` → count, expires 400 days after the day), `inv` (set
//! of inventory ids), `inv:<id>` (hash), `inv-routes:<id>` (set), `revocations` (hash target →
//! `<at>\n<reason>`, and the pub/sub channel of the same name), `replay:<key>` (expires itself),
//! `flush:<id>` (expires after an hour), `src:<YYYY-MM-DD>` (hash
//! `["route","plan","credential","key","ip","agent"]` → requests, `["route","plan","credential","key"]`
//! → requests from sources beyond the cap), `srclast:<day>` (same fields → last seen) and
//! `srcn:<day>` (group → distinct sources kept), all expiring with the usage hashes, and
//! `src:days` (sorted set of the days with sources). The script computes key names from the prefix, so this
//! needs a single Redis (or a primary with replicas), not Redis Cluster.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;
use futures_util::future::BoxFuture;
use futures_util::StreamExt;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use super::pending::Pending;
use super::replay::{ReplayGuard, StoreError};
use super::revocations::RevocationSet;
use super::sources::{merge_rows, SourceRef, MAX_SOURCES};
use super::{
    kind_from_str, Access, AccessRow, InventoryEntry, Revocation, Source, SourceRow, StateError,
    StateStore, Target, Usage, UsageRow, MAX_ACCESS_ROWS_PER_IDENTITY, MAX_ACCESS_ROWS_PER_ROUTE,
};
use crate::time::{Date, Timestamp};

/// The default key prefix (`[state] prefix`).
pub const DEFAULT_PREFIX: &str = "portcullis:";

/// Records (usage rows, inventory entries) per flush script: keeps each script short, since
/// Redis runs scripts one at a time and every replica's replay checks wait behind it.
const CHUNK_RECORDS: usize = 500;

/// How long a flushed chunk's id is remembered, so a retry of a chunk whose reply was lost is
/// not counted twice. Retries happen every flush interval, so an hour is ample.
const FLUSH_MARKER_SECS: u64 = 3600;

/// A Redis URL (`redis://[user:password@]host[:port][/db]`). It may carry a password, so it is
/// only ever shown redacted (`Debug` and `Display` both redact).
#[derive(Clone, PartialEq, Eq)]
pub struct RedisUrl(String);

impl RedisUrl {
    /// Check the form (`redis://` with a host; no connection is made). The error never repeats
    /// the URL.
    pub fn parse(url: &str) -> Result<RedisUrl, String> {
        let rest = url
            .strip_prefix("redis://")
            .or_else(|| url.strip_prefix("rediss://"))
            .ok_or_else(|| {
                "must start with redis:// (or rediss:// for Redis over TLS)".to_string()
            })?;
        if rest.is_empty() || rest.starts_with('/') {
            return Err("has no host".into());
        }
        if url.chars().any(|c| c.is_control() || c.is_whitespace()) {
            return Err("contains whitespace or control characters".into());
        }
        // `rediss://…#insecure` turns certificate verification off in the redis crate: never.
        if url.contains('#') {
            return Err(
                "must not have a #fragment (#insecure would skip certificate checks)".into(),
            );
        }
        // The parser's message may quote the URL: say only that it failed.
        redis::Client::open(url).map_err(|_| "is not a valid Redis URL".to_string())?;
        Ok(RedisUrl(url.to_string()))
    }

    /// `rediss://`: Redis over TLS.
    pub fn is_tls(&self) -> bool {
        self.0.starts_with("rediss://")
    }

    /// Whether the URL carries a password (user-info).
    pub fn has_password(&self) -> bool {
        let rest = self.0.split_once("://").map_or("", |(_, r)| r);
        let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
        authority.contains('@')
    }

    /// The URL with its password, for connecting only.
    fn expose(&self) -> &str {
        &self.0
    }

    /// The URL with any password replaced by `***`: for logs and `check`.
    pub fn redacted(&self) -> String {
        redact(&self.0)
    }
}

impl std::fmt::Debug for RedisUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RedisUrl({})", self.redacted())
    }
}

impl std::fmt::Display for RedisUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.redacted())
    }
}

/// `scheme://user:secret@host/…` → `scheme://user:***@host/…`; a lone user-info part (which Redis
/// URLs may use as the password) is replaced whole.
fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return "***".into();
    };
    let auth_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(auth_end);
    match authority.rsplit_once('@') {
        None => url.to_string(),
        Some((userinfo, host)) => {
            let shown = match userinfo.split_once(':') {
                Some((user, _)) if !user.is_empty() => format!("{user}:***"),
                _ => "***".to_string(),
            };
            format!("{scheme}://{shown}@{host}{tail}")
        }
    }
}

/// Check a key prefix (`[state] prefix`): printable, no spaces, at most 64 bytes.
pub fn check_prefix(prefix: &str) -> Result<(), String> {
    if prefix.is_empty() || prefix.len() > 64 {
        return Err("must be 1 to 64 characters".into());
    }
    if prefix.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err("must not contain whitespace or control characters".into());
    }
    Ok(())
}

/// `[state]` `ca`, `client_cert`, `client_key` (for `rediss://`) and `password_file`: paths,
/// read when connecting.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RedisTls {
    /// The CA that issued Redis's certificate; `None`: the system roots.
    pub ca: Option<std::path::PathBuf>,
    pub client_cert: Option<std::path::PathBuf>,
    pub client_key: Option<std::path::PathBuf>,
    /// The AUTH password, first line of the file.
    pub password_file: Option<std::path::PathBuf>,
}

/// The client for `url` with the TLS material and password of `tls`. The certificate checks
/// are rustls's (aws-lc-rs), with the host name of the URL; errors never repeat the URL.
fn client_for(url: &RedisUrl, tls: &RedisTls) -> Result<redis::Client, StateError> {
    use redis::IntoConnectionInfo as _;
    let read = |p: &std::path::Path, what: &str| {
        std::fs::read(p).map_err(|e| StateError(format!("[state] {what} {}: {e}", p.display())))
    };
    let invalid = || StateError(format!("redis url {url} is not valid"));
    let mut info = url.expose().into_connection_info().map_err(|_| invalid())?;
    if let Some(p) = &tls.password_file {
        let text = String::from_utf8(read(p, "password_file")?)
            .map_err(|_| StateError(format!("[state] password_file {}: not UTF-8", p.display())))?;
        let password = text.lines().next().unwrap_or_default().to_owned();
        if password.is_empty() {
            return Err(StateError(format!(
                "[state] password_file {}: empty",
                p.display()
            )));
        }
        let settings = info.redis_settings().clone().set_password(password);
        info = info.set_redis_settings(settings);
    }
    if !url.is_tls() {
        return redis::Client::open(info).map_err(|_| invalid());
    }
    let client_tls = match (&tls.client_cert, &tls.client_key) {
        (Some(c), Some(k)) => Some(redis::ClientTlsConfig {
            client_cert: read(c, "client_cert")?,
            client_key: read(k, "client_key")?,
        }),
        _ => None,
    };
    let root_cert = tls.ca.as_deref().map(|p| read(p, "ca")).transpose()?;
    redis::Client::build_with_tls(
        info,
        redis::TlsCertificates {
            client_tls,
            root_cert,
        },
    )
    .map_err(|e| StateError(format!("redis {url}: TLS settings: {}", redis_err(&e))))
}

/// What [`RedisStore::connect`] needs, already resolved from `[state]`.
#[derive(Debug, Clone)]
pub struct RedisOptions {
    /// `[state] url`.
    pub url: RedisUrl,
    /// `[state] prefix` (default [`DEFAULT_PREFIX`]).
    pub prefix: String,
    /// `[state] flush_every`: the revocation set is re-read at least this often, and counted
    /// stale (store unavailable) after three intervals without a successful read.
    pub flush_every: Duration,
    /// Bound on every Redis round trip (connect, command): a hung Redis answers 503, it does not
    /// hold requests. Default 2 s.
    pub timeout: Duration,
    /// `rediss://` material and the password file.
    pub tls: RedisTls,
    /// `[state] retention`: usage and access rows expire after this long.
    pub retention: Duration,
}

impl RedisOptions {
    /// Options with the default prefix and timeout.
    pub fn new(url: RedisUrl, flush_every: Duration) -> Self {
        RedisOptions {
            url,
            prefix: DEFAULT_PREFIX.to_string(),
            flush_every,
            timeout: Duration::from_secs(2),
            tls: RedisTls::default(),
            retention: super::DEFAULT_RETENTION,
        }
    }
}

/// The shared store. Also the webhook [`ReplayGuard`]: hand the same `Arc` to both.
#[derive(Debug)]
pub struct RedisStore {
    inner: Arc<Inner>,
    /// The pub/sub listener; stopped when the store is dropped.
    listener: tokio::task::AbortHandle,
    /// The access-row cap was hit once (logged once).
    access_capped: std::sync::atomic::AtomicBool,
}

#[derive(Debug)]
struct Inner {
    conn: ConnectionManager,
    client: redis::Client,
    keys: Keys,
    timeout: Duration,
    /// Longest time the revocation set may go without a successful read.
    staleness: Duration,
    pending: Mutex<Pending>,
    /// Flush chunks written but not acknowledged, oldest first; retried verbatim.
    unsent: Mutex<std::collections::VecDeque<Arc<Chunk>>>,
    /// One flush at a time, so chunks land in order and are not sent twice concurrently.
    flush_lock: tokio::sync::Mutex<()>,
    revoked: ArcSwap<RevocationSet>,
    /// `[state] retention`: usage hashes expire by TTL; access rows are swept.
    retention: super::retention::Retention,
    /// The revocations behind `revoked`. Held across every read-and-swap and every write, so
    /// the newest read always wins and a revoke cannot be undone by an older read.
    revocations: tokio::sync::Mutex<Vec<Revocation>>,
    health: Health,
    flush_script: redis::Script,
    expire_script: redis::Script,
    revoke_script: redis::Script,
    unrevoke_script: redis::Script,
}

/// Key names, computed once.
#[derive(Debug)]
struct Keys {
    prefix: String,
    revocations: String,
    usage_days: String,
    inventory: String,
}

impl Keys {
    fn new(prefix: &str) -> Self {
        Keys {
            prefix: prefix.to_string(),
            revocations: format!("{prefix}revocations"),
            usage_days: format!("{prefix}usage:days"),
            inventory: format!("{prefix}inv"),
        }
    }
    fn usage(&self, day: Date) -> String {
        format!("{}usage:{day}", self.prefix)
    }
    fn entry(&self, id: &str) -> String {
        format!("{}inv:{id}", self.prefix)
    }
    fn entry_routes(&self, id: &str) -> String {
        format!("{}inv-routes:{id}", self.prefix)
    }
    /// One of the three hashes of a route's observed access (`count`, `first`, `last`), each
    /// keyed by the JSON `[identity, method, path template]`. Route names are plain
    /// (`[A-Za-z0-9._-]`), so they cannot collide with another key.
    fn access(&self, what: &str, route: &str) -> String {
        format!("{}access:{what}:{route}", self.prefix)
    }
    fn verifier(&self, key: &str) -> String {
        format!("{}pwv:{key}", self.prefix)
    }
    fn replay(&self, key: &str) -> String {
        format!("{}replay:{key}", self.prefix)
    }
}

/// Freshness of the revocation set, readable per request without a lock. Times are
/// microseconds since `base`, plus one, so that 0 means "never".
#[derive(Debug)]
struct Health {
    base: Instant,
    /// Start of the last successful full read of the revocations.
    refreshed: AtomicU64,
    /// When the pub/sub link went down (or a change announced on it could not be read): a
    /// successful read must start after this. 0 while the link is up and nothing was missed.
    link_down: AtomicU64,
}

impl Health {
    fn new() -> Self {
        let h = Health {
            base: Instant::now(),
            refreshed: AtomicU64::new(0),
            link_down: AtomicU64::new(0),
        };
        // Not subscribed yet: counts as down until the listener is.
        h.link_down.store(h.now(), Ordering::Release);
        h
    }

    fn now(&self) -> u64 {
        u64::try_from(self.base.elapsed().as_micros())
            .unwrap_or(u64::MAX - 1)
            .saturating_add(1)
    }

    fn available(&self, staleness: Duration) -> bool {
        let refreshed = self.refreshed.load(Ordering::Acquire);
        if refreshed == 0 {
            return false;
        }
        let age = self.now().saturating_sub(refreshed);
        if u128::from(age) > staleness.as_micros() {
            return false;
        }
        let down = self.link_down.load(Ordering::Acquire);
        down == 0 || refreshed > down
    }
}

/// One flush script's worth of records, with the id that makes a retry idempotent.
#[derive(Debug)]
struct Chunk {
    id: String,
    /// Flat script arguments: a tag, then that record's fields (see `FLUSH_LUA`).
    args: Vec<String>,
    records: usize,
}

/// One aggregated record, as the flush script consumes it. A further aggregate (a counter per
/// identity, say) is one more variant here, one `elseif` in `FLUSH_LUA`, and a read function.
enum Record<'a> {
    Usage(&'a UsageRow),
    Inventory(&'a InventoryEntry),
    Access(&'a AccessRow),
    Source(&'a SourceRow),
}

impl Record<'_> {
    fn push_args(&self, out: &mut Vec<String>, retention_days: i64) {
        match self {
            Record::Usage(r) => {
                let expire = r
                    .day
                    .days()
                    .saturating_add(retention_days)
                    .saturating_mul(86_400);
                let field = serde_json::json!([
                    r.route,
                    r.plan.as_deref().unwrap_or(""),
                    r.credential,
                    r.kind.as_str()
                ]);
                out.extend([
                    "u".to_string(),
                    r.day.days().to_string(),
                    r.day.to_string(),
                    expire.to_string(),
                    field.to_string(),
                    r.count.to_string(),
                ]);
            }
            Record::Inventory(e) => {
                out.extend([
                    "i".to_string(),
                    entry_id(e),
                    e.credential.clone(),
                    e.kind.as_str().to_string(),
                    // "-" + principal, or "" for none: a principal may itself be empty.
                    e.principal
                        .as_deref()
                        .map_or_else(String::new, |p| format!("-{p}")),
                    e.identity.clone(),
                    e.first_seen.0.to_string(),
                    e.last_seen.0.to_string(),
                    e.count.to_string(),
                    e.cert_not_after
                        .map_or_else(String::new, |t| t.0.to_string()),
                    e.routes.len().to_string(),
                ]);
                out.extend(e.routes.iter().cloned());
            }
            Record::Source(r) => {
                let expire = r
                    .day
                    .days()
                    .saturating_add(retention_days)
                    .saturating_mul(86_400);
                let plan = r.plan.as_deref().unwrap_or("");
                let group = serde_json::json!([r.route, plan, r.credential, r.key]).to_string();
                let field = match &r.source {
                    Some(src) => serde_json::json!([
                        r.route,
                        plan,
                        r.credential,
                        r.key,
                        src.ip,
                        src.user_agent
                    ])
                    .to_string(),
                    None => group.clone(),
                };
                out.extend([
                    "s".to_string(),
                    r.day.to_string(),
                    expire.to_string(),
                    group,
                    field,
                    r.count.to_string(),
                    r.last_seen.0.to_string(),
                    MAX_SOURCES.to_string(),
                    r.day.days().to_string(),
                ]);
            }
            Record::Access(a) => {
                out.extend([
                    "a".to_string(),
                    a.route.clone(),
                    serde_json::json!([a.identity, a.method, a.path]).to_string(),
                    a.first_seen.0.to_string(),
                    a.last_seen.0.to_string(),
                    a.count.to_string(),
                    MAX_ACCESS_ROWS_PER_ROUTE.to_string(),
                    a.identity.clone(),
                    MAX_ACCESS_ROWS_PER_IDENTITY.to_string(),
                ]);
            }
        }
    }
}

/// The inventory entry's id: credential and principal (or identity), as in the embedded store's
/// primary key. JSON, so no separator can be forged by a principal.
fn entry_id(e: &InventoryEntry) -> String {
    let key = e.principal.as_deref().unwrap_or(&e.identity);
    serde_json::json!([e.credential, key]).to_string()
}

/// Applies one chunk. `ARGV`: prefix, chunk id, oldest day (days since the epoch) to keep in
/// the day index, seconds to remember the chunk id, then records. Returns 1 when applied, 0 when this chunk id was already applied.
/// The marker is set last: a script that fails half way (Redis does not roll scripts back) leaves
/// no marker, so its retry is not skipped.
const FLUSH_LUA: &str = r"
local p = ARGV[1]
local marker = p .. 'flush:' .. ARGV[2]
if redis.call('EXISTS', marker) == 1 then
  return 0
end
local i = 5
local n = #ARGV
while i <= n do
  local tag = ARGV[i]
  if tag == 'u' then
    -- days, day, expire_at, field, count
    local key = p .. 'usage:' .. ARGV[i + 2]
    redis.call('HINCRBY', key, ARGV[i + 4], ARGV[i + 5])
    redis.call('EXPIREAT', key, ARGV[i + 3])
    redis.call('ZADD', p .. 'usage:days', ARGV[i + 1], ARGV[i + 2])
    i = i + 6
  elseif tag == 'i' then
    -- id, credential, kind, principal ('' none, else '-' .. principal), identity, first, last,
    -- count, cert_not_after ('' none), route count, routes...
    local id = ARGV[i + 1]
    local key = p .. 'inv:' .. id
    local kind, principal, identity = ARGV[i + 3], ARGV[i + 4], ARGV[i + 5]
    local first, last, count, cert = ARGV[i + 6], ARGV[i + 7], ARGV[i + 8], ARGV[i + 9]
    local nroutes = tonumber(ARGV[i + 10])
    local cur_last = redis.call('HGET', key, 'last')
    if not cur_last then
      redis.call('HSET', key, 'credential', ARGV[i + 2], 'kind', kind, 'identity', identity,
        'first', first, 'last', last, 'count', count)
      if principal ~= '' then
        redis.call('HSET', key, 'principal', string.sub(principal, 2))
      end
      if cert ~= '' then
        redis.call('HSET', key, 'cert_not_after', cert)
      end
      redis.call('SADD', p .. 'inv', id)
    else
      redis.call('HINCRBY', key, 'count', count)
      local cur_first = tonumber(redis.call('HGET', key, 'first'))
      if cur_first == nil or tonumber(first) < cur_first then
        redis.call('HSET', key, 'first', first)
      end
      if tonumber(last) >= tonumber(cur_last) then
        redis.call('HSET', key, 'last', last, 'identity', identity, 'kind', kind)
        if cert ~= '' then
          redis.call('HSET', key, 'cert_not_after', cert)
        end
      end
    end
    for r = 1, nroutes do
      redis.call('SADD', p .. 'inv-routes:' .. id, ARGV[i + 10 + r])
    end
    i = i + 11 + nroutes
  elseif tag == 'a' then
    -- route, field ([identity, method, path] as JSON), first, last, count, cap on rows per route,
    -- identity, cap on rows per identity on the route (counted in access:ids:<route>)
    local kc = p .. 'access:count:' .. ARGV[i + 1]
    local kf = p .. 'access:first:' .. ARGV[i + 1]
    local kl = p .. 'access:last:' .. ARGV[i + 1]
    local ki = p .. 'access:ids:' .. ARGV[i + 1]
    local field = ARGV[i + 2]
    local known = redis.call('HEXISTS', kc, field) == 1
    local room = (not known) and redis.call('HLEN', kc) < tonumber(ARGV[i + 6])
      and (tonumber(redis.call('HGET', ki, ARGV[i + 7])) or 0) < tonumber(ARGV[i + 8])
    if room then
      redis.call('HINCRBY', ki, ARGV[i + 7], 1)
    end
    if known or room then
      redis.call('HINCRBY', kc, field, ARGV[i + 5])
      local f = tonumber(redis.call('HGET', kf, field))
      if f == nil or tonumber(ARGV[i + 3]) < f then
        redis.call('HSET', kf, field, ARGV[i + 3])
      end
      local l = tonumber(redis.call('HGET', kl, field))
      if l == nil or tonumber(ARGV[i + 4]) > l then
        redis.call('HSET', kl, field, ARGV[i + 4])
      end
    end
    i = i + 9
  elseif tag == 's' then
    -- day, expire_at, group, field (the group itself: beyond the cap), count, last, cap, days
    local ks = p .. 'src:' .. ARGV[i + 1]
    local kl = p .. 'srclast:' .. ARGV[i + 1]
    local kn = p .. 'srcn:' .. ARGV[i + 1]
    local group, field = ARGV[i + 3], ARGV[i + 4]
    if field ~= group and redis.call('HEXISTS', ks, field) == 0 then
      if (tonumber(redis.call('HGET', kn, group)) or 0) < tonumber(ARGV[i + 7]) then
        redis.call('HINCRBY', kn, group, 1)
      else
        field = group
      end
    end
    redis.call('HINCRBY', ks, field, ARGV[i + 5])
    local l = tonumber(redis.call('HGET', kl, field))
    if l == nil or tonumber(ARGV[i + 6]) > l then
      redis.call('HSET', kl, field, ARGV[i + 6])
    end
    for _, k in ipairs({ks, kl, kn}) do
      redis.call('EXPIREAT', k, ARGV[i + 2])
    end
    redis.call('ZADD', p .. 'src:days', ARGV[i + 8], ARGV[i + 1])
    i = i + 9
  else
    return redis.error_reply('portcullis flush: unknown record ' .. tostring(tag))
  end
end
redis.call('ZREMRANGEBYSCORE', p .. 'usage:days', '-inf', '(' .. ARGV[3])
redis.call('ZREMRANGEBYSCORE', p .. 'src:days', '-inf', '(' .. ARGV[3])
redis.call('SET', marker, '1', 'EX', ARGV[4])
return 1
";

/// `KEYS`: a route's access hashes `count`, `first`, `last`, `ids`; `ARGV[1]`: unix seconds.
/// Deletes the rows last seen before it and gives their identities' row budget back.
const EXPIRE_ACCESS_LUA: &str = r"
local removed = 0
local all = redis.call('HGETALL', KEYS[3])
for j = 1, #all, 2 do
  local field, last = all[j], tonumber(all[j + 1])
  if last ~= nil and last < tonumber(ARGV[1]) then
    redis.call('HDEL', KEYS[1], field)
    redis.call('HDEL', KEYS[2], field)
    redis.call('HDEL', KEYS[3], field)
    local ok, row = pcall(cjson.decode, field)
    if ok and type(row) == 'table' and row[1] then
      if redis.call('HINCRBY', KEYS[4], row[1], -1) <= 0 then
        redis.call('HDEL', KEYS[4], row[1])
      end
    end
    removed = removed + 1
  end
end
return removed
";

/// `KEYS[1]` the revocations hash (also the channel); `ARGV`: target, at, reason. Keeps the
/// original `at` when the target is already revoked (only the reason changes). 1 when new.
const REVOKE_LUA: &str = r"
local cur = redis.call('HGET', KEYS[1], ARGV[1])
local at = ARGV[2]
if cur then
  at = string.match(cur, '^[^\n]*')
end
redis.call('HSET', KEYS[1], ARGV[1], at .. '\n' .. ARGV[3])
redis.call('PUBLISH', KEYS[1], 'revoke')
if cur then return 0 end
return 1
";

/// `KEYS[1]` the revocations hash (also the channel); `ARGV[1]` the target. 1 when deleted.
const UNREVOKE_LUA: &str = r"
local n = redis.call('HDEL', KEYS[1], ARGV[1])
if n == 1 then
  redis.call('PUBLISH', KEYS[1], 'unrevoke')
end
return n
";

fn redis_err(e: &redis::RedisError) -> String {
    // The error kind and detail; redis-rs does not echo the connection URL in errors.
    e.to_string()
}

impl RedisStore {
    /// Connect to `opts.url` and start listening for revocation changes.
    ///
    /// Does not fail when Redis is unreachable at startup: the store then reports
    /// [`StateStore::available`] `false` (the gateway answers 503 and `/readyz` is not ready)
    /// and keeps trying, so a Redis restarting at the same time as the gateway does not put the
    /// pods into a crash loop. Fails only for an unusable URL.
    pub async fn connect(opts: RedisOptions) -> Result<RedisStore, StateError> {
        check_prefix(&opts.prefix).map_err(|m| StateError(format!("prefix {m}")))?;
        let client = client_for(&opts.url, &opts.tls)?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(opts.timeout))
            .set_response_timeout(Some(opts.timeout))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(500));
        let conn = ConnectionManager::new_lazy_with_config(client.clone(), config)
            .map_err(|e| StateError(format!("redis {}: {}", opts.url, redis_err(&e))))?;
        let inner = Arc::new(Inner {
            conn,
            client,
            keys: Keys::new(&opts.prefix),
            timeout: opts.timeout,
            staleness: opts.flush_every.max(Duration::from_millis(100)) * 3,
            pending: Mutex::new(Pending::default()),
            unsent: Mutex::new(std::collections::VecDeque::new()),
            flush_lock: tokio::sync::Mutex::new(()),
            revoked: ArcSwap::from_pointee(RevocationSet::default()),
            retention: super::retention::Retention::new(opts.retention),
            revocations: tokio::sync::Mutex::new(Vec::new()),
            health: Health::new(),
            flush_script: redis::Script::new(FLUSH_LUA),
            expire_script: redis::Script::new(EXPIRE_ACCESS_LUA),
            revoke_script: redis::Script::new(REVOKE_LUA),
            unrevoke_script: redis::Script::new(UNREVOKE_LUA),
        });
        if let Err(e) = inner.refresh().await {
            tracing::warn!(redis = %opts.url, error = %e,
                "redis unreachable at startup: refusing requests until it answers");
        }
        let listener = tokio::spawn(listen(inner.clone(), opts.url.clone())).abort_handle();
        Ok(RedisStore {
            inner,
            listener,
            access_capped: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// A quota leaser for cluster-wide limits on this store's connection and prefix (so it
    /// follows the store's URL and TLS settings).
    pub fn leases(&self) -> lease::RedisLeases {
        lease::RedisLeases::new(
            self.inner.conn.clone(),
            &self.inner.keys.prefix,
            self.inner.timeout,
        )
    }

    /// Whether Redis answers now (for `/readyz` detail; [`StateStore::available`] is the cheap
    /// per-request signal).
    pub async fn ping(&self) -> Result<(), StateError> {
        let mut c = self.inner.conn.clone();
        self.inner
            .timed(redis::cmd("PING").query_async::<String>(&mut c))
            .await
            .map(drop)
    }
}

impl Drop for RedisStore {
    fn drop(&mut self) {
        self.listener.abort();
    }
}

/// Keep a pub/sub subscription to the revocations channel; re-read the set on every message and
/// after every (re)subscription, since messages published while unsubscribed are lost.
async fn listen(inner: Arc<Inner>, url: RedisUrl) {
    let mut backoff = Duration::from_millis(100);
    let mut was_up = true;
    loop {
        let subscribed = tokio::time::timeout(inner.timeout, async {
            let mut ps = inner.client.get_async_pubsub().await?;
            ps.subscribe(&inner.keys.revocations).await?;
            Ok::<_, redis::RedisError>(ps)
        })
        .await;
        match subscribed {
            Ok(Ok(ps)) => {
                // Subscribed first, then read: nothing published in between is missed. Only a
                // successful read makes up for the time the link was down.
                if inner.refresh().await.is_ok() {
                    inner.health.link_down.store(0, Ordering::Release);
                }
                if !was_up {
                    tracing::info!(redis = %url, "redis revocation channel subscribed again");
                }
                was_up = true;
                backoff = Duration::from_millis(100);
                let mut messages = ps.into_on_message();
                while messages.next().await.is_some() {
                    if inner.refresh().await.is_err() {
                        // A change we know of but could not read: stale until a read succeeds.
                        inner
                            .health
                            .link_down
                            .fetch_max(inner.health.now(), Ordering::AcqRel);
                    }
                }
                inner
                    .health
                    .link_down
                    .fetch_max(inner.health.now(), Ordering::AcqRel);
                tracing::warn!(redis = %url, "redis revocation channel lost; reconnecting");
            }
            Ok(Err(e)) => {
                mark_down(&inner);
                if was_up {
                    tracing::warn!(redis = %url, error = %redis_err(&e), "cannot subscribe to redis revocation channel; retrying");
                }
                was_up = false;
            }
            Err(_) => {
                mark_down(&inner);
                if was_up {
                    tracing::warn!(redis = %url, "redis subscribe timed out; retrying");
                }
                was_up = false;
            }
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(2));
    }
}

fn mark_down(inner: &Inner) {
    // Keep the moment it first went down: reads by the flusher since then keep the set fresh
    // (at most one flush interval late) while the subscription is retried.
    let _ = inner.health.link_down.compare_exchange(
        0,
        inner.health.now(),
        Ordering::AcqRel,
        Ordering::Acquire,
    );
}

impl Inner {
    /// Bound a Redis call by the configured timeout.
    async fn timed<T>(
        &self,
        f: impl std::future::Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, StateError> {
        match tokio::time::timeout(self.timeout, f).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(StateError(format!("redis: {}", redis_err(&e)))),
            Err(_) => Err(StateError(format!(
                "redis did not answer within {:?}",
                self.timeout
            ))),
        }
    }

    /// Re-read every revocation and swap the in-memory set.
    async fn refresh(&self) -> Result<(), StateError> {
        let mut current = self.revocations.lock().await;
        let started = self.health.now();
        let all = self.read_revocations().await?;
        self.revoked.store(Arc::new(RevocationSet::new(&all)));
        *current = all;
        self.health.refreshed.fetch_max(started, Ordering::AcqRel);
        Ok(())
    }

    async fn read_revocations(&self) -> Result<Vec<Revocation>, StateError> {
        let mut c = self.conn.clone();
        let raw: HashMap<String, String> = self
            .timed(
                redis::cmd("HGETALL")
                    .arg(&self.keys.revocations)
                    .query_async(&mut c),
            )
            .await?;
        let mut out = Vec::with_capacity(raw.len());
        for (target, value) in raw {
            // An unparseable entry must not silently un-revoke someone: fail the read (the old
            // set stays, and the store turns unavailable if this persists).
            let parsed =
                Target::from_key(&target).zip(value.split_once('\n').and_then(|(at, reason)| {
                    at.parse::<i64>().ok().map(|at| (at, reason.to_string()))
                }));
            let Some((target, (at, reason))) = parsed else {
                return Err(StateError(format!(
                    "unreadable revocation {target:?} in redis"
                )));
            };
            out.push(Revocation {
                target,
                reason,
                at: Timestamp(at),
            });
        }
        out.sort_by(|a, b| (a.at, &a.target).cmp(&(b.at, &b.target)));
        Ok(out)
    }

    /// Refresh the revocations, then write the aggregate; both are attempted.
    async fn flush(&self) -> Result<(), StateError> {
        let refreshed = self.refresh().await;
        let written = self.write_pending().await;
        if written.is_ok() {
            if let Some(cut) = self.retention.due(SystemTime::now()) {
                match self.expire_access(cut.seen).await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(rows = n, "state: expired access rows deleted"),
                    Err(e) => {
                        tracing::warn!(error = %e, "state: retention sweep failed; retried next hour")
                    }
                }
            }
        }
        refreshed.and(written)
    }

    /// Delete access rows last seen before `before`, route by route (one short script each, so
    /// Redis is never held long). Usage needs no sweep: each day's hash carries its own TTL.
    async fn expire_access(&self, before: Timestamp) -> Result<u64, StateError> {
        let pattern = format!("{}access:last:*", self.keys.prefix);
        let mut c = self.conn.clone();
        let mut keys: Vec<String> = Vec::new();
        let mut cursor: u64 = 0;
        loop {
            let (next, batch): (u64, Vec<String>) = self
                .timed(
                    redis::cmd("SCAN")
                        .arg(cursor)
                        .arg("MATCH")
                        .arg(&pattern)
                        .arg("COUNT")
                        .arg(500)
                        .query_async(&mut c),
                )
                .await?;
            keys.extend(batch);
            if next == 0 {
                break;
            }
            cursor = next;
        }
        let prefix = format!("{}access:last:", self.keys.prefix);
        let mut removed = 0u64;
        for key in keys {
            let Some(route) = key.strip_prefix(&prefix) else {
                continue;
            };
            let mut inv = self.expire_script.prepare_invoke();
            inv.key(self.keys.access("count", route))
                .key(self.keys.access("first", route))
                .key(self.keys.access("last", route))
                .key(self.keys.access("ids", route))
                .arg(before.0);
            let n: u64 = self.timed(inv.invoke_async(&mut c)).await?;
            removed += n;
        }
        Ok(removed)
    }

    /// Send unacknowledged chunks, then what was recorded since, in order.
    async fn write_pending(&self) -> Result<(), StateError> {
        let _g = self.flush_lock.lock().await;
        let mut took = false;
        loop {
            let next = self
                .unsent
                .lock()
                .map_err(|_| StateError("flush queue lock poisoned".into()))?
                .front()
                .cloned();
            let chunk = match next {
                Some(c) => c,
                None if took => return Ok(()),
                None => {
                    took = true;
                    let taken = {
                        let mut g = self
                            .pending
                            .lock()
                            .map_err(|_| StateError("pending lock poisoned".into()))?;
                        std::mem::take(&mut *g)
                    };
                    if taken.is_empty() {
                        return Ok(());
                    }
                    let chunks = chunks(&taken, self.retention.days());
                    let mut q = self
                        .unsent
                        .lock()
                        .map_err(|_| StateError("flush queue lock poisoned".into()))?;
                    q.extend(chunks.into_iter().map(Arc::new));
                    continue;
                }
            };
            self.send(&chunk).await?;
            if let Ok(mut q) = self.unsent.lock() {
                if q.front().is_some_and(|c| Arc::ptr_eq(c, &chunk)) {
                    q.pop_front();
                }
            }
        }
    }

    async fn send(&self, chunk: &Chunk) -> Result<(), StateError> {
        let oldest = Date::of(SystemTime::now())
            .days()
            .saturating_sub(self.retention.days());
        let mut inv = self.flush_script.prepare_invoke();
        inv.arg(&self.keys.prefix)
            .arg(&chunk.id)
            .arg(oldest)
            .arg(FLUSH_MARKER_SECS);
        for a in &chunk.args {
            inv.arg(a);
        }
        let mut c = self.conn.clone();
        let applied: i64 = self.timed(inv.invoke_async(&mut c)).await?;
        if applied == 0 {
            tracing::debug!(
                records = chunk.records,
                "state chunk was already written (reply lost earlier)"
            );
        }
        Ok(())
    }

    async fn read_usage(&self, since: Date) -> Result<Vec<UsageRow>, StateError> {
        let mut c = self.conn.clone();
        let days: Vec<String> = self
            .timed(
                redis::cmd("ZRANGEBYSCORE")
                    .arg(&self.keys.usage_days)
                    .arg(since.days())
                    .arg("+inf")
                    .query_async(&mut c),
            )
            .await?;
        let days: Vec<Date> = days.iter().filter_map(|d| Date::parse(d)).collect();
        if days.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for d in &days {
            pipe.cmd("HGETALL").arg(self.keys.usage(*d));
        }
        let hashes: Vec<HashMap<String, u64>> = self.timed(pipe.query_async(&mut c)).await?;
        // (day, route, plan, credential) → row; the kind is the credential's, so the same key
        // under two kinds (a credential redefined) is one row.
        let mut rows: BTreeMap<(Date, String, String, String), UsageRow> = BTreeMap::new();
        for (day, hash) in days.iter().zip(hashes) {
            for (field, count) in hash {
                let Ok((route, plan, credential, kind)) =
                    serde_json::from_str::<(String, String, String, String)>(&field)
                else {
                    continue; // not ours
                };
                let Some(kind) = kind_from_str(&kind) else {
                    continue; // written by a newer version; not ours to interpret
                };
                let row = rows
                    .entry((*day, route.clone(), plan.clone(), credential.clone()))
                    .or_insert_with(|| UsageRow {
                        day: *day,
                        route,
                        plan: (!plan.is_empty()).then_some(plan),
                        credential,
                        kind,
                        count: 0,
                    });
                row.count = row.count.saturating_add(count);
            }
        }
        Ok(rows.into_values().collect())
    }

    async fn read_inventory(&self) -> Result<Vec<InventoryEntry>, StateError> {
        let mut c = self.conn.clone();
        let ids: Vec<String> = self
            .timed(
                redis::cmd("SMEMBERS")
                    .arg(&self.keys.inventory)
                    .query_async(&mut c),
            )
            .await?;
        let mut out = Vec::with_capacity(ids.len());
        for batch in ids.chunks(1000) {
            let mut pipe = redis::pipe();
            for id in batch {
                pipe.cmd("HGETALL").arg(self.keys.entry(id));
                pipe.cmd("SMEMBERS").arg(self.keys.entry_routes(id));
            }
            let replies: Vec<redis::Value> = self.timed(pipe.query_async(&mut c)).await?;
            let mut it = replies.into_iter();
            while let (Some(h), Some(r)) = (it.next(), it.next()) {
                let h: HashMap<String, String> =
                    redis::from_redis_value(h).map_err(|e| StateError(e.to_string()))?;
                let routes: BTreeSet<String> =
                    redis::from_redis_value(r).map_err(|e| StateError(e.to_string()))?;
                if let Some(e) = parse_entry(&h, routes) {
                    out.push(e);
                }
            }
        }
        out.sort_by(|a, b| {
            let ka = a.principal.as_deref().unwrap_or(&a.identity);
            let kb = b.principal.as_deref().unwrap_or(&b.identity);
            (&a.credential, ka).cmp(&(&b.credential, kb))
        });
        Ok(out)
    }
}

/// An inventory hash, or `None` when it is incomplete or from a newer version.
impl Inner {
    async fn read_access(&self, route: &str, since: Date) -> Result<Vec<AccessRow>, StateError> {
        let mut c = self.conn.clone();
        let mut pipe = redis::pipe();
        for what in ["count", "first", "last"] {
            pipe.cmd("HGETALL").arg(self.keys.access(what, route));
        }
        let (counts, firsts, lasts): (
            HashMap<String, u64>,
            HashMap<String, i64>,
            HashMap<String, i64>,
        ) = self.timed(pipe.query_async(&mut c)).await?;
        let since = since.days().saturating_mul(86_400);
        let mut rows = Vec::with_capacity(counts.len());
        for (field, count) in counts {
            let Ok((identity, method, path)) =
                serde_json::from_str::<(String, String, String)>(&field)
            else {
                continue; // not ours
            };
            let (Some(first), Some(last)) = (firsts.get(&field), lasts.get(&field)) else {
                continue;
            };
            if *last < since {
                continue;
            }
            rows.push(AccessRow {
                route: route.to_owned(),
                identity,
                method,
                path,
                first_seen: Timestamp(*first),
                last_seen: Timestamp(*last),
                count,
            });
        }
        rows.sort_by(|a, b| {
            (&a.identity, &a.method, &a.path).cmp(&(&b.identity, &b.method, &b.path))
        });
        Ok(rows)
    }
}

impl Inner {
    /// The source rows of every day from `since` on (`src:days` indexes the days).
    async fn read_sources(&self, since: Date) -> Result<Vec<SourceRow>, StateError> {
        let mut c = self.conn.clone();
        let days: Vec<String> = self
            .timed(
                redis::cmd("ZRANGEBYSCORE")
                    .arg(format!("{}src:days", self.keys.prefix))
                    .arg(since.days())
                    .arg("+inf")
                    .query_async(&mut c),
            )
            .await?;
        let days: Vec<Date> = days.iter().filter_map(|d| Date::parse(d)).collect();
        let mut out = Vec::new();
        for batch in days.chunks(64) {
            let mut pipe = redis::pipe();
            for d in batch {
                pipe.cmd("HGETALL")
                    .arg(format!("{}src:{d}", self.keys.prefix));
                pipe.cmd("HGETALL")
                    .arg(format!("{}srclast:{d}", self.keys.prefix));
            }
            let replies: Vec<HashMap<String, i64>> = self.timed(pipe.query_async(&mut c)).await?;
            for (day, pair) in batch.iter().zip(replies.chunks(2)) {
                let (Some(counts), Some(lasts)) = (pair.first(), pair.get(1)) else {
                    continue;
                };
                out.extend(
                    counts
                        .iter()
                        .filter_map(|(field, n)| source_row(*day, field, *n, lasts.get(field))),
                );
            }
        }
        Ok(merge_rows(out))
    }
}

/// One `src:<day>` field as a row, or `None` when it is not ours.
fn source_row(day: Date, field: &str, count: i64, last: Option<&i64>) -> Option<SourceRow> {
    let parts: Vec<String> = serde_json::from_str(field).ok()?;
    let mut it = parts.into_iter();
    let (route, plan, credential, key) = (it.next()?, it.next()?, it.next()?, it.next()?);
    let source = match (it.next(), it.next()) {
        (Some(ip), Some(user_agent)) => Some(Source { ip, user_agent }),
        (None, None) => None,
        _ => return None,
    };
    Some(SourceRow {
        day,
        route,
        plan: (!plan.is_empty()).then_some(plan),
        credential,
        key,
        source,
        count: u64::try_from(count).unwrap_or(0),
        last_seen: Timestamp(last.copied().unwrap_or_else(|| day.unix_seconds())),
    })
}

fn parse_entry(h: &HashMap<String, String>, routes: BTreeSet<String>) -> Option<InventoryEntry> {
    let num = |k: &str| h.get(k).and_then(|v| v.parse::<i64>().ok());
    Some(InventoryEntry {
        credential: h.get("credential")?.clone(),
        kind: kind_from_str(h.get("kind")?)?,
        principal: h.get("principal").cloned(),
        identity: h.get("identity")?.clone(),
        routes,
        first_seen: Timestamp(num("first")?),
        last_seen: Timestamp(num("last")?),
        count: u64::try_from(num("count")?).unwrap_or(0),
        cert_not_after: num("cert_not_after").map(Timestamp),
    })
}

/// Split an aggregate into script-sized chunks, each with a fresh id.
fn chunks(p: &Pending, retention_days: i64) -> Vec<Chunk> {
    let rows = p.usage_rows();
    let entries: Vec<InventoryEntry> = p.inventory_entries().collect();
    let access = p.access_rows();
    let sources = p.source_rows();
    let records = rows
        .iter()
        .map(Record::Usage)
        .chain(entries.iter().map(Record::Inventory))
        .chain(access.iter().map(Record::Access))
        .chain(sources.iter().map(Record::Source));
    let mut out = Vec::new();
    let mut cur = Chunk {
        id: new_id(),
        args: Vec::new(),
        records: 0,
    };
    for r in records {
        r.push_args(&mut cur.args, retention_days);
        cur.records += 1;
        if cur.records >= CHUNK_RECORDS {
            out.push(std::mem::replace(
                &mut cur,
                Chunk {
                    id: new_id(),
                    args: Vec::new(),
                    records: 0,
                },
            ));
        }
    }
    if cur.records > 0 {
        out.push(cur);
    }
    out
}

fn new_id() -> String {
    format!("{:032x}", rand::random::<u128>())
}

fn millis(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

impl StateStore for RedisStore {
    fn leases(&self) -> Option<lease::RedisLeases> {
        Some(RedisStore::leases(self))
    }

    fn record(&self, usage: &Usage<'_>) {
        if let Ok(mut g) = self.inner.pending.lock() {
            g.record(usage);
        }
    }

    fn record_from(&self, usage: &Usage<'_>, ip: IpAddr, user_agent: Option<&[u8]>) {
        if let Ok(mut g) = self.inner.pending.lock() {
            g.record_from(usage, Some(SourceRef::Raw { ip, user_agent }));
        }
    }

    fn record_access(&self, access: &Access<'_>) {
        let kept = self
            .inner
            .pending
            .lock()
            .map(|mut g| g.record_access(access));
        if matches!(kept, Ok(false)) && !self.access_capped.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                route = access.route,
                cap = MAX_ACCESS_ROWS_PER_ROUTE,
                per_identity = MAX_ACCESS_ROWS_PER_IDENTITY,
                "observed-access rows for policy suggestion reached the per-route cap or a \
                 caller's share of it in this replica's memory; new combinations are not \
                 recorded (logged once)"
            );
        }
    }

    fn access<'a>(
        &'a self,
        route: &'a str,
        since: Date,
    ) -> BoxFuture<'a, Result<Vec<AccessRow>, StateError>> {
        Box::pin(async move {
            // Written first, so the answer includes this replica's latest requests (the
            // other replicas' arrive with their next flush).
            self.inner.write_pending().await?;
            self.inner.read_access(route, since).await
        })
    }

    fn is_revoked(
        &self,
        identity: &str,
        credential: &str,
        principal: Option<&str>,
        jti: Option<&str>,
    ) -> bool {
        self.inner
            .revoked
            .load()
            .contains(identity, credential, principal, jti)
    }

    fn available(&self) -> bool {
        self.inner.health.available(self.inner.staleness)
    }

    fn flush(&self) -> BoxFuture<'_, Result<(), StateError>> {
        Box::pin(self.inner.flush())
    }

    fn usage(&self, since: Date) -> BoxFuture<'_, Result<Vec<UsageRow>, StateError>> {
        Box::pin(async move {
            self.inner.write_pending().await?;
            self.inner.read_usage(since).await
        })
    }

    fn inventory(&self) -> BoxFuture<'_, Result<Vec<InventoryEntry>, StateError>> {
        Box::pin(async move {
            self.inner.write_pending().await?;
            self.inner.read_inventory().await
        })
    }

    fn sources(&self, since: Date) -> BoxFuture<'_, Result<Vec<SourceRow>, StateError>> {
        Box::pin(async move {
            self.inner.write_pending().await?;
            self.inner.read_sources(since).await
        })
    }

    fn revocations(&self) -> BoxFuture<'_, Result<Vec<Revocation>, StateError>> {
        Box::pin(self.inner.read_revocations())
    }

    fn revoke(&self, revocation: Revocation) -> BoxFuture<'_, Result<bool, StateError>> {
        Box::pin(async move {
            let inner = &self.inner;
            let mut current = inner.revocations.lock().await;
            let key = revocation.target.key();
            let mut c = inner.conn.clone();
            let new: i64 = inner
                .timed(
                    inner
                        .revoke_script
                        .key(&inner.keys.revocations)
                        .arg(&key)
                        .arg(revocation.at.0)
                        .arg(&revocation.reason)
                        .invoke_async(&mut c),
                )
                .await?;
            // Effective here on return, whatever happens to the pub/sub message.
            match current.iter_mut().find(|r| r.target == revocation.target) {
                Some(r) => r.reason = revocation.reason,
                None => current.push(revocation),
            }
            inner.revoked.store(Arc::new(RevocationSet::new(&*current)));
            Ok(new == 1)
        })
    }

    fn unrevoke<'a>(&'a self, target: &'a Target) -> BoxFuture<'a, Result<bool, StateError>> {
        Box::pin(async move {
            let inner = &self.inner;
            let mut current = inner.revocations.lock().await;
            let mut c = inner.conn.clone();
            let gone: i64 = inner
                .timed(
                    inner
                        .unrevoke_script
                        .key(&inner.keys.revocations)
                        .arg(target.key())
                        .invoke_async(&mut c),
                )
                .await?;
            current.retain(|r| r.target != *target);
            inner.revoked.store(Arc::new(RevocationSet::new(&*current)));
            Ok(gone == 1)
        })
    }

    fn password_verifier<'a>(
        &'a self,
        key: &'a str,
    ) -> BoxFuture<'a, Result<Option<String>, StateError>> {
        Box::pin(async move {
            let inner = &self.inner;
            let mut c = inner.conn.clone();
            inner
                .timed(
                    redis::cmd("GET")
                        .arg(inner.keys.verifier(key))
                        .query_async(&mut c),
                )
                .await
        })
    }

    fn set_password_verifier<'a>(
        &'a self,
        key: &'a str,
        phc: Option<&'a str>,
    ) -> BoxFuture<'a, Result<(), StateError>> {
        Box::pin(async move {
            let inner = &self.inner;
            let mut c = inner.conn.clone();
            let cmd = match phc {
                Some(phc) => redis::cmd("SET")
                    .arg(inner.keys.verifier(key))
                    .arg(phc)
                    .clone(),
                None => redis::cmd("DEL").arg(inner.keys.verifier(key)).clone(),
            };
            inner.timed(cmd.query_async::<()>(&mut c)).await
        })
    }
}

impl ReplayGuard for RedisStore {
    fn first_seen<'a>(
        &'a self,
        key: &'a str,
        now: SystemTime,
        until: SystemTime,
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        Box::pin(async move {
            if until <= now {
                // Already outside the acceptance window: nothing to remember (as in memory).
                return Ok(true);
            }
            let inner = &self.inner;
            let mut c = inner.conn.clone();
            // NX: only the first delivery sets it; PXAT: it expires when the message could no
            // longer pass the timestamp check anyway.
            let set: Option<String> = inner
                .timed(
                    redis::cmd("SET")
                        .arg(inner.keys.replay(key))
                        .arg(1)
                        .arg("NX")
                        .arg("PXAT")
                        .arg(millis(until))
                        .query_async(&mut c),
                )
                .await
                .map_err(|e| StoreError(e.0))?;
            Ok(set.is_some())
        })
    }
}

pub mod lease;

#[cfg(test)]
mod tests;
