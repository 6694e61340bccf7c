//! Text tables for `portcullis migration status` and `portcullis inventory`, rendered from the
//! admin API's JSON (so the CLI shows exactly what `--json` would). Missing fields show as `-`.
//! Every cell is sanitized: principals come from callers, and a control character in a table
//! would let a caller's user name write escape sequences to an operator's terminal.

use std::fmt::Write as _;

use serde_json::Value;

fn s(v: &Value, key: &str) -> String {
    match v.get(key) {
        Some(Value::String(x)) => x.clone(),
        Some(Value::Number(n)) => n.to_string(),
        Some(Value::Bool(b)) => if *b { "yes" } else { "no" }.to_string(),
        _ => "-".to_string(),
    }
}

fn clean(cell: &str) -> String {
    cell.chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

fn percent(v: Option<&Value>) -> String {
    v.and_then(Value::as_f64)
        .map_or_else(|| "-".to_string(), |x| format!("{:.2}%", x * 100.0))
}

/// Left-aligned columns separated by two spaces; trailing spaces trimmed.
fn render(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    let rows: Vec<Vec<String>> = rows
        .iter()
        .map(|r| r.iter().map(|c| clean(c)).collect())
        .collect();
    for r in &rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut out = String::new();
    let header: Vec<String> = header.iter().map(|h| (*h).to_string()).collect();
    for r in std::iter::once(&header).chain(rows.iter()) {
        let mut line = String::new();
        for (c, w) in r.iter().zip(&widths) {
            let _ = write!(line, "{c:<w$}  ");
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// `portcullis migration status` from `GET /admin/v1/migration`.
pub fn migration_table(v: &Value) -> String {
    let empty = Vec::new();
    let plans = v.get("plans").and_then(Value::as_array).unwrap_or(&empty);
    let rows: Vec<Vec<String>> = plans
        .iter()
        .map(|p| {
            let next = match (
                p.get("next_phase").and_then(Value::as_str),
                p.get("next_date").and_then(Value::as_str),
            ) {
                (Some(ph), Some(d)) => format!("{ph} {d}"),
                _ => "-".to_string(),
            };
            let w = p.get("window").unwrap_or(&Value::Null);
            let legacy = format!(
                "{} (max {}, {}d)",
                percent(w.get("legacy_share")),
                percent(w.get("max_legacy_share")),
                s(w, "days")
            );
            let active = p
                .get("active_legacy_principals")
                .and_then(Value::as_array)
                .map_or(0, Vec::len);
            vec![
                s(p, "name"),
                s(p, "phase"),
                next,
                s(p, "days_to_sunset"),
                legacy,
                active.to_string(),
                s(p, "status").replace('-', " "),
            ]
        })
        .collect();
    let mut out = render(
        &[
            "PLAN",
            "PHASE",
            "NEXT",
            "SUNSET IN (DAYS)",
            "LEGACY SHARE",
            "ACTIVE LEGACY",
            "STATUS",
        ],
        &rows,
    );
    for p in plans {
        let name = clean(&s(p, "name"));
        if let Some(w) = p.get("what_if_enforced") {
            let who: Vec<String> = w
                .get("principals")
                .and_then(Value::as_array)
                .map(|a| a.iter().filter_map(Value::as_str).map(clean).collect())
                .unwrap_or_default();
            if !who.is_empty() {
                let _ = writeln!(
                    out,
                    "{name}: enforcing today would refuse {} request(s) from {} caller(s): {}",
                    s(w, "refused_requests"),
                    who.len(),
                    who.join(", ")
                );
            }
        }
        insight_lines(&mut out, &name, p);
        for c in p
            .get("expiring_certs")
            .and_then(Value::as_array)
            .unwrap_or(&empty)
        {
            let _ = writeln!(
                out,
                "{name}: client certificate of {} expires {} ({} days)",
                clean(&s(c, "identity")),
                s(c, "not_after"),
                s(c, "days_left")
            );
        }
    }
    for r in v
        .get("unplanned_routes")
        .and_then(Value::as_array)
        .unwrap_or(&empty)
    {
        let _ = writeln!(
            out,
            "route {}: no plan (bridge, standing exception)",
            clean(&s(r, "route"))
        );
    }
    out
}

/// A plan's contact (when it has legacy principals), shared credentials ("split before enforce",
/// with their sources) and graces.
fn insight_lines(out: &mut String, name: &str, p: &Value) {
    let empty = Vec::new();
    let list = |k: &str| p.get(k).and_then(Value::as_array).unwrap_or(&empty);
    // Whom to call about the principals listed above.
    if !list("active_legacy_principals").is_empty() {
        let docs = match p.get("docs").and_then(Value::as_str) {
            Some(d) => format!(" · {}", clean(d)),
            None => String::new(),
        };
        let _ = writeln!(out, "{name}: contact {}{docs}", clean(&s(p, "owner")));
    }
    for c in list("shared_credentials") {
        let floor = if c.get("sources_capped").and_then(Value::as_bool) == Some(true) {
            "at least "
        } else {
            ""
        };
        let _ = writeln!(
            out,
            "{name}: split before enforce: {} is used from {floor}{} sources",
            clean(&s(c, "principal")),
            s(c, "distinct_sources")
        );
        for src in c.get("sources").and_then(Value::as_array).unwrap_or(&empty) {
            let agent = match s(src, "user_agent").as_str() {
                "" => "(no User-Agent)".to_string(),
                a => clean(a),
            };
            let _ = writeln!(
                out,
                "  {}  {agent}  {} request(s), last {}",
                clean(&s(src, "ip")),
                s(src, "requests"),
                s(src, "last_seen")
            );
        }
    }
    for g in list("graces") {
        let state = if g.get("expired").and_then(Value::as_bool) == Some(true) {
            "EXPIRED, refused".to_string()
        } else {
            format!("{} days left", s(g, "days_left"))
        };
        let unseen = if g.get("seen").and_then(Value::as_bool) == Some(false) {
            " (not seen in the window: check the spelling)"
        } else {
            ""
        };
        let _ = writeln!(
            out,
            "{name}: grace for {} until {} ({state}): {}{unseen}",
            clean(&s(g, "principal")),
            s(g, "until"),
            clean(&s(g, "reason"))
        );
    }
}

/// `portcullis inventory` from `GET /admin/v1/inventory`.
pub fn inventory_table(v: &Value) -> String {
    let empty = Vec::new();
    let rows: Vec<Vec<String>> = v
        .get("entries")
        .and_then(Value::as_array)
        .unwrap_or(&empty)
        .iter()
        .map(|e| {
            let routes: Vec<&str> = e
                .get("routes")
                .and_then(Value::as_array)
                .map(|a| a.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            let mut flags = Vec::new();
            if e.get("revoked").and_then(Value::as_bool) == Some(true) {
                flags.push("revoked".to_string());
            }
            if e.get("cert_expiring").and_then(Value::as_bool) == Some(true) {
                flags.push(format!("cert expires {}", s(e, "cert_not_after")));
            }
            if e.get("shared_suspected").and_then(Value::as_bool) == Some(true) {
                flags.push("shared? split before enforce".to_string());
            }
            let owners: Vec<String> = e
                .get("plans")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .map(|p| format!("{} ({})", s(p, "owner"), s(p, "plan")))
                        .collect()
                })
                .unwrap_or_default();
            let capped = e.get("sources_capped").and_then(Value::as_bool) == Some(true);
            vec![
                s(e, "kind"),
                s(e, "credential"),
                s(e, "principal"),
                s(e, "identity"),
                routes.join(","),
                s(e, "first_seen"),
                s(e, "last_seen"),
                s(e, "count"),
                format!(
                    "{}{}",
                    if capped { ">=" } else { "" },
                    s(e, "distinct_sources")
                ),
                if owners.is_empty() {
                    "-".to_string()
                } else {
                    owners.join("; ")
                },
                if flags.is_empty() {
                    "-".to_string()
                } else {
                    flags.join("; ")
                },
            ]
        })
        .collect();
    render(
        &[
            "KIND",
            "CREDENTIAL",
            "PRINCIPAL",
            "IDENTITY",
            "ROUTES",
            "FIRST SEEN",
            "LAST SEEN",
            "REQUESTS",
            "SOURCES",
            "OWNER",
            "NOTES",
        ],
        &rows,
    )
}

#[cfg(test)]
mod tests;
