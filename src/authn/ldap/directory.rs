//! The LDAP conversation for one user + password: find the user's DN (DN template or
//! search-then-bind through the service account), bind as it, read its groups.
//!
//! Two steps, so that the lockout table can be consulted in between: [`Directory::resolve`]
//! finds the entry's DN, [`Directory::bind_as`] binds as it.
//!
//! Round trips on a warm pool: DN template = bind (+ a base search for groups, as the user);
//! search = search as the service account (groups come with it) + bind.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use ldap3::{LdapError, LdapResult, ResultEntry, Scope, SearchEntry, SearchOptions};

use super::escape::{dn_value, fill, filter_value};
use super::pool::{Bound, Lease, Pool, Unavailable};
use super::{BindSecret, LdapStats, Profile};
use crate::adapters::{BindMode, GroupValue};

/// LDAP result codes we act on (RFC 4511 §4.1.9).
const RC_SUCCESS: u32 = 0;
const RC_SIZE_LIMIT: u32 = 4;
const RC_NO_SUCH_OBJECT: u32 = 32;
const RC_INVALID_CREDENTIALS: u32 = 49;
const RC_BUSY: u32 = 51;
const RC_UNAVAILABLE: u32 = 52;
const RC_UNWILLING: u32 = 53;

/// Most groups kept per user (a bound on memory per cache entry).
const MAX_GROUPS: usize = 256;

/// What the directory said about a user + password.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Verdict {
    /// Bound: the entry's DN and group names.
    Valid { dn: String, groups: Vec<String> },
    /// The directory refused the bind (`failed_bind`: it counted a failed password, as
    /// `invalidCredentials` does).
    Invalid {
        reason: &'static str,
        failed_bind: bool,
    },
}

/// A user's entry, found but not yet bound.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Resolved {
    pub dn: String,
    /// Already read by the search (search-then-bind), or to be read after the bind.
    pub groups: Option<Vec<String>>,
}

/// The directory side of one credential.
pub(super) struct Directory {
    pub pool: Pool,
    pub profile: Profile,
    pub base_dn: String,
    pub service: Option<(String, BindSecret)>,
    pub stats: Arc<LdapStats>,
}

impl std::fmt::Debug for Directory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Directory")
            .field("pool", &self.pool)
            .field("base_dn", &self.base_dn)
            .field("service", &self.service.as_ref().map(|(dn, _)| dn))
            .finish_non_exhaustive()
    }
}

fn transport(e: LdapError) -> Unavailable {
    Unavailable(format!("LDAP operation failed: {e}"))
}

impl Directory {
    /// Find the entry `user` (normalized, not yet escaped) names, without binding as it: the
    /// DN template filled in (no round trip), or a search as the service account (which also
    /// brings the groups). `None`: no such user. The DN is what the lockout table counts
    /// against, because that is what the directory locks: `Alice`, `alice` and `alice ` may all
    /// find the same entry.
    pub async fn resolve(&self, user: &str) -> Result<Option<Resolved>, Unavailable> {
        match self.profile.bind {
            BindMode::DnTemplate => {
                let template = self.profile.dn_template.as_deref().unwrap_or_default();
                let dn = fill(
                    template,
                    &[("user", &dn_value(user)), ("base_dn", &self.base_dn)],
                );
                Ok(Some(Resolved { dn, groups: None }))
            }
            // Its own span inside the request's `authenticate` (the bind has one too).
            BindMode::Search => {
                crate::telemetry::within("ldap search", self.search_user(user)).await
            }
        }
    }

