//! The LDAP credential (`kind = "ldap"`): HTTP Basic checked by an LDAP bind.
//!
//! Order of checks for one request, cheapest and safest first:
//!
//! 1. parse `Authorization: Basic` (absent → `NotPresent`; malformed → 401);
//! 2. refuse before LDAP: empty password (an empty simple bind is an *anonymous* bind, which
//!    succeeds — RFC 4513 §5.1.2), over-long password, a user name the adapter rejects
//!    (length, characters), a user that cannot be mapped to a SPIFFE ID;
//! 3. the bind cache (keyed digest of user + password): a hit makes no LDAP request;
//! 4. the user's entry ([`directory`]): the DN template filled in, or a search as the service
//!    account (a search cannot lock an account);
//! 5. the lockout table ([`lockout`]), per entry DN and per source: over the limit, unknown
//!    passwords are refused without a bind; the last known-good one still binds, also after a
//!    restart or on another replica when it matches the account's stored verifier
//!    ([`verifier`], so a stranger cannot lock the owner out);
//! 6. the bind through a bounded pool ([`pool`]), then the groups from the adapter's group
//!    attribute. Unreachable or timing out → 503 `directory-unavailable` with `Retry-After`,
//!    never 401 and never allow.
//!
//! The directory check runs on its own task, so a caller that disconnects cannot cancel a bind
//! half-way and leave the lockout accounting wrong.
//!
//! Configuration maps 1:1 onto [`LdapSettings`]; the adapter preset (`adapters/*.toml`) gives a
//! [`Profile`] whose public fields the credential's own keys override.

mod authenticator;
mod cache;
mod directory;
pub mod escape;
mod lockout;
mod pool;
mod verifier;

#[cfg(test)]
mod tests;

use std::path::PathBuf;
use std::time::Duration;

pub use authenticator::{parse_basic, BasicError, LdapAuthenticator};

use crate::adapters::{BindMode, GroupValue, LdapAdapter, PrincipalCase, UserCase};
use crate::authn::identity::IdentityTemplate;
use crate::metrics::Counter;

/// The service account's password: redacted in `Debug`, wiped on drop.
#[derive(Clone)]
pub struct BindSecret(String);

impl BindSecret {
    /// Wrap a password read from `bind_password_file` / `bind_password_env` (surrounding
    /// whitespace, such as the file's final newline, is trimmed).
    pub fn new(s: impl Into<String>) -> Self {
        BindSecret(s.into().trim().to_owned())
    }

    fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for BindSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BindSecret(<redacted>)")
    }
}

impl Drop for BindSecret {
    fn drop(&mut self) {
        // Safe zeroing: replace the bytes through a Vec we own.
        let mut bytes = std::mem::take(&mut self.0).into_bytes();
        bytes.iter_mut().for_each(|b| *b = 0);
        std::hint::black_box(&bytes);
    }
}

/// How this credential talks to its directory: the adapter preset with the credential's own
/// overrides applied (set the fields after [`Profile::from_adapter`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Profile {
    /// Adapter name, for logs.
    pub adapter: String,
    pub bind: BindMode,
    /// `{user}` (RFC 4514-escaped) and `{base_dn}`.
    pub dn_template: Option<String>,
    /// `{user}` (RFC 4515-escaped).
    pub user_filter: Option<String>,
    pub group_attribute: Option<String>,
    pub group_value: GroupValue,
    pub user_case: UserCase,
    /// How the directory compares names: the principal's one spelling.
    pub principal_case: PrincipalCase,
    pub max_user_len: usize,
    /// When set, user names may contain only ASCII letters, digits and these.
    pub user_extra_chars: Option<String>,
}

impl Profile {
    /// The adapter's settings.
    pub fn from_adapter(a: &LdapAdapter) -> Self {
        Profile {
            adapter: a.name().to_owned(),
            bind: a.bind(),
            dn_template: a.dn_template().map(str::to_owned),
            user_filter: a.user_filter().map(str::to_owned),
            group_attribute: a.group_attribute().map(str::to_owned),
            group_value: a.group_value(),
            user_case: a.user_case(),
            principal_case: a.principal_case(),
            max_user_len: a.max_user_len(),
            user_extra_chars: a.user_extra_chars().map(str::to_owned),
        }
    }

    /// The user name as used for binding, caching, lockout and identity, or `None` when the
    /// adapter does not accept it ([`crate::adapters::normalize_user`]).
    pub fn normalize_user(&self, user: &str) -> Option<String> {
        crate::adapters::normalize_user(
            user,
            self.user_case,
            self.max_user_len,
            self.user_extra_chars.as_deref(),
        )
    }

    /// The principal of `user`: the one spelling, per the directory's comparison rule, used for
    /// everything after the bind (revocation, inventory, lockout, cache, audit, the token's
    /// `legacy` claim, the identity mapping). `None` when the adapter does not accept the name.
    pub fn principal(&self, user: &str) -> Option<String> {
        self.normalize_user(user)
            .map(|u| self.principal_case.apply(&u))
    }

