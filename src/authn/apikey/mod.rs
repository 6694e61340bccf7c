//! `kind = "api-key"`: a static key in a header (`X-API-Key`) or, for legacy clients, a query
//! parameter (`?api_key=`), looked up by its SHA-256 in a [`KeyStore`].
//!
//! * No key in the request: `NotPresent` (the route's next credential is tried).
//! * The key presented more than once (the header twice, header and query, the parameter
//!   twice under any spelling): 400 `invalid-request`. Which one would count is ambiguous, and a
//!   backend might pick another; no legitimate client does it.
//! * Empty, longer than [`MAX_KEY_LEN`] bytes, unknown, or expired: 401 `invalid-credential`.
//!   The detail says "expired" for an expired key (its holder already knows it was a key) and
//!   nothing more; an over-long key is refused before hashing.
//! * Otherwise a [`Credential`] with `principal` = the key id, `identity` = the key's SPIFFE ID,
//!   and no groups. The key's `owner` is an administrative label (who to ask), not an
//!   authorization attribute, so it is logged but not handed to policy: a policy should name the
//!   SPIFFE ID or the key id.
//!
//! Header values are used as received (HTTP already trims surrounding whitespace); query values
//! are form-decoded, as any backend would read them. See [`query`] for parameter name matching
//! and stripping.

pub mod issue;
mod query;
pub mod store;

use std::sync::Arc;
use std::time::SystemTime;

use futures_util::future::BoxFuture;
use http::request::Parts;
use http::uri::PathAndQuery;
use http::{HeaderName, HeaderValue, Uri};

use crate::authn::{Authenticator, Outcome};
use crate::conn::ConnInfo;
use crate::identity::{Credential, Kind};
use crate::problem::{Code, Refusal};

pub use store::{hash_key, parse_expires, KeyEntry, KeyStore, Keys};

/// Longest key accepted (bytes, before hashing).
pub const MAX_KEY_LEN: usize = 256;

/// One configured `kind = "api-key"` credential.
#[derive(Debug)]
pub struct ApiKeyAuthenticator {
    name: Arc<str>,
    header: HeaderName,
    query_param: Option<String>,
    keys: Arc<KeyStore>,
    challenge: HeaderValue,
}

/// A key taken from a request: decoded query values are owned, and wiped on drop.
enum Presented<'a> {
    Header(&'a [u8]),
    Query(Vec<u8>),
}

impl Presented<'_> {
    fn bytes(&self) -> &[u8] {
        match self {
            Presented::Header(b) => b,
            Presented::Query(v) => v,
        }
    }
}

impl Drop for Presented<'_> {
    fn drop(&mut self) {
        if let Presented::Query(v) = self {
            v.iter_mut().for_each(|b| *b = 0);
            std::hint::black_box(&v);
        }
    }
}

impl ApiKeyAuthenticator {
    /// `name`: the credential's config name; `header`: `header` (default `X-API-Key`);
    /// `query_param`: `query_param` if configured; `keys`: the store loaded from `keys_file`
    /// (give the same `Arc` to `reload::spawn_watcher` so edits take effect).
    pub fn new(
        name: Arc<str>,
        header: HeaderName,
        query_param: Option<String>,
        keys: Arc<KeyStore>,
    ) -> Self {
        // `ApiKey header="x-api-key"`: not a registered scheme, but it tells a developer
        // reading the 401 where the key goes. The query parameter is not advertised.
        let challenge = HeaderValue::from_str(&format!("ApiKey header=\"{header}\""))
            .unwrap_or_else(|_| HeaderValue::from_static("ApiKey"));
        ApiKeyAuthenticator {
            name,
            header,
            query_param: query_param.filter(|q| !q.is_empty()),
            keys,
            challenge,
        }
    }

    /// The store (for `check` summaries and inventory).
    pub fn keys(&self) -> &Arc<KeyStore> {
        &self.keys
    }