    async fn search_user(&self, user: &str) -> Result<Option<Resolved>, Unavailable> {
        let filter_t = self.profile.user_filter.as_deref().unwrap_or_default();
        let filter = fill(filter_t, &[("user", &filter_value(user))]);
        let attr = self.profile.group_attribute.as_deref().unwrap_or("1.1");
        let mut lease = self.pool.get(Bound::Service).await?;
        self.bind_service(&mut lease).await?;
        let (entries, rc) = self
            .search(&mut lease, &self.base_dn, Scope::Subtree, &filter, attr)
            .await?;
        lease.release();
        match (rc, entries.as_slice()) {
            (RC_SUCCESS, [one]) => Ok(Some(Resolved {
                dn: one.dn.clone(),
                groups: Some(self.groups(one)),
            })),
            (RC_SUCCESS | RC_NO_SUCH_OBJECT, []) => Ok(None),
            (RC_SUCCESS | RC_SIZE_LIMIT, _) => {
                tracing::warn!("LDAP user filter matched several entries; refusing");
                Ok(None)
            }
            (rc, _) => Err(Unavailable(format!(
                "user search failed with LDAP result {rc}"
            ))),
        }
    }

    /// Bind as the resolved entry with `password` (not empty), then read its groups if the
    /// search did not already bring them (as the user itself: DN-template directories such as
    /// RACF need no service account).
    pub async fn bind_as(&self, r: &Resolved, password: &str) -> Result<Verdict, Unavailable> {
        let mut lease = self.pool.get(Bound::User).await?;
        if let Some(v) = self.bind_user(&mut lease, &r.dn, password).await? {
            lease.release();
            return Ok(v);
        }
        let groups = match (&r.groups, self.profile.group_attribute.as_deref()) {
            (Some(g), _) => g.clone(),
            (None, Some(attr)) => {
                let (entries, rc) = self
                    .search(&mut lease, &r.dn, Scope::Base, "(objectClass=*)", attr)
                    .await?;
                if rc != RC_SUCCESS {
                    tracing::warn!(
                        ldap.rc = rc,
                        ldap.attribute = attr,
                        "could not read the user's groups; continuing without"
                    );
                }
                entries.first().map(|e| self.groups(e)).unwrap_or_default()
            }
            (None, None) => Vec::new(),
        };
        lease.release();
        Ok(Verdict::Valid {
            dn: r.dn.clone(),
            groups,
        })
    }

    /// Bind as the user; `None` when it succeeded, the verdict otherwise.
    async fn bind_user(
        &self,
        lease: &mut Lease<'_>,
        dn: &str,
        password: &str,
    ) -> Result<Option<Verdict>, Unavailable> {
        let res = self.bind(lease, dn, password).await?;
        let conn_bound = match res.rc {
            RC_SUCCESS => Bound::User,
            _ => Bound::Anonymous,
        };
        if let Some(c) = lease.conn() {
            c.bound = conn_bound;
        }
        match res.rc {
            RC_SUCCESS => Ok(None),
            RC_INVALID_CREDENTIALS => {
                self.stats.failed_binds.inc();
                Ok(Some(Verdict::Invalid {
                    reason: "invalid credentials",
                    failed_bind: true,
                }))
            }
            RC_BUSY | RC_UNAVAILABLE => Err(Unavailable(format!("directory answered {}", res.rc))),
            // unwillingToPerform and the like: a revoked or expired account, or a server policy.
            // The password may well have been wrong: count it, to stay on the safe side.
            rc => {
                self.stats.failed_binds.inc();
                tracing::info!(ldap.rc = rc, ldap.text = %res.text, "LDAP bind refused");
                Ok(Some(Verdict::Invalid {
                    reason: if rc == RC_UNWILLING {
                        "directory unwilling to bind (account revoked, expired or locked?)"
                    } else {
                        "bind refused"
                    },
                    failed_bind: true,
                }))
            }
        }
    }

