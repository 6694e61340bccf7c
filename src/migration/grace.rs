//! Grace for named principals: a plan in `enforce` may still bridge one legacy principal
//! (`[[grace]] principal = "keys:acme"`) until its own date, with a reason. Everything else about
//! the plan stays as it is: other principals of the same credential are refused on the enforce
//! date, and the graced one is refused from 00:00 UTC of `until` (dates switch as phases do).
//!
//! Decisions where the contract is silent:
//! - `principal` is `CREDENTIAL:PRINCIPAL` spelled as `portcullis inventory` shows it (the
//!   authenticated principal, exactly). A misspelt grace matches nobody: the caller is refused,
//!   never let through by a near match. `migration status` shows whether each grace was seen.
//! - The credential must be one the plan retires, the plan must have an `enforce` date (a grace
//!   extends it), and `until` must come after it; each principal has at most one grace.
//! - The length is counted from the plan's `enforce` date and may not exceed `[migration]
//!   max_grace` (default 90 days): a grace is a short extension, not a second plan.

use std::collections::BTreeSet;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use super::phase::SunsetHeaders;
use super::plan::{Phases, Plan, Plans};
use crate::diag::{Collector, Problem};
use crate::identity::Credential;
use crate::time::Date;

/// `[migration] max_grace` when the config does not set it, in days.
pub const DEFAULT_MAX_GRACE_DAYS: u32 = 90;

/// One `[[grace]]` entry, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grace {
    /// The config name of the credential (before the first `:`).
    pub credential: String,
    /// The legacy principal (after the first `:`; principals may contain colons).
    pub principal: String,
    /// Refused from 00:00 UTC of this day.
    pub until: Date,
    pub reason: String,
    /// `Deprecation`/`Sunset`/`Link` for this principal's responses: `Sunset` is `until`.
    pub headers: Option<SunsetHeaders>,
}

impl Grace {
    /// `credential:principal`, as written in the plan.
    pub fn label(&self) -> String {
        format!("{}:{}", self.credential, self.principal)
    }

    /// Whether the grace still holds at `now`.
    pub fn holds(&self, now: SystemTime) -> bool {
        Date::of(now) < self.until
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawGrace {
    principal: String,
    until: Option<toml::value::Datetime>,
    reason: Option<String>,
}

/// Validate the plan's `[[grace]]` entries (what needs no config: the maximum length is checked
/// by [`check_max_grace`]).
pub(super) fn graces(
    c: &mut Collector<'_>,
    raw: &[RawGrace],
    legacy_credentials: &[String],
    phases: (Option<Date>, Option<Date>),
    exception: bool,
    docs: Option<&str>,
) -> Vec<Grace> {
    let (bridge, enforce) = phases;
    let mut out = Vec::new();
    let mut seen = BTreeSet::new();
    for (i, g) in raw.iter().enumerate() {
        let key = |k: &str| format!("grace[{i}].{k}");
        let until = g.until.as_ref().and_then(|v| {
            super::plan::toml_date(v)
                .map_err(|m| c.push(key("until"), m))
                .ok()
        });
        if g.until.is_none() {
            c.push(key("until"), "required: the day this principal is refused");
        }
        let reason = g.reason.as_deref().map(str::trim).unwrap_or_default();
        if reason.is_empty() {
            c.push(
                key("reason"),
                "required: say why this principal needs more time (shown in migration status)",
            );
        } else if reason.chars().any(char::is_control) || reason.len() > 512 {
            c.push(key("reason"), "at most 512 printable characters");
        }
        let parsed = g.principal.split_once(':').filter(|(cr, p)| {
            !cr.is_empty()
                && !p.is_empty()
                && !p
                    .chars()
                    .any(|ch| ch.is_control() || crate::state::is_invisible(ch))
        });
        let Some((credential, principal)) = parsed else {
            c.push(
                key("principal"),
                format!(
                    "{:?}: expected CREDENTIAL:PRINCIPAL as portcullis inventory shows it (keys:acme)",
                    g.principal
                ),
            );
            continue;
        };
        if !legacy_credentials.iter().any(|l| l == credential) {
            c.push(
                key("principal"),
                format!(
                    "credential {credential:?} is not retired by this plan ({})",
                    legacy_credentials.join(", ")
                ),
            );
        }
        if !seen.insert(g.principal.as_str()) {
            c.push(
                key("principal"),
                format!("{:?} has two graces", g.principal),
            );
        }
        if exception {
            c.push(
                key("principal"),
                "an [exception] never enforces: a grace has nothing to extend",
            );
        }
        match (enforce, until) {
            (None, _) => c.push(
                key("principal"),
                "a grace extends the enforce date: set phases.enforce first",
            ),
            (Some(e), Some(u)) if u <= e => c.push(
                key("until"),
                format!("{u} is not after the enforce date ({e}): the grace would do nothing"),
            ),
            _ => {}
        }
        let (Some(until), false) = (until, reason.is_empty()) else {
            continue;
        };
        let headers = bridge.and_then(|b| {
            SunsetHeaders::build(
                &Phases {
                    observe: b,
                    bridge: Some(b),
                    enforce: Some(until),
                },
                docs,
            )
        });
        out.push(Grace {
            credential: credential.to_owned(),
            principal: principal.to_owned(),
            until,
            reason: reason.to_owned(),
            headers,
        });
    }
    out
}

/// Every grace longer than `max_days` after its plan's enforce date, as problems.
pub fn check_max_grace(plans: &Plans, max_days: u32) -> Vec<Problem> {
    let mut problems = Vec::new();
    for plan in plans.iter() {
        let Some(enforce) = plan.phases.enforce else {
            continue;
        };
        for (i, g) in plan.graces.iter().enumerate() {
            let days = g.until.days() - enforce.days();
            if days > i64::from(max_days) {
                problems.push(Problem {
                    file: plan.file.clone(),
                    key: format!("grace[{i}].until"),
                    message: format!(
                        "{}: {days} days after the enforce date ({enforce}), longer than [migration] max_grace ({max_days}d)",
                        g.until
                    ),
                });
            }
        }
    }
    problems
}

/// The grace that lets `cred` through `plan`'s `enforce` at `now`, if every credential of its
/// lineage that the plan retires (the presented one, the root of an exchanged token) has one
/// holding. The earliest date wins, so the `Sunset` a caller sees is never later than the truth.
pub fn graced<'p>(plan: &'p Plan, cred: &Credential, now: SystemTime) -> Option<&'p Grace> {
    let own = (&*cred.name, cred.principal.as_deref());
    let root = cred
        .lineage
        .as_deref()
        .map(|l| (&*l.credential, l.principal.as_deref()));
    let mut found: Option<&Grace> = None;
    for (name, principal) in std::iter::once(own).chain(root) {
        if !plan.retires(name) {
            continue;
        }
        let g = plan.graces.iter().find(|g| {
            g.credential == name && principal == Some(g.principal.as_str()) && g.holds(now)
        })?;
        if found.is_none_or(|f| g.until < f.until) {
            found = Some(g);
        }
    }
    found
}

/// A grace as `migration status` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct GraceReport {
    pub principal: String,
    pub until: Date,
    pub reason: String,
    /// Days from today to `until` (zero or negative: expired, the principal is refused).
    pub days_left: i64,
    pub expired: bool,
    /// Whether this principal was seen on the plan's routes in the window (a grace nobody uses
    /// may be misspelt: the caller it was meant for is then refused).
    pub seen: bool,
}
