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
mod tests {
    use super::*;

    fn reads(text: &str) -> Reads {
        let p: cedar_policy::Policy = text.parse().unwrap();
        Reads::of(&p)
    }

    const NEITHER: Reads = Reads {
        path: false,
        time: false,
    };
    const PATH: Reads = Reads {
        path: true,
        time: false,
    };
    const TIME: Reads = Reads {
        path: false,
        time: true,
    };

    #[test]
    fn every_spelling_of_path_and_time_is_seen() {
        for (text, want) in [
            (
                r#"permit (principal, action, resource) when { resource.path like "/a*" };"#,
                PATH,
            ),
            (
                r#"permit (principal, action, resource) when { resource["path"] == "/a" };"#,
                PATH,
            ),
            (
                r#"forbid (principal, action, resource) when { resource["p\u{61}th"] like "/esc/admin*" };"#,
                PATH,
            ),
            (
                r#"forbid (principal, action, resource) unless { resource["\u{70}\u{61}\u{74}\u{68}"] == "/x" };"#,
                PATH,
            ),
            (
                r#"permit (principal, action, resource) when { resource has path };"#,
                PATH,
            ),
            (
                r#"permit (principal, action, resource) when { resource has "p\u{61}th" };"#,
                PATH,
            ),
            (
                r#"permit (principal, action, resource) unless { context.time > 5 };"#,
                TIME,
            ),
            (
                r#"permit (principal, action, resource) when { context["time"] > 5 };"#,
                TIME,
            ),
            (
                r#"permit (principal, action, resource) when { context["t\u{69}me"] > 5 };"#,
                TIME,
            ),
            (
                r#"permit (principal, action, resource) when { context has time };"#,
                TIME,
            ),
            // `context` as a whole value reads every field.
            (
                r#"permit (principal, action, resource) when { [context].contains(context) };"#,
                TIME,
            ),
            (
                r#"permit (principal, action, resource) when { {c: context}.c.hour == 1 };"#,
                TIME,
            ),
            (
                r#"permit (principal, action, resource) when { {r: resource}.r.path == "/" };"#,
                PATH,
            ),
            (
                r#"permit (principal, action, resource) when { if context.hour < 3 then resource["path"] == "/a" else context["time"] > 1 };"#,
                Reads::EVERYTHING,
            ),
            // Neither: other attributes, and the words only in strings, ids and names.
            (
                r#"permit (principal, action, resource) when { context.hour < 11 && resource.name == "path" };"#,
                NEITHER,
            ),
            (
                r#"@id("time-and-path") permit (principal, action, resource) when { principal.id like "*path*time*" };"#,
                NEITHER,
            ),
            (
                r#"permit (principal, action, resource == Route::"path");"#,
                NEITHER,
            ),
        ] {
            assert_eq!(reads(text), want, "{text}");
        }
    }

    #[test]
    fn a_set_reads_what_any_policy_reads() {
        let set: cedar_policy::PolicySet = r#"
            permit (principal, action, resource) when { resource["p\u{61}th"] == "/" };
            permit (principal, action, resource) when { context["t\u{69}me"] > 1 };"#
            .parse()
            .unwrap();
        assert_eq!(Reads::of_all(set.policies()), Reads::EVERYTHING);
        assert_eq!(Reads::of_all(std::iter::empty()), NEITHER);
    }
}
