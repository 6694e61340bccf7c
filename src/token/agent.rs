//! `token_source = "workload-api"`: the upstream token is a JWT-SVID of the gateway's own
//! identity, fetched from the SPIFFE Workload API for the route's `audience` (FetchJWTSVID) and
//! reused until shortly before it expires. Upstreams that already trust the SPIRE JWT bundle need
//! no second trust anchor. The caller is not in this token (the agent signs only the gateway's
//! identity); the audit line still records who called.
//!
//! A missing or stale token is fetched once per audience however many requests want it at that
//! moment (single flight): the first request starts the fetch, the others await the same fetch and
//! share its result, success or failure. A burst on a cold cache therefore costs the agent one
//! FetchJWTSVID, not one per request; a failure is returned to everyone waiting on that attempt
//! and forgotten, so the next request tries again.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use futures_util::future::{BoxFuture, FutureExt as _, Shared};
use sha2::{Digest, Sha256};

use super::mint::{header_values, Minted};
use crate::problem::{Code, Refusal};
use crate::spiffe::workload::WorkloadApi;

/// A token is fetched again when less than this share of its lifetime is left...
const REFRESH_DIVISOR: u32 = 4;
/// ...or less than this.
const REFRESH_MARGIN: Duration = Duration::from_secs(10);
/// At most this many audiences are remembered (one per route, in practice).
const MAX_AUDIENCES: usize = 1024;

/// Tokens per audience, each with the time it is due for refresh.
type Cache = Mutex<HashMap<String, (Minted, SystemTime)>>;

/// Why a fetch gave no token (cloned to every request that waited on it).
#[derive(Clone, Copy, Debug)]
enum Failure {
    Unreachable,
    Unusable,
}

/// One fetch in progress, awaited by every request that wants its audience's token meanwhile.
type Flight = Shared<BoxFuture<'static, Result<Minted, Failure>>>;

/// JWT-SVIDs from the agent, per audience.
pub struct AgentTokens {
    api: Arc<WorkloadApi>,
    cache: Arc<Cache>,
    /// The fetch in progress per audience, with a number that tells this flight from a later one
    /// for the same audience (only the flight itself removes its entry, when it ends).
    flights: Arc<Mutex<HashMap<String, (u64, Flight)>>>,
    next_flight: std::sync::atomic::AtomicU64,
}

impl std::fmt::Debug for AgentTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentTokens").finish_non_exhaustive()
    }
}

#[derive(serde::Deserialize)]
struct Claims {
    iat: Option<u64>,
    jti: Option<String>,
}

