//! How far each migration has come (`portcullis migration status`, `GET /admin/v1/migration`):
//! pure functions from plans, recorded usage and inventory to serializable reports, so they are
//! tested on synthetic data and the admin API only fetches and serializes.
//!
//! Every figure on a plan's report counts only that plan's routes over its window: shares and
//! what-if requests come from per-day, per-route usage, and the legacy principals (their
//! requests, last seen, distinct sources) from the per-day, per-route source rows
//! ([`crate::state::sources`]). The inventory's `routes`, `count`, `first_seen`/`last_seen` are
//! all-time, across routes; its `distinct_sources` counts the window of the plans that retire the
//! credential ([`INVENTORY_WINDOW_DAYS`] when none does).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::SystemTime;

use serde::Serialize;

use super::grace::GraceReport;
use super::insight::{figures, shared_suspected, Figures, SourceSeen};
use super::phase::Phase;
use super::plan::{Plan, Plans};
use crate::identity::Kind;
use crate::state::{InventoryEntry, RevocationSet, SourceRow, UsageRow};
use crate::time::{Date, Timestamp};

/// mTLS callers whose last certificate expires within this many days are flagged.
pub const CERT_WARN_DAYS: i64 = 7;

/// The window of an inventory row's `distinct_sources` when no plan retires its credential.
pub const INVENTORY_WINDOW_DAYS: u32 = 14;

/// The whole `migration status`.
#[derive(Debug, Clone, Serialize)]
pub struct MigrationReport {
    pub generated_at: Timestamp,
    pub today: Date,
    pub plans: Vec<PlanReport>,
    /// Routes without a plan: a standing exception, `bridge` forever.
    pub unplanned_routes: Vec<UnplannedRoute>,
}

/// A route without a plan.
#[derive(Debug, Clone, Serialize)]
pub struct UnplannedRoute {
    pub route: String,
    pub phase: Phase,
}

/// Readiness of one plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Status {
    /// Legacy share over a full window is within the exit criterion (or enforced and clean).
    Ready,
    NotReady,
    /// The enforce date has passed and legacy credentials are still being presented.
    Overdue,
    /// A standing exception, review date not yet passed.
    Exception,
    /// A standing exception whose `review_by` date has passed.
    OverdueReview,
}

impl Status {
    /// As shown in tables.
    pub const fn as_str(self) -> &'static str {
        match self {
            Status::Ready => "ready",
            Status::NotReady => "not ready",
            Status::Overdue => "overdue",
            Status::Exception => "exception",
            Status::OverdueReview => "overdue review",
        }
    }
}

/// One plan's report.
#[derive(Debug, Clone, Serialize)]
pub struct PlanReport {
    pub name: String,
    pub owner: String,
    pub description: Option<String>,
    pub docs: Option<String>,
    pub legacy_credentials: Vec<String>,
    /// Routes that use this plan (from the config).
    pub routes: Vec<String>,
    pub phase: Phase,
    /// When the current phase began (`None`: before the `observe` date).
    pub phase_since: Option<Date>,
    pub next_phase: Option<Phase>,
    pub next_date: Option<Date>,
    pub enforce_date: Option<Date>,
    /// Days from today to the enforce date (negative once passed).
    pub days_to_sunset: Option<i64>,
    pub window: Window,
    pub status: Status,
    /// Why the status is what it is, in words.
    pub reasons: Vec<String>,
    /// Principals of the retired credentials seen on this plan's routes within the window, most
    /// recent first.
    pub active_legacy_principals: Vec<PrincipalSeen>,
    /// Active legacy principals seen from `[migration] shared_threshold` or more distinct
    /// sources: split each into one workload identity per source before enforcing.
    pub shared_credentials: Vec<SharedCredential>,
    /// `[[grace]]` entries: principals still bridged after the enforce date.
    pub graces: Vec<GraceReport>,
    /// What `enforce` would refuse if it started today.
    pub what_if_enforced: WhatIf,
    /// mTLS callers on this plan's routes whose last certificate expires within 7 days.
    pub expiring_certs: Vec<ExpiringCert>,
    pub exception: Option<ExceptionReport>,
}

