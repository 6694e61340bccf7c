//! `GET /admin/v1/policy/suggest?route=NAME&since=7d`: the least-privilege Cedar policy for a
//! route, written from the access the state store observed ([`crate::state::StateStore::access`]).

use std::time::{Duration, SystemTime};

use serde_json::{json, Value};

use crate::authz::policy::suggest::{suggest, Observed};
use crate::problem::Code;
use crate::state::{StateError, StateStore};
use crate::time::Date;

/// `since` when the query has none.
pub const DEFAULT_SINCE: &str = "7d";

/// Longest look-back accepted (the store keeps access rows far longer than this is useful).
const MAX_SINCE: Duration = Duration::from_secs(3650 * 86_400);

/// Why a suggestion could not be made: mapped to a problem by the admin listener.
#[derive(Debug, thiserror::Error)]
pub enum SuggestError {
    #[error("{0}")]
    BadRequest(String),
    #[error("no route named {0:?}")]
    UnknownRoute(String),
    #[error(transparent)]
    State(#[from] StateError),
}

impl SuggestError {
    /// The problem code for the response.
    pub fn code(&self) -> Code {
        match self {
            SuggestError::BadRequest(_) => Code::InvalidRequest,
            SuggestError::UnknownRoute(_) => Code::NoRoute,
            SuggestError::State(_) => Code::DirectoryUnavailable,
        }
    }
}

/// The query: `route` (required) and `since` (a duration such as `7d`, `36h`; default 7d).
pub fn parse_query(query: Option<&str>) -> Result<(String, Duration), SuggestError> {
    let mut route = None;
    let mut since = None;
    for (k, v) in form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
        let slot = match &*k {
            "route" => &mut route,
            "since" => &mut since,
            other => {
                return Err(SuggestError::BadRequest(format!(
                    "unknown query parameter {:?} (route, since)",
                    other.chars().take(64).collect::<String>()
                )))
            }
        };
        if slot.replace(v.into_owned()).is_some() {
            return Err(SuggestError::BadRequest(format!("{k} given twice")));
        }
    }
    let route = route.ok_or_else(|| SuggestError::BadRequest("route is required".into()))?;
    let since_text = since.unwrap_or_else(|| DEFAULT_SINCE.to_owned());
    let since = crate::units::parse_duration(&since_text)
        .ok()
        .filter(|d| !d.is_zero() && *d <= MAX_SINCE)
        .ok_or_else(|| {
            SuggestError::BadRequest(format!(
                "since must be a duration such as \"7d\" or \"36h\", at most 3650d (got {:?})",
                since_text.chars().take(64).collect::<String>()
            ))
        })?;
    Ok((route, since))
}

/// The body: `{"route", "since" (first UTC day counted), "requests", "policy", "split"}`. Traffic
/// counts when its (identity, method, path template) was last seen on or after `since`;
/// `requests` sums those rows' counts, which are all-time (the store does not keep them per day).
/// `split` proposes one identity per source for each legacy principal seen on the route from
/// `shared_threshold` or more sources since `since` (also written as comments under the policy).
pub async fn suggest_json(
    store: &dyn StateStore,
    routes: &[&str],
    query: Option<&str>,
    shared_threshold: u32,
    now: SystemTime,
) -> Result<Value, SuggestError> {
    let (route, since) = parse_query(query)?;
    if !routes.contains(&route.as_str()) {
        return Err(SuggestError::UnknownRoute(
            route.chars().take(128).collect(),
        ));
    }
    let since = Date::of(now.checked_sub(since).unwrap_or(SystemTime::UNIX_EPOCH));
    let rows = store.access(&route, since).await?;
    let observed: Vec<Observed> = rows
        .into_iter()
        .map(|r| Observed {
            identity: r.identity,
            method: r.method,
            path: r.path,
            count: r.count,
        })
        .collect();
    let requests: u64 = observed.iter().map(|o| o.count).sum();
    let split = split_proposals(store, &route, since, shared_threshold).await?;
    let mut policy = suggest(&route, &observed);
    split_comments(&mut policy, &split);
    Ok(json!({
        "route": route,
        "since": since,
        "requests": requests,
        "policy": policy,
        "split": split,
    }))
}

