//! Turning Cedar text (a policy file, or the text compiled from an `allow` list) into a validated
//! [`PolicySet`], and the errors an operator sees when that fails: always with the file, the line
//! and column, and Cedar's reason, so `portcullis check` can point at the mistake.

use std::collections::HashSet;
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use cedar_policy::{PolicyId, PolicySet, ValidationMode};
use miette::Diagnostic;

use super::Model;
use crate::diag::Problem;

/// Largest policy file read. Policies are small; this keeps a wrong path (a log file, a device)
/// from being read into memory whole.
const MAX_FILE: u64 = 1024 * 1024;

/// Where policy text came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// A `policy` / `shadow_policy` file.
    File(PathBuf),
    /// The `allow` list of this route.
    Allow { route: String },
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::File(p) => write!(f, "{}", p.display()),
            Origin::Allow { route } => write!(f, "routes.{route}.allow"),
        }
    }
}

/// A problem with a route's policy: found by `check`, at start, or on reload.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// A route accepts credentials and says nothing about who may call it.
    #[error(
        "routes.{route}: accepts credentials but has neither `policy` nor `allow`; \
         write `allow = [\"*\"]` to admit any authenticated caller"
    )]
    NoPolicy { route: String },
    /// Both `policy` and `allow`: which one wins would be a guess.
    #[error("routes.{route}: `policy` and `allow` are exclusive; keep one")]
    Ambiguous { route: String },
    /// A policy on a route that accepts no credentials is never evaluated: the operator believes
    /// the route is protected when it is not.
    #[error(
        "routes.{route}: has a policy but `accept` is empty, so every request passes unchecked; \
         add credentials to `accept` or remove the policy"
    )]
    Unreachable { route: String },
    /// An `allow` entry that is not a SPIFFE ID pattern.
    #[error("routes.{route}.allow: {pattern:?}: {reason}")]
    Pattern {
        route: String,
        pattern: String,
        reason: String,
    },
    /// The file could not be read.
    #[error("{origin}: {reason}")]
    Read { origin: Origin, reason: String },
    /// Cedar could not parse the text, or a policy is outside what the gateway supports.
    #[error("{origin}:{line}:{column}: {reason}")]
    Syntax {
        origin: Origin,
        line: usize,
        column: usize,
        reason: String,
    },
    /// The text parses but does not fit the policy model (an unknown attribute, a type error…).
    #[error("{origin}:{line}:{column}: policy `{policy}`: {reason}")]
    Invalid {
        origin: Origin,
        policy: String,
        line: usize,
        column: usize,
        reason: String,
    },
}

impl PolicyError {
    /// As a config problem (`file: key: message`). Errors inside a policy file name that file;
    /// the others name the config file and the route's key.
    pub fn problem(&self, config_file: &str) -> Problem {
        let (file, key) = match self {
            PolicyError::NoPolicy { route }
            | PolicyError::Ambiguous { route }
            | PolicyError::Unreachable { route } => {
                (config_file.to_owned(), format!("routes.{route}"))
            }
            PolicyError::Pattern { route, .. } => {
                (config_file.to_owned(), format!("routes.{route}.allow"))
            }
            PolicyError::Read { origin, .. } => (origin.to_string(), String::new()),
            PolicyError::Syntax {
                origin,
                line,
                column,
                ..
            }
            | PolicyError::Invalid {
                origin,
                line,
                column,
                ..
            } => (origin.to_string(), format!("{line}:{column}")),
        };
        let message = match self {
            PolicyError::Pattern {
                pattern, reason, ..
            } => format!("{pattern:?}: {reason}"),
            PolicyError::Read { reason, .. } | PolicyError::Syntax { reason, .. } => reason.clone(),
            PolicyError::Invalid { policy, reason, .. } => format!("policy `{policy}`: {reason}"),
            other => {
                let s = other.to_string();
                // Drop the "routes.NAME: " prefix: the key already says it.
                s.split_once(": ").map(|(_, m)| m.to_owned()).unwrap_or(s)
            }
        };
        Problem { file, key, message }
    }
}

/// 1-based line and column of a byte offset.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = text.get(..offset.min(text.len())).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

/// The first labelled span of a Cedar diagnostic.
fn offset_of(d: &dyn Diagnostic) -> Option<usize> {
    d.labels()?.next().map(|l| l.offset())
}

/// Cedar's message plus its help, when it has one ("did you mean …").
fn reason_of(d: &(impl Diagnostic + fmt::Display + ?Sized)) -> String {
    match d.help() {
        Some(h) => format!("{d} ({h})"),
        None => d.to_string(),
    }
}