/// The exit-criteria window, ending today (inclusive).
#[derive(Debug, Clone, Serialize)]
pub struct Window {
    pub start: Date,
    pub end: Date,
    pub days: u32,
    /// Days of the window since the plan's `observe` date (readiness needs all of them).
    pub observed_days: u32,
    /// Requests with a credential this plan retires.
    pub legacy_requests: u64,
    pub total_requests: u64,
    /// `legacy_requests / total_requests`; `None` without traffic.
    pub legacy_share: Option<f64>,
    pub max_legacy_share: f64,
    pub daily: Vec<DayShare>,
}

/// One day of the window.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DayShare {
    pub day: Date,
    pub legacy_requests: u64,
    pub total_requests: u64,
    pub legacy_share: Option<f64>,
}

/// A legacy principal, as seen on one plan's routes within its window.
#[derive(Debug, Clone, Serialize)]
pub struct PrincipalSeen {
    pub credential: String,
    pub principal: Option<String>,
    pub identity: String,
    /// Last request on this plan's routes.
    pub last_seen: Timestamp,
    /// Requests on this plan's routes within the window.
    pub count: u64,
    pub revoked: bool,
    /// Distinct sources (client IP + User-Agent) of those requests; a floor when
    /// `sources_capped`.
    pub distinct_sources: u64,
    pub sources_capped: bool,
    pub shared_suspected: bool,
    /// The sources, busiest first.
    pub sources: Vec<SourceSeen>,
    /// The date its `[[grace]]` ends, while one holds.
    pub grace_until: Option<Date>,
}

/// A legacy principal used from several sources: most likely one static credential copied into
/// several workloads, each of which needs its own identity before the credential is retired.
#[derive(Debug, Clone, Serialize)]
pub struct SharedCredential {
    /// `credential:principal` (or the identity when there is no principal).
    pub principal: String,
    pub identity: String,
    pub distinct_sources: u64,
    pub sources_capped: bool,
    pub sources: Vec<SourceSeen>,
}

/// The what-if of enforcing today.
#[derive(Debug, Clone, Serialize)]
pub struct WhatIf {
    /// Retired-credential requests in the window (all of them would have been refused).
    pub refused_requests: u64,
    /// Distinct callers (not already revoked) that would be refused.
    pub refused_callers: usize,
    /// Who, as `credential:principal` (or the identity when there is no principal).
    pub principals: Vec<String>,
    /// Principals a `[[grace]]` would still let through (not counted above).
    pub graced: Vec<String>,
}

/// An mTLS caller whose certificate is about to expire.
#[derive(Debug, Clone, Serialize)]
pub struct ExpiringCert {
    pub identity: String,
    pub not_after: Timestamp,
    /// Negative: already expired.
    pub days_left: i64,
}

/// A standing exception.
#[derive(Debug, Clone, Serialize)]
pub struct ExceptionReport {
    pub reason: String,
    pub review_by: Date,
    pub days_to_review: i64,
}

/// The earliest day any plan's report needs usage from: fetch usage since this.
pub fn usage_needed_since(plans: &Plans, now: SystemTime) -> Date {
    let widest = plans.iter().map(|p| p.exit.window_days).max().unwrap_or(1);
    Date::of(now).plus(1 - i64::from(widest))
}

/// Build the report. `routes` is every configured route with its plan.
pub fn migration_report(
    plans: &Plans,
    routes: &[(&str, Option<&str>)],
    recorded: Recorded<'_>,
    revoked: &RevocationSet,
    now: SystemTime,
) -> MigrationReport {
    let reports = plans
        .iter()
        .map(|plan| {
            let plan_routes: Vec<&str> = routes
                .iter()
                .filter(|(_, p)| *p == Some(plan.name.as_str()))
                .map(|(r, _)| *r)
                .collect();
            plan_report(
                plan,
                &plan_routes,
                recorded,
                revoked,
                plans.settings.shared_threshold,
                now,
            )
        })
        .collect();
    MigrationReport {
        generated_at: Timestamp::of(now),
        today: Date::of(now),
        plans: reports,
        unplanned_routes: routes
            .iter()
            .filter(|(_, p)| p.is_none())
            .map(|(r, _)| UnplannedRoute {
                route: (*r).to_string(),
                phase: Phase::Bridge,
            })
            .collect(),
    }
}

fn share(legacy: u64, total: u64) -> Option<f64> {
    #[expect(clippy::cast_precision_loss, reason = "request counts far below 2^52")]
    (total > 0).then(|| legacy as f64 / total as f64)
}

