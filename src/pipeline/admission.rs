//! The phase, decided once per request: what the route's migration plan relaxes or adds for this
//! caller ([`Admission`]), and what the gateway may add to the request it forwards ([`Outgoing`]).
//! Every later stage reads these values instead of asking the plan again.
//!
//! The rules (the table in `docs/migration.md`):
//! - Only the credentials a plan lists as `legacy_credentials` are ever relaxed, and only in
//!   `observe` once its date is reached: "authenticated if possible, never blocking", controls
//!   shadowed, forwarded exactly as sent. Workload identities, other credentials, anonymous
//!   callers and every request before the `observe` date get the route's full pipeline.
//! - Authority (a minted token, an injected upstream credential) is added only for a caller that
//!   authenticated, or on an explicit pass-through route (no `accept`). An [`Outgoing`] can only
//!   be built here, so no other path can add it.

use std::sync::Arc;
use std::time::SystemTime;

use http::request::Parts;
use http::{HeaderName, HeaderValue};

use super::route::Route;
use crate::authn::{self, Authenticator, BodyView, Failure};
use crate::authz::Permit;
use crate::conn::ConnInfo;
use crate::identity::{Caller, Credential};
use crate::migration::grace::graced;
use crate::migration::phase::{retired, treatment, SunsetHeaders, Treatment};
use crate::migration::plan::Plan;
use crate::problem::{Code, Refusal};
use crate::token::Minted;

/// What the route's plan does to one request.
#[derive(Debug)]
pub enum Admission {
    /// The route's full pipeline: policy, limits and validation enforced, credentials stripped,
    /// the minted token (and injected credential) added. `sunset`: a listed credential in
    /// `bridge`, whose response carries `Deprecation`/`Sunset`.
    Enforced { sunset: bool },
    /// `observe`, for a credential the plan lists: never blocked, the policy evaluated and
    /// audited only, forwarded unchanged with nothing added. `by`: the listed credential that
    /// decided; `refused`: its authentication refusal that was not enforced (it was present and
    /// wrong).
    Observed {
        by: Arc<str>,
        refused: Option<&'static str>,
    },
    /// `enforce`, for a principal the plan still bridges under a `[[grace]]` that holds: the
    /// full pipeline as in `bridge`, with the grace's own `Sunset` (its `until`); audited with
    /// reason `grace`.
    Graced { headers: Option<SunsetHeaders> },
    /// `enforce`, for a credential the plan retires: 401 `legacy-credential-retired`.
    Retired(Refusal),
}

impl Admission {
    /// Decide from the authentication outcome. A refusal that the plan does not relax is
    /// returned as it is; an anonymous caller on a route that accepts credentials is refused
    /// whatever the phase.
    pub fn decide(
        plan: Option<&Plan>,
        accepts_credentials: bool,
        authenticated: Result<Caller, Failure>,
        now: SystemTime,
    ) -> Result<(Caller, Admission), Refusal> {
        let failure = match authenticated {
            Ok(Caller::Authenticated(cred)) => {
                // The stricter of the credential's and its lineage root's treatment: a retired
                // credential stays retired in whatever token it was exchanged for.
                let admission = match (crate::migration::lineage::treatment(plan, &cred, now), plan)
                {
                    (Treatment::Observe, _) => Admission::Observed {
                        by: cred.name.clone(),
                        refused: None,
                    },
                    (Treatment::Bridge, _) => Admission::Enforced { sunset: true },
                    (Treatment::Refuse, Some(plan)) => match graced(plan, &cred, now) {
                        Some(g) => Admission::Graced {
                            headers: g.headers.clone(),
                        },
                        None => Admission::Retired(retired(
                            plan,
                            crate::migration::lineage::retired_name(plan, &cred),
                        )),
                    },
                    // `Refuse` needs a plan; without one, fail closed like any unknown case.
                    (Treatment::Refuse, None) => {
                        Admission::Retired(Refusal::new(Code::LegacyCredentialRetired, "retired"))
                    }
                    (Treatment::Normal, _) => Admission::Enforced { sunset: false },
                };
                return Ok((Caller::Authenticated(cred), admission));
            }
            Ok(Caller::Anonymous) if !accepts_credentials => {
                return Ok((Caller::Anonymous, Admission::Enforced { sunset: false }))
            }
            // Cannot happen (`authenticate` answers `Anonymous` only for a pass-through route);
            // refused rather than trusted.
            Ok(Caller::Anonymous) => {
                return Err(Refusal::new(
                    Code::Unauthenticated,
                    "this route requires a credential",
                ))
            }
            Err(f) => f,
        };
        match relaxed(plan, &failure, now) {
            Some(by) => Ok((
                Caller::Anonymous,
                Admission::Observed {
                    by,
                    refused: Some(failure.refusal.code.as_str()),
                },
            )),
            None => Err(failure.refusal),
        }
    }

