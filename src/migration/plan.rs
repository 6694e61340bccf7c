//! Migration plans (`migration-plans/*.toml`, `docs/plans.md`): parsed strictly, validated in one
//! pass that reports every problem with its file and key, then cross-checked against the config
//! (credentials and routes) by [`check_against_config`].
//!
//! Decisions where the contract is silent:
//! - `name` must equal the file stem, because routes name plans and operators find the file by
//!   that name; names are `[a-z0-9._-]`.
//! - `observe` is required: it is the day the plan starts and anchors its reports. Before it, the
//!   plan's routes behave exactly as without the plan (it relaxes nothing before it starts).
//! - `enforce` needs `bridge`: callers must have seen `Deprecation`/`Sunset` before a refusal.
//! - Dates must be in order (`observe ≤ bridge ≤ enforce`; equal dates skip a phase).
//! - `[exit_criteria]` is required unless the plan is an `[exception]`; `window` is whole days.
//! - An `[exception]` never enforces (no `enforce` date) and must name a `review_by` date. It
//!   must name a `bridge` date too: an exception stays in `bridge` (credential checked, controls
//!   enforced); without one it would stay in `observe`, never blocking, forever.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;

use serde::Deserialize;

use super::phase::SunsetHeaders;
use crate::diag::{Collector, Problem};
use crate::identity::Kind;
use crate::time::Date;
use crate::units::parse_duration;

/// One validated plan.
#[derive(Debug, Clone)]
pub struct Plan {
    pub name: String,
    pub owner: String,
    pub description: Option<String>,
    /// Where callers read how to migrate; sent as `Link rel="sunset"` and in refusals.
    pub docs: Option<String>,
    /// Credential names (config `[credentials.NAME]`) this plan retires.
    pub legacy_credentials: Vec<String>,
    pub phases: Phases,
    pub exit: ExitCriteria,
    pub exception: Option<Exception>,
    /// `[[grace]]`: named principals still bridged in `enforce` until their own date.
    pub graces: Vec<super::grace::Grace>,
    /// The file it came from (for problems and reports).
    pub file: String,
    /// Built once at load: the bridge-phase response headers (when `enforce` is set).
    pub(crate) sunset: Option<SunsetHeaders>,
}

impl Plan {
    /// Whether `credential` (a config credential name) is retired by this plan.
    pub fn retires(&self, credential: &str) -> bool {
        self.legacy_credentials.iter().any(|c| c == credential)
    }
}

/// Phase dates (UTC midnights, see [`crate::time`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Phases {
    pub observe: Date,
    pub bridge: Option<Date>,
    pub enforce: Option<Date>,
}

/// When a plan counts as done.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ExitCriteria {
    /// Largest share of legacy-credential requests over the window still called ready.
    pub max_legacy_share: f64,
    /// The window, in days.
    pub window_days: u32,
}

/// A standing exception: a caller that cannot present a workload identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exception {
    pub reason: String,
    pub review_by: Date,
}

/// Every plan, by name, with the `[migration]` settings their reports use.
#[derive(Debug, Clone, Default)]
pub struct Plans {
    by_name: BTreeMap<String, Arc<Plan>>,
    pub settings: Settings,
}

/// `[migration]` settings besides `plans_dir`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    /// A legacy principal seen from at least this many distinct sources over a plan's window is
    /// `shared_suspected` (`shared_threshold`, default 3).
    pub shared_threshold: u32,
    /// Longest `[[grace]]` after a plan's enforce date, in days (`max_grace`, default 90d).
    pub max_grace_days: u32,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            shared_threshold: DEFAULT_SHARED_THRESHOLD,
            max_grace_days: super::grace::DEFAULT_MAX_GRACE_DAYS,
        }
    }
}

/// `[migration] shared_threshold` when the config does not set it.
pub const DEFAULT_SHARED_THRESHOLD: u32 = 3;

impl Plans {
    /// The plan called `name`.
    pub fn get(&self, name: &str) -> Option<&Arc<Plan>> {
        self.by_name.get(name)
    }

    /// The same plans with `settings`.
    #[must_use]
    pub fn with_settings(mut self, settings: Settings) -> Plans {
        self.settings = settings;
        self
    }