/// What the state store recorded, as the reports read it.
#[derive(Debug, Clone, Copy)]
pub struct Recorded<'a> {
    /// Usage since [`usage_needed_since`].
    pub usage: &'a [UsageRow],
    pub inventory: &'a [InventoryEntry],
    /// Source rows since [`usage_needed_since`].
    pub sources: &'a [SourceRow],
}

/// One plan's report; `routes` are the routes using it.
pub fn plan_report(
    plan: &Plan,
    routes: &[&str],
    recorded: Recorded<'_>,
    revoked: &RevocationSet,
    shared_threshold: u32,
    now: SystemTime,
) -> PlanReport {
    let Recorded {
        usage, inventory, ..
    } = recorded;
    let today = Date::of(now);
    let at = plan.phases.at(now);
    let days = plan.exit.window_days.max(1);
    let start = today.plus(1 - i64::from(days));
    let observed_from = start.max(plan.phases.observe);
    let observed_days =
        u32::try_from((today.days() - observed_from.days() + 1).max(0)).unwrap_or(0);

    let daily = daily_shares(plan, usage, start, days);
    let legacy: u64 = daily.iter().map(|d| d.legacy_requests).sum();
    let total: u64 = daily.iter().map(|d| d.total_requests).sum();
    let legacy_share = share(legacy, total);

    // Legacy principals seen in the window on this plan's routes.
    // Who was seen on this plan's routes within the window (any credential).
    let on_plan: BTreeSet<(&str, &str)> = recorded
        .sources
        .iter()
        .filter(|r| r.plan.as_deref() == Some(plan.name.as_str()) && r.day >= start)
        .map(|r| (r.credential.as_str(), r.key.as_str()))
        .collect();
    let on_plan = |e: &InventoryEntry| {
        let key = e.principal.as_deref().unwrap_or(&e.identity);
        on_plan.contains(&(e.credential.as_str(), key))
    };
    let active = active_principals(plan, recorded, start, revoked, shared_threshold, now);
    let what_if = what_if(&active, legacy);
    let shared_credentials: Vec<SharedCredential> = active
        .iter()
        .filter(|p| p.shared_suspected && !p.revoked)
        .map(|p| SharedCredential {
            principal: seen_label(p),
            identity: p.identity.clone(),
            distinct_sources: p.distinct_sources,
            sources_capped: p.sources_capped,
            sources: p.sources.clone(),
        })
        .collect();
    let graces: Vec<GraceReport> = plan
        .graces
        .iter()
        .map(|g| {
            let label = g.label();
            GraceReport {
                days_left: g.until.days() - today.days(),
                expired: !g.holds(now),
                seen: active.iter().any(|p| seen_label(p) == label),
                principal: label,
                until: g.until,
                reason: g.reason.clone(),
            }
        })
        .collect();

    let expiring = expiring_certs(inventory, &on_plan, now);

    let exception = plan.exception.as_ref().map(|x| ExceptionReport {
        reason: x.reason.clone(),
        review_by: x.review_by,
        days_to_review: x.review_by.days() - today.days(),
    });

    let (status, mut reasons) = readiness(
        plan,
        today,
        at.phase,
        &daily,
        legacy_share,
        observed_days,
        days,
        graced_since_enforce(plan, recorded.sources, start, today),
    );
    insight_reasons(&mut reasons, &shared_credentials, &graces);

    PlanReport {
        name: plan.name.clone(),
        owner: plan.owner.clone(),
        description: plan.description.clone(),
        docs: plan.docs.clone(),
        legacy_credentials: plan.legacy_credentials.clone(),
        routes: routes.iter().map(|r| (*r).to_string()).collect(),
        phase: at.phase,
        phase_since: at.since,
        next_phase: at.next.map(|(p, _)| p),
        next_date: at.next.map(|(_, d)| d),
        enforce_date: plan.phases.enforce,
        days_to_sunset: plan.phases.enforce.map(|e| e.days() - today.days()),
        window: Window {
            start,
            end: today,
            days,
            observed_days,
            legacy_requests: legacy,
            total_requests: total,
            legacy_share,
            max_legacy_share: plan.exit.max_legacy_share,
            daily,
        },
        status,
        reasons,
        active_legacy_principals: active,
        shared_credentials,
        graces,
        what_if_enforced: what_if,
        expiring_certs: expiring,
        exception,
    }
}

