//! Tests that fail when the reference in `docs/` and the code drift apart, each listing exactly
//! what is missing:
//! - every problem code (`src/problem.rs`) is a row of `docs/http.md`'s errors table, with its
//!   status;
//! - every metric a running gateway exports (after traffic), and every metric of the registry,
//!   is in `docs/metrics.md`, with its label names;
//! - every field of the audit lines of that traffic is in `docs/audit.md`;
//! - every command and flag of the binary is in `docs/cli.md`;
//! - every config under `examples/`, the plans of `migration-plans/`, the adapters of
//!   `adapters/` and the config in `deploy/` pass `portcullis check`;
//! - environment overrides of array elements work as `docs/configuration.md` says;
//! - every Markdown page (README, docs/, bench/, …) closes its code blocks and links only to
//!   files of the repository.
//!
//! Config, plan and adapter keys are checked by the unit tests of `src/config/docs_drift.rs` (they
//! read the private raw structs).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use portcullis::problem::Code;

use crate::docs_support::*;
use crate::support::*;

/// Every code. The match makes a new variant a compile error here, until it is listed.
fn all_codes() -> Vec<Code> {
    let all = [
        Code::NoRoute,
        Code::Unauthenticated,
        Code::InvalidCredential,
        Code::LegacyCredentialRetired,
        Code::Forbidden,
        Code::MethodNotAllowed,
        Code::PayloadTooLarge,
        Code::RequestTimeout,
        Code::UnsupportedMediaType,
        Code::SchemaViolation,
        Code::InvalidRequest,
        Code::HeadersTooLarge,
        Code::RateLimited,
        Code::Overloaded,
        Code::DirectoryUnavailable,
        Code::UpstreamUnavailable,
        Code::UpstreamTimeout,
        Code::NotFound,
        Code::InvalidConfig,
    ];
    for c in all {
        match c {
            Code::NoRoute
            | Code::Unauthenticated
            | Code::InvalidCredential
            | Code::LegacyCredentialRetired
            | Code::Forbidden
            | Code::MethodNotAllowed
            | Code::PayloadTooLarge
            | Code::RequestTimeout
            | Code::UnsupportedMediaType
            | Code::SchemaViolation
            | Code::InvalidRequest
            | Code::HeadersTooLarge
            | Code::RateLimited
            | Code::Overloaded
            | Code::DirectoryUnavailable
            | Code::UpstreamUnavailable
            | Code::UpstreamTimeout
            | Code::NotFound
            | Code::InvalidConfig => {}
        }
    }
    all.to_vec()
}

/// The lines of the section of `doc` under the heading containing `heading`, up to the next
/// heading of the same or a higher level.
fn section<'a>(doc: &'a str, heading: &str) -> Option<Vec<&'a str>> {
    let mut lines = doc.lines();
    let level = loop {
        let l = lines.next()?;
        if l.starts_with('#') && l.contains(heading) {
            break l.bytes().take_while(|b| *b == b'#').count();
        }
    };
    Some(
        lines
            .take_while(|l| {
                let n = l.bytes().take_while(|b| *b == b'#').count();
                n == 0 || n > level || !l[n..].starts_with(' ')
            })
            .collect(),
    )
}

#[test]
fn every_problem_code_is_in_the_errors_table_with_its_status() {
    let doc = read("docs/http.md");
    let table = section(&doc, "Errors").expect("docs/http.md has no `## Errors` section");
    let mut missing = Vec::new();
    for code in all_codes() {
        let row = table
            .iter()
            .find(|l| l.starts_with(&format!("| `{}` |", code.as_str())));
        match row {
            None => missing.push(format!(
                "`{}` ({} {}): no row `| `{}` | …` in the table",
                code.as_str(),
                code.status().as_u16(),
                code.title(),
                code.as_str()
            )),
            Some(row) => {
                let status = row.split('|').nth(2).unwrap_or_default();
                if !status.contains(&code.status().as_u16().to_string()) {
                    missing.push(format!(
                        "`{}`: the row's status column does not say {}",
                        code.as_str(),
                        code.status().as_u16()
                    ));
                }
            }
        }
    }
    assert_none_missing("docs/http.md, errors table", &missing);
}

