//! What the gateway remembers across requests and restarts: usage per plan per day, the
//! inventory of every identity and legacy principal seen, and revocations.
//!
//! The request path only ever touches memory: [`StateStore::record`] adds to an in-memory
//! aggregate (no I/O per request) and [`StateStore::is_revoked`] reads an in-memory set. The
//! aggregate is written to the backend by [`StateStore::flush`], which [`spawn_flusher`] calls
//! every few seconds and once more at shutdown, so a graceful shutdown loses nothing (a crash
//! loses at most one flush interval of counts; revocations are written through at once).
//!
//! Backends: [`embedded::EmbeddedStore`] (`[state] backend = "embedded"`: SQLite file, or memory
//! only) and [`redis::RedisStore`] (`backend = "redis"`, shared by every replica): revocations
//! are written through, announced on pub/sub and re-read on every flush, so `is_revoked` stays a
//! memory read everywhere. A shared backend can lose its link; [`StateStore::available`] tells
//! the pipeline when the in-memory revocation set can no longer be trusted, so it fails closed.

pub mod embedded;
mod pending;
pub mod redis;
pub mod replay;
pub mod retention;
mod revocations;
pub mod sources;

use std::collections::BTreeSet;
use std::future::Future;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures_util::future::BoxFuture;
use serde::Serialize;

use crate::identity::lineage::Lineage;
use crate::identity::{Credential, Kind};
use crate::time::{Date, Timestamp};

pub use self::redis::{RedisOptions, RedisStore, RedisTls, RedisUrl};
pub use embedded::EmbeddedStore;
pub use retention::DEFAULT_RETENTION;
pub use revocations::{admit, RevocationSet};
pub use sources::{Source, SourceRow};

/// The state backend failed; callers that need it to decide (revocations) fail closed.
#[derive(Debug, Clone, thiserror::Error)]
#[error("state store: {0}")]
pub struct StateError(pub String);

/// One authenticated request, as recorded for usage and inventory. Borrowed: recording copies
/// only what is not already aggregated.
#[derive(Debug, Clone, Copy)]
pub struct Usage<'a> {
    pub at: SystemTime,
    pub route: &'a str,
    /// The route's plan, if any.
    pub plan: Option<&'a str>,
    /// Config name of the credential that authenticated the request.
    pub credential: &'a str,
    pub kind: Kind,
    /// The caller's (mapped) SPIFFE ID.
    pub identity: &'a str,
    /// Legacy user or key id; never a secret.
    pub principal: Option<&'a str>,
    /// For mTLS: `notAfter` of the client certificate presented.
    pub cert_not_after: Option<SystemTime>,
    /// Where the request came from (shared-credential detection, per-plan principal counts).
    pub source: Option<&'a Source>,
}

impl<'a> Usage<'a> {
    /// The usage of an authenticated credential on `route`.
    pub fn of(cred: &'a Credential, route: &'a str, plan: Option<&'a str>, at: SystemTime) -> Self {
        Usage {
            at,
            route,
            plan,
            credential: &cred.name,
            kind: cred.kind,
            identity: &cred.identity,
            principal: cred.principal.as_deref(),
            cert_not_after: None,
            source: None,
        }
    }
}

/// One permitted request forwarded upstream for an authenticated caller, as recorded for
/// `policy suggest`. The path is already templated ([`Access::of`]), so a route's distinct rows
/// are bounded by its operations and callers, not by the object ids in its URLs.
#[derive(Debug, Clone)]
pub struct Access<'a> {
    pub at: SystemTime,
    pub route: &'a str,
    /// The caller's SPIFFE ID.
    pub identity: &'a str,
    pub method: &'a str,
    /// The normalized path without query, identifier-like segments replaced by `*`.
    pub path: std::borrow::Cow<'a, str>,
}

impl<'a> Access<'a> {
    /// The access of `identity` to `method path` on `route`; `path` is the normalized request
    /// path (no query), templated here with the rule of [`crate::path_template`].
    ///
    /// `None` for a path with a literal `*` segment: stored templates use `*` for "any one
    /// segment", so recording it would let a caller widen its own suggested access to every
    /// object. Such a request is not recorded (the suggestion then lacks it: less access, never
    /// more).
    pub fn of(
        route: &'a str,
        identity: &'a str,
        method: &'a str,
        path: &'a str,
        at: SystemTime,
    ) -> Option<Self> {
        use crate::path_template::{template_path, PLACEHOLDER};
        // `contains` first: one memchr, where splitting costs a search per segment.
        if path.contains(PLACEHOLDER) && path.split('/').any(|s| s == PLACEHOLDER) {
            return None;
        }
        Some(Access {
            at,
            route,
            identity,
            method,
            path: template_path(path),
        })
    }
}

