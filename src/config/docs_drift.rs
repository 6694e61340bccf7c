//! Fails when `docs/configuration.md` and the parser drift apart: every key a raw serde struct of
//! this module accepts must be written (in backticks) in the section of the reference that
//! documents that struct.
//!
//! The keys come from serde itself (the "unknown field, expected one of …" list of each
//! `deny_unknown_fields` struct), and a scan of `src/config/*.rs` finds every struct deriving
//! `Deserialize`, so a new key or a new struct cannot slip past unnoticed: a struct the table
//! below does not know is a failure too.

use std::collections::BTreeSet;

use serde::de::DeserializeOwned;

use super::raw;

/// Every key `T` accepts, read from serde's unknown-field error.
fn keys_of<T: DeserializeOwned>() -> Vec<String> {
    let probe = serde_json::json!({ "zz_docs_drift_probe": 1 });
    let message = match serde_json::from_value::<T>(probe) {
        Ok(_) => panic!("a struct that accepts an unknown key cannot be checked"),
        Err(e) => e.to_string(),
    };
    let Some((_, expected)) = message.split_once("expected") else {
        panic!("unexpected serde message: {message}");
    };
    expected
        .split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_owned)
        .collect()
}

/// (struct name in `src/config/`, heading text of its section in `docs/configuration.md`, keys).
fn sections() -> Vec<(&'static str, &'static str, Vec<String>)> {
    vec![
        ("Listen", "`[listen]`", keys_of::<raw::Listen>()),
        ("ListenTls", "`[listen]`", keys_of::<raw::ListenTls>()),
        ("Admin", "`[admin]`", keys_of::<raw::Admin>()),
        ("Audit", "`[audit]`", keys_of::<raw::Audit>()),
        ("Route", "`[[routes]]`", keys_of::<raw::Route>()),
        ("Validate", "`[[routes]]`", keys_of::<raw::Validate>()),
        ("ValidateXml", "`[[routes]]`", keys_of::<raw::ValidateXml>()),
        ("Match", "`[[routes]]`", keys_of::<raw::Match>()),
        ("Upstream", "`[[routes]]`", keys_of::<raw::Upstream>()),
        ("Inject", "`[[routes]]`", keys_of::<raw::Inject>()),
        ("Limits", "`[[routes]]`", keys_of::<raw::Limits>()),
        ("Issuer", "`[issuer]`", keys_of::<raw::Issuer>()),
        ("Trust", "`[trust.", keys_of::<raw::Trust>()),
        (
            "TokenExchange",
            "`[token_exchange]`",
            keys_of::<raw::TokenExchange>(),
        ),
        (
            "ExchangeAudienceRule",
            "`[token_exchange]`",
            keys_of::<raw::ExchangeAudienceRule>(),
        ),
        ("MtlsCred", "`[credentials.", keys_of::<raw::MtlsCred>()),
        (
            "JwtSvidCred",
            "`[credentials.",
            keys_of::<raw::JwtSvidCred>(),
        ),
        (
            "WebhookCred",
            "`[credentials.",
            keys_of::<raw::WebhookCred>(),
        ),
        ("ApiKeyCred", "`[credentials.", keys_of::<raw::ApiKeyCred>()),
        ("LdapCred", "`[credentials.", keys_of::<raw::LdapCred>()),
        ("State", "`[state]`", keys_of::<raw::State>()),
        ("Migration", "`[migration]`", keys_of::<raw::Migration>()),
        ("Spiffe", "`[spiffe]`", keys_of::<raw::Spiffe>()),
        (
            "RawDecision",
            "`[decision]`",
            keys_of::<super::decision::RawDecision>(),
        ),
        (
            "RawReload",
            "`[reload]`",
            keys_of::<super::reload::RawReload>(),
        ),
        (
            "RawTelemetry",
            "`[telemetry]`",
            keys_of::<super::telemetry::RawTelemetry>(),
        ),
        (
            "top level",
            "Top level",
            super::validate::TOP_LEVEL_KEYS
                .iter()
                .map(|k| (*k).to_owned())
                .collect(),
        ),
    ]
}

/// Structs of `src/config/*.rs` that derive `Deserialize` but are not a config section.
const NOT_SECTIONS: &[&str] = &[];

fn manifest(path: &str) -> String {
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// Names of the structs deriving `Deserialize` in `src/config/*.rs`.
fn deserialized_structs() -> Vec<(String, String)> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/config");
    let mut found = Vec::new();
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "rs"))
        .collect();
    files.sort();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        let mut derives = false;
        for line in text.lines().map(str::trim) {
            if line.starts_with("#[derive(") {
                derives = line.contains("Deserialize");
            } else if let Some(rest) = line
                .strip_prefix("pub struct ")
                .or_else(|| line.strip_prefix("pub(crate) struct "))
                .or_else(|| line.strip_prefix("pub(super) struct "))
                .or_else(|| line.strip_prefix("struct "))
            {
                if derives {
                    let name: String = rest
                        .chars()
                        .take_while(|c| c.is_alphanumeric() || *c == '_')
                        .collect();
                    found.push((name, file.display().to_string()));
                }
                derives = false;
            } else if !line.starts_with("#[") && !line.starts_with("///") && !line.is_empty() {
                derives = false;
            }
        }
    }
    found
}