/// `credential:principal` of a listed principal (its identity when it has no principal).
fn seen_label(p: &PrincipalSeen) -> String {
    match &p.principal {
        Some(x) => format!("{}:{x}", p.credential),
        None => p.identity.clone(),
    }
}

/// The plan's legacy principals from the source rows of its routes since `start`, most recent
/// first, each with its own figures.
fn active_principals(
    plan: &Plan,
    recorded: Recorded<'_>,
    start: Date,
    revoked: &RevocationSet,
    shared_threshold: u32,
    now: SystemTime,
) -> Vec<PrincipalSeen> {
    let by_key: HashMap<(&str, &str), &InventoryEntry> = recorded
        .inventory
        .iter()
        .map(|e| {
            let key = e.principal.as_deref().unwrap_or(&e.identity);
            ((e.credential.as_str(), key), e)
        })
        .collect();
    let per = figures(recorded.sources, start, |r| {
        r.plan.as_deref() == Some(plan.name.as_str()) && plan.retires(&r.credential)
    });
    let mut active: Vec<PrincipalSeen> = per
        .iter()
        .filter_map(|(&(credential, key), f)| {
            let e = by_key.get(&(credential, key));
            // No inventory entry: written by a replica between the two reads; shown next time.
            let e = e?;
            Some(principal_seen(plan, e, f, revoked, shared_threshold, now))
        })
        .collect();
    active.sort_by(|a, b| {
        b.last_seen
            .cmp(&a.last_seen)
            .then_with(|| a.principal.cmp(&b.principal))
    });
    active
}

fn principal_seen(
    plan: &Plan,
    e: &InventoryEntry,
    f: &Figures,
    revoked: &RevocationSet,
    shared_threshold: u32,
    now: SystemTime,
) -> PrincipalSeen {
    let distinct = f.distinct_sources();
    let grace_until = plan
        .graces
        .iter()
        .find(|g| {
            g.credential == e.credential
                && e.principal.as_deref() == Some(g.principal.as_str())
                && g.holds(now)
        })
        .map(|g| g.until);
    PrincipalSeen {
        credential: e.credential.clone(),
        principal: e.principal.clone(),
        identity: e.identity.clone(),
        last_seen: f.last_seen.unwrap_or(e.last_seen),
        count: f.requests,
        revoked: revoked.contains(&e.identity, &e.credential, e.principal.as_deref(), None),
        distinct_sources: distinct,
        sources_capped: f.capped(),
        shared_suspected: shared_suspected(e.kind, distinct, shared_threshold),
        sources: f.listed(),
        grace_until,
    }
}

/// What enforcing today would refuse: every active principal not revoked (already refused) and
/// not under a holding grace (still let through).
fn what_if(active: &[PrincipalSeen], legacy: u64) -> WhatIf {
    let mut principals = BTreeSet::new();
    let mut graced = BTreeSet::new();
    let mut graced_requests = 0u64;
    for p in active.iter().filter(|p| !p.revoked) {
        if p.grace_until.is_some() {
            graced.insert(seen_label(p));
            graced_requests = graced_requests.saturating_add(p.count);
        } else {
            principals.insert(seen_label(p));
        }
    }
    WhatIf {
        refused_requests: legacy.saturating_sub(graced_requests),
        refused_callers: principals.len(),
        principals: principals.into_iter().collect(),
        graced: graced.into_iter().collect(),
    }
}

/// Requests in the window since the enforce date of principals under a `[[grace]]` on that day.
fn graced_since_enforce(plan: &Plan, sources: &[SourceRow], start: Date, today: Date) -> u64 {
    let Some(enforce) = plan.phases.enforce else {
        return 0;
    };
    sources
        .iter()
        .filter(|r| r.plan.as_deref() == Some(plan.name.as_str()))
        .filter(|r| r.day >= enforce.max(start) && r.day <= today)
        .filter(|r| {
            plan.graces
                .iter()
                .any(|g| g.credential == r.credential && g.principal == r.key && r.day < g.until)
        })
        .map(|r| r.count)
        .sum()
}