/// A shared legacy principal and the identities proposed for its sources.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Split {
    /// `credential:principal`.
    pub principal: String,
    /// The identity all its sources share today.
    pub identity: String,
    pub distinct_sources: u64,
    /// More sources were seen than kept: the list is incomplete.
    pub sources_capped: bool,
    pub proposed: Vec<Proposed>,
}

/// One source of a shared principal and the workload identity proposed for it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Proposed {
    pub ip: String,
    pub user_agent: String,
    pub requests: u64,
    pub identity: String,
}

/// One [`Split`] per shared legacy principal seen on `route` since `since`.
async fn split_proposals(
    store: &dyn StateStore,
    route: &str,
    since: Date,
    shared_threshold: u32,
) -> Result<Vec<Split>, StateError> {
    use crate::migration::insight::{figures, shared_suspected};
    let sources = store.sources(since).await?;
    let inventory = store.inventory().await?;
    let per = figures(&sources, since, |r| r.route == route);
    let mut out = Vec::new();
    for e in &inventory {
        let key = e.principal.as_deref().unwrap_or(&e.identity);
        let Some(f) = per.get(&(e.credential.as_str(), key)) else {
            continue;
        };
        if !shared_suspected(e.kind, f.distinct_sources(), shared_threshold) {
            continue;
        }
        let mut used = std::collections::BTreeSet::new();
        let proposed = f
            .listed()
            .into_iter()
            .map(|s| {
                let base = slug(&s.user_agent);
                let mut name = base.clone();
                let mut n = 1;
                while !used.insert(name.clone()) {
                    n += 1;
                    name = format!("{base}-{n}");
                }
                Proposed {
                    identity: format!("{}/{name}", e.identity.trim_end_matches('/')),
                    ip: s.ip,
                    user_agent: s.user_agent,
                    requests: s.requests,
                }
            })
            .collect();
        out.push(Split {
            principal: format!("{}:{key}", e.credential),
            identity: e.identity.clone(),
            distinct_sources: f.distinct_sources(),
            sources_capped: f.capped(),
            proposed,
        });
    }
    Ok(out)
}

/// A SPIFFE ID path segment naming a source: the User-Agent's product name (`batch-runner` of
/// `batch-runner/1.0`), lower-case letters, digits and `-` only; `source` when nothing is left.
fn slug(user_agent: &str) -> String {
    let product = user_agent
        .split(|c: char| c == '/' || c.is_whitespace())
        .next()
        .unwrap_or_default();
    let mut out = String::new();
    for c in product.chars().take(40) {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if !out.ends_with('-') && !out.is_empty() {
            out.push('-');
        }
    }
    let out = out.trim_end_matches('-').to_owned();
    if out.is_empty() {
        "source".to_owned()
    } else {
        out
    }
}

/// The proposals as Cedar comments under the policy. Sources are quoted with `{:?}`: a stored
/// User-Agent has no control characters, and the quoting keeps anything else inside the comment.
fn split_comments(policy: &mut String, split: &[Split]) {
    use std::fmt::Write as _;
    for s in split {
        let floor = if s.sources_capped { "at least " } else { "" };
        let _ = writeln!(
            policy,
            "\n// Shared credential {:?} ({}) is used from {floor}{} sources on this route.\n\
             // Split before enforce: one workload identity per source, for example:",
            s.principal, s.identity, s.distinct_sources
        );
        for p in &s.proposed {
            let _ = writeln!(
                policy,
                "//   {} {:?} ({} requests) -> {}",
                p.ip, p.user_agent, p.requests, p.identity
            );
        }
    }
}

#[cfg(test)]
mod tests;
