//! [`LdapAuthenticator`]: the LDAP credential as an [`Authenticator`].

use rustls_pki_types::pem::PemObject;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use base64::Engine as _;
use futures_util::future::BoxFuture;
use http::header::AUTHORIZATION;
use http::request::Parts;
use http::{HeaderMap, HeaderValue};

use super::cache::{Bound as CachedBind, Cache, Digest, Hasher};
use super::directory::{Directory, Resolved, Verdict};
use super::lockout::{Admit, Finish, Lockout};
use super::pool::{Pool, Security, Target};
use super::verifier::Verifiers;
use super::{LdapSettings, LdapStats, SettingsError};
use crate::adapters::BindMode;
use crate::authn::identity::IdentityTemplate;
use crate::authn::{Authenticator, Outcome};
use crate::conn::ConnInfo;
use crate::identity::{Credential, Kind};
use crate::problem::{Code, Refusal};

/// Longest password sent to a directory (RACF passphrases are at most 100).
pub const MAX_PASSWORD_LEN: usize = 1024;
/// Longest `Authorization: Basic` value looked at.
const MAX_BASIC_LEN: usize = 4096;

/// The `detail` of every wrong-credential refusal: never which half was wrong.
const INVALID: &str = "the user name or password was not accepted";

/// Why an `Authorization: Basic` header could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BasicError {
    #[error("several Authorization headers")]
    Several,
    #[error("Basic credentials too long")]
    TooLong,
    #[error("Basic credentials are not valid base64")]
    Base64,
    #[error("Basic credentials are not UTF-8")]
    Utf8,
    #[error("Basic credentials have no ':' between user and password")]
    NoColon,
}

/// `Some((user, password))` from `Authorization: Basic …`; `None` when there is no Basic
/// credential (no header, or another scheme).
pub fn parse_basic(headers: &HeaderMap) -> Result<Option<(String, String)>, BasicError> {
    let mut values = headers.get_all(AUTHORIZATION).iter();
    let Some(first) = values.next() else {
        return Ok(None);
    };
    let rest = values.next();
    let basic = |v: &HeaderValue| basic_payload(v.as_bytes()).is_some();
    if rest.is_some() {
        // Two Authorization headers are ambiguous; refuse if either claims to be Basic.
        return if headers.get_all(AUTHORIZATION).iter().any(basic) {
            Err(BasicError::Several)
        } else {
            Ok(None)
        };
    }
    let Some(payload) = basic_payload(first.as_bytes()) else {
        return Ok(None);
    };
    if payload.len() > MAX_BASIC_LEN {
        return Err(BasicError::TooLong);
    }
    let raw = base64::engine::general_purpose::STANDARD
        .decode(payload)
        .map_err(|_| BasicError::Base64)?;
    let text = String::from_utf8(raw).map_err(|_| BasicError::Utf8)?;
    let (user, password) = text.split_once(':').ok_or(BasicError::NoColon)?;
    Ok(Some((user.to_owned(), password.to_owned())))
}

/// The token after a case-insensitive `Basic` scheme, trimmed.
fn basic_payload(v: &[u8]) -> Option<&[u8]> {
    let scheme = v.get(..5)?;
    let rest = v.get(5..)?;
    if !scheme.eq_ignore_ascii_case(b"basic") {
        return None;
    }
    if !rest.is_empty() && !rest.starts_with(b" ") && !rest.starts_with(b"\t") {
        return None; // "Basicfoo" is another scheme
    }
    Some(rest.trim_ascii())
}

fn is_basic(v: &HeaderValue) -> bool {
    basic_payload(v.as_bytes()).is_some()
}

/// One configured `kind = "ldap"` credential.
///
/// Succeeds with `principal` = the user in the directory's case (the adapter's `principal_case`), `identity`
/// from the template (lower-cased), `groups` from the adapter's group attribute.
#[derive(Debug)]
pub struct LdapAuthenticator {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    name: Arc<str>,
    identity: IdentityTemplate,
    directory: Directory,
    cache: Cache,
    /// Shared with the authenticator this one replaced on a config reload when the limits are
    /// the same (see [`LdapAuthenticator::keeping_counters_of`]).
    lockout: Arc<Lockout>,
    /// Last good passwords in the state store, for owners of accounts over their budget.
    verifiers: Option<Verifiers>,
    /// Shared with the lockout it digests passwords for (its known-good digests).
    hasher: Arc<HasherDebug>,
    stats: Arc<LdapStats>,
    retry_after: u64,
    op_timeout: std::time::Duration,
}