/// Metric families in a Prometheus text exposition, with the label names of their samples.
fn families(text: &str) -> BTreeMap<String, BTreeSet<String>> {
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut histograms = BTreeSet::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut it = rest.split_whitespace();
            let (Some(name), Some(kind)) = (it.next(), it.next()) else {
                continue;
            };
            out.entry(name.to_owned()).or_default();
            if kind == "histogram" {
                histograms.insert(name.to_owned());
            }
        } else if !line.starts_with('#') && !line.trim().is_empty() {
            let name_end = line.find(['{', ' ']).unwrap_or(line.len());
            let mut name = &line[..name_end];
            for suffix in ["_bucket", "_sum", "_count"] {
                if let Some(base) = name.strip_suffix(suffix) {
                    if histograms.contains(base) {
                        name = base;
                    }
                }
            }
            let labels = out.entry(name.to_owned()).or_default();
            if let (Some(open), Some(close)) = (line.find('{'), line.find('}')) {
                for pair in line[open + 1..close].split(',') {
                    if let Some((k, _)) = pair.split_once('=') {
                        if k != "le" {
                            labels.insert(k.to_owned());
                        }
                    }
                }
            }
        }
    }
    out
}

fn metrics_missing(doc: &str, exported: &BTreeMap<String, BTreeSet<String>>) -> Vec<String> {
    let mut missing = Vec::new();
    for (name, labels) in exported {
        let row = doc
            .lines()
            .find(|l| l.starts_with(&format!("| `{name}` |")));
        match row {
            None => missing.push(format!(
                "`{name}` (labels: {}): no row `| `{name}` | type | labels | meaning |`",
                labels.iter().cloned().collect::<Vec<_>>().join(", ")
            )),
            Some(row) => {
                let words = backticked(row);
                for l in labels {
                    if !words.contains(l) {
                        missing.push(format!("`{name}`: label `{l}` is not in its row"));
                    }
                }
            }
        }
    }
    missing
}

#[test]
fn every_metric_of_the_registry_is_in_docs_metrics_md() {
    let exported = families(&portcullis::metrics::Metrics::default().render());
    assert!(exported.len() >= 10, "{exported:?}");
    let doc = read("docs/metrics.md");
    assert_none_missing(
        "docs/metrics.md (registry)",
        &metrics_missing(&doc, &exported),
    );
}

/// A gateway after traffic of every kind its config allows: allowed, refused (no key, a wrong
/// key, rate limited), no route, a plan's legacy credential, tokens minted and cached.
async fn gateway_after_traffic() -> (tempfile::TempDir, Upstream, portcullis::server::Running) {
    const KEY: &str = "pcs_docs_drift_key_0123456789abcdef0123";
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let up = Upstream::start().await;
    write_api_keys(
        d,
        &[("partner-acme", "spiffe://corp.example/partner/acme", KEY)],
    );
    write_partner_plan(d);
    let route = partner_route(
        "partner",
        "path_prefix = \"/partner/\"",
        &format!("{ALLOW_PARTNERS}\nplan = \"partner-api\"\ndangerous_allow_plaintext_credentials = true"),
        &up.url(),
        "",
        "[routes.limits]\nrate = \"2/s\"\nburst = 2\n",
    );
    let extra = format!(
        "{ISSUER}[state]\npath = \"{p}/state.db\"\n[migration]\nplans_dir = \"{p}/plans\"\n{keys}{route}",
        p = d.display(),
        keys = partner_keys(d),
    );
    let gw = start_in_process(d, &base_config(d, "", "", &extra)).await;
    let base = format!("http://{}", gw.data_addr);
    let client = reqwest::Client::new();
    for _ in 0..4 {
        client
            .get(format!("{base}/partner/x?api_key=REDACT-ME"))
            .header("x-api-key", KEY)
            .send()
            .await
            .unwrap();
    }
    for req in [
        client.get(format!("{base}/partner/x")),
        client
            .get(format!("{base}/partner/x"))
            .header("x-api-key", "pcs_wrong_key_0000000000000000000000"),
        client.get(format!("{base}/nowhere")),
    ] {
        req.send().await.unwrap();
    }
    (dir, up, gw)
}

