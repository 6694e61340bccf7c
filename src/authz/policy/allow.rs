//! The `allow = […]` shorthand: a list of SPIFFE ID patterns compiled to Cedar, one `permit` per
//! pattern, each named `allow:<pattern>` so audit lines say which entry let a caller in.
//!
//! | entry | admits | compiled to |
//! | --- | --- | --- |
//! | `"*"` | any authenticated caller | `permit (principal, action, resource);` |
//! | `"spiffe://corp.example/ns/payments/sa/api"` | exactly that ID | `principal.id == "…"` |
//! | `"spiffe://corp.example/ns/payments/*"` | every ID under `/ns/payments/` | `principal.id like "…"` |
//! | `"spiffe://corp.example/*"` | every workload of the trust domain | `principal.id like "…"` |
//!
//! `*` matches any run of characters *including `/`* (Cedar's `like`), so `…/ns/payments/*` also
//! admits `…/ns/payments/a/b`. The trust domain must be written out: `*` is refused there, which
//! together with the `/` that must follow it makes `spiffe://corp.example/*` unable to match
//! `spiffe://corp.example.evil/…`. Every entry must otherwise be a valid SPIFFE ID (with `*`
//! standing for characters), so no entry can contain a quote, a backslash or anything else that
//! could end the string and inject policy text; the text is escaped on top of that.

use super::load::PolicyError;
use crate::identity::SpiffeId;

/// Escape `s` as the body of a Cedar string literal (without the quotes).
pub fn escape_str(s: &str) -> String {
    escape(s, false)
}

/// Escape `s` as the body of a Cedar `like` pattern that matches `s` literally (`*` escaped).
pub fn escape_literal_pattern(s: &str) -> String {
    escape(s, true)
}

fn escape(s: &str, star: bool) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '*' if star => out.push_str("\\*"),
            c if c.is_ascii_graphic() || c == ' ' => out.push(c),
            // Everything else (control characters, non-ASCII) as a Unicode escape: nothing
            // invisible or confusable ends up in generated policy text.
            c => out.push_str(&format!("\\u{{{:x}}}", u32::from(c))),
        }
    }
    out
}

/// Check one SPIFFE ID pattern outside a route (`[admin] allow`): `"*"` or what a route's `allow`
/// accepts. The error says why.
pub fn check_pattern(pattern: &str) -> Result<(), String> {
    if pattern == "*" {
        return Ok(());
    }
    check("", pattern).map(drop).map_err(|e| match e {
        PolicyError::Pattern { reason, .. } => format!("{pattern:?}: {reason}"),
        other => other.to_string(),
    })
}

/// Whether `id` matches `pattern` (`*` = any run of characters, as Cedar's `like`).
pub fn id_matches(pattern: &str, id: &str) -> bool {
    let mut parts = pattern.split('*');
    let Some(first) = parts.next() else {
        return false;
    };
    let Some(mut rest) = id.strip_prefix(first) else {
        return false;
    };
    let parts: Vec<&str> = parts.collect();
    let Some((last, middle)) = parts.split_last() else {
        return rest.is_empty(); // no `*`: exact
    };
    for m in middle {
        match rest.find(m) {
            Some(i) => rest = rest.get(i + m.len()..).unwrap_or_default(),
            None => return false,
        }
    }
    rest.len() >= last.len() && rest.ends_with(last)
}

/// Check one `allow` entry. `Ok(true)`: it contains a wildcard.
fn check(route: &str, pattern: &str) -> Result<bool, PolicyError> {
    let bad = |reason: &str| PolicyError::Pattern {
        route: route.to_owned(),
        pattern: pattern.to_owned(),
        reason: reason.to_owned(),
    };
    let Some(rest) = pattern.strip_prefix("spiffe://") else {
        return Err(bad(
            "expected \"*\" or a SPIFFE ID pattern such as \"spiffe://corp.example/ns/payments/*\"",
        ));
    };
    let td = rest.split('/').next().unwrap_or_default();
    if td.contains('*') {
        return Err(bad(
            "the trust domain must be written out (a wildcard there could match another trust domain)",
        ));
    }
    if !rest.contains('/') {
        return Err(bad(
            "names a trust domain, not a workload; write \"spiffe://TRUST.DOMAIN/*\" to admit all of its workloads",
        ));
    }
    // `*` stands for one or more ID characters; with it replaced, the entry must be a valid ID.
    SpiffeId::parse(&pattern.replace('*', "x")).map_err(|e| bad(&e.to_string()))?;
    Ok(pattern.contains('*'))
}

/// Compile an `allow` list to Cedar text and the policy ids to give its policies (in order).
/// Every entry is checked; all problems are returned.
pub fn compile(
    route: &str,
    patterns: &[String],
) -> Result<Vec<(String, String)>, Vec<PolicyError>> {
    if patterns.is_empty() {
        return Err(vec![PolicyError::Pattern {
            route: route.to_owned(),
            pattern: String::new(),
            reason:
                "an empty `allow` list admits nobody; write [\"*\"] for any authenticated caller"
                    .to_owned(),
        }]);
    }
    let mut out = Vec::with_capacity(patterns.len());
    let mut errors = Vec::new();
    for p in patterns {
        let text = if p == "*" {
            "permit (principal, action, resource);".to_owned()
        } else {
            match check(route, p) {
                // Only `*` is special in a pattern, and `check` allowed no other special
                // character: escaping every other character keeps that true regardless.
                Ok(true) => format!(
                    "permit (principal, action, resource) when {{ principal.id like \"{}\" }};",
                    escape_str(p)
                ),
                Ok(false) => format!(
                    "permit (principal, action, resource) when {{ principal.id == \"{}\" }};",
                    escape_str(p)
                ),
                Err(e) => {
                    errors.push(e);
                    continue;
                }
            }
        };
        out.push((format!("allow:{p}"), text));
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}
