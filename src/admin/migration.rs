//! Admin API bodies for migrations, inventory and revocations.

use std::time::SystemTime;

use http::StatusCode;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::migration::plan::Plans;
use crate::migration::report::{
    inventory_report, migration_report, usage_needed_since, Recorded, INVENTORY_WINDOW_DAYS,
};
use crate::problem::{Code, Refusal};
use crate::state::{Revocation, RevocationSet, StateError, StateStore, Target};
use crate::time::{Date, Timestamp};

/// Longest accepted revocation reason.
const MAX_REASON: usize = 512;

/// `GET /admin/v1/migration`: every plan's [`crate::migration::report::PlanReport`] plus the
/// routes without a plan. `routes` is every configured route with its plan name.
pub async fn migration_json(
    store: &dyn StateStore,
    plans: &Plans,
    routes: &[(&str, Option<&str>)],
    now: SystemTime,
) -> Result<Value, StateError> {
    let report = report_now(store, plans, routes, now).await?;
    let mut v = serde_json::to_value(report).map_err(|e| StateError(e.to_string()))?;
    // The dashboard draws each plan's timeline: add its phase dates.
    if let Some(list) = v.get_mut("plans").and_then(Value::as_array_mut) {
        for p in list {
            let dates = p
                .get("name")
                .and_then(Value::as_str)
                .and_then(|n| plans.get(n))
                .map(|plan| {
                    json!({
                        "observe": plan.phases.observe,
                        "bridge": plan.phases.bridge,
                        "enforce": plan.phases.enforce,
                    })
                });
            if let (Some(obj), Some(dates)) = (p.as_object_mut(), dates) {
                obj.insert("phases".into(), dates);
            }
        }
    }
    Ok(v)
}

/// The typed report behind [`migration_json`] (also read for the readiness gauges).
pub async fn report_now(
    store: &dyn StateStore,
    plans: &Plans,
    routes: &[(&str, Option<&str>)],
    now: SystemTime,
) -> Result<crate::migration::report::MigrationReport, StateError> {
    let since = usage_needed_since(plans, now);
    let usage = store.usage(since).await?;
    let inventory = store.inventory().await?;
    let sources = store.sources(since).await?;
    let revoked = RevocationSet::new(&store.revocations().await?);
    let recorded = Recorded {
        usage: &usage,
        inventory: &inventory,
        sources: &sources,
    };
    Ok(migration_report(plans, routes, recorded, &revoked, now))
}

/// `GET /admin/v1/inventory`.
pub async fn inventory_json(
    store: &dyn StateStore,
    plans: &Plans,
    now: SystemTime,
) -> Result<Value, StateError> {
    let inventory = store.inventory().await?;
    let since = usage_needed_since(plans, now)
        .min(Date::of(now).plus(1 - i64::from(INVENTORY_WINDOW_DAYS)));
    let sources = store.sources(since).await?;
    let revoked = RevocationSet::new(&store.revocations().await?);
    serde_json::to_value(inventory_report(&inventory, &sources, plans, &revoked, now))
        .map_err(|e| StateError(e.to_string()))
}

/// `GET /admin/v1/revocations`.
pub async fn revocations_json(store: &dyn StateStore) -> Result<Value, StateError> {
    let revs = store.revocations().await?;
    Ok(json!({ "revocations": revs }))
}

/// The body of `POST` and `DELETE /admin/v1/revocations`: exactly one of `identity`,
/// `credential` (`NAME:PRINCIPAL`) or `jti`; `reason` (required for POST).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Body {
    identity: Option<String>,
    credential: Option<String>,
    jti: Option<String>,
    reason: Option<String>,
}