/// Distinct (identity, method, path template) rows kept per route. Far above what templated
/// real traffic produces; reached only by a caller walking odd paths, whose new rows are then
/// dropped (logged once) rather than growing memory and the state file without bound.
pub const MAX_ACCESS_ROWS_PER_ROUTE: usize = 10_000;

/// Distinct (method, path template) rows kept per identity on one route: each caller's share of
/// [`MAX_ACCESS_ROWS_PER_ROUTE`], so no caller can crowd the others out of `policy suggest` (or
/// fill the route with its own walk). Far above the operations one caller really uses; beyond
/// it that caller's new rows are dropped, so the suggestion only ever errs towards less access.
pub const MAX_ACCESS_ROWS_PER_IDENTITY: usize = 100;

/// Allowed requests of one identity with one method on one path template of a route.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AccessRow {
    pub route: String,
    pub identity: String,
    pub method: String,
    /// Templated: identifier-like segments are `*`.
    pub path: String,
    pub first_seen: Timestamp,
    pub last_seen: Timestamp,
    /// All requests of this kind ever recorded (not only since the query's `since`).
    pub count: u64,
}

/// Requests on one day, route, plan and credential.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UsageRow {
    pub day: Date,
    pub route: String,
    /// `None` for a route without a plan.
    pub plan: Option<String>,
    pub credential: String,
    #[serde(serialize_with = "ser_kind")]
    pub kind: Kind,
    pub count: u64,
}

/// One identity or legacy principal seen through one credential.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct InventoryEntry {
    pub credential: String,
    #[serde(serialize_with = "ser_kind")]
    pub kind: Kind,
    /// Legacy user or key id (`None` for workload identities and webhooks).
    pub principal: Option<String>,
    /// The SPIFFE ID it was mapped to (the latest, if the mapping changed).
    pub identity: String,
    pub routes: BTreeSet<String>,
    pub first_seen: Timestamp,
    pub last_seen: Timestamp,
    pub count: u64,
    /// For mTLS: `notAfter` of the last client certificate presented.
    pub cert_not_after: Option<Timestamp>,
}

/// What a revocation matches.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Target {
    /// A SPIFFE ID, whatever credential it authenticated with.
    Identity(String),
    /// A legacy principal of one credential (`racf:JSMITH`).
    Credential { name: String, principal: String },
    /// One token id.
    Jti(String),
}

impl Target {
    /// The stable text form: `identity:<id>`, `credential:<name>:<principal>`, `jti:<jti>`.
    pub fn key(&self) -> String {
        match self {
            Target::Identity(i) => format!("identity:{i}"),
            Target::Credential { name, principal } => format!("credential:{name}:{principal}"),
            Target::Jti(j) => format!("jti:{j}"),
        }
    }

    /// Parse [`Target::key`]'s form.
    pub fn from_key(s: &str) -> Option<Target> {
        let (kind, rest) = s.split_once(':')?;
        match kind {
            "identity" => Target::identity(rest),
            "credential" => Target::credential(rest),
            "jti" => Target::jti(rest),
            _ => None,
        }
    }

    /// `--identity ID`: a SPIFFE ID, by the same strict rules as authentication (no trailing
    /// `/`, no upper-case trust domain, ASCII only): anything else could never match a caller.
    pub fn identity(id: &str) -> Option<Target> {
        crate::identity::SpiffeId::parse(id)
            .ok()
            .map(|_| Target::Identity(id.to_string()))
    }

    /// `--credential NAME:PRINCIPAL` (split at the first `:`; principals may contain colons).
    pub fn credential(s: &str) -> Option<Target> {
        let (name, principal) = s.split_once(':')?;
        (!name.is_empty() && !principal.is_empty() && clean(s)).then(|| Target::Credential {
            name: name.to_string(),
            principal: principal.to_string(),
        })
    }

    /// `--jti JTI`.
    pub fn jti(j: &str) -> Option<Target> {
        (!j.is_empty() && clean(j)).then(|| Target::Jti(j.to_string()))
    }
}

/// Printable, bounded: targets are shown in tables and logs. Invisible formatting characters
/// (bidi overrides such as U+202E, zero-width characters) are refused too: a target holding one
/// displays as another and never matches what it shows.
fn clean(s: &str) -> bool {
    s.len() <= 1024 && !s.chars().any(|c| c.is_control() || is_invisible(c))
}

