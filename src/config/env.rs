//! Environment overrides (`PORTCULLIS__SECTION__KEY`, `docs/configuration.md`). The `config`
//! crate handles tables; it cannot address an element of an array of tables
//! (`PORTCULLIS__ROUTES__0__NAME` replaced the whole `routes` array with a table). Such variables
//! are taken out of its view and applied here, to an element that exists, or reported as a
//! `file: key: message` problem: an override never silently changes the shape of the config.

use serde_json::Value;

use super::Problem;

/// The prefix and separator of every override.
const PREFIX: &str = "PORTCULLIS__";
const SEPARATOR: &str = "__";

/// The overrides, split into those the `config` crate applies (no numeric segment) and those
/// that address an array element (applied by [`apply_indexed`]).
pub(super) struct Overrides {
    pub plain: config::Map<String, String>,
    pub indexed: Vec<(String, String)>,
}

/// Split `vars` (normally `std::env::vars()`).
pub(super) fn split(vars: impl Iterator<Item = (String, String)>) -> Overrides {
    let mut plain = config::Map::new();
    let mut indexed = Vec::new();
    for (name, value) in vars {
        let Some(rest) = strip_prefix(&name) else {
            continue;
        };
        if rest.split(SEPARATOR).any(is_index) {
            indexed.push((name, value));
        } else {
            plain.insert(name, value);
        }
    }
    indexed.sort();
    Overrides { plain, indexed }
}

/// The name without its prefix, matched without case as the `config` crate matches it.
fn strip_prefix(name: &str) -> Option<&str> {
    let head = name.get(..PREFIX.len())?;
    head.eq_ignore_ascii_case(PREFIX)
        .then(|| name.get(PREFIX.len()..))
        .flatten()
}

fn is_index(segment: &str) -> bool {
    !segment.is_empty() && segment.bytes().all(|b| b.is_ascii_digit())
}

/// Apply each `PORTCULLIS__A__0__B=value` to `tree`: the element must already exist in the file
/// (an override changes a value; it does not invent a route). Values are read like the `config`
/// crate reads them: `true`/`false`, integers and floats become those, anything else a string.
pub(super) fn apply_indexed(
    tree: &mut Value,
    indexed: &[(String, String)],
    file: &str,
) -> Vec<Problem> {
    let mut problems = Vec::new();
    for (name, value) in indexed {
        if let Err(message) = apply_one(tree, name, value) {
            problems.push(Problem {
                file: file.to_owned(),
                key: name.clone(),
                message,
            });
        }
    }
    problems
}

fn apply_one(tree: &mut Value, name: &str, value: &str) -> Result<(), String> {
    let rest = strip_prefix(name).unwrap_or(name).to_ascii_lowercase();
    let segments: Vec<&str> = rest.split(SEPARATOR).collect();
    let Some((last, path)) = segments.split_last() else {
        return Err("empty override".into());
    };
    let mut at = tree;
    let mut walked = String::new();
    for seg in path {
        at = step(at, seg, &walked)?;
        if !walked.is_empty() {
            walked.push('.');
        }
        walked.push_str(seg);
    }
    let parsed = parse_value(value);
    if is_index(last) {
        let slot = step(at, last, &walked)?;
        *slot = parsed;
        return Ok(());
    }
    match at.as_object_mut() {
        Some(obj) => {
            obj.insert((*last).to_owned(), parsed);
            Ok(())
        }
        None => Err(format!(
            "{walked} is not a table, so it has no key {last:?}"
        )),
    }
}

/// One segment down: an array index (which must exist) or a table key (created when absent).
fn step<'a>(at: &'a mut Value, seg: &str, walked: &str) -> Result<&'a mut Value, String> {
    let here = if walked.is_empty() {
        "the config"
    } else {
        walked
    };
    if is_index(seg) {
        let Value::Array(items) = at else {
            return Err(format!(
                "{here} is not an array, so it has no element {seg}"
            ));
        };
        let len = items.len();
        let index: usize = seg
            .parse()
            .map_err(|_| format!("index {seg} is too large"))?;
        return items.get_mut(index).ok_or_else(|| {
            format!(
                "{here} has {len} element(s) in the file; an override can change an element \
                 (0..{len}), not add one (index {index})"
            )
        });
    }
    match at {
        Value::Object(obj) => Ok(obj
            .entry(seg.to_owned())
            .or_insert_with(|| Value::Object(serde_json::Map::new()))),
        _ => Err(format!("{here} is not a table, so it has no key {seg:?}")),
    }
}

fn parse_value(v: &str) -> Value {
    if let Ok(b) = v.to_ascii_lowercase().parse::<bool>() {
        return Value::Bool(b);
    }
    if let Ok(i) = v.parse::<i64>() {
        return Value::from(i);
    }
    if let Ok(f) = v.parse::<f64>() {
        if f.is_finite() {
            return Value::from(f);
        }
    }
    Value::String(v.to_owned())
}

#[cfg(test)]
mod tests;