/// The target and reason of a revocation body: 400 when the body is malformed, 422 when its
/// target can never match a caller (not a SPIFFE ID, invisible characters, or refused by
/// `canon`, which spells it the way authentication does).
fn parse_body(body: &[u8], canon: Canon<'_>) -> Result<(Target, Option<String>), Refusal> {
    let v: Value =
        serde_json::from_slice(body).map_err(|e| bad(format!("invalid JSON body: {e}")))?;
    // serde reads a struct from a JSON array too (`["spiffe://…", null, null, "why"]`): only
    // the documented shape, an object, is a revocation body.
    if !v.is_object() {
        return Err(bad("the body must be a JSON object"));
    }
    let b = Body::deserialize(v).map_err(|e| bad(format!("invalid JSON body: {e}")))?;
    let cannot_match = |why: String| Refusal::new(Code::SchemaViolation, why);
    let target = match (&b.identity, &b.credential, &b.jti) {
        (Some(i), None, None) if !i.starts_with("spiffe://") => {
            return Err(bad("identity must be a SPIFFE ID (spiffe://…)"))
        }
        (Some(i), None, None) => Target::identity(i).ok_or_else(|| {
            let why = crate::identity::SpiffeId::parse(i)
                .err()
                .map_or_else(String::new, |e| format!(": {e}"));
            cannot_match(format!("identity must be a valid SPIFFE ID{why}"))
        })?,
        (None, Some(c), None) => Target::credential(c).ok_or_else(|| {
            cannot_match("credential must be NAME:PRINCIPAL, printable text".into())
        })?,
        (None, None, Some(j)) => Target::jti(j)
            .ok_or_else(|| cannot_match("jti must be non-empty printable text".into()))?,
        _ => return Err(bad("give exactly one of identity, credential, jti")),
    };
    let target = canon(target).map_err(cannot_match)?;
    Ok((target, b.reason))
}

/// Spells a revocation target the way authentication does, or says why it can never match
/// ([`crate::authn::build::Credentials::canonical_target`]).
pub type Canon<'a> = &'a (dyn Fn(Target) -> Result<Target, String> + Sync);

/// What a change to the revocations answers: a status and a JSON body, or a refusal the admin
/// listener renders as problem+json.
pub type Answer = Result<(StatusCode, Value), Refusal>;

fn bad(msg: impl Into<String>) -> Refusal {
    Refusal::new(Code::InvalidRequest, msg.into())
}

/// 503 `directory-unavailable`: the state store could not answer (the error is logged, not sent:
/// it may name hosts or paths).
pub fn unavailable(e: &StateError) -> Refusal {
    tracing::error!(error = %e, "state store unavailable");
    Refusal::new(
        Code::DirectoryUnavailable,
        "the state store is unavailable; try again shortly",
    )
    .retry_after(5)
}

/// `POST /admin/v1/revocations`: 201 with the revocation when new, 200 when it only updated the
/// reason, 400 on a bad body, 422 on a target that can never match, 503 when the store cannot persist it (the revocation is then not in
/// effect: the caller must retry).
pub async fn revoke(
    store: &dyn StateStore,
    body: &[u8],
    now: SystemTime,
    canon: Canon<'_>,
) -> Answer {
    let (target, reason) = parse_body(body, canon)?;
    let reason = reason.unwrap_or_default();
    // The limit applies to what was sent (as docs/openapi.json's `maxLength` does), not to what
    // is left after trimming: 10,000 spaces and one letter is not a 1-byte reason.
    let sent = reason.len();
    let reason = reason.trim();
    if reason.is_empty() || sent > MAX_REASON || reason.chars().any(char::is_control) {
        return Err(bad(format!(
            "reason is required: printable text up to {MAX_REASON} bytes"
        )));
    }
    let rev = Revocation {
        target,
        reason: reason.to_string(),
        at: Timestamp::of(now),
    };
    let mut shown = serde_json::to_value(&rev).unwrap_or(Value::Null);
    // How long it holds: "until-restart" when the state store keeps it in memory only.
    if let Some(o) = shown.as_object_mut() {
        let lasts = if store.durable() {
            "until-deleted"
        } else {
            "until-restart"
        };
        o.insert("lasts".into(), Value::from(lasts));
    }
    match store.revoke(rev).await {
        Ok(true) => Ok((StatusCode::CREATED, shown)),
        Ok(false) => Ok((StatusCode::OK, shown)),
        Err(e) => Err(unavailable(&e)),
    }
}

/// `DELETE /admin/v1/revocations` (same body, `reason` ignored): 200, 404 when there was none.
pub async fn unrevoke(store: &dyn StateStore, body: &[u8], canon: Canon<'_>) -> Answer {
    let (target, _) = parse_body(body, canon)?;
    match store.unrevoke(&target).await {
        Ok(true) => Ok((StatusCode::OK, json!({ "deleted": target.key() }))),
        Ok(false) => Err(Refusal::new(Code::NotFound, "no such revocation")),
        Err(e) => Err(unavailable(&e)),
    }
}

#[cfg(test)]
mod tests;