/// "split before enforce" for shared credentials; expired graces.
fn insight_reasons(reasons: &mut Vec<String>, shared: &[SharedCredential], graces: &[GraceReport]) {
    for s in shared {
        let floor = if s.sources_capped { "at least " } else { "" };
        reasons.push(format!(
            "split before enforce: {} is used from {floor}{} sources",
            s.principal, s.distinct_sources
        ));
    }
    for g in graces.iter().filter(|g| g.expired) {
        reasons.push(format!(
            "grace for {} expired on {}: it is refused",
            g.principal, g.until
        ));
    }
}

/// Per-day counts for this plan in the window of `days` days from `start`.
fn daily_shares(plan: &Plan, usage: &[UsageRow], start: Date, days: u32) -> Vec<DayShare> {
    let mut daily: Vec<DayShare> = (0..i64::from(days))
        .map(|i| DayShare {
            day: start.plus(i),
            legacy_requests: 0,
            total_requests: 0,
            legacy_share: None,
        })
        .collect();
    for row in usage
        .iter()
        .filter(|r| r.plan.as_deref() == Some(plan.name.as_str()))
    {
        let Ok(i) = usize::try_from(row.day.days() - start.days()) else {
            continue;
        };
        let Some(d) = daily.get_mut(i) else { continue };
        d.total_requests = d.total_requests.saturating_add(row.count);
        if plan.retires(&row.credential) {
            d.legacy_requests = d.legacy_requests.saturating_add(row.count);
        }
    }
    for d in &mut daily {
        d.legacy_share = share(d.legacy_requests, d.total_requests);
    }
    daily
}

/// mTLS identities seen in the window on the plan's routes whose certificate expires within
/// [`CERT_WARN_DAYS`], soonest first.
fn expiring_certs(
    inventory: &[InventoryEntry],
    on_plan: &dyn Fn(&InventoryEntry) -> bool,
    now: SystemTime,
) -> Vec<ExpiringCert> {
    let now_ts = Timestamp::of(now);
    let mut expiring: Vec<ExpiringCert> = inventory
        .iter()
        .filter(|e| e.kind == Kind::Mtls && on_plan(e))
        .filter_map(|e| {
            let na = e.cert_not_after?;
            let days_left = (na.0 - now_ts.0).div_euclid(86_400);
            (days_left < CERT_WARN_DAYS).then(|| ExpiringCert {
                identity: e.identity.clone(),
                not_after: na,
                days_left,
            })
        })
        .collect();
    expiring.sort_by_key(|c| c.not_after);
    expiring
}

/// The plan's [`Status`] and the reasons for it. `graced`: legacy requests since the enforce date
/// that a `[[grace]]` let through (not refused, so not overdue; but the plan is not done).
#[expect(
    clippy::too_many_arguments,
    reason = "the window's figures, each computed once by plan_report"
)]
fn readiness(
    plan: &Plan,
    today: Date,
    phase: Phase,
    daily: &[DayShare],
    legacy_share: Option<f64>,
    observed_days: u32,
    days: u32,
    graced: u64,
) -> (Status, Vec<String>) {
    let mut reasons = Vec::new();
    let status = if let Some(x) = &plan.exception {
        if today > x.review_by {
            reasons.push(format!("exception review was due on {}", x.review_by));
            Status::OverdueReview
        } else {
            reasons.push(format!(
                "standing exception until review on {}: {}",
                x.review_by, x.reason
            ));
            Status::Exception
        }
    } else {
        let legacy_since_enforce: u64 = match plan.phases.enforce {
            Some(e) if e <= today => daily
                .iter()
                .filter(|d| d.day >= e)
                .map(|d| d.legacy_requests)
                .sum(),
            _ => 0,
        };
        let legacy_since_enforce = legacy_since_enforce.saturating_sub(graced);
        let within = legacy_share.is_none_or(|s| s <= plan.exit.max_legacy_share);
        if legacy_since_enforce > 0 {
            reasons.push(format!(
                "{legacy_since_enforce} legacy request(s) since the enforce date (refused)"
            ));
            Status::Overdue
        } else if phase == Phase::Enforce && graced > 0 {
            reasons.push(format!(
                "{graced} legacy request(s) since the enforce date let through under a grace"
            ));
            Status::NotReady
        } else if phase == Phase::Enforce {
            reasons.push("enforced; no legacy requests since".into());
            Status::Ready
        } else if observed_days < days {
            reasons.push(format!("observed {observed_days} of {days} window days"));
            Status::NotReady
        } else if !within {
            reasons.push(format!(
                "legacy share {:.4} above the maximum {}",
                legacy_share.unwrap_or(0.0),
                plan.exit.max_legacy_share
            ));
            Status::NotReady
        } else {
            reasons.push(match legacy_share {
                Some(s) => format!(
                    "legacy share {s:.4} within the maximum {}",
                    plan.exit.max_legacy_share
                ),
                None => "no traffic in the window".into(),
            });
            Status::Ready
        }
    };
    (status, reasons)
}