struct HasherDebug(Hasher);

impl std::fmt::Debug for HasherDebug {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Hasher(<random key>)")
    }
}

impl LdapAuthenticator {
    /// Check the settings and build the credential. Opens no connection: the directory is first
    /// contacted by the first request that needs it (so a directory down at start-up is a 503,
    /// not a failed start).
    pub fn new(name: Arc<str>, s: LdapSettings) -> Result<Self, SettingsError> {
        s.profile.check()?;
        let target = target(&s)?;
        let service = match (s.bind_dn, s.bind_password) {
            (Some(dn), Some(pw)) => Some((dn, pw)),
            (None, None) => None,
            _ => {
                return Err(SettingsError::new(
                    "bind_dn",
                    "bind_dn and bind_password_file go together",
                ))
            }
        };
        if service.is_none() && s.profile.bind == BindMode::Search {
            tracing::warn!(credential = %name, "search-then-bind without a service account: searching anonymously");
        }
        if s.max_failures < 2 {
            return Err(SettingsError::new(
                "max_failures",
                "must allow at least 2 failures per window (one is kept for the last known-good password)",
            ));
        }
        if s.failure_window.is_zero() {
            return Err(SettingsError::new(
                "max_failures",
                "the window must not be zero",
            ));
        }
        if s.max_source_failures == 0 {
            return Err(SettingsError::new(
                "max_source_failures",
                "must be at least 1",
            ));
        }
        if s.pool_size == 0 || s.pool_size > 1024 {
            return Err(SettingsError::new(
                "pool_size",
                "must be between 1 and 1024",
            ));
        }
        if s.connect_timeout.is_zero() || s.op_timeout.is_zero() {
            return Err(SettingsError::new("timeout", "timeouts must not be zero"));
        }
        let stats = Arc::new(LdapStats::default());
        let pool = Pool::new(
            target,
            s.pool_size,
            s.connect_timeout,
            s.op_timeout,
            stats.clone(),
        );
        let directory = Directory {
            pool,
            profile: s.profile,
            base_dn: s.base_dn,
            service,
            stats: stats.clone(),
        };
        let mut lockout = Lockout::new(
            s.max_failures,
            s.max_source_failures,
            s.failure_window,
            s.tracked_entries,
        );
        // A shared state backend also shares the per-account failure counts across replicas.
        if let Some(leases) = s.verifiers.as_ref().and_then(|st| st.leases()) {
            lockout
                .share(&name, crate::limits::cluster::lease_fn(leases))
                .map_err(|e| SettingsError::new("max_failures", e))?;
        }
        Ok(LdapAuthenticator {
            inner: Arc::new(Inner {
                identity: s.identity,
                directory,
                cache: Cache::new(s.cache_ttl, s.cache_entries),
                lockout: Arc::new(lockout),
                verifiers: s.verifiers.map(|st| Verifiers::new(st, name.clone())),
                name,
                hasher: Arc::new(HasherDebug(Hasher::random())),
                stats,
                retry_after: s.retry_after.as_secs().max(1),
                op_timeout: s.op_timeout,
            }),
        })
    }

    /// A config reload builds a new authenticator; this one keeps the failure counters (per
    /// account, per source, guesses against verifiers) of `previous` when its limits are the
    /// same, so a reload never resets a lockout a password spray has earned. The bind cache is
    /// not kept: the directory or its settings may have changed.
    pub fn keeping_counters_of(mut self, previous: &LdapAuthenticator) -> Self {
        let old = &previous.inner;
        if let Some(inner) = Arc::get_mut(&mut self.inner) {
            if inner.lockout.same_limits(&old.lockout) {
                inner.lockout = old.lockout.clone();
                inner.hasher = old.hasher.clone();
            }
        }
        self
    }

    /// Counters (LDAP operations, cache hits, lockout refusals…).
    pub fn stats(&self) -> &LdapStats {
        &self.inner.stats
    }