/// Every family and label a running gateway exports on `/metrics` after traffic is documented.
#[tokio::test]
async fn every_metric_a_running_gateway_exports_is_in_docs_metrics_md() {
    let (_dir, _up, gw) = gateway_after_traffic().await;
    let text = scrape(&gw).await;
    let exported = families(&text);
    for expected in [
        "portcullis_requests_total",
        "portcullis_legacy_requests_total",
        "portcullis_tokens_minted_total",
        "portcullis_migration_phase",
    ] {
        assert!(
            exported.contains_key(expected),
            "{expected} not exported:\n{text}"
        );
    }
    assert!(
        exported["portcullis_requests_total"].contains("route"),
        "no samples after traffic:\n{text}"
    );
    let doc = read("docs/metrics.md");
    assert_none_missing(
        "docs/metrics.md (scraped)",
        &metrics_missing(&doc, &exported),
    );
    gw.stop().await;
}

/// Every field of the audit lines written for that traffic is a row of `docs/audit.md`.
#[tokio::test]
async fn every_audit_field_is_in_docs_audit_md() {
    let (dir, _up, gw) = gateway_after_traffic().await;
    let lines = audit_lines(dir.path(), 7).await;
    let doc = read("docs/audit.md");
    let mut fields = BTreeSet::new();
    for l in &lines {
        fields.extend(l.as_object().unwrap().keys().cloned());
        assert!(
            !l.to_string().contains("REDACT-ME"),
            "query value in an audit line: {l}"
        );
    }
    let missing: Vec<String> = fields
        .iter()
        .filter(|f| !doc.lines().any(|l| l.starts_with(&format!("| `{f}` |"))))
        .map(|f| format!("`{f}`: no row `| `{f}` | type | value |`"))
        .collect();
    assert_none_missing("docs/audit.md", &missing);
    gw.stop().await;
}

#[test]
fn every_command_and_flag_is_in_docs_cli_md() {
    use clap::CommandFactory as _;
    let doc = read("docs/cli.md");
    let shared: Vec<&str> = ["Global options", "Ops commands"]
        .iter()
        .flat_map(|h| section(&doc, h).unwrap_or_default())
        .collect();
    let mut missing = Vec::new();
    let mut stack = vec![(String::from("portcullis"), portcullis::cli::Cli::command())];
    while let Some((path, cmd)) = stack.pop() {
        let subs: Vec<_> = cmd
            .get_subcommands()
            .filter(|s| s.get_name() != "help")
            .cloned()
            .collect();
        if !subs.is_empty() {
            for s in subs {
                stack.push((format!("{path} {}", s.get_name()), s));
            }
            continue;
        }
        let Some(own) = section(&doc, &format!("`{path}")) else {
            missing.push(format!("`{path}`: no heading \"`{path} …`\""));
            continue;
        };
        let text = own
            .iter()
            .chain(&shared)
            .copied()
            .collect::<Vec<_>>()
            .join("\n");
        for arg in cmd.get_arguments() {
            let id = arg.get_id().as_str();
            if matches!(id, "help" | "version") {
                continue;
            }
            let shown = match arg.get_long() {
                Some(long) => format!("--{long}"),
                None => id.to_uppercase(),
            };
            if !text.contains(&shown) {
                missing.push(format!("`{path}`: {shown}"));
            }
        }
    }
    assert_none_missing("docs/cli.md", &missing);
}

