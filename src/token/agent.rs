//! `token_source = "workload-api"`: the upstream token is a JWT-SVID of the gateway's own
//! identity, fetched from the SPIFFE Workload API for the route's `audience` (FetchJWTSVID) and
//! reused until shortly before it expires. Upstreams that already trust the SPIRE JWT bundle need
//! no second trust anchor. The caller is not in this token (the agent signs only the gateway's
//! identity); the audit line still records who called.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
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

/// JWT-SVIDs from the agent, per audience.
pub struct AgentTokens {
    api: Arc<WorkloadApi>,
    cache: Mutex<HashMap<String, (Minted, SystemTime)>>,
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
            cache: Mutex::new(HashMap::new()),
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
        if let Some(m) = self.cached(audience, now) {
            return Ok(Some(m));
        }
        let (token, exp) = self.api.fetch_jwt_svid(audience).await.map_err(|e| {
            tracing::error!(error = %e, audience, "no JWT-SVID from the Workload API");
            Refusal::new(
                Code::UpstreamUnavailable,
                "the gateway could not obtain a token for the upstream",
            )
            .retry_after(1)
            .audit_reason("workload-api-unavailable")
        })?;
        let minted = to_minted(&token, exp, now).map_err(|()| {
            Refusal::new(
                Code::UpstreamUnavailable,
                "the Workload API returned an unusable token",
            )
        })?;
        let lifetime = exp.duration_since(minted.iat).unwrap_or_default();
        let margin = (lifetime / REFRESH_DIVISOR).max(REFRESH_MARGIN);
        let refresh_at = exp.checked_sub(margin).unwrap_or(now);
        if let Ok(mut c) = self.cache.lock() {
            if c.len() >= MAX_AUDIENCES {
                c.clear();
            }
            c.insert(audience.to_owned(), (minted.clone(), refresh_at));
        }
        Ok(Some(minted))
    }

    fn cached(&self, audience: &str, now: SystemTime) -> Option<Minted> {
        let c = self.cache.lock().ok()?;
        let (m, refresh_at) = c.get(audience)?;
        (now < *refresh_at).then(|| m.clone())
    }
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