    /// Forget what was learnt about `user` (cached binds, known-good password), so the next
    /// request binds again: for revocation. Returns the number of cached binds dropped.
    pub fn evict_principal(&self, user: &str) -> usize {
        let user = self
            .inner
            .directory
            .profile
            .principal(user)
            .unwrap_or_else(|| user.to_owned());
        let accounts = self.inner.lockout.forget_principal(&user);
        self.inner.cache.evict(&user, &accounts)
    }

    /// Check `user` + `password` from `source`: the whole credential check without HTTP.
    pub async fn verify(
        &self,
        user: &str,
        password: &str,
        source: IpAddr,
        now: SystemTime,
    ) -> Result<Credential, Refusal> {
        match self.lookup(user, password, now) {
            Lookup::Done(r) => r,
            Lookup::Miss(miss) => self.ask_directory(miss, password, source, now).await,
        }
    }

    /// Everything before the directory, without an `await`: the password's and the name's
    /// checks, then the bind cache. A hit (the usual case) is answered here, so
    /// [`Authenticator::authenticate`] allocates no future for the directory's path (that
    /// state machine is ~10 KB, and boxing it copied all of it for every request).
    fn lookup(&self, user: &str, password: &str, now: SystemTime) -> Lookup {
        let inner = &self.inner;
        // Before anything reaches the directory.
        if password.is_empty() {
            return Lookup::Done(Err(invalid("empty password")));
        }
        if password.len() > MAX_PASSWORD_LEN {
            return Lookup::Done(Err(invalid("password too long")));
        }
        let profile = &inner.directory.profile;
        // The name as sent to the directory, and the principal: its one spelling under the
        // directory's comparison rule, so `ALICE` cannot dodge a revocation of `alice`.
        let (Some(bind_user), Some(user)) = (profile.normalize_user(user), profile.principal(user))
        else {
            return Lookup::Done(Err(invalid("user name not accepted by the adapter")));
        };
        let cache_key = inner.hasher.0.digest(&user, password);
        if let Some(hit) = inner.cache.get(&cache_key, now) {
            inner.stats.cache_hits.inc();
            return Lookup::Done(Ok(inner.credential(&hit)));
        }
        Lookup::Miss(Miss {
            bind_user,
            user,
            cache_key,
        })
    }

    /// The directory's path, for what [`Self::lookup`] could not answer. A cached bind
    /// carries the identity it was mapped to, so the mapping is made here, once per bind.
    async fn ask_directory(
        &self,
        miss: Miss,
        password: &str,
        source: IpAddr,
        now: SystemTime,
    ) -> Result<Credential, Refusal> {
        let Miss {
            bind_user,
            user,
            cache_key,
        } = miss;
        let inner = &self.inner;
        let identity = inner.identity.map(&user).map_err(|e| {
            Refusal::new(
                Code::InvalidCredential,
                format!("this user cannot be mapped to a workload identity: {e}"),
            )
        })?;
        let deadline = Instant::now() + inner.op_timeout;
        loop {
            // Register for wake-ups before deciding, so a finish in between is not missed.
            let finished = inner.lockout.finished.notified();
            let resolved = match inner.directory.resolve(&bind_user).await {
                Ok(Some(r)) => r,
                Ok(None) => {
                    inner.lockout.source_failure(source, now);
                    return Err(invalid("no such user"));
                }
                Err(e) => return Err(inner.unavailable(&e.0)),
            };
            // Failures are counted per entry, as the directory counts them.
            let account = resolved.dn.to_lowercase();
            let pw = inner.hasher.0.digest(&account, password);
            match inner
                .admit(&account, &pw, password, source, now, deadline)
                .await
            {
                Admit::Refuse => {
                    inner.stats.locked_out.inc();
                    inner.lockout.source_failure(source, now);
                    tracing::info!(credential = %inner.name, principal = %user, "LDAP failure limit reached: refused without asking the directory");
                    return Err(invalid("failure limit reached"));
                }
                Admit::Wait => {
                    if tokio::time::timeout_at(deadline.into(), finished)
                        .await
                        .is_err()
                    {
                        return Err(inner.unavailable("timed out waiting for a check in flight"));
                    }
                    // The check we waited for may have cached this very bind.
                    if let Some(hit) = inner.cache.get(&cache_key, now) {
                        inner.stats.cache_hits.inc();
                        return Ok(inner.credential(&hit));
                    }
                }
                Admit::Ask { known_good } => {
                    let attempt = Attempt {
                        user,
                        account,
                        resolved,
                        password: password.to_owned(),
                        pw,
                        cache_key,
                        known_good,
                        source,
                        now,
                        identity: identity.as_str().into(),
                    };
                    // The bind's span is a child of the request's `authenticate` span.
                    let ask =
                        crate::telemetry::within("ldap bind", Inner::ask(inner.clone(), attempt));
                    return match tokio::spawn(ask).await {
                        Ok(r) => r,
                        Err(_) => Err(inner.unavailable("LDAP check failed")),
                    };
                }
            }
        }
    }

