//! `portcullis policy suggest`: a least-privilege Cedar policy for a route, written from the
//! traffic that was actually allowed. Identities are kept exact; methods are kept exact; paths are
//! turned into templates where a segment looks like an identifier (all digits, a UUID, a long hex
//! or token string, a date or version number), because those vary per request while the rest of
//! the path names the operation.
//!
//! Identities with exactly the same access (the same methods on the same path templates) share one
//! `permit`, so the output reads as "who may do what" rather than one line per caller. The text is
//! meant to be reviewed and committed by an operator; it always loads under the gateway's schema.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use super::allow::{escape_literal_pattern, escape_str};
use super::METHODS;
use crate::path_template::is_identifier;

/// One kind of allowed request seen on the route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observed {
    /// The caller's SPIFFE ID.
    pub identity: String,
    /// The HTTP method.
    pub method: String,
    /// The normalized path (no query), raw or already templated by
    /// [`crate::path_template::template_path`]: the policy is the same.
    pub path: String,
    /// How many requests (for the comment only).
    pub count: u64,
}

/// Path conditions per `permit`: far below the depth at which Cedar stops evaluating a chain of
/// `||` (between 30 and 50 terms).
const MAX_PATHS_PER_PERMIT: usize = 16;

/// The path with identifier segments replaced by `None`.
fn template(path: &str) -> Vec<Option<&str>> {
    path.split('/')
        .map(|s| (!is_identifier(s)).then_some(s))
        .collect()
}

/// The Cedar condition for one path template.
fn path_condition(t: &[Option<&str>]) -> String {
    if t.iter().all(Option::is_some) {
        let literal: Vec<&str> = t.iter().flatten().copied().collect();
        return format!("resource.path == \"{}\"", escape_str(&literal.join("/")));
    }
    let pattern: Vec<String> = t
        .iter()
        .map(|s| s.map_or_else(|| "*".to_owned(), escape_literal_pattern))
        .collect();
    // Cedar's `*` also matches `/`. Requiring the path to have no more `/` than the template
    // keeps each `*` within its one segment: `/a/*/b` matches `/a/42/b` but not `/a/4/2/b`.
    let deeper = "/*".repeat(t.len());
    format!(
        "(resource.path like \"{}\" && !(resource.path like \"*{deeper}\"))",
        pattern.join("/")
    )
}

type Profile<'a> = BTreeMap<BTreeSet<&'a str>, BTreeSet<Vec<Option<&'a str>>>>;

/// Write the suggested policy for `route`.
pub fn suggest(route: &str, observed: &[Observed]) -> String {
    let mut out = String::new();
    let total: u64 = observed.iter().map(|o| o.count).sum();
    let _ = writeln!(
        out,
        "// Suggested for route \"{}\" from {total} allowed requests; review before use.\n\
         // Identities and methods are exact; identifier-like path segments became `*`\n\
         // (each `*` stands for one segment: the path may not be deeper than the template).",
        escape_str(route)
    );
    // Methods without an action in the model would fail validation; such requests were denied
    // anyway (see `Model`), so they cannot be in allowed traffic.
    let known: BTreeSet<&str> = METHODS.iter().map(|m| m.as_str()).collect();

    // identity -> template -> methods
    let mut by_identity: BTreeMap<&str, BTreeMap<Vec<Option<&str>>, BTreeSet<&str>>> =
        BTreeMap::new();
    for o in observed {
        let Some(method) = known.get(o.method.as_str()) else {
            continue;
        };
        by_identity
            .entry(o.identity.as_str())
            .or_default()
            .entry(template(&o.path))
            .or_default()
            .insert(*method);
    }
    // profile (methods -> templates) -> identities
    let mut groups: BTreeMap<Profile<'_>, BTreeSet<&str>> = BTreeMap::new();
    for (identity, templates) in by_identity {
        let mut profile: Profile<'_> = BTreeMap::new();
        for (t, methods) in templates {
            profile.entry(methods).or_default().insert(t);
        }
        groups.entry(profile).or_default().insert(identity);
    }

    if groups.is_empty() {
        out.push_str(
            "\n// No allowed traffic was observed: nothing needs access.\n\
             @id(\"no-traffic-observed\")\nforbid (principal, action, resource);\n",
        );
        return out;
    }
    let mut n = 0;
    for (profile, identities) in &groups {
        let who = if identities.len() == 1 {
            let id = identities.iter().next().copied().unwrap_or_default();
            format!("principal.id == \"{}\"", escape_str(id))
        } else {
            let ids: Vec<String> = identities
                .iter()
                .map(|i| format!("\"{}\"", escape_str(i)))
                .collect();
            format!("[{}].contains(principal.id)", ids.join(", "))
        };
        for (methods, templates) in profile {
            let actions: Vec<String> = methods.iter().map(|m| format!("Action::\"{m}\"")).collect();
            let paths: Vec<String> = templates.iter().map(|t| path_condition(t)).collect();
            // Cedar evaluates `a || b || …` recursively and gives up (an error: deny) beyond a
            // few dozen terms, so long lists are split over several permits.
            for paths in paths.chunks(MAX_PATHS_PER_PERMIT) {
                n += 1;
                let _ = write!(
                    out,
                    "\n@id(\"suggested-{n}\")\npermit (\n  principal,\n  action in [{}],\n  resource == Route::\"{}\"\n)\nwhen {{\n  {who} &&\n  ({})\n}};\n",
                    actions.join(", "),
                    escape_str(route),
                    paths.join(" ||\n   "),
                );
            }
        }
    }
    out
}

#[cfg(test)]
mod tests;