    /// Find the one presented key, or say why there is none / more than one.
    fn presented<'a>(&self, req: &'a Parts) -> Result<Option<Presented<'a>>, Refusal> {
        let twice = || {
            Refusal::new(
                Code::InvalidRequest,
                "the API key is presented more than once",
            )
        };
        let mut headers = req.headers.get_all(&self.header).iter();
        let from_header = headers.next();
        if headers.next().is_some() {
            return Err(twice());
        }
        let from_query = match (&self.query_param, req.uri.query()) {
            (Some(name), Some(q)) => match query::find(q, name) {
                query::Found::None => None,
                query::Found::One(v) => Some(v),
                query::Found::Many => return Err(twice()),
            },
            _ => None,
        };
        match (from_header, from_query) {
            (None, None) => Ok(None),
            (Some(_), Some(_)) => Err(twice()),
            (Some(h), None) => Ok(Some(Presented::Header(h.as_bytes()))),
            (None, Some(q)) => Ok(Some(Presented::Query(query::form_decode(q.as_bytes())))),
        }
    }

    /// The synchronous check behind [`Authenticator::authenticate`].
    pub fn check(&self, req: &Parts, now: SystemTime) -> Outcome {
        let key = match self.presented(req) {
            Ok(Some(k)) => k,
            Ok(None) => return Outcome::NotPresent,
            Err(r) => return self.refuse(r, "presented more than once", None),
        };
        let key = key.bytes();
        if key.is_empty() || key.len() > MAX_KEY_LEN {
            return self.refuse(
                Refusal::new(Code::InvalidCredential, "malformed API key"),
                "empty or too long",
                None,
            );
        }
        let found = self.keys.lookup(key, |entry| {
            if entry.is_expired(now) {
                return Err(self.refuse(
                    Refusal::new(Code::InvalidCredential, "API key expired"),
                    "expired",
                    Some(&entry.id),
                ));
            }
            tracing::debug!(
                credential = %self.name,
                apikey.id = %entry.id,
                apikey.owner = entry.owner.as_deref().unwrap_or("-"),
                "API key accepted"
            );
            Ok(Credential {
                name: self.name.clone(),
                kind: Kind::ApiKey,
                identity: entry.identity.as_str().to_owned(),
                principal: Some(entry.id.clone()),
                groups: Vec::new(),
                jti: None,
                lineage: None,
            })
        });
        match found {
            Some(Ok(credential)) => Outcome::Authenticated(credential),
            Some(Err(expired)) => expired,
            None => self.refuse(
                Refusal::new(Code::InvalidCredential, "API key not recognised"),
                "unknown key",
                None,
            ),
        }
    }

    fn refuse(&self, r: Refusal, reason: &str, id: Option<&str>) -> Outcome {
        tracing::info!(credential = %self.name, principal = id.unwrap_or("-"), reason, "API key refused");
        Outcome::Rejected(r)
    }
}

impl Authenticator for ApiKeyAuthenticator {
    fn name(&self) -> &Arc<str> {
        &self.name
    }

    fn kind(&self) -> Kind {
        Kind::ApiKey
    }

    /// Key ids are compared exactly (they come from the keys file, never from a caller).
    fn canonical_principal(&self, principal: &str) -> Result<String, String> {
        store::valid_id(principal)
            .map(|()| principal.to_owned())
            .map_err(|e| format!("an API key id {e}"))
    }

    fn challenge(&self) -> Option<HeaderValue> {
        Some(self.challenge.clone())
    }

    fn authenticate<'a>(
        &'a self,
        req: &'a Parts,
        _conn: &'a ConnInfo,
        now: SystemTime,
    ) -> BoxFuture<'a, Outcome> {
        Box::pin(futures_util::future::ready(self.check(req, now)))
    }

    /// Remove the header (every value) and every spelling of the query parameter; the rest of
    /// the target is kept byte for byte.
    fn strip(&self, req: &mut Parts) {
        req.headers.remove(&self.header);
        let Some(name) = &self.query_param else {
            return;
        };
        let Some(rest) = req.uri.query().and_then(|q| query::strip(q, name)) else {
            return;
        };
        let path = req.uri.path();
        let pq = if rest.is_empty() {
            path.to_owned()
        } else {
            format!("{path}?{rest}")
        };
        let mut parts = req.uri.clone().into_parts();
        let rebuilt = PathAndQuery::try_from(pq).ok().and_then(|pq| {
            parts.path_and_query = Some(pq);
            Uri::from_parts(parts).ok()
        });
        req.uri = match rebuilt {
            Some(u) => u,
            // Cannot happen (only bytes of a valid query were removed); if it did, the whole
            // query goes rather than the key.
            None => {
                tracing::error!(credential = %self.name, "could not rebuild the URI without the API key; dropping the query");
                let mut parts = req.uri.clone().into_parts();
                parts.path_and_query = PathAndQuery::try_from(req.uri.path()).ok();
                Uri::from_parts(parts).unwrap_or_default()
            }
        };
    }
}

#[cfg(test)]
mod tests;