/// Characters that change how text is displayed without being seen: bidi controls, zero-width
/// characters, the BOM, interlinear annotation marks, the soft hyphen.
pub fn is_invisible(c: char) -> bool {
    matches!(
        c,
        '\u{00AD}'
            | '\u{061C}'
            | '\u{180E}'
            | '\u{200B}'..='\u{200F}'
            | '\u{202A}'..='\u{202E}'
            | '\u{2060}'..='\u{2069}'
            | '\u{FEFF}'
            | '\u{FFF9}'..='\u{FFFB}'
    )
}

/// A revocation: refused from `at` on, until deleted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revocation {
    pub target: Target,
    pub reason: String,
    pub at: Timestamp,
}

impl Serialize for Revocation {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(Some(4))?;
        match &self.target {
            Target::Identity(i) => m.serialize_entry("identity", i)?,
            Target::Credential { name, principal } => {
                m.serialize_entry("credential", &format!("{name}:{principal}"))?;
            }
            Target::Jti(j) => m.serialize_entry("jti", j)?,
        }
        m.serialize_entry("target", &self.target.key())?;
        m.serialize_entry("reason", &self.reason)?;
        m.serialize_entry("at", &self.at)?;
        m.end()
    }
}

/// The state backend. Object-safe; async methods return boxed futures.
pub trait StateStore: Send + Sync + std::fmt::Debug {
    /// Count one request (memory only, never blocks on I/O).
    fn record(&self, usage: &Usage<'_>);

    /// [`StateStore::record`] of a request from `ip` with `user_agent` (the header's bytes, if
    /// any): counted exactly as with `usage.source = Some(&Source::of(ip, user_agent))`, which
    /// is not read. The request path's form: the address is formatted and the agent copied only
    /// when the source is new in the flush interval, not on every request.
    fn record_from(&self, usage: &Usage<'_>, ip: IpAddr, user_agent: Option<&[u8]>) {
        let source = Source::of(ip, user_agent);
        self.record(&Usage {
            source: Some(&source),
            ..*usage
        });
    }

    /// Note one permitted, forwarded request for policy suggestion (memory only, never blocks on
    /// I/O; written by [`StateStore::flush`] with the usage). At most
    /// [`MAX_ACCESS_ROWS_PER_ROUTE`] distinct rows per route are kept.
    fn record_access(&self, access: &Access<'_>);

    /// The access rows of `route` last seen on or after `since` (UTC day), including what is not
    /// flushed yet.
    fn access<'a>(
        &'a self,
        route: &'a str,
        since: Date,
    ) -> BoxFuture<'a, Result<Vec<AccessRow>, StateError>>;

    /// Whether a caller is revoked: by identity, by `credential:principal`, or by token id.
    /// Memory only.
    fn is_revoked(
        &self,
        identity: &str,
        credential: &str,
        principal: Option<&str>,
        jti: Option<&str>,
    ) -> bool;

    /// Whether [`StateStore::is_revoked`] can be trusted right now. Memory only (an atomic
    /// load), cheap enough for every request. When `false` the pipeline refuses with 503
    /// `directory-unavailable` and `/readyz` reports the state backend not ready: a replica that
    /// may have missed a revocation must not serve the revoked caller. Local backends are always
    /// available; a shared one is not while its revocation set is stale (see
    /// [`redis::RedisStore`]).
    fn available(&self) -> bool {
        true
    }

    /// Whether revocations survive a restart. `false` for the embedded store without `[state]
    /// path` (memory only): `revoke` says so, so that no operator believes a revocation is
    /// permanent when it ends at the next restart.
    fn durable(&self) -> bool {
        true
    }

    /// Quota leases for cluster-wide limits (`scope = "cluster"`), on a shared backend only.
    fn leases(&self) -> Option<redis::lease::RedisLeases> {
        None
    }

    /// Write the in-memory aggregate to the backend (and, for shared backends, refresh the
    /// revocation set). On error nothing recorded is lost: the next flush retries.
    fn flush(&self) -> BoxFuture<'_, Result<(), StateError>>;

    /// Usage rows from `since` (inclusive) on, including what is not flushed yet.
    fn usage(&self, since: Date) -> BoxFuture<'_, Result<Vec<UsageRow>, StateError>>;

    /// The inventory, including what is not flushed yet.
    fn inventory(&self) -> BoxFuture<'_, Result<Vec<InventoryEntry>, StateError>>;

    /// Source rows from `since` (inclusive) on, including what is not flushed yet: per day,
    /// route, plan and principal, at most [`sources::MAX_SOURCES`] sources each plus one
    /// overflow row.
    fn sources(&self, since: Date) -> BoxFuture<'_, Result<Vec<SourceRow>, StateError>>;

    /// Every revocation.
    fn revocations(&self) -> BoxFuture<'_, Result<Vec<Revocation>, StateError>>;

    /// Add (or replace the reason of) a revocation; effective on return. `Ok(true)` when new.
    fn revoke(&self, revocation: Revocation) -> BoxFuture<'_, Result<bool, StateError>>;

    /// Delete a revocation; `Ok(true)` when there was one.
    fn unrevoke<'a>(&'a self, target: &'a Target) -> BoxFuture<'a, Result<bool, StateError>>;

    /// The slow verifier (an Argon2id PHC string, never a password) of the last password an LDAP
    /// account bound with, under `key` (credential and account). Kept here so that a restart or
    /// another replica still knows it: it lets the account's owner in once strangers have spent
    /// the account's failure budget (`src/authn/ldap/verifier.rs`).
    fn password_verifier<'a>(
        &'a self,
        key: &'a str,
    ) -> BoxFuture<'a, Result<Option<String>, StateError>>;

