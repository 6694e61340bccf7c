//! `[migration] plans_dir`: the migration plans, checked against the credentials and routes.

use std::path::Path;
use std::sync::Arc;

use serde_json::Value;

use super::creds::CredentialConfig;
use super::raw;
use super::validate::{resolve, Collector};
use crate::pipeline::route::RouteConfig;

/// `[migration] plans_dir` (default `migration-plans` next to the config, when it exists),
/// cross-checked against credentials and routes.
pub(super) fn plans(
    c: &mut Collector<'_>,
    base: &Path,
    v: Option<&Value>,
    credentials: &[Arc<CredentialConfig>],
    routes: &[Arc<RouteConfig>],
) -> crate::migration::Plans {
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
                return crate::migration::Plans::default();
            }
            Some(p)
        }
        None => Some(base.join("migration-plans")).filter(|p| p.is_dir()),
    };
    let plans = match dir {
        None => crate::migration::Plans::default(),
        Some(d) => match crate::migration::Plans::load_dir(&d) {
            Ok(p) => p,
            Err(problems) => {
                c.problems.extend(problems);
                return crate::migration::Plans::default();
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
    plans
}