    fn outcome(&self, r: Result<Credential, Refusal>) -> Outcome {
        match r {
            Ok(c) => Outcome::Authenticated(c),
            Err(r) => Outcome::Rejected(r),
        }
    }
}

/// What [`LdapAuthenticator::lookup`] found before any `await`.
enum Lookup {
    /// Answered: a cached bind, or a refusal that needs no directory.
    Done(Result<Credential, Refusal>),
    /// The bind cache has no answer: the directory must be asked.
    Miss(Miss),
}

/// A check the bind cache could not answer, as [`LdapAuthenticator::lookup`] prepared it.
struct Miss {
    /// The name as sent to the directory.
    bind_user: String,
    /// The principal (the name under the directory's comparison rule).
    user: String,
    cache_key: Digest,
}

fn invalid(why: &'static str) -> Refusal {
    tracing::debug!(reason = why, "LDAP credential refused");
    Refusal::new(Code::InvalidCredential, INVALID)
}

impl Inner {
    fn credential(&self, b: &CachedBind) -> Credential {
        Credential {
            name: self.name.clone(),
            kind: Kind::Ldap,
            identity: b.identity.to_string(),
            principal: Some(b.user.to_string()),
            groups: b.groups.to_vec(),
            jti: None,
            lineage: None,
        }
    }

    fn unavailable(&self, why: &str) -> Refusal {
        self.stats.unavailable.inc();
        tracing::warn!(credential = %self.name, reason = why, "LDAP directory unavailable");
        Refusal::new(
            Code::DirectoryUnavailable,
            "the LDAP directory is unavailable; try again later",
        )
        .retry_after(self.retry_after)
    }

    /// The lockout table's decision, with the stored verifier's say once the account's budget
    /// is spent: a password that matches it is the owner's and gets the reserved bind; anything
    /// else is refused without touching the directory ([`super::verifier`]).
    async fn admit(
        &self,
        account: &str,
        pw: &super::cache::Digest,
        password: &str,
        source: IpAddr,
        now: SystemTime,
        deadline: Instant,
    ) -> Admit {
        let stored = match &self.verifiers {
            Some(v) => v.get(account).await,
            None => None,
        };
        let first = self
            .lockout
            .admit(account, pw, source, now, stored.is_some());
        let (Admit::Refuse, Some(stored), Some(v)) = (first, stored, &self.verifiers) else {
            return first;
        };
        if !self.lockout.verifier_guess(account, source, now) {
            return Admit::Refuse;
        }
        match v.check(account, password, stored, deadline).await {
            Some(true) => {}
            Some(false) => return Admit::Refuse,
            None => {
                // No check could run in time (others were being checked): not a wrong
                // password. Waiting past the deadline answers 503 with Retry-After, as for a
                // directory that does not answer.
                self.lockout.verified(account, source);
                return Admit::Wait;
            }
        }
        self.lockout.verified(account, source);
        self.stats.verified_locally.inc();
        tracing::warn!(
            credential = %self.name,
            ldap.account = account,
            source = %source,
            "LDAP failure limit reached; the password matched the account's stored verifier: binding with the reserved attempt"
        );
        self.lockout.admit_verified(account, now)
    }

