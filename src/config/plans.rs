//! `[migration] plans_dir`: the migration plans, checked against the credentials and routes.

use std::path::Path;
use std::sync::Arc;

use serde_json::Value;

use super::creds::CredentialConfig;
use super::raw;
use super::validate::{resolve, Collector};
use crate::pipeline::route::RouteConfig;

/// `[migration] plans_dir` (default `migration-plans` next to the config, when it exists),
/// cross-checked against credentials and routes; with the directory read, if any.
pub(super) fn plans(
    c: &mut Collector<'_>,
    base: &Path,
    v: Option<&Value>,
    credentials: &[Arc<CredentialConfig>],
    routes: &[Arc<RouteConfig>],
) -> (crate::migration::Plans, Option<std::path::PathBuf>) {
    use crate::migration::plan::{check_against_config, RouteUse};
    let raw = match v {
        None => raw::Migration::default(),
        Some(v) => c
            .section::<raw::Migration>("migration", v)
            .unwrap_or_default(),
    };
    let dir = match &raw.plans_dir {
        Some(d) => {
            let p = resolve(base, d);
            if !p.is_dir() {
                c.push(
                    "migration.plans_dir",
                    format!("{} is not a directory", p.display()),
                );
                return (crate::migration::Plans::default(), None);
            }
            Some(p)
        }
        None => Some(base.join("migration-plans")).filter(|p| p.is_dir()),
    };
    let plans = match &dir {
        None => crate::migration::Plans::default(),
        Some(d) => match crate::migration::Plans::load_dir(d) {
            Ok(p) => p,
            Err(problems) => {
                c.problems.extend(problems);
                return (crate::migration::Plans::default(), dir);
            }
        },
    };
    let kinds = credentials
        .iter()
        .map(|cr| (cr.name.to_string(), cr.kind()))
        .collect();
    let accepts: Vec<Vec<String>> = routes
        .iter()
        .map(|r| r.accept.iter().map(|a| a.to_string()).collect())
        .collect();
    let uses: Vec<RouteUse<'_>> = routes
        .iter()
        .zip(&accepts)
        .filter_map(|(r, accept)| {
            r.plan.as_deref().map(|plan| RouteUse {
                route: &r.name,
                plan,
                accept,
            })
        })
        .collect();
    let problems = check_against_config(&plans, &kinds, &uses, c.file);
    c.problems.extend(problems);
    let settings = insight_settings(c, &raw);
    c.problems.extend(crate::migration::grace::check_max_grace(
        &plans,
        settings.max_grace_days,
    ));
    (plans.with_settings(settings), dir)
}

/// `[migration] shared_threshold` and `max_grace` (whole days).
fn insight_settings(c: &mut Collector<'_>, raw: &raw::Migration) -> crate::migration::Settings {
    let mut s = crate::migration::Settings::default();
    if let Some(t) = raw.shared_threshold {
        if t < 2 {
            c.push(
                "migration.shared_threshold",
                format!("{t}: at least 2 (one source is what an unshared credential has)"),
            );
        } else {
            s.shared_threshold = t;
        }
    }
    if let Some(text) = &raw.max_grace {
        match crate::units::parse_duration(text) {
            Ok(d) if d.as_secs() % 86_400 == 0 && d.subsec_nanos() == 0 && d.as_secs() > 0 => {
                s.max_grace_days = u32::try_from(d.as_secs() / 86_400).unwrap_or(u32::MAX);
            }
            _ => c.push(
                "migration.max_grace",
                format!("{text:?}: expected whole days such as \"90d\""),
            ),
        }
    }
    s
}