fn check(config: &Path, envs: &[(&str, &str)]) -> Output {
    Command::new(bin())
        .args(["check", "-c"])
        .arg(config)
        .envs(envs.iter().copied())
        .output()
        .unwrap()
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The `name` of every plan file under `dir` (recursively).
fn plan_names(dir: &Path) -> Vec<(String, PathBuf)> {
    files_under(dir, "toml")
        .into_iter()
        .map(|p| (p.file_stem().unwrap().to_string_lossy().into_owned(), p))
        .collect()
}

#[test]
fn every_example_and_shipped_plan_passes_check() {
    let examples = repo_file("examples");
    let mut configs: Vec<PathBuf> = std::fs::read_dir(&examples)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    configs.sort();
    assert!(configs.len() >= 9, "{configs:?}");
    let mut failures = Vec::new();
    let mut summaries = String::new();
    for c in &configs {
        let out = check(c, &[]);
        if !out.status.success() {
            failures.push(format!("{}:\n{}", c.display(), text(&out)));
        }
        summaries.push_str(&String::from_utf8_lossy(&out.stdout));
    }
    // Each plan file was loaded (and so checked against a config) by some example: its
    // directory is an example's `plans_dir`, and the summary lists it.
    let plans_dirs: BTreeSet<PathBuf> = configs
        .iter()
        .filter_map(|c| {
            let t: toml::Value = toml::from_str(&std::fs::read_to_string(c).ok()?).ok()?;
            let d = t.get("migration")?.get("plans_dir")?.as_str()?.to_owned();
            examples.join(d).canonicalize().ok()
        })
        .collect();
    let plans = plan_names(&repo_file("migration-plans"))
        .into_iter()
        .chain(plan_names(&examples.join("plans")));
    for (name, file) in plans {
        let dir = file.parent().and_then(|d| d.canonicalize().ok());
        let listed = summaries
            .lines()
            .any(|l| l.split_whitespace().next() == Some(name.as_str()));
        if !listed || !dir.is_some_and(|d| plans_dirs.contains(&d)) {
            failures.push(format!(
                "{}: plan {name:?} is not loaded by any examples/*.toml",
                file.display()
            ));
        }
    }
    assert_none_missing("portcullis check", &failures);
}

#[test]
fn every_shipped_adapter_file_passes_check() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("portcullis.toml");
    std::fs::write(
        &cfg,
        format!(
            "version = 1\nadapters_dir = \"{}\"\n[listen]\naddr = \"127.0.0.1:0\"\n",
            repo_file("adapters").display()
        ),
    )
    .unwrap();
    let out = check(&cfg, &[]);
    assert!(out.status.success(), "{}", text(&out));
    // A broken adapter file is a problem (so the check above did read the directory).
    let broken = dir.path().join("adapters");
    std::fs::create_dir(&broken).unwrap();
    std::fs::write(
        broken.join("stripe.toml"),
        "family = \"webhook\"\nsigned = 1\n",
    )
    .unwrap();
    std::fs::write(
        &cfg,
        "version = 1\nadapters_dir = \"adapters\"\n[listen]\naddr = \"127.0.0.1:0\"\n",
    )
    .unwrap();
    let out = check(&cfg, &[]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("stripe.toml"), "{}", text(&out));
}

/// Config keys whose values are file paths (absolute in deploy configs).
const FILE_KEYS: &[&str] = &[
    "cert",
    "key",
    "keys",
    "ca",
    "x509_bundle",
    "jwt_bundle",
    "keys_file",
    "secrets_file",
    "bind_password_file",
    "password_file",
    "value_file",
    "json_schema",
    "policy",
    "shadow_policy",
    "plans_dir",
    "adapters_dir",
    "client_cert",
    "client_key",
];

/// Stand-ins for the files a deploy config names (absolute paths of the target system), from
/// `examples/`, by file name.
fn stand_in(name: &str) -> Option<&'static str> {
    Some(match name {
        "tls.crt" => "examples/certs/gateway.pem",
        "tls.key" => "examples/certs/gateway.key",
        "corp-bundle.pem" => "examples/certs/corp-bundle.pem",
        "issuer-current.pem" | "issuer-previous.pem" => "examples/keys/issuer.pem",
        "api-keys.toml" => "examples/secrets/api-keys.toml",
        _ => return None,
    })
}

fn indent(line: &str) -> usize {
    line.len() - line.trim_start().len()
}

