//! Adapters: what the gateway knows about specific SaaS webhook providers and legacy directories,
//! as data (`docs/adapters.md`), so that a new provider is a file, not code.
//!
//! One TOML format for both families, tagged by `family = "webhook"` or `family = "ldap"`, with
//! unknown keys refused. An adapter's name is its file name without `.toml`. The shipped adapters
//! (`adapters/*.toml` at the repository root) are embedded in the binary; [`Adapters::load_dir`]
//! adds the files of an `adapters_dir`, a file there replacing a shipped adapter of the same name.
//! Every problem is reported at once, as `file: key: message`.

mod ldap;
mod template;
mod webhook;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use crate::diag::{Collector, Invalid, Problem};

pub use ldap::{normalize_user, BindMode, GroupValue, LdapAdapter, PrincipalCase, UserCase};
pub use webhook::{
    Algorithm, Encoding, HeaderSpec, SecretEncoding, SignatureSpec, SignedPart, TimestampSource,
    TimestampSpec, WebhookAdapter,
};

/// The shipped adapters: name and text.
const BUILTIN: &[(&str, &str)] = &[
    ("stripe", include_str!("../adapters/stripe.toml")),
    ("github", include_str!("../adapters/github.toml")),
    ("slack", include_str!("../adapters/slack.toml")),
    (
        "standard-webhooks",
        include_str!("../adapters/standard-webhooks.toml"),
    ),
    ("shopify", include_str!("../adapters/shopify.toml")),
    ("twilio", include_str!("../adapters/twilio.toml")),
    ("zos-racf", include_str!("../adapters/zos-racf.toml")),
    ("openldap", include_str!("../adapters/openldap.toml")),
    (
        "active-directory",
        include_str!("../adapters/active-directory.toml"),
    ),
];

/// One adapter of either family.
#[derive(Debug, Clone)]
pub enum Adapter {
    Webhook(Arc<WebhookAdapter>),
    Ldap(Arc<LdapAdapter>),
}

impl Adapter {
    /// `webhook` or `ldap`, as in the file's `family` key.
    pub fn family(&self) -> &'static str {
        match self {
            Adapter::Webhook(_) => "webhook",
            Adapter::Ldap(_) => "ldap",
        }
    }
}

/// All adapters by name.
#[derive(Debug, Clone, Default)]
pub struct Adapters {
    by_name: BTreeMap<String, Adapter>,
}

/// The shipped adapters. An error here is a bug in a shipped file (a unit test loads them all).
pub fn builtin() -> Result<Adapters, Invalid> {
    let mut problems = Vec::new();
    let mut by_name = BTreeMap::new();
    for (name, text) in BUILTIN {
        match parse(&format!("adapters/{name}.toml"), name, text) {
            Ok(a) => {
                by_name.insert((*name).to_owned(), a);
            }
            Err(mut p) => problems.append(&mut p),
        }
    }
    if problems.is_empty() {
        Ok(Adapters { by_name })
    } else {
        Err(Invalid(problems))
    }
}

impl Adapters {
    /// The shipped adapters plus, when given, those of `dir`.
    pub fn load(dir: Option<&Path>) -> Result<Adapters, Invalid> {
        let mut adapters = builtin()?;
        if let Some(dir) = dir {
            adapters.load_dir(dir)?;
        }
        Ok(adapters)
    }