impl AgentTokens {
    pub fn new(api: Arc<WorkloadApi>) -> Self {
        AgentTokens {
            api,
            cache: Arc::new(Mutex::new(HashMap::new())),
            flights: Arc::new(Mutex::new(HashMap::new())),
            next_flight: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// The token for `upstream`'s audience, from the cache or the agent. The agent unreachable
    /// and no usable token cached: 503, never a request without its token.
    pub async fn token_for(
        &self,
        audience: Option<&str>,
        deliver: bool,
        now: SystemTime,
    ) -> Result<Option<Minted>, Refusal> {
        let Some(audience) = audience else {
            return Ok(None);
        };
        if !deliver {
            return Ok(None);
        }
        if let Some(m) = cached(&self.cache, audience, now) {
            return Ok(Some(m));
        }
        match self.flight(audience, now).await {
            Ok(m) => Ok(Some(m)),
            Err(Failure::Unreachable) => Err(Refusal::new(
                Code::UpstreamUnavailable,
                "the gateway could not obtain a token for the upstream",
            )
            .retry_after(1)
            .audit_reason("workload-api-unavailable")),
            Err(Failure::Unusable) => Err(Refusal::new(
                Code::UpstreamUnavailable,
                "the Workload API returned an unusable token",
            )),
        }
    }

    /// The fetch in progress for `audience`, or a new one. The cache is checked again under the
    /// flights lock: a flight stores its token before it removes itself, so a request that finds
    /// no flight here finds the token that the last one fetched.
    fn flight(&self, audience: &str, now: SystemTime) -> Flight {
        let Ok(mut flights) = self.flights.lock() else {
            // A poisoned lock (a panic elsewhere): fetch without sharing rather than refuse.
            return self.fetch(audience, now, u64::MAX);
        };
        if let Some((_, f)) = flights.get(audience) {
            return f.clone();
        }
        if let Some(m) = cached(&self.cache, audience, now) {
            return futures_util::future::ready(Ok(m)).boxed().shared();
        }
        let id = self
            .next_flight
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let f = self.fetch(audience, now, id);
        // Driven to its end even if every request waiting on it goes away (clients that hang
        // up): otherwise the next request would resume a fetch whose deadline has passed and
        // get a failure it did not cause.
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(f.clone().map(|_| ()));
        }
        if flights.len() >= MAX_AUDIENCES {
            flights.clear();
        }
        flights.insert(audience.to_owned(), (id, f.clone()));
        f
    }

    /// One FetchJWTSVID for `audience` (bounded by the Workload API client's timeout), which
    /// caches its token and then ends flight `id`, whichever request happens to poll it.
    fn fetch(&self, audience: &str, now: SystemTime, id: u64) -> Flight {
        let (api, cache, flights) = (self.api.clone(), self.cache.clone(), self.flights.clone());
        let audience = audience.to_owned();
        async move {
            let got = fetch_once(&api, &audience, now).await;
            if let (Ok((minted, refresh_at)), Ok(mut c)) = (&got, cache.lock()) {
                if c.len() >= MAX_AUDIENCES {
                    c.clear();
                }
                c.insert(audience.clone(), (minted.clone(), *refresh_at));
            }
            if let Ok(mut f) = flights.lock() {
                if f.get(&audience).is_some_and(|(i, _)| *i == id) {
                    f.remove(&audience);
                }
            }
            got.map(|(m, _)| m)
        }
        .boxed()
        .shared()
    }
}

/// The cached token for `audience`, unless it is due for refresh.
fn cached(cache: &Cache, audience: &str, now: SystemTime) -> Option<Minted> {
    let c = cache.lock().ok()?;
    let (m, refresh_at) = c.get(audience)?;
    (now < *refresh_at).then(|| m.clone())
}

/// Ask the agent once; the token and when to refresh it.
async fn fetch_once(
    api: &WorkloadApi,
    audience: &str,
    now: SystemTime,
) -> Result<(Minted, SystemTime), Failure> {
    let (token, exp) = api.fetch_jwt_svid(audience).await.map_err(|e| {
        tracing::error!(error = %e, audience, "no JWT-SVID from the Workload API");
        Failure::Unreachable
    })?;
    let minted = to_minted(&token, exp, now).map_err(|()| {
        tracing::error!(audience, "the Workload API returned an unusable JWT-SVID");
        Failure::Unusable
    })?;
    let lifetime = exp.duration_since(minted.iat).unwrap_or_default();
    let margin = (lifetime / REFRESH_DIVISOR).max(REFRESH_MARGIN);
    let refresh_at = exp.checked_sub(margin).unwrap_or(now);
    Ok((minted, refresh_at))
}

/// The agent's token as the translation stage sends it. `jti` is the token's own, or else a
/// SHA-256 prefix of it (for correlating audit lines; not the token).
fn to_minted(token: &str, exp: SystemTime, now: SystemTime) -> Result<Minted, ()> {
    let payload = token.split('.').nth(1).ok_or(())?;
    let claims: Claims = URL_SAFE_NO_PAD
        .decode(payload)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or(())?;
    let iat = claims
        .iat
        .map_or(now, |s| SystemTime::UNIX_EPOCH + Duration::from_secs(s));
    let jti = claims.jti.unwrap_or_else(|| {
        let digest = Sha256::digest(token);
        format!(
            "agent-{}",
            digest.get(..8).map(hex::encode).unwrap_or_default()
        )
    });
    let kid = token
        .split('.')
        .next()
        .and_then(|h| URL_SAFE_NO_PAD.decode(h).ok())
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        .and_then(|v| v.get("kid").and_then(|k| k.as_str()).map(str::to_owned))
        .unwrap_or_default();
    let (bearer, bare) = header_values(token).map_err(|_| ())?;
    Ok(Minted {
        token: token.into(),
        bearer,
        bare,
        jti: jti.into(),
        kid: kid.into(),
        iat,
        exp,
    })
}