/// The TOML configs under `deploy/`: `*.toml` files and `portcullis.toml: |` blocks of YAML.
fn deploy_configs(dir: &Path, out: &mut Vec<(PathBuf, String)>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        // A Helm template is not TOML until rendered; the chart's default config (its
        // values.yaml) is checked by package::helm_chart_default_config_passes_check.
        if p.file_name().is_some_and(|n| n == "templates") {
            continue;
        }
        if p.is_dir() {
            deploy_configs(&p, out);
            continue;
        }
        let Ok(text) = std::fs::read_to_string(&p) else {
            continue;
        };
        match p.extension().and_then(|x| x.to_str()) {
            Some("toml") if text.contains("[listen]") => out.push((p, text)),
            Some("yaml" | "yml") => {
                let lines: Vec<&str> = text.lines().collect();
                for (i, l) in lines.iter().enumerate() {
                    let Some(key) = l.find("portcullis.toml: |") else {
                        continue;
                    };
                    // A YAML block scalar: the lines indented deeper than its key.
                    let body: Vec<&str> = lines[i + 1..]
                        .iter()
                        .take_while(|b| b.trim().is_empty() || indent(b) > key)
                        .copied()
                        .collect();
                    let strip = body
                        .iter()
                        .filter(|b| !b.trim().is_empty())
                        .map(|b| indent(b))
                        .min()
                        .unwrap_or(0);
                    let toml = body
                        .iter()
                        .map(|b| b.get(strip..).unwrap_or(""))
                        .collect::<Vec<_>>()
                        .join("\n");
                    out.push((p.clone(), toml));
                }
            }
            _ => {}
        }
    }
}

#[test]
fn every_config_under_deploy_passes_check() {
    let mut configs = Vec::new();
    deploy_configs(&repo_file("deploy"), &mut configs);
    assert!(!configs.is_empty(), "no config found under deploy/");
    let mut failures = Vec::new();
    for (file, toml) in configs {
        let dir = tempfile::tempdir().unwrap();
        // Absolute file paths of the target system become stand-ins in a temporary directory.
        let mut rewritten = String::new();
        for line in toml.lines() {
            let key = line.split('=').next().unwrap_or_default().trim();
            if !FILE_KEYS.contains(&key) {
                rewritten.push_str(line);
                rewritten.push('\n');
                continue;
            }
            for (i, part) in line.split('"').enumerate() {
                if i > 0 {
                    rewritten.push('"');
                }
                if i % 2 == 0 || !part.starts_with('/') {
                    rewritten.push_str(part);
                    continue;
                }
                let name = Path::new(part)
                    .file_name()
                    .unwrap_or_default()
                    .to_string_lossy()
                    .into_owned();
                match stand_in(&name) {
                    Some(src) => {
                        let dest = dir.path().join(&name);
                        std::fs::copy(repo_file(src), &dest).unwrap();
                        rewritten.push_str(&dest.display().to_string());
                    }
                    None => {
                        failures.push(format!(
                            "{}: no stand-in for {part} (add one to stand_in() in tests/gateway/docs_drift.rs)",
                            file.display()
                        ));
                        rewritten.push_str(part);
                    }
                }
            }
            rewritten.push('\n');
        }
        let cfg = dir.path().join("portcullis.toml");
        std::fs::write(&cfg, rewritten).unwrap();
        let out = check(&cfg, &[]);
        if !out.status.success() {
            failures.push(format!("{}:\n{}", file.display(), text(&out)));
        }
    }
    assert_none_missing("portcullis check of deploy/", &failures);
}

/// `docs/configuration.md`: `PORTCULLIS__ROUTES__0__…` changes that element; an index the file
/// does not have is a problem naming the variable, never a config of another shape.
#[test]
fn environment_overrides_of_array_elements() {
    let cfg = repo_file("examples/portcullis.toml");
    let out = check(&cfg, &[("PORTCULLIS__ROUTES__0__NAME", "renamed-by-env")]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("renamed-by-env"), "{}", text(&out));
    assert!(!text(&out).contains("legacy-orders"), "{}", text(&out));

    // The prefix in lower case, as the config crate reads it.
    let out = check(
        &cfg,
        &[(
            "portcullis__routes__0__upstream__url",
            "http://127.0.0.1:9999",
        )],
    );
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("http://127.0.0.1:9999"),
        "{}",
        text(&out)
    );

    // An element the file does not have.
    let out = check(&cfg, &[("PORTCULLIS__ROUTES__3__NAME", "ghost")]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("PORTCULLIS__ROUTES__3__NAME: routes has 1 element(s)"),
        "{}",
        text(&out)
    );
    // An index into a table.
    let out = check(&cfg, &[("PORTCULLIS__LISTEN__0__ADDR", "127.0.0.1:1")]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("listen is not an array"),
        "{}",
        text(&out)
    );
    // A bad value through an element is reported like the file's own.
    let out = check(
        &cfg,
        &[("PORTCULLIS__ROUTES__0__UPSTREAM__TIMEOUT", "soon")],
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("routes[0].upstream.timeout"),
        "{}",
        text(&out)
    );
}