    /// Add every `*.toml` file of `dir` (not recursive; dot files skipped), a file replacing an
    /// adapter of the same name. Nothing is added unless every file is valid.
    pub fn load_dir(&mut self, dir: &Path) -> Result<(), Invalid> {
        let dir_label = dir.display().to_string();
        let entries = std::fs::read_dir(dir).map_err(|e| {
            Invalid(vec![Problem::new(
                &dir_label,
                "",
                format!("cannot read: {e}"),
            )])
        })?;
        let mut paths: Vec<_> = entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "toml"))
            .filter(|p| {
                p.file_name()
                    .is_some_and(|n| !n.to_string_lossy().starts_with('.'))
            })
            .collect();
        paths.sort();
        let mut problems = Vec::new();
        let mut loaded = Vec::new();
        for path in paths {
            let label = path.display().to_string();
            let Some(name) = path.file_stem().and_then(|s| s.to_str()) else {
                problems.push(Problem::new(&label, "", "file name is not UTF-8"));
                continue;
            };
            if !valid_name(name) {
                problems.push(Problem::new(
                    &label,
                    "",
                    "file name must be lower-case letters, digits and `-` (it is the adapter's name)",
                ));
                continue;
            }
            let text = match std::fs::read_to_string(&path) {
                Ok(t) => t,
                Err(e) => {
                    problems.push(Problem::new(&label, "", format!("cannot read: {e}")));
                    continue;
                }
            };
            match parse(&label, name, &text) {
                Ok(a) => loaded.push((name.to_owned(), label, a)),
                Err(mut p) => problems.append(&mut p),
            }
        }
        if !problems.is_empty() {
            return Err(Invalid(problems));
        }
        for (name, label, adapter) in loaded {
            if let Some(old) = self.by_name.insert(name.clone(), adapter) {
                tracing::info!(
                    adapter.name = %name,
                    adapter.file = %label,
                    adapter.replaced_family = old.family(),
                    "adapter file replaces the built-in adapter of the same name"
                );
            }
        }
        Ok(())
    }

    /// The adapter called `name`, of either family.
    pub fn get(&self, name: &str) -> Option<&Adapter> {
        self.by_name.get(name)
    }

    /// The webhook adapter called `name` (`None` also when `name` is an LDAP adapter).
    pub fn get_webhook(&self, name: &str) -> Option<Arc<WebhookAdapter>> {
        match self.by_name.get(name)? {
            Adapter::Webhook(a) => Some(a.clone()),
            Adapter::Ldap(_) => None,
        }
    }

    /// The LDAP adapter called `name` (`None` also when `name` is a webhook adapter).
    pub fn get_ldap(&self, name: &str) -> Option<Arc<LdapAdapter>> {
        match self.by_name.get(name)? {
            Adapter::Ldap(a) => Some(a.clone()),
            Adapter::Webhook(_) => None,
        }
    }

    /// Every adapter, by name.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Adapter)> {
        self.by_name.iter().map(|(k, v)| (k.as_str(), v))
    }
}

/// Deserialize, reporting the failing key's dotted path (for an unknown key, that key).
fn deserialize<T: serde::de::DeserializeOwned>(
    value: toml::Value,
    p: &mut Collector<'_>,
) -> Option<T> {
    serde_path_to_error::deserialize(value)
        .map_err(|e| {
            let path = e.path().to_string();
            p.push(
                if path == "." { String::new() } else { path },
                e.inner().message(),
            );
        })
        .ok()
}

/// Parse one file's text.
fn parse(file: &str, name: &str, text: &str) -> Result<Adapter, Vec<Problem>> {
    let mut table: toml::Table = toml::from_str(text).map_err(|e| {
        let line = e
            .span()
            .and_then(|s| text.get(..s.start))
            .map_or(0, |t| t.lines().count().max(1));
        let key = if line > 0 {
            format!("line {line}")
        } else {
            String::new()
        };
        vec![Problem::new(file, key, e.message().trim())]
    })?;
    let family = table.remove("family");
    let rest = toml::Value::Table(table);
    let mut c = Collector::new(file);
    let adapter = match family.as_ref().and_then(toml::Value::as_str) {
        Some("webhook") => {
            webhook::from_toml(name, rest, &mut c).map(|a| Adapter::Webhook(Arc::new(a)))
        }
        Some("ldap") => ldap::from_toml(name, rest, &mut c).map(|a| Adapter::Ldap(Arc::new(a))),
        _ => {
            c.push("family", "must be \"webhook\" or \"ldap\"");
            None
        }
    };
    match adapter {
        Some(a) if c.is_ok() => Ok(a),
        _ => Err(c.problems),
    }
}

/// Adapter names: what config files refer to.
fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

#[cfg(test)]
mod tests;