    fn check(&self) -> Result<(), SettingsError> {
        match self.bind {
            BindMode::DnTemplate => {
                let t = self.dn_template.as_deref().unwrap_or_default();
                if t.matches("{user}").count() != 1 {
                    return Err(SettingsError::new(
                        "dn_template",
                        "must contain {user} exactly once",
                    ));
                }
            }
            BindMode::Search => {
                let f = self.user_filter.as_deref().unwrap_or_default();
                if !(f.contains("{user}") && f.starts_with('(') && f.ends_with(')')) {
                    return Err(SettingsError::new(
                        "user_filter",
                        "must be a parenthesized LDAP filter containing {user}",
                    ));
                }
                let probe = escape::fill(f, &[("user", "x")]);
                if ldap3::parse_filter(&probe).is_err() {
                    return Err(SettingsError::new(
                        "user_filter",
                        "is not a valid LDAP filter",
                    ));
                }
            }
        }
        if let Some(attr) = &self.group_attribute {
            let ok = attr.starts_with(|c: char| c.is_ascii_alphabetic())
                && attr.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
            if !ok {
                return Err(SettingsError::new(
                    "group_attribute",
                    "must be an LDAP attribute name",
                ));
            }
        }
        if !(1..=1024).contains(&self.max_user_len) {
            return Err(SettingsError::new(
                "max_user_len",
                "must be between 1 and 1024",
            ));
        }
        Ok(())
    }
}

/// A resolved `[credentials.NAME]` table of `kind = "ldap"`.
#[derive(Debug, Clone)]
pub struct LdapSettings {
    /// `ldap://host[:port]` or `ldaps://host[:port]`.
    pub url: String,
    /// Upgrade `ldap://` with StartTLS (ignored for `ldaps://`).
    pub starttls: bool,
    /// PEM file of CA certificates for `ldaps://`/StartTLS; none: the system's roots.
    pub ca_file: Option<PathBuf>,
    /// Service account for search-then-bind (both or neither with `bind_password`).
    pub bind_dn: Option<String>,
    pub bind_password: Option<BindSecret>,
    /// Search base, or `{base_dn}` in a DN template.
    pub base_dn: String,
    pub profile: Profile,
    /// `identity = "spiffe://…/{user}"`.
    pub identity: IdentityTemplate,
    /// How long a successful bind is reused; zero disables the cache.
    pub cache_ttl: Duration,
    /// Most cached binds.
    pub cache_entries: usize,
    /// `max_failures = "3/15m"`: failed binds per user per window (at least 2).
    pub max_failures: u32,
    pub failure_window: Duration,
    /// Failures per source address per window before its unknown passwords are refused.
    pub max_source_failures: u32,
    /// Most users and most source addresses tracked by the lockout tables.
    pub tracked_entries: usize,
    /// Most LDAP connections open at once.
    pub pool_size: usize,
    pub connect_timeout: Duration,
    /// Per LDAP operation, and the longest wait for a free pooled connection.
    pub op_timeout: Duration,
    /// `Retry-After` on 503 `directory-unavailable`.
    pub retry_after: Duration,
    /// Where the verifiers of last good passwords live (the state store); none: only what this
    /// process saw bind is known good ([`verifier`]).
    pub verifiers: Option<std::sync::Arc<dyn crate::state::StateStore>>,
}

impl LdapSettings {
    /// Settings with the defaults for everything but the essentials.
    pub fn new(
        url: impl Into<String>,
        base_dn: impl Into<String>,
        profile: Profile,
        identity: IdentityTemplate,
    ) -> Self {
        LdapSettings {
            url: url.into(),
            starttls: false,
            ca_file: None,
            bind_dn: None,
            bind_password: None,
            base_dn: base_dn.into(),
            profile,
            identity,
            cache_ttl: Duration::from_secs(60),
            cache_entries: 10_000,
            max_failures: 3,
            failure_window: Duration::from_secs(15 * 60),
            max_source_failures: 30,
            tracked_entries: 100_000,
            pool_size: 8,
            connect_timeout: Duration::from_secs(3),
            op_timeout: Duration::from_secs(5),
            retry_after: Duration::from_secs(5),
            verifiers: None,
        }
    }
}

/// A setting that cannot work, with the config key it came from.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {message}")]
pub struct SettingsError {
    /// The credential table's key (`url`, `max_failures`, …).
    pub key: &'static str,
    pub message: String,
}

impl SettingsError {
    fn new(key: &'static str, message: impl Into<String>) -> Self {
        SettingsError {
            key,
            message: message.into(),
        }
    }
}

/// Counters for tests, the benchmark and `/metrics`.
#[derive(Debug, Default)]
pub struct LdapStats {
    /// TCP connections opened to the directory.
    pub connects: Counter,
    /// Bind requests sent (service account and users).
    pub binds: Counter,
    /// Binds the directory refused for a user.
    pub failed_binds: Counter,
    /// Search requests sent.
    pub searches: Counter,
    pub cache_hits: Counter,
    /// Requests refused by the lockout tables without asking the directory.
    pub locked_out: Counter,
    /// Passwords over the failure budget that matched the account's stored verifier (and went
    /// on to the reserved bind).
    pub verified_locally: Counter,
    /// Requests answered 503 because the directory was unreachable.
    pub unavailable: Counter,
}

impl LdapStats {
    /// Operations sent to the directory (binds + searches).
    pub fn operations(&self) -> u64 {
        self.binds.get() + self.searches.get()
    }
}
