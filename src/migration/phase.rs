//! The phase engine: which phase a plan is in at an instant, what comes next, and what each
//! phase does to a request authenticated with a credential the plan retires.
//!
//! Dates are UTC midnights ([`crate::time`]): a plan with `bridge = 2026-12-01` is in `bridge`
//! from 2026-12-01T00:00:00Z on. Routes without a plan behave as `bridge` forever, and so do a
//! plan's routes before its `observe` date: adding a plan changes nothing until it starts.

use std::time::SystemTime;

use http::header::{HeaderName, HeaderValue, LINK};
use serde::Serialize;

use super::plan::{Phases, Plan};
use crate::problem::{Code, Refusal};
use crate::time::Date;

/// A migration phase (`docs/plans.md`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    /// Legacy credentials authenticated if possible, never blocking; controls shadowed;
    /// the request goes upstream unchanged.
    Observe,
    /// Legacy credentials accepted and translated; controls enforced; sunset headers.
    Bridge,
    /// Legacy credentials refused (401 `legacy-credential-retired`).
    Enforce,
}

impl Phase {
    /// As written in reports, audit and metrics.
    pub const fn as_str(self) -> &'static str {
        match self {
            Phase::Observe => "observe",
            Phase::Bridge => "bridge",
            Phase::Enforce => "enforce",
        }
    }
}

/// Where a plan stands at an instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct PhaseAt {
    pub phase: Phase,
    /// The date the current phase began; `None` before the plan's `observe` date (the plan has
    /// not started: its routes behave as without it, see [`active_phase`]).
    pub since: Option<Date>,
    /// The next phase and its date, if one is scheduled (before `observe`: `observe` itself,
    /// the day the plan starts).
    pub next: Option<(Phase, Date)>,
}

impl Phases {
    /// The phase at `now`: the latest one whose date has been reached.
    pub fn at(&self, now: SystemTime) -> PhaseAt {
        let today = Date::of(now);
        let steps = [
            (Phase::Observe, Some(self.observe)),
            (Phase::Bridge, self.bridge),
            (Phase::Enforce, self.enforce),
        ];
        let mut current = PhaseAt {
            phase: Phase::Observe,
            since: None,
            next: None,
        };
        for (phase, date) in steps {
            let Some(date) = date else { continue };
            if date <= today {
                current.phase = phase;
                current.since = Some(date);
            } else {
                match current.next {
                    // The first future date is next; of phases sharing it, the latest wins
                    // (equal dates skip a phase).
                    None => current.next = Some((phase, date)),
                    Some((_, d)) if d == date => current.next = Some((phase, date)),
                    Some(_) => {}
                }
            }
        }
        current
    }
}

/// The phase a route's plan is in, `None` without a plan or before the plan's `observe` date:
/// a plan that has not started must not relax anything (its `observe` could be months away).
pub fn active_phase(plan: Option<&Plan>, now: SystemTime) -> Option<Phase> {
    let at = plan?.phases.at(now);
    at.since.map(|_| at.phase)
}

/// The phase a route is in: its plan's once started, else `bridge` (a route without a plan
/// behaves as `bridge` forever).
pub fn route_phase(plan: Option<&Plan>, now: SystemTime) -> Phase {
    active_phase(plan, now).unwrap_or(Phase::Bridge)
}

/// What a request with a given credential may do on a route at an instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Treatment {
    /// Not a credential this plan retires (or no plan): the route's normal behaviour applies
    /// (controls enforced, credential translated).
    Normal,
    /// `observe`, for a credential the plan lists: never blocked, controls shadowed, forwarded
    /// unchanged (nothing added).
    Observe,
    /// `bridge`: translate and add the sunset headers ([`Plan::sunset_headers`]) to the response.
    Bridge,
    /// `enforce`: refuse with [`retired`].
    Refuse,
}

