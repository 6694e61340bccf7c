//! Authorization. A [`Permit`] can only be built here, and the translate/proxy stages take one:
//! no request reaches an upstream without passing this stage.

pub mod policy;

use std::sync::Arc;

use crate::identity::Caller;
use crate::problem::{Code, Refusal};

/// What authorization needs of a route: its name (for logs) and its policy. Routes are built by
/// the wiring (`crate::pipeline::route::Route` implements this); authz does not depend on them.
pub trait Guarded {
    /// The route's name.
    fn name(&self) -> &Arc<str>;
    /// Who may use the route (`None`: pass-through, no credentials accepted).
    fn policy(&self) -> Option<&Arc<policy::RoutePolicy>>;
}

/// Proof that the caller may use the route.
#[derive(Debug)]
pub struct Permit<R> {
    caller: Caller,
    route: Arc<R>,
    _proof: (),
}

impl<R> Permit<R> {
    /// Who was permitted.
    pub fn caller(&self) -> &Caller {
        &self.caller
    }
    /// On which route.
    pub fn route(&self) -> &Arc<R> {
        &self.route
    }
}

/// What the authorize stage concluded besides the permit: the shadow policy's view.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shadow {
    /// No shadow policy, or it agrees.
    Agrees,
    /// Allowed, but the shadow policy would deny: audited as `shadow-deny`.
    Denies,
}

/// Decide. Default deny: a route that accepts credentials needs a policy that allows the caller
/// (`check` refuses a route with credentials and no policy, so `None` here means pass-through).
pub fn authorize<R: Guarded>(
    route: &Arc<R>,
    caller: Caller,
    request: Request<'_>,
) -> Result<(Permit<R>, Shadow), Refusal> {
    let shadow = match (&caller, route.policy()) {
        // The route was configured to accept no credentials: an explicit pass-through.
        (Caller::Anonymous, _) => Shadow::Agrees,
        (Caller::Authenticated(_), None) => return Err(deny()),
        (Caller::Authenticated(cred), Some(policy)) => {
            let verdict = policy.evaluate(&policy::Access {
                credential: cred,
                method: request.method,
                path: request.path,
                source_ip: request.source_ip,
                now: request.now,
                phase: request.phase,
            });
            for e in verdict
                .decision
                .errors
                .iter()
                .chain(verdict.shadow.iter().flat_map(|s| s.errors.iter()))
            {
                tracing::warn!(route = %route.name(), error = %e, "policy evaluation error");
            }
            if !verdict.allowed() {
                return Err(deny());
            }
            if verdict.shadow_denied() {
                Shadow::Denies
            } else {
                Shadow::Agrees
            }
        }
    };
    Ok((
        Permit {
            caller,
            route: route.clone(),
            _proof: (),
        },
        shadow,
    ))
}

/// `observe` phase of a migration plan: the policy is evaluated and its answer reported, but
/// nothing is blocked (the plan was inserted in front of a working integration and must not break
/// it). Returns the permit and whether the policy would have allowed the request.
pub fn observe<R: Guarded>(
    route: &Arc<R>,
    caller: Caller,
    request: Request<'_>,
) -> (Permit<R>, bool) {
    let would_allow = match (&caller, route.policy()) {
        (Caller::Anonymous, None) => true,
        // Not authenticated on a route that needs it: enforcement would refuse.
        (Caller::Anonymous, Some(_)) => false,
        (Caller::Authenticated(_), None) => false,
        (Caller::Authenticated(cred), Some(policy)) => policy
            .evaluate(&policy::Access {
                credential: cred,
                method: request.method,
                path: request.path,
                source_ip: request.source_ip,
                now: request.now,
                phase: request.phase,
            })
            .allowed(),
    };
    (
        Permit {
            caller,
            route: route.clone(),
            _proof: (),
        },
        would_allow,
    )
}

/// The request as the policy sees it.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    pub method: &'a http::Method,
    /// Normalized path, no query.
    pub path: &'a str,
    pub source_ip: std::net::IpAddr,
    pub now: std::time::SystemTime,
    /// Migration phase of the route today.
    pub phase: &'a str,
}

fn deny() -> Refusal {
    Refusal::new(
        Code::Forbidden,
        "no policy allows this caller on this route",
    )
}