    /// The `Deprecation`/`Sunset`/`Link` headers for the response: the plan's in `bridge`, the
    /// grace's own under a `[[grace]]`, none otherwise.
    pub fn sunset<'a>(&'a self, plan: Option<&'a Plan>) -> Option<&'a SunsetHeaders> {
        match self {
            Admission::Enforced { sunset: true } => plan.and_then(Plan::sunset_headers),
            Admission::Graced { headers } => headers.as_ref(),
            _ => None,
        }
    }

    /// Let through under a `[[grace]]` (the audit reason of an allowed request is then `grace`).
    pub fn graced(&self) -> bool {
        matches!(self, Admission::Graced { .. })
    }

    /// Whether the route's controls (limits, validation, minting) run and are enforced.
    pub fn enforces(&self) -> bool {
        !matches!(self, Admission::Observed { .. })
    }

    /// What the gateway may do to the forwarded request. Only an enforced admission of an
    /// authenticated caller (or on a pass-through route) carries the token and the injected
    /// credential; an observed request goes upstream as sent.
    pub fn outgoing<'a>(
        &self,
        permit: &'a Permit<Route>,
        token: Option<&'a Minted>,
    ) -> Outgoing<'a> {
        let vouched = permit.caller().credential().is_some() || permit.route().accept.is_empty();
        match self {
            Admission::Observed { .. } => Outgoing {
                strip: false,
                token: None,
                inject: None,
            },
            Admission::Enforced { .. } | Admission::Graced { .. } if vouched => Outgoing {
                strip: true,
                token,
                inject: permit.route().inject.as_ref(),
            },
            // Fail closed: credentials removed, nothing added.
            Admission::Enforced { .. } | Admission::Graced { .. } | Admission::Retired(_) => {
                Outgoing {
                    strip: true,
                    token: None,
                    inject: None,
                }
            }
        }
    }
}

/// The credential whose refusal `observe` does not enforce: a listed legacy credential that was
/// present and refused (the upstream still checks the static secret itself). A malformed request
/// (the key presented twice) is refused in every phase: which copy the upstream reads is unknown.
fn relaxed(plan: Option<&Plan>, failure: &Failure, now: SystemTime) -> Option<Arc<str>> {
    let name = failure.credential.as_ref()?;
    (failure.refusal.code != Code::InvalidRequest
        && treatment(plan, name, now) == Treatment::Observe)
        .then(|| name.clone())
}

/// An observed request goes upstream as sent, with every credential in it, and the upstream may
/// read any of them; authentication stopped at the first one present. So the accepted
/// credentials after `by` (the one that decided) are checked too: each one present must
/// authenticate and pass `admit` (revocation), unless it is a listed credential whose refusal
/// `observe` relaxes. The cost (an LDAP bind) is paid only by requests carrying several.
#[expect(
    clippy::too_many_arguments,
    reason = "the request's parts as the authenticate stage has them, plus the admit check it runs; a struct would be built for this call only"
)]
pub async fn vet_forwarded(
    accept: &[Arc<dyn Authenticator>],
    by: &str,
    plan: Option<&Plan>,
    req: &Parts,
    conn: &ConnInfo,
    now: SystemTime,
    body: Option<BodyView<'_>>,
    admit: impl Fn(&Credential) -> Result<(), Refusal>,
) -> Result<(), Refusal> {
    let mut rest = after(accept, by);
    while !rest.is_empty() {
        let by = match authn::authenticate_attributed(rest, req, conn, now, body).await {
            Ok(Caller::Authenticated(cred)) => {
                admit(&cred)?;
                cred.name.clone()
            }
            // No further credential present.
            Ok(Caller::Anonymous)
            | Err(Failure {
                credential: None, ..
            }) => return Ok(()),
            Err(failure) => match relaxed(plan, &failure, now) {
                Some(name) => name,
                None => return Err(failure.refusal),
            },
        };
        rest = after(rest, &by);
    }
    Ok(())
}

/// The accepted credentials after `name` (strictly shorter than `accept`; empty if absent).
fn after<'a>(accept: &'a [Arc<dyn Authenticator>], name: &str) -> &'a [Arc<dyn Authenticator>] {
    accept
        .iter()
        .position(|a| &**a.name() == name)
        .and_then(|i| accept.get(i + 1..))
        .unwrap_or_default()
}

/// What the translate stage does to the request besides the hop-by-hop and identity headers.
/// Built only by [`Admission::outgoing`].
#[derive(Debug, Clone, Copy)]
pub struct Outgoing<'a> {
    strip: bool,
    token: Option<&'a Minted>,
    inject: Option<&'a (HeaderName, HeaderValue)>,
}

impl<'a> Outgoing<'a> {
    /// Remove every accepted credential from the request (`false` only in `observe`).
    pub fn strip_credentials(&self) -> bool {
        self.strip
    }

    /// The minted token to add.
    pub fn token(&self) -> Option<&'a Minted> {
        self.token
    }

    /// The upstream's own credential (`upstream.inject`) to add.
    pub fn inject(&self) -> Option<&'a (HeaderName, HeaderValue)> {
        self.inject
    }
}
