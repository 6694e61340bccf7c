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

/// The body: `{"route", "since" (first UTC day counted), "requests", "policy"}`. Traffic counts
/// when its (identity, method, path template) was last seen on or after `since`; `requests` sums
/// those rows' counts, which are all-time (the store does not keep them per day).
pub async fn suggest_json(
    store: &dyn StateStore,
    routes: &[&str],
    query: Option<&str>,
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
    Ok(json!({
        "route": route,
        "since": since,
        "requests": requests,
        "policy": suggest(&route, &observed),
    }))
}

#[cfg(test)]
mod tests;