/// `portcullis inventory`: every identity and legacy principal seen.
#[derive(Debug, Clone, Serialize)]
pub struct InventoryReport {
    pub generated_at: Timestamp,
    pub entries: Vec<InventoryItem>,
}

/// One inventory line.
#[derive(Debug, Clone, Serialize)]
pub struct InventoryItem {
    #[serde(flatten)]
    pub entry: InventoryEntry,
    pub revoked: bool,
    /// mTLS: the last certificate expires within 7 days (or has expired).
    pub cert_expiring: bool,
    /// Distinct sources (client IP + User-Agent) over `sources_window_days`, on every route; a
    /// floor when `sources_capped`.
    pub distinct_sources: u64,
    pub sources_capped: bool,
    /// The widest window of the plans retiring the credential ([`INVENTORY_WINDOW_DAYS`] when
    /// none does).
    pub sources_window_days: u32,
    /// A static credential seen from `[migration] shared_threshold` or more sources.
    pub shared_suspected: bool,
    /// Whom to call: the plans retiring this credential, with their owner and docs.
    pub plans: Vec<Contact>,
}

/// A plan's owner and docs, shown where its principals are listed.
#[derive(Debug, Clone, Serialize)]
pub struct Contact {
    pub plan: String,
    pub owner: String,
    pub docs: Option<String>,
}

/// Build the inventory report, most recently seen first.
pub fn inventory_report(
    inventory: &[InventoryEntry],
    sources: &[SourceRow],
    plans: &Plans,
    revoked: &RevocationSet,
    now: SystemTime,
) -> InventoryReport {
    let now_ts = Timestamp::of(now);
    let today = Date::of(now);
    // Figures per window length (few distinct ones), computed once each.
    let mut by_window: BTreeMap<u32, BTreeMap<(&str, &str), Figures>> = BTreeMap::new();
    let mut entries: Vec<InventoryItem> = inventory
        .iter()
        .map(|e| {
            let retiring: Vec<&std::sync::Arc<Plan>> =
                plans.iter().filter(|p| p.retires(&e.credential)).collect();
            let days = retiring
                .iter()
                .map(|p| p.exit.window_days.max(1))
                .max()
                .unwrap_or(INVENTORY_WINDOW_DAYS);
            let per = by_window
                .entry(days)
                .or_insert_with(|| figures(sources, today.plus(1 - i64::from(days)), |_| true));
            let key = e.principal.as_deref().unwrap_or(&e.identity);
            let (distinct, capped) = per
                .get(&(e.credential.as_str(), key))
                .map_or((0, false), |f| (f.distinct_sources(), f.capped()));
            InventoryItem {
                revoked: revoked.contains(&e.identity, &e.credential, e.principal.as_deref(), None),
                cert_expiring: e
                    .cert_not_after
                    .is_some_and(|na| (na.0 - now_ts.0).div_euclid(86_400) < CERT_WARN_DAYS),
                distinct_sources: distinct,
                sources_capped: capped,
                sources_window_days: days,
                shared_suspected: shared_suspected(
                    e.kind,
                    distinct,
                    plans.settings.shared_threshold,
                ),
                plans: retiring
                    .iter()
                    .map(|p| Contact {
                        plan: p.name.clone(),
                        owner: p.owner.clone(),
                        docs: p.docs.clone(),
                    })
                    .collect(),
                entry: e.clone(),
            }
        })
        .collect();
    entries.sort_by(|a, b| {
        b.entry
            .last_seen
            .cmp(&a.entry.last_seen)
            .then_with(|| a.entry.credential.cmp(&b.entry.credential))
    });
    InventoryReport {
        generated_at: now_ts,
        entries,
    }
}
