//! Which request inputs a policy reads, decided from Cedar's parsed form (the EST JSON of
//! `Policy::to_json`), never from the policy text: in text, `resource.path` can be spelled
//! `resource["path"]`, `resource["p\u{61}th"]`, `resource has path`…, and a search for the word
//! misses all but one. The decision cache ([`super::Slice`]) trusts this answer, so it errs only
//! towards "reads it": a policy that cannot be analysed reads everything.

use serde_json::Value;

/// What the policies of a slice may read beyond the cache key.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Reads {
    /// `resource.path` (the only per-request attribute of the route entity).
    pub path: bool,
    /// `context.time` (the only context field that changes within a cache key).
    pub time: bool,
}

impl Reads {
    const EVERYTHING: Reads = Reads {
        path: true,
        time: true,
    };

    /// What `policy` reads.
    pub(super) fn of(policy: &cedar_policy::Policy) -> Reads {
        match policy.to_json() {
            Ok(est) => {
                let mut reads = Reads::default();
                walk(&est, &mut reads);
                reads
            }
            Err(_) => Reads::EVERYTHING,
        }
    }

    /// What any of `policies` reads.
    pub(super) fn of_all<'a>(policies: impl Iterator<Item = &'a cedar_policy::Policy>) -> Reads {
        policies.fold(Reads::default(), |acc, p| {
            let r = Reads::of(p);
            Reads {
                path: acc.path || r.path,
                time: acc.time || r.time,
            }
        })
    }
}

/// Every attribute access (`.` and `has` in the EST; `e["a"]` and escapes are parsed into the
/// same node, unescaped) anywhere in the policy, whatever it is applied to: an access named
/// `path` counts as reading the path and one named `time` as reading the time, even on another
/// value (which can only cost a cache miss). `context` used whole (compared as a record, put in
/// a set…) reads every field, so it counts as reading the time.
fn walk(v: &Value, reads: &mut Reads) {
    match v {
        Value::Object(map) => {
            for (key, inner) in map {
                match (key.as_str(), inner) {
                    ("." | "has", Value::Object(access)) => {
                        match access.get("attr").and_then(Value::as_str) {
                            Some("path") => reads.path = true,
                            Some("time") => reads.time = true,
                            Some(_) => {}
                            // An access of a shape this does not know: assume the worst.
                            None => *reads = Reads::EVERYTHING,
                        }
                        match access.get("left") {
                            // `context.x`: reads only the named field (checked above).
                            Some(left) if is_var(left, "context") => {}
                            Some(left) => walk(left, reads),
                            None => *reads = Reads::EVERYTHING,
                        }
                    }
                    ("Var", Value::String(var)) if var == "context" => reads.time = true,
                    _ => walk(inner, reads),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|i| walk(i, reads)),
        _ => {}
    }
}

fn is_var(v: &Value, name: &str) -> bool {
    v.as_object()
        .and_then(|o| o.get("Var"))
        .and_then(Value::as_str)
        .is_some_and(|n| n == name)
}

#[cfg(test)]
mod tests;