/// Every Markdown file users read: README.md and those under docs/, bench/, deploy/, examples/
/// and migration-plans/ (not target/ or hidden directories).
fn markdown_files() -> Vec<PathBuf> {
    let mut files = vec![repo_file("README.md")];
    for dir in ["docs", "bench", "deploy", "examples", "migration-plans"] {
        files.extend(files_under(&repo_file(dir), "md"));
    }
    files
}

/// What is wrong with one Markdown text's code fences and relative links: a fence line that is
/// neither "```" nor "```" plus a language word (text after a closing fence makes the rest of
/// the page code), a block left open, and a link target (outside code) that is not a file or
/// directory of the repository. `file` is where the text lives, for resolving links.
fn markdown_problems(text: &str, file: &Path, root: &Path) -> Vec<String> {
    let name = file
        .strip_prefix(root)
        .unwrap_or(file)
        .display()
        .to_string();
    let mut problems = Vec::new();
    let mut open: Option<usize> = None;
    for (i, line) in text.lines().enumerate() {
        let at = format!("{name}:{}", i + 1);
        let t = line.trim_start();
        if let Some(info) = t.strip_prefix("```") {
            let word = info
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"+-_".contains(&b));
            match open {
                None if word => open = Some(i + 1),
                Some(_) if info.trim().is_empty() => open = None,
                _ => problems.push(format!("{at}: a fence with text after it: {line:?}")),
            }
            continue;
        }
        if open.is_some() {
            continue;
        }
        // Inline code may show link syntax: judge only the text outside backticks.
        for prose in line.split('`').step_by(2) {
            for target in prose
                .split("](")
                .skip(1)
                .filter_map(|r| r.split(')').next())
            {
                let target = target.split_whitespace().next().unwrap_or("");
                if target.is_empty()
                    || target.starts_with('#')
                    || target.contains("://")
                    || target.starts_with("mailto:")
                {
                    continue;
                }
                let path = target.split('#').next().unwrap_or(target);
                let resolved = file.parent().unwrap_or(root).join(path);
                match resolved.canonicalize() {
                    Ok(p) if p.starts_with(root) => {}
                    Ok(p) => problems.push(format!(
                        "{at}: {target} points outside the repository ({})",
                        p.display()
                    )),
                    Err(e) => problems.push(format!("{at}: {target}: {e}")),
                }
            }
        }
    }
    if let Some(from) = open {
        problems.push(format!("{name}:{from}: a code block that is never closed"));
    }
    problems
}

#[test]
fn every_markdown_page_has_closed_fences_and_links_that_stay_in_the_repository() {
    let root = repo_file(".").canonicalize().unwrap();
    let files = markdown_files();
    assert!(
        files.len() > 10,
        "only {} Markdown files found",
        files.len()
    );
    let mut problems = Vec::new();
    for f in &files {
        let text = std::fs::read_to_string(f).unwrap();
        problems.extend(markdown_problems(&text, f, &root));
    }
    assert!(
        problems.is_empty(),
        "{} Markdown problem(s):\n  {}",
        problems.len(),
        problems.join("\n  ")
    );
}

#[test]
fn the_markdown_check_finds_what_it_is_for() {
    let root = repo_file(".").canonicalize().unwrap();
    let file = root.join("docs/page.md");
    let problems = |text: &str| markdown_problems(text, &file, &root);
    assert!(problems(
        "```toml\na = 1\n```\n\n[ops](operations.md#reload), [x](https://x.example)\n"
    )
    .is_empty());
    // Text after a closing fence: the rest of the page would render as code.
    assert_eq!(problems("```toml\na = 1\n``` RFC 8693: x\n").len(), 2);
    assert_eq!(problems("```toml\na = 1\n").len(), 1);
    let outside = problems("see [the contract](../../shared/CONTRACT.md)\n");
    assert_eq!(outside.len(), 1, "{outside:?}");
    assert_eq!(problems("see [gone](no-such-page.md)\n").len(), 1);
    // Inline code is not a link.
    assert!(problems("write `[x](../../etc/passwd)` in a link\n").is_empty());
}