    /// Bind and record the outcome, on its own task: it runs to completion even if the request
    /// that started it goes away, so in-flight counts always come back down.
    async fn ask(self: Arc<Self>, a: Attempt) -> Result<Credential, Refusal> {
        // Should the bind panic, the guard still releases the in-flight slot.
        let mut guard = FinishGuard {
            inner: &self,
            a: &a,
            how: Finish::Unavailable,
        };
        match self.directory.bind_as(&a.resolved, &a.password).await {
            Ok(Verdict::Valid { dn, groups }) => {
                tracing::debug!(credential = %self.name, principal = %a.user, ldap.dn = %dn, "LDAP bind succeeded");
                let bound = CachedBind {
                    user: a.user.as_str().into(),
                    account: a.account.as_str().into(),
                    identity: a.identity.clone(),
                    groups: groups.into(),
                };
                self.cache.insert(a.cache_key, bound.clone(), a.now);
                guard.how = Finish::Success;
                drop(guard);
                if !a.known_good {
                    // A password not known good bound: it is the account's last good one now.
                    if let Some(v) = &self.verifiers {
                        v.remember(&a.account, &a.password).await;
                    }
                }
                Ok(self.credential(&bound))
            }
            Ok(Verdict::Invalid {
                reason,
                failed_bind,
            }) => {
                tracing::info!(credential = %self.name, principal = %a.user, reason, ldap.failed_bind = failed_bind, "LDAP credential refused");
                guard.how = Finish::Failure;
                drop(guard);
                if a.known_good {
                    // The known-good password no longer binds (changed in the directory).
                    if let Some(v) = &self.verifiers {
                        v.forget(&a.account).await;
                    }
                }
                Err(Refusal::new(Code::InvalidCredential, INVALID))
            }
            Err(e) => {
                drop(guard);
                Err(self.unavailable(&e.0))
            }
        }
    }
}

/// One admitted bind.
struct Attempt {
    /// The principal (the directory's case).
    user: String,
    /// The lockout key: the entry's DN, lower-cased.
    account: String,
    resolved: Resolved,
    password: String,
    /// Digest of (account, password): the known-good memory.
    pw: Digest,
    /// Digest of (user, password): the cache key.
    cache_key: Digest,
    known_good: bool,
    source: IpAddr,
    now: SystemTime,
    identity: Arc<str>,
}

/// Reports an admitted attempt's end to the lockout table exactly once.
struct FinishGuard<'a> {
    inner: &'a Inner,
    a: &'a Attempt,
    how: Finish,
}

impl Drop for FinishGuard<'_> {
    fn drop(&mut self) {
        let a = self.a;
        self.inner.lockout.finish(
            &a.account,
            &a.pw,
            a.known_good,
            &a.user,
            a.source,
            self.how,
            a.now,
        );
    }
}

impl Authenticator for LdapAuthenticator {
    fn name(&self) -> &Arc<str> {
        &self.inner.name
    }

    fn kind(&self) -> Kind {
        Kind::Ldap
    }

    fn challenge(&self) -> Option<HeaderValue> {
        Some(HeaderValue::from_static("Basic realm=\"portcullis\""))
    }

    /// The adapter's rule, as at authentication: `ALICE` is `alice` in a directory that
    /// lower-cases principals. A name the adapter or the identity mapping refuses never
    /// authenticates.
    fn canonical_principal(&self, principal: &str) -> Result<String, String> {
        let profile = &self.inner.directory.profile;
        let p = profile.principal(principal).ok_or_else(|| {
            format!(
                "not a user name the {} adapter accepts (length, characters)",
                profile.adapter
            )
        })?;
        self.inner
            .identity
            .map(&p)
            .map_err(|e| format!("this user cannot authenticate: {e}"))?;
        Ok(p)
    }

    fn canonical_identity(&self, id: &str) -> Option<String> {
        self.inner
            .identity
            .canonical(id)
            .map(|i| i.as_str().to_owned())
    }