    /// Store (`Some`) or forget (`None`) the verifier under `key`.
    fn set_password_verifier<'a>(
        &'a self,
        key: &'a str,
        phc: Option<&'a str>,
    ) -> BoxFuture<'a, Result<(), StateError>>;
}

/// Flush `store` every `every` until `shutdown` resolves, then flush once more. Await the handle
/// on graceful shutdown (after the listeners have drained) so the last counts are written.
pub fn spawn_flusher(
    store: Arc<dyn StateStore>,
    every: Duration,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every.max(Duration::from_millis(100)));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                () = &mut shutdown => break,
                _ = tick.tick() => {
                    if let Err(e) = store.flush().await {
                        tracing::warn!(error = %e, "state flush failed; will retry");
                    }
                }
            }
        }
        final_flush(&*store).await;
    })
}

/// How long the last flush at shutdown keeps retrying while the backend does not answer.
pub const FINAL_FLUSH_FOR: Duration = Duration::from_secs(10);

/// The last flush, at shutdown: retried every 250 ms for up to [`FINAL_FLUSH_FOR`], so that a
/// replica stopped during a short Redis outage (a Redis restart or failover during a rollout)
/// still writes the counts it holds once Redis answers, instead of dropping them at the first
/// failed attempt. Only then are they lost, and the log says so.
pub async fn final_flush(store: &dyn StateStore) {
    let deadline = tokio::time::Instant::now() + FINAL_FLUSH_FOR;
    let mut warned = false;
    loop {
        match store.flush().await {
            Ok(()) => {
                if warned {
                    tracing::info!("final state flush written after retrying");
                }
                return;
            }
            Err(e) if tokio::time::Instant::now() >= deadline => {
                tracing::error!(error = %e, "final state flush failed: recent usage counts are lost");
                return;
            }
            Err(e) => {
                if !warned {
                    tracing::warn!(error = %e, retry_for = ?FINAL_FLUSH_FOR,
                        "final state flush failed; retrying before exit");
                    warned = true;
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        }
    }
}

// `Kind` lives in authn without serde; serialize it as its config spelling.
fn ser_kind<S: serde::Serializer>(k: &Kind, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(k.as_str())
}

/// Parse a stored kind.
pub(crate) fn kind_from_str(s: &str) -> Option<Kind> {
    [
        Kind::Mtls,
        Kind::JwtSvid,
        Kind::Ldap,
        Kind::ApiKey,
        Kind::Webhook,
    ]
    .into_iter()
    .find(|k| k.as_str() == s)
}

/// Revocation of a presented token's lineage lives with the store it reads.
impl Lineage {
    /// Whether anything in the lineage is revoked. `identity` is the caller's (a token keeps its
    /// root's `sub`, so identity revocation needs nothing more).
    pub fn revoked(&self, state: &dyn StateStore, identity: &str) -> bool {
        state.is_revoked(identity, &self.credential, self.principal.as_deref(), None)
            || self
                .jtis
                .iter()
                .any(|j| state.is_revoked(identity, &self.credential, None, Some(j)))
    }
}

#[cfg(test)]
mod tests;