    /// Make the leased connection bound as the service account (or anonymous, without one).
    async fn bind_service(&self, lease: &mut Lease<'_>) -> Result<(), Unavailable> {
        let want = if self.service.is_some() {
            Bound::Service
        } else {
            Bound::Anonymous
        };
        if lease.conn().is_some_and(|c| c.bound == want) {
            return Ok(());
        }
        let (dn, pw) = match &self.service {
            Some((dn, pw)) => (dn.as_str(), pw.expose()),
            None => ("", ""),
        };
        let res = self.bind(lease, dn, pw).await?;
        if res.rc != RC_SUCCESS {
            // Not the caller's fault: the gateway's own account is refused. Fail closed as a
            // directory problem, loudly (and mind that repeated failures can revoke it).
            tracing::error!(
                ldap.rc = res.rc,
                ldap.bind_dn = dn,
                "LDAP service account bind refused"
            );
            return Err(Unavailable(format!(
                "the service account bind was refused (LDAP result {})",
                res.rc
            )));
        }
        if let Some(c) = lease.conn() {
            c.bound = want;
        }
        Ok(())
    }

    async fn bind(
        &self,
        lease: &mut Lease<'_>,
        dn: &str,
        password: &str,
    ) -> Result<LdapResult, Unavailable> {
        let timeout = self.pool.op_timeout();
        let conn = lease
            .conn()
            .ok_or_else(|| Unavailable("no connection".into()))?;
        self.stats.binds.inc();
        conn.ldap
            .with_timeout(timeout)
            .simple_bind(dn, password)
            .await
            .map_err(transport)
    }

    async fn search(
        &self,
        lease: &mut Lease<'_>,
        base: &str,
        scope: Scope,
        filter: &str,
        attr: &str,
    ) -> Result<(Vec<SearchEntry>, u32), Unavailable> {
        let timeout = self.pool.op_timeout();
        let conn = lease
            .conn()
            .ok_or_else(|| Unavailable("no connection".into()))?;
        self.stats.searches.inc();
        let time_limit = i32::try_from(timeout.as_secs().max(1)).unwrap_or(i32::MAX);
        let res = conn
            .ldap
            .with_timeout(timeout)
            .with_search_options(SearchOptions::new().sizelimit(2).timelimit(time_limit))
            .search(base, scope, filter, vec![attr])
            .await
            .map_err(transport)?;
        let rc = res.1.rc;
        let mut entries = Vec::with_capacity(res.0.len());
        for re in res.0 {
            entries.push(construct(re)?);
        }
        Ok((entries, rc))
    }

    /// Group names from the entry's group attribute (matched case-insensitively, as LDAP
    /// attribute names are).
    fn groups(&self, entry: &SearchEntry) -> Vec<String> {
        let Some(attr) = self.profile.group_attribute.as_deref() else {
            return Vec::new();
        };
        entry
            .attrs
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(attr))
            .flat_map(|(_, vs)| vs.iter())
            .filter_map(|v| match self.profile.group_value {
                GroupValue::AsIs => Some(v.clone()),
                GroupValue::FirstRdn => first_rdn_value(v),
            })
            .filter(|g| !g.is_empty())
            .take(MAX_GROUPS)
            .collect()
    }
}

/// ldap3's entry parser panics on a malformed entry; a directory answer must not be able to
/// panic a request.
fn construct(re: ResultEntry) -> Result<SearchEntry, Unavailable> {
    std::panic::catch_unwind(AssertUnwindSafe(|| SearchEntry::construct(re)))
        .map_err(|_| Unavailable("malformed entry in LDAP search result".into()))
}

/// `cn=ops,ou=groups,dc=example,dc=org` → `ops`; a value that is not a DN is kept as is.
/// RFC 4514 escapes in the value are undone (`\2c` and `\,` → `,`).
pub(super) fn first_rdn_value(v: &str) -> Option<String> {
    let Some(eq) = v.find('=') else {
        return Some(v.to_owned());
    };
    let raw = v.get(eq + 1..)?;
    let mut out = Vec::with_capacity(raw.len());
    let bytes = raw.as_bytes();
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        match b {
            b',' | b'+' => break,
            b'\\' => {
                let hex = bytes
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok());
                if let Some(h) = hex {
                    out.push(h);
                    i += 3;
                } else {
                    out.push(*bytes.get(i + 1)?);
                    i += 2;
                }
            }
            _ => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok().map(|s| s.trim().to_owned())
}

#[cfg(test)]
mod tests;
