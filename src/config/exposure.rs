//! Checks on what a config would expose to a caller through migration and upstream settings
//! (`docs/migration.md`, `docs/security.md` "Migration phases"): colliding audiences, an injected
//! upstream credential on routes where it could reach an unauthenticated or observed request,
//! and revocations that would silently end at a restart.

use std::sync::Arc;

use super::creds::{CredentialConfig, CredentialSpec};
use super::validate::Collector;
use super::{StateBackend, StateConfig};
use crate::pipeline::route::RouteConfig;

/// Run every check: problems and warnings go to `c`.
pub(super) fn check(
    c: &mut Collector<'_>,
    routes: &[Arc<RouteConfig>],
    credentials: &[Arc<CredentialConfig>],
    state: &StateConfig,
) {
    audiences(c, routes, credentials);
    injection(c, routes);
    if state.backend == StateBackend::Embedded && state.path.is_none() {
        c.warn(
            "[state] path is not set: revocations (and usage, inventory, webhook replay memory) are kept in memory only and end when the gateway restarts; set [state] path to keep them",
        );
    }
}

/// A token the gateway mints for an upstream carries `aud` = the route's `upstream.audience`.
/// If a `jwt-svid` credential accepts that audience, the upstream (or anyone who sees its
/// traffic) can present the token back to the gateway and be taken for the caller on every
/// route accepting that credential (through `trust_issuer`, or once the gateway's keys are in a
/// trust bundle). Refused.
fn audiences(
    c: &mut Collector<'_>,
    routes: &[Arc<RouteConfig>],
    credentials: &[Arc<CredentialConfig>],
) {
    for (i, r) in routes.iter().enumerate() {
        let Some(aud) = r.upstream.audience.as_deref() else {
            continue;
        };
        for cr in credentials {
            if let CredentialSpec::JwtSvid { audience, .. } = &cr.spec {
                if audience == aud {
                    c.push(
                        format!("routes[{i}].upstream.audience"),
                        format!(
                            "route {:?}: {aud:?} is also the audience of credential {:?} (jwt-svid): tokens minted for this upstream would be accepted from it as the caller; use a distinct audience per upstream",
                            r.name, cr.name
                        ),
                    );
                }
            }
        }
    }
}

/// `upstream.inject` adds the upstream's own credential. On a pass-through route every caller
/// gets it; on a route with a plan, `observe` never adds it (the request goes upstream as sent).
fn injection(c: &mut Collector<'_>, routes: &[Arc<RouteConfig>]) {
    for (i, r) in routes.iter().enumerate() {
        if r.upstream.inject.is_none() {
            continue;
        }
        if r.accept.is_empty() {
            c.warn(format!(
                "routes[{i}].upstream.inject: route {:?} accepts no credentials: every caller, unauthenticated, reaches the upstream with the injected credential",
                r.name
            ));
        } else if let Some(plan) = &r.plan {
            c.warn(format!(
                "routes[{i}].upstream.inject: route {:?} has plan {plan:?}: while it is in observe the injected credential is not added to legacy callers' requests (they go upstream as sent, with their own credentials); it is added from bridge on, and for workload callers always",
                r.name
            ));
        }
    }
}