/// The treatment for `credential` (config name) on a route with `plan` at `now`.
///
/// Only the credentials the plan lists are ever treated differently, in every phase: a workload
/// identity or any other credential gets the route's normal behaviour (policy, limits,
/// validation) whatever the plan says. Before the plan's `observe` date nothing is.
pub fn treatment(plan: Option<&Plan>, credential: &str, now: SystemTime) -> Treatment {
    let Some(plan) = plan.filter(|p| p.retires(credential)) else {
        return Treatment::Normal;
    };
    match active_phase(Some(plan), now) {
        None => Treatment::Normal,
        Some(Phase::Observe) => Treatment::Observe,
        Some(Phase::Bridge) => Treatment::Bridge,
        Some(Phase::Enforce) => Treatment::Refuse,
    }
}

/// The 401 `legacy-credential-retired` for `credential` on a plan in `enforce`; the detail names
/// the credential (a config name, not a secret), the date and the docs link.
pub fn retired(plan: &Plan, credential: &str) -> Refusal {
    let when = plan
        .phases
        .enforce
        .map(|d| format!(" on {d}"))
        .unwrap_or_default();
    let docs = plan
        .docs
        .as_deref()
        .map(|d| format!("; see {d}"))
        .unwrap_or_default();
    Refusal::new(
        Code::LegacyCredentialRetired,
        format!(
            "credential {credential:?} was retired{when} by migration plan {:?}: present a workload identity instead{docs}",
            plan.name
        ),
    )
}

/// The response headers of `bridge` (built once per plan, cloned per response: cheap).
///
/// - `Deprecation: @<unix seconds of the bridge date>` — RFC 9745, a structured-field Date;
/// - `Sunset: <HTTP-date of the enforce date>` — RFC 8594;
/// - `Link: <docs>; rel="sunset"` — RFC 8594 §3, when the plan has `docs`.
///
/// Sent only once an `enforce` date is set (`docs/plans.md`): a deprecation without a sunset gives
/// callers nothing to plan against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SunsetHeaders {
    pub deprecation: HeaderValue,
    pub sunset: HeaderValue,
    pub link: Option<HeaderValue>,
}

/// `Deprecation` (RFC 9745); not (yet) a constant in the `http` crate.
pub static DEPRECATION: HeaderName = HeaderName::from_static("deprecation");
/// `Sunset` (RFC 8594).
pub static SUNSET: HeaderName = HeaderName::from_static("sunset");

impl SunsetHeaders {
    /// Headers for these phases, or `None` without both a bridge and an enforce date.
    pub fn build(phases: &Phases, docs: Option<&str>) -> Option<SunsetHeaders> {
        let (bridge, enforce) = (phases.bridge?, phases.enforce?);
        let deprecation = HeaderValue::try_from(format!("@{}", bridge.unix_seconds())).ok()?;
        let sunset = HeaderValue::try_from(httpdate::fmt_http_date(enforce.midnight())).ok()?;
        let link = docs.and_then(|d| HeaderValue::try_from(format!("<{d}>; rel=\"sunset\"")).ok());
        Some(SunsetHeaders {
            deprecation,
            sunset,
            link,
        })
    }

    /// `(name, value)` pairs, for appending to a response.
    pub fn iter(&self) -> impl Iterator<Item = (&HeaderName, &HeaderValue)> {
        [
            (&DEPRECATION, Some(&self.deprecation)),
            (&SUNSET, Some(&self.sunset)),
            (&LINK, self.link.as_ref()),
        ]
        .into_iter()
        .filter_map(|(n, v)| v.map(|v| (n, v)))
    }

    /// Append to a response's headers (`Link` is appended, not replaced: upstreams send their own).
    pub fn apply(&self, headers: &mut http::HeaderMap) {
        for (n, v) in self.iter() {
            headers.append(n.clone(), v.clone());
        }
    }
}

impl Plan {
    /// The headers for a response to a request whose credential this plan retires, while in
    /// `bridge` (see [`treatment`]). `None` when no `enforce` date is set.
    pub fn sunset_headers(&self) -> Option<&SunsetHeaders> {
        self.sunset.as_ref()
    }
}
