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
mod tests {
    use super::*;
    use crate::state::{Access, EmbeddedStore};

    #[test]
    fn query_is_strict() {
        assert_eq!(
            parse_query(Some("route=cics&since=14d")).unwrap(),
            ("cics".into(), Duration::from_secs(14 * 86_400))
        );
        assert_eq!(parse_query(Some("route=a%20b")).unwrap().0, "a b");
        for bad in [
            None,
            Some("since=7d"),
            Some("route=a&route=b"),
            Some("route=a&since=soon"),
            Some("route=a&since=0s"),
            Some("route=a&since=99999d"),
            Some("route=a&x=1"),
        ] {
            assert!(
                matches!(parse_query(bad), Err(SuggestError::BadRequest(_))),
                "{bad:?}"
            );
        }
    }

    #[tokio::test]
    async fn suggests_from_recorded_access() {
        let store = EmbeddedStore::in_memory().await.unwrap();
        let now = Date::parse("2026-12-10").unwrap().midnight() + Duration::from_secs(3600);
        let id = "spiffe://corp.example/ns/payments/sa/api";
        for p in ["/cics/pay/1", "/cics/pay/2"] {
            store.record_access(&Access::of("cics", id, "GET", p, now).unwrap());
        }
        let old = now - Duration::from_secs(30 * 86_400);
        store.record_access(&Access::of("cics", "spiffe://x/old", "GET", "/cics", old).unwrap());
        let v = suggest_json(&store, &["cics"], Some("route=cics"), now)
            .await
            .unwrap();
        assert_eq!(v["route"], "cics");
        assert_eq!(v["since"], "2026-12-03");
        assert_eq!(v["requests"], 2);
        let policy = v["policy"].as_str().unwrap();
        assert!(policy.contains(id), "{policy}");
        assert!(!policy.contains("spiffe://x/old"), "{policy}");
        assert!(matches!(
            suggest_json(&store, &["cics"], Some("route=nope"), now).await,
            Err(SuggestError::UnknownRoute(_))
        ));
    }
}