/// The text of each `##`/`###` section whose heading contains `heading`.
fn section_words(doc: &str, heading: &str) -> Option<BTreeSet<String>> {
    let mut words = BTreeSet::new();
    let mut inside = false;
    let mut any = false;
    for line in doc.lines() {
        if line.starts_with("## ") {
            inside = line.contains(heading);
            any |= inside;
        }
        if inside {
            // Words inside backticks: `key`, `upstream.key`, `{ a, b }`, `a` / `b`.
            for code in line.split('`').skip(1).step_by(2) {
                for w in code.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
                    if !w.is_empty() {
                        words.insert(w.to_owned());
                    }
                }
            }
        }
    }
    any.then_some(words)
}

#[test]
fn every_config_key_is_in_docs_configuration_md() {
    let doc = manifest("docs/configuration.md");
    let sections = sections();
    let mut missing = Vec::new();
    for (name, heading, keys) in &sections {
        let Some(words) = section_words(&doc, heading) else {
            missing.push(format!(
                "no section whose heading contains {heading} (for {name})"
            ));
            continue;
        };
        for k in keys {
            if !words.contains(k) {
                missing.push(format!("{heading}: key `{k}` (struct {name})"));
            }
        }
    }
    let known: BTreeSet<&str> = sections
        .iter()
        .map(|(n, _, _)| *n)
        .chain(NOT_SECTIONS.iter().copied())
        .collect();
    for (s, file) in deserialized_structs() {
        if !known.contains(s.as_str()) {
            missing.push(format!(
                "struct {s} ({file}) is deserialized from the config but src/config/docs_drift.rs \
                 does not say which section of docs/configuration.md documents it"
            ));
        }
    }
    assert!(
        missing.is_empty(),
        "docs/configuration.md is missing {} key(s):\n  {}",
        missing.len(),
        missing.join("\n  ")
    );
}

#[test]
fn the_probe_reads_every_field() {
    let keys = keys_of::<raw::Migration>();
    assert_eq!(keys, ["plans_dir", "shared_threshold", "max_grace"]);
    let keys = keys_of::<raw::Route>();
    assert!(keys.contains(&"match".to_owned()), "{keys:?}");
    assert!(keys.contains(&"dangerous_allow_plaintext_credentials".to_owned()));
}

/// The keys serde expected where `text` put the unknown key `zz_docs_drift_probe`, read from the
/// problem messages of a parser.
fn expected_in(messages: &[String], what: &str) -> Vec<String> {
    let Some(m) = messages.iter().find(|m| m.contains("zz_docs_drift_probe")) else {
        panic!("{what}: the probe key was not reported as unknown: {messages:?}");
    };
    let Some((_, expected)) = m.split_once("expected") else {
        panic!("{what}: unexpected message: {m}");
    };
    expected
        .split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_owned)
        .collect()
}

/// `(section heading, probe text)` → every key missing from that section of `doc`.
fn missing_in(doc_path: &str, probes: &[(&str, &str, Vec<String>)], missing: &mut Vec<String>) {
    let doc = manifest(doc_path);
    for (heading, table, keys) in probes {
        let Some(words) = section_words(&doc, heading) else {
            missing.push(format!(
                "{doc_path}: no section whose heading contains {heading}"
            ));
            continue;
        };
        for k in keys {
            if !words.contains(k) {
                let table = if table.is_empty() { "top level" } else { table };
                missing.push(format!("{doc_path}: {heading}: key `{k}` ({table})"));
            }
        }
    }
}

#[test]
fn every_plan_and_adapter_key_is_in_docs() {
    let plan = |table: &str| {
        let text = if table.is_empty() {
            "zz_docs_drift_probe = 1\n".to_owned()
        } else {
            format!("[{table}]\nzz_docs_drift_probe = 1\n")
        };
        match crate::migration::plan::parse_plan("probe.toml", "probe", &text) {
            Ok(_) => panic!("the plan parser accepted an unknown key"),
            Err(p) => expected_in(
                &p.into_iter().map(|p| p.message).collect::<Vec<_>>(),
                "plan",
            ),
        }
    };
    let plan_probes: Vec<(&str, &str, Vec<String>)> = ["", "phases", "exit_criteria", "exception"]
        .iter()
        .map(|t| ("Keys", *t, plan(t)))
        .collect();

    let adapter = |family: &str, table: &str| {
        let dir = tempfile::tempdir().unwrap();
        let text = if table.is_empty() {
            format!("family = \"{family}\"\nzz_docs_drift_probe = 1\n")
        } else {
            format!("family = \"{family}\"\n[{table}]\nzz_docs_drift_probe = 1\n")
        };
        std::fs::write(dir.path().join("probe.toml"), text).unwrap();
        let mut adapters = crate::adapters::builtin().unwrap();
        match adapters.load_dir(dir.path()) {
            Ok(()) => panic!("the adapter parser accepted an unknown key"),
            Err(e) => expected_in(
                &e.0.into_iter().map(|p| p.message).collect::<Vec<_>>(),
                "adapter",
            ),
        }
    };
    let mut adapter_probes: Vec<(&str, &str, Vec<String>)> =
        ["", "signature", "timestamp", "delivery_id", "secret"]
            .iter()
            .map(|t| ("Webhook adapters", *t, adapter("webhook", t)))
            .collect();
    adapter_probes.push(("LDAP adapters", "", adapter("ldap", "")));

    let mut missing = Vec::new();
    missing_in("docs/plans.md", &plan_probes, &mut missing);
    missing_in("docs/adapters.md", &adapter_probes, &mut missing);
    assert!(
        missing.is_empty(),
        "{} key(s) missing from the docs:\n  {}",
        missing.len(),
        missing.join("\n  ")
    );
}