    fn authenticate<'a>(
        &'a self,
        req: &'a Parts,
        conn: &'a ConnInfo,
        now: SystemTime,
    ) -> BoxFuture<'a, Outcome> {
        let ready = |o: Outcome| -> BoxFuture<'a, Outcome> { Box::pin(std::future::ready(o)) };
        let (user, password) = match parse_basic(&req.headers) {
            Ok(None) => return ready(Outcome::NotPresent),
            Err(e) => {
                return ready(Outcome::Rejected(Refusal::new(
                    Code::InvalidCredential,
                    e.to_string(),
                )))
            }
            Ok(Some(pair)) => pair,
        };
        // A cached bind is answered without an `await`; only a miss boxes the directory's
        // path (see `lookup`).
        match self.lookup(&user, &password, now) {
            Lookup::Done(r) => ready(self.outcome(r)),
            Lookup::Miss(miss) => {
                let source = conn.peer.ip();
                Box::pin(async move {
                    let r = self.ask_directory(miss, &password, source, now).await;
                    self.outcome(r)
                })
            }
        }
    }

    /// Remove every Basic `Authorization` header; other schemes are left to their owners.
    fn strip(&self, req: &mut Parts) {
        if !req.headers.get_all(AUTHORIZATION).iter().any(is_basic) {
            return;
        }
        let keep: Vec<HeaderValue> = req
            .headers
            .get_all(AUTHORIZATION)
            .iter()
            .filter(|v| !is_basic(v))
            .cloned()
            .collect();
        req.headers.remove(AUTHORIZATION);
        for v in keep {
            req.headers.append(AUTHORIZATION, v);
        }
    }
}

/// Where to connect, from `url`, `starttls` and `ca_file`.
fn target(s: &LdapSettings) -> Result<Target, SettingsError> {
    let bad = |m: &str| SettingsError::new("url", m.to_owned());
    let (security, rest, default_port) = if let Some(r) = s.url.strip_prefix("ldaps://") {
        (Security::Ldaps, r, 636)
    } else if let Some(r) = s.url.strip_prefix("ldap://") {
        let sec = if s.starttls {
            Security::StartTls
        } else {
            Security::Plain
        };
        (sec, r, 389)
    } else {
        return Err(bad("must start with ldap:// or ldaps://"));
    };
    let authority = rest.strip_suffix('/').unwrap_or(rest);
    if authority.is_empty() || authority.contains(['/', '?', '#', '@']) {
        return Err(bad("must be ldap[s]://host[:port] with nothing after"));
    }
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (h, after) = v6.split_once(']').ok_or_else(|| bad("unclosed '['"))?;
        let port = match after.strip_prefix(':') {
            Some(p) => p.parse().map_err(|_| bad("bad port"))?,
            None if after.is_empty() => default_port,
            None => return Err(bad("bad port")),
        };
        (h.to_owned(), port)
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h.to_owned(), p.parse().map_err(|_| bad("bad port"))?),
            None => (authority.to_owned(), default_port),
        }
    };
    if host.is_empty() {
        return Err(bad("missing host"));
    }
    let tls = match security {
        Security::Plain => {
            if s.ca_file.is_some() {
                return Err(SettingsError::new(
                    "ca",
                    "a CA is only used with ldaps:// or starttls = true",
                ));
            }
            None
        }
        Security::StartTls | Security::Ldaps => Some(Arc::new(tls_config(s.ca_file.as_deref())?)),
    };
    Ok(Target {
        url: format!(
            "{}://{}/",
            if security == Security::Ldaps {
                "ldaps"
            } else {
                "ldap"
            },
            authority
        ),
        host,
        port,
        security,
        tls,
    })
}

fn tls_config(ca: Option<&std::path::Path>) -> Result<rustls::ClientConfig, SettingsError> {
    let err = |m: String| SettingsError::new("ca", m);
    let mut roots = rustls::RootCertStore::empty();
    match ca {
        Some(path) => {
            let pem = std::fs::read(path).map_err(|e| err(format!("{}: {e}", path.display())))?;
            for cert in rustls_pki_types::CertificateDer::pem_slice_iter(&pem) {
                let cert = cert.map_err(|e| err(format!("{}: {e}", path.display())))?;
                roots
                    .add(cert)
                    .map_err(|e| err(format!("{}: {e}", path.display())))?;
            }
            if roots.is_empty() {
                return Err(err(format!("{}: no certificate found", path.display())));
            }
        }
        None => {
            for cert in rustls_native_certs::load_native_certs().certs {
                let _ = roots.add(cert);
            }
        }
    }
    let cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| err(e.to_string()))?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(cfg)
}