/// Read a policy file, parse it, validate it against the model.
pub(super) fn load_file(model: &Model, path: &Path) -> Result<PolicySet, Vec<PolicyError>> {
    let origin = Origin::File(path.to_path_buf());
    let read_err = |reason: String| {
        vec![PolicyError::Read {
            origin: origin.clone(),
            reason,
        }]
    };
    let meta = std::fs::metadata(path).map_err(|e| read_err(format!("cannot read: {e}")))?;
    if meta.len() > MAX_FILE {
        return Err(read_err(format!(
            "larger than {MAX_FILE} bytes; is this a policy file?"
        )));
    }
    let text = std::fs::read_to_string(path).map_err(|e| read_err(format!("cannot read: {e}")))?;
    compile(model, &text, origin)
}

/// Parse and validate Cedar text. Policies are named by their `@id("…")` annotation when they
/// have one (so audit lines carry a name the operator chose), else `policyN` in file order.
pub(super) fn compile(
    model: &Model,
    text: &str,
    origin: Origin,
) -> Result<PolicySet, Vec<PolicyError>> {
    let syntax = |offset: usize, reason: String| {
        let (line, column) = line_col(text, offset);
        PolicyError::Syntax {
            origin: origin.clone(),
            line,
            column,
            reason,
        }
    };
    let parsed = PolicySet::from_str(text).map_err(|errs| {
        errs.iter()
            .map(|e| syntax(offset_of(e).unwrap_or(0), reason_of(e)))
            .collect::<Vec<_>>()
    })?;

    let mut errors = Vec::new();
    if parsed.templates().next().is_some() {
        errors.push(syntax(
            text.find('?').unwrap_or(0),
            "templates (`?principal`, `?resource`) are not supported: write the entity".to_owned(),
        ));
    }
    let mut set = PolicySet::new();
    let mut seen = HashSet::new();
    for p in parsed.policies() {
        let id = p
            .annotation("id")
            .map_or_else(|| p.id().clone(), PolicyId::new);
        if !seen.insert(id.clone()) {
            errors.push(syntax(0, format!("two policies are named `{id}`")));
            continue;
        }
        if let Err(e) = set.add(p.new_id(id)) {
            errors.push(syntax(0, e.to_string()));
        }
    }
    if set.policies().next().is_none() && errors.is_empty() {
        errors.push(syntax(
            0,
            "no policies: every request would be denied; write \
             `forbid (principal, action, resource);` to close the route on purpose"
                .to_owned(),
        ));
    }
    if !errors.is_empty() {
        return Err(errors);
    }

    let result = model.validator.validate(&set, ValidationMode::Strict);
    for w in result.validation_warnings() {
        tracing::warn!(policy_file = %origin, warning = %w, "policy warning");
    }
    let errors: Vec<_> = result
        .validation_errors()
        .map(|e| {
            let (line, column) = line_col(text, offset_of(e).unwrap_or(0));
            PolicyError::Invalid {
                origin: origin.clone(),
                policy: e.policy_id().to_string(),
                line,
                column,
                reason: reason_of(e),
            }
        })
        .collect();
    if errors.is_empty() {
        Ok(set)
    } else {
        Err(errors)
    }
}

/// Compile a route's `allow` list (see [`super::allow`]) into a validated policy set.
pub(super) fn compile_allow(
    model: &Model,
    route: &str,
    patterns: &[String],
) -> Result<PolicySet, Vec<PolicyError>> {
    let origin = Origin::Allow {
        route: route.to_owned(),
    };
    let mut set = PolicySet::new();
    let mut errors = Vec::new();
    for (id, text) in super::allow::compile(route, patterns)? {
        let parsed = cedar_policy::Policy::parse(Some(PolicyId::new(&id)), &text)
            .map_err(|e| e.to_string())
            .and_then(|p| set.add(p).map_err(|e| e.to_string()));
        if let Err(reason) = parsed {
            errors.push(PolicyError::Syntax {
                origin: origin.clone(),
                line: 1,
                column: 1,
                reason: format!("{id}: {reason}"),
            });
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    let result = model.validator.validate(&set, ValidationMode::Strict);
    let errors: Vec<_> = result
        .validation_errors()
        .map(|e| PolicyError::Invalid {
            origin: origin.clone(),
            policy: e.policy_id().to_string(),
            line: 1,
            column: 1,
            reason: reason_of(e),
        })
        .collect();
    if errors.is_empty() {
        Ok(set)
    } else {
        Err(errors)
    }
}