    /// All plans, by name.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<Plan>> {
        self.by_name.values()
    }

    /// How many.
    pub fn len(&self) -> usize {
        self.by_name.len()
    }

    /// None at all.
    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }

    /// Load every `*.toml` in `dir` (other files are ignored; a missing directory is a problem).
    pub fn load_dir(dir: &Path) -> Result<Plans, Vec<Problem>> {
        let shown = dir.display().to_string();
        let entries = std::fs::read_dir(dir).map_err(|e| {
            vec![Problem {
                file: shown.clone(),
                key: "-".into(),
                message: format!("cannot read plans directory: {e}"),
            }]
        })?;
        let mut sources = Vec::new();
        let mut problems = Vec::new();
        for entry in entries.flatten() {
            let path = entry.path();
            if path.extension().and_then(|e| e.to_str()) != Some("toml") {
                continue;
            }
            let file = path.display().to_string();
            let stem = path
                .file_stem()
                .and_then(|s| s.to_str())
                .unwrap_or_default()
                .to_string();
            match std::fs::read_to_string(&path) {
                Ok(text) => sources.push((file, stem, text)),
                Err(e) => problems.push(Problem {
                    file,
                    key: "-".into(),
                    message: format!("cannot read: {e}"),
                }),
            }
        }
        sources.sort();
        match Plans::from_sources(
            sources
                .iter()
                .map(|(f, s, t)| (f.as_str(), s.as_str(), t.as_str())),
        ) {
            Ok(plans) if problems.is_empty() => Ok(plans),
            Ok(_) => Err(problems),
            Err(mut more) => {
                problems.append(&mut more);
                Err(problems)
            }
        }
    }

    /// Parse plans from `(file, stem, text)` triples; every problem is reported.
    pub fn from_sources<'a>(
        sources: impl IntoIterator<Item = (&'a str, &'a str, &'a str)>,
    ) -> Result<Plans, Vec<Problem>> {
        let mut plans = Plans::default();
        let mut problems = Vec::new();
        for (file, stem, text) in sources {
            match parse_plan(file, stem, text) {
                Ok(plan) => {
                    if plans.by_name.contains_key(&plan.name) {
                        problems.push(problem(
                            file,
                            "name",
                            format!("duplicate plan name {:?}", plan.name),
                        ));
                    } else {
                        plans.by_name.insert(plan.name.clone(), Arc::new(plan));
                    }
                }
                Err(mut p) => problems.append(&mut p),
            }
        }
        if problems.is_empty() {
            Ok(plans)
        } else {
            Err(problems)
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPlan {
    name: String,
    owner: String,
    description: Option<String>,
    docs: Option<String>,
    legacy_credentials: Vec<String>,
    phases: RawPhases,
    exit_criteria: Option<RawExit>,
    exception: Option<RawException>,
    #[serde(default)]
    grace: Vec<super::grace::RawGrace>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPhases {
    observe: Option<toml::value::Datetime>,
    bridge: Option<toml::value::Datetime>,
    enforce: Option<toml::value::Datetime>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawExit {
    max_legacy_share: f64,
    window: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawException {
    reason: String,
    review_by: Option<toml::value::Datetime>,
}

fn problem(file: &str, key: &str, message: impl Into<String>) -> Problem {
    Problem {
        file: file.to_string(),
        key: key.to_string(),
        message: message.into(),
    }
}

/// A TOML local date (`2026-12-01`); a time or offset would make the switch instant ambiguous.
pub(super) fn toml_date(v: &toml::value::Datetime) -> Result<Date, String> {
    match (v.date, v.time, v.offset) {
        (Some(d), None, None) => {
            Date::from_ymd(i64::from(d.year), u32::from(d.month), u32::from(d.day))
                .ok_or_else(|| format!("{v} is not a calendar date"))
        }
        _ => Err(format!(
            "{v}: expected a plain date like 2026-12-01 (phases switch at 00:00 UTC)"
        )),
    }
}

fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
}

/// A docs URL goes into a `Link` header and a problem detail: absolute http(s), no spaces,
/// quotes, angle brackets or control characters (which could break or inject header syntax).
fn valid_docs(s: &str) -> bool {
    (s.starts_with("https://") || s.starts_with("http://"))
        && s.len() <= 2048
        && s.bytes()
            .all(|b| b.is_ascii_graphic() && !b"<>\"\\`{}|^".contains(&b))
}

/// The key a deserialization error is about (`phases.bridge` for a wrong type, `owner` for a
/// missing field), so that every refusal names one; `-` only for a TOML syntax error, which has
/// no key (its line is in the message). toml shows the key path only when the error is printed
/// without the input, and serde names a missing or unknown field only in its message.
fn error_key(e: &toml::de::Error) -> String {
    let mut bare = e.clone();
    bare.set_input(None);
    let shown = bare.to_string();
    let path = shown
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix("in `")?.strip_suffix('`'));
    let field = ["missing field `", "unknown field `"]
        .iter()
        .find_map(|p| e.message().strip_prefix(p)?.split('`').next());
    match (path, field) {
        (Some(p), Some(f)) => format!("{p}.{f}"),
        (Some(k), None) | (None, Some(k)) => k.to_string(),
        (None, None) => "-".into(),
    }
}

/// Parse and validate one plan file. `stem` is the file name without `.toml`.
pub fn parse_plan(file: &str, stem: &str, text: &str) -> Result<Plan, Vec<Problem>> {
    let raw: RawPlan = toml::from_str(text).map_err(|e| {
        let line = e
            .span()
            .and_then(|r| text.get(..r.start))
            .map(|before| before.matches('\n').count() + 1);
        let msg = match line {
            Some(l) => format!("line {l}: {}", e.message().trim_end()),
            None => e.message().trim_end().to_string(),
        };
        vec![problem(file, &error_key(&e), msg)]
    })?;
    let mut c = Collector::new(file);
    check_names(&mut c, &raw, stem);
    let (observe, bridge, enforce, review_by) = phase_dates(&mut c, &raw);
    let exit = exit_criteria(&mut c, &raw);
    let exception = exception(&mut c, &raw, review_by);
    let graces = super::grace::graces(
        &mut c,
        &raw.grace,
        &raw.legacy_credentials,
        (bridge, enforce),
        raw.exception.is_some(),
        raw.docs.as_deref(),
    );

    let (Some(observe), true) = (observe, c.is_ok()) else {
        return Err(c.problems);
    };
    let phases = Phases {
        observe,
        bridge,
        enforce,
    };
    let sunset = SunsetHeaders::build(&phases, raw.docs.as_deref());
    Ok(Plan {
        name: raw.name,
        owner: raw.owner,
        description: raw.description,
        docs: raw.docs,
        legacy_credentials: raw.legacy_credentials,
        phases,
        exit,
        exception,
        graces,
        file: file.to_string(),
        sunset,
    })
}

/// `name` (the file's stem), `owner`, `docs` and `legacy_credentials`.
fn check_names(c: &mut Collector<'_>, raw: &RawPlan, stem: &str) {
    if !valid_name(&raw.name) {
        c.push(
            "name",
            format!("{:?}: use 1-64 characters from a-z 0-9 . _ -", raw.name),
        );
    } else if raw.name != stem {
        c.push(
            "name",
            format!(
                "{:?} must match the file name ({stem}.toml): routes find plans by name",
                raw.name
            ),
        );
    }
    if raw.owner.trim().is_empty() {
        c.push("owner", "must name a team or person");
    }
    if let Some(docs) = &raw.docs {
        if !valid_docs(docs) {
            c.push(
                "docs",
                "must be an absolute http(s) URL without spaces, quotes or angle brackets",
            );
        }
    }
    if raw.legacy_credentials.is_empty() {
        c.push(
            "legacy_credentials",
            "must list at least one credential to retire",
        );
    }
    let mut seen = BTreeSet::new();
    for name in &raw.legacy_credentials {
        if !seen.insert(name) {
            c.push("legacy_credentials", format!("{name:?} listed twice"));
        }
    }
}

/// A date field, reported at `key` when it is not a plain date.
fn date(c: &mut Collector<'_>, key: &str, v: &Option<toml::value::Datetime>) -> Option<Date> {
    v.as_ref()
        .and_then(|v| toml_date(v).map_err(|m| c.push(key, m)).ok())
}

/// `[phases]` (observe, bridge, enforce in order) and `exception.review_by`.
fn phase_dates(
    c: &mut Collector<'_>,
    raw: &RawPlan,
) -> (Option<Date>, Option<Date>, Option<Date>, Option<Date>) {
    let observe = date(c, "phases.observe", &raw.phases.observe);
    let bridge = date(c, "phases.bridge", &raw.phases.bridge);
    let enforce = date(c, "phases.enforce", &raw.phases.enforce);
    let review_by = raw
        .exception
        .as_ref()
        .and_then(|e| date(c, "exception.review_by", &e.review_by));
    if raw.phases.observe.is_none() {
        c.push("phases.observe", "required: the day the plan starts");
    }
    if let (Some(o), Some(b)) = (observe, bridge) {
        if b < o {
            c.push("phases.bridge", format!("{b} is before observe ({o})"));
        }
    }
    if let Some(e) = enforce {
        match bridge {
            Some(b) if e < b => c.push("phases.enforce", format!("{e} is before bridge ({b})")),
            Some(_) => {}
            None if raw.phases.bridge.is_none() => c.push(
                "phases.enforce",
                "needs a bridge date: callers must see Deprecation/Sunset headers before legacy credentials are refused",
            ),
            None => {}
        }
    }
    (observe, bridge, enforce, review_by)
}

/// `[exit_criteria]`: required unless the plan is an `[exception]`.
fn exit_criteria(c: &mut Collector<'_>, raw: &RawPlan) -> ExitCriteria {
    match &raw.exit_criteria {
        Some(x) => {
            if !(0.0..=1.0).contains(&x.max_legacy_share) {
                c.push(
                    "exit_criteria.max_legacy_share",
                    format!("{} is not between 0 and 1", x.max_legacy_share),
                );
            }
            let window_days = match parse_duration(&x.window) {
                Ok(d) if d.as_secs() > 0 && d.as_secs() % 86_400 == 0 && d.subsec_nanos() == 0 => {
                    u32::try_from(d.as_secs() / 86_400)
                        .ok()
                        .filter(|d| *d <= 366)
                }
                Ok(_) => None,
                Err(m) => {
                    c.push("exit_criteria.window", m);
                    Some(1)
                }
            };
            let window_days = window_days.unwrap_or_else(|| {
                c.push(
                    "exit_criteria.window",
                    format!("{:?}: expected whole days between 1d and 366d", x.window),
                );
                1
            });
            ExitCriteria {
                max_legacy_share: x.max_legacy_share,
                window_days,
            }
        }
        None => {
            if raw.exception.is_none() {
                c.push(
                    "exit_criteria",
                    "required (max_legacy_share, window) unless the plan is an [exception]",
                );
            }
            ExitCriteria {
                max_legacy_share: 0.0,
                window_days: 14,
            }
        }
    }
}

/// `[exception]`: a standing exception with a reason and a review date, never enforcing.
fn exception(c: &mut Collector<'_>, raw: &RawPlan, review_by: Option<Date>) -> Option<Exception> {
    match &raw.exception {
        Some(x) => {
            if x.reason.trim().is_empty() {
                c.push(
                    "exception.reason",
                    "must say why this caller cannot migrate",
                );
            }
            if x.review_by.is_none() {
                c.push(
                    "exception.review_by",
                    "required: a standing exception must be reviewed",
                );
            }
            if raw.phases.enforce.is_some() {
                c.push(
                    "phases.enforce",
                    "an [exception] never enforces: remove enforce or the exception",
                );
            }
            if raw.phases.bridge.is_none() {
                c.push(
                    "phases.bridge",
                    "required with an [exception]: the exception stays in bridge (credential checked, controls enforced); without a bridge date it would stay in observe, never blocking, forever",
                );
            }
            review_by.map(|review_by| Exception {
                reason: x.reason.clone(),
                review_by,
            })
        }
        None => None,
    }
}

/// How a route uses a plan, for [`check_against_config`].
#[derive(Debug, Clone, Copy)]
pub struct RouteUse<'a> {
    /// `[[routes]] name`.
    pub route: &'a str,
    /// `[[routes]] plan`.
    pub plan: &'a str,
    /// `[[routes]] accept` (credential names).
    pub accept: &'a [String],
}

/// Cross-checks that need the config: every plan's credentials exist and are legacy kinds
/// (`mtls` and `jwt-svid` are what callers migrate *to*), every route's plan exists, a route
/// appears once, and a route accepts at least one credential its plan retires (otherwise the plan
/// could never do anything there: almost certainly a typo). `config_file` names the config in
/// route problems. Returns every problem found (empty: all good).
pub fn check_against_config(
    plans: &Plans,
    credentials: &BTreeMap<String, Kind>,
    routes: &[RouteUse<'_>],
    config_file: &str,
) -> Vec<Problem> {
    let mut problems = Vec::new();
    for plan in plans.iter() {
        for c in &plan.legacy_credentials {
            match credentials.get(c) {
                None => problems.push(problem(&plan.file, "legacy_credentials", format!("no credential {c:?} in the config"))),
                Some(kind) if !kind.is_legacy() => problems.push(problem(
                    &plan.file,
                    "legacy_credentials",
                    format!("{c:?} is a {} credential: workload identity is what callers migrate to, not from", kind.as_str()),
                )),
                Some(_) => {}
            }
        }
    }
    let mut seen = BTreeSet::new();
    for (i, r) in routes.iter().enumerate() {
        let key = format!("routes[{i}].plan");
        if !seen.insert(r.route) {
            problems.push(problem(
                config_file,
                &key,
                format!("route {:?} is listed twice: one plan per route", r.route),
            ));
        }
        match plans.get(r.plan) {
            None => problems.push(problem(
                config_file,
                &key,
                format!(
                    "no migration plan {:?} (expected {}.toml in plans_dir)",
                    r.plan, r.plan
                ),
            )),
            Some(plan) => {
                if !r.accept.iter().any(|a| plan.retires(a)) {
                    problems.push(problem(
                        config_file,
                        &key,
                        format!(
                            "route {:?} accepts none of plan {:?}'s legacy credentials ({})",
                            r.route,
                            plan.name,
                            plan.legacy_credentials.join(", ")
                        ),
                    ));
                }
            }
        }
    }
    problems
}

#[cfg(test)]
mod props;
