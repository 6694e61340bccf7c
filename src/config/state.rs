//! `[state]`: where usage, inventory and revocations live.

use std::path::Path;

use serde_json::Value;

use super::raw;
use super::validate::{resolve, Collector};

pub(super) fn state(c: &mut Collector<'_>, base: &Path, v: Option<&Value>) -> super::StateConfig {
    use crate::state::redis::{check_prefix, RedisUrl, DEFAULT_PREFIX};
    let raw = match v {
        None => raw::State::default(),
        Some(v) => c.section::<raw::State>("state", v).unwrap_or_default(),
    };
    let redis = match raw.backend.as_deref() {
        None | Some("embedded") => false,
        Some("redis") => true,
        Some(other) => {
            c.push(
                "state.backend",
                format!("unknown backend {other:?} (embedded or redis)"),
            );
            false
        }
    };
    let backend = if redis {
        // Never echo the URL: it may carry the password.
        let url = match raw.url.as_deref() {
            None => {
                c.push(
                    "state.url",
                    "required with backend = \"redis\" (redis://host:port/db)",
                );
                None
            }
            Some(u) => match RedisUrl::parse(u) {
                Ok(u) => Some(u),
                Err(m) => {
                    c.push("state.url", m);
                    None
                }
            },
        };
        let prefix = raw
            .prefix
            .clone()
            .unwrap_or_else(|| DEFAULT_PREFIX.to_string());
        if let Err(m) = check_prefix(&prefix) {
            c.push("state.prefix", m);
        }
        if raw.path.is_some() {
            c.warn("[state] path is not used with backend = \"redis\"");
        }
        url.map(|url| super::StateBackend::Redis { url, prefix })
    } else {
        if raw.url.is_some() {
            c.push("state.url", "only meaningful with backend = \"redis\"");
        }
        if raw.prefix.is_some() {
            c.push("state.prefix", "only meaningful with backend = \"redis\"");
        }
        None
    };
    let flush_every = c.duration(
        "state.flush_every",
        raw.flush_every.as_ref(),
        std::time::Duration::from_secs(5),
    );
    let tls = redis_tls(c, base, &raw, backend.as_ref());
    let retention = c.duration(
        "state.retention",
        raw.retention.as_ref(),
        super::defaults::STATE_RETENTION,
    );
    super::StateConfig {
        backend: backend.unwrap_or(super::StateBackend::Embedded),
        path: raw.path.map(|p| resolve(base, &p)),
        flush_every,
        tls,
        retention,
    }
}

/// A plan's readiness is computed over its exit-criteria window: rows must be kept at least
/// that long, or a plan would look ready on missing data.
pub(super) fn retention_covers_plans(
    c: &mut Collector<'_>,
    state: &super::StateConfig,
    plans: &crate::migration::Plans,
) {
    let days = state.retention.as_secs() / 86_400;
    for p in plans.iter() {
        if u64::from(p.exit.window_days) > days {
            c.push(
                "state.retention",
                format!(
                    "{days} days is shorter than plan {}'s exit-criteria window ({} days): \
                     readiness would be computed on deleted rows",
                    p.name, p.exit.window_days
                ),
            );
        }
    }
}

/// `ca`, `client_cert`, `client_key` (only for `rediss://`) and `password_file` (redis only).
fn redis_tls(
    c: &mut Collector<'_>,
    base: &Path,
    raw: &raw::State,
    backend: Option<&super::StateBackend>,
) -> crate::state::RedisTls {
    let url = match backend {
        Some(super::StateBackend::Redis { url, .. }) => Some(url),
        _ => None,
    };
    let tls = url.is_some_and(|u| u.is_tls());
    let mut file = |key: &str, v: &Option<String>, needs_tls: bool| {
        let v = v.as_deref()?;
        if url.is_none() {
            c.push(key, "only meaningful with backend = \"redis\"");
            return None;
        }
        if needs_tls && !tls {
            c.push(key, "only meaningful with a rediss:// url (Redis over TLS)");
            return None;
        }
        Some(c.file_path(key, base, v))
    };
    let out = crate::state::RedisTls {
        ca: file("state.ca", &raw.ca, true),
        client_cert: file("state.client_cert", &raw.client_cert, true),
        client_key: file("state.client_key", &raw.client_key, true),
        password_file: file("state.password_file", &raw.password_file, false),
    };
    if out.client_cert.is_some() != out.client_key.is_some() {
        c.push(
            "state.client_cert",
            "client_cert and client_key go together (the certificate and its private key)",
        );
    }
    if out.password_file.is_some() && url.is_some_and(|u| u.has_password()) {
        c.push(
            "state.password_file",
            "the url already carries a password: use one or the other",
        );
    }
    out
}

#[cfg(test)]
mod state_tests {
    use std::path::Path;

    use crate::config::StateBackend;

    fn load(state: &str) -> Result<crate::config::Config, Vec<String>> {
        let text = format!(
            "version = 1\n[listen]\naddr = \"127.0.0.1:0\"\n[admin]\naddr = \"127.0.0.1:0\"\n[state]\n{state}"
        );
        crate::config::from_toml_str(&text, Path::new("/nonexistent/p.toml")).map_err(|e| {
            e.0.iter()
                .map(|p| format!("{}: {}", p.key, p.message))
                .collect()
        })
    }

    #[test]
    fn state_backends() {
        let c = load("path = \"state.db\"").unwrap();
        assert_eq!(c.state.backend, StateBackend::Embedded);
        let c =
            load("backend = \"redis\"\nurl = \"redis://gw:pw@redis:6379/1\"\nflush_every = \"2s\"")
                .unwrap();
        match &c.state.backend {
            StateBackend::Redis { url, prefix } => {
                assert_eq!(url.redacted(), "redis://gw:***@redis:6379/1");
                assert_eq!(prefix, "portcullis:");
            }
            other => panic!("{other:?}"),
        }
        assert!(
            !format!("{c:?}").contains("pw@"),
            "the password is never shown"
        );
        let c = load("backend = \"redis\"\nurl = \"redis://redis\"\nprefix = \"gw-b:\"").unwrap();
        assert!(
            matches!(&c.state.backend, StateBackend::Redis { prefix, .. } if prefix == "gw-b:")
        );
    }

    #[test]
    fn state_problems() {
        let p = load("backend = \"redis\"").unwrap_err();
        assert!(
            p.iter().any(|m| m.starts_with("state.url: required")),
            "{p:?}"
        );
        let p = load("backend = \"memcached\"").unwrap_err();
        assert!(
            p.iter()
                .any(|m| m.starts_with("state.backend: unknown backend")),
            "{p:?}"
        );
        let p = load("backend = \"redis\"\nurl = \"http://u:secret@redis:6379\"").unwrap_err();
        assert!(
            p.iter()
                .any(|m| m.contains("state.url: must start with redis://")),
            "{p:?}"
        );
        assert!(!p.join("\n").contains("secret"), "{p:?}");
        let p = load("backend = \"redis\"\nurl = \"redis://r\"\nprefix = \"a b\"").unwrap_err();
        assert!(p.iter().any(|m| m.starts_with("state.prefix:")), "{p:?}");
        let p = load("url = \"redis://r\"\nprefix = \"x:\"").unwrap_err();
        assert!(
            p.iter()
                .any(|m| m.starts_with("state.url: only meaningful")),
            "{p:?}"
        );
        assert!(
            p.iter()
                .any(|m| m.starts_with("state.prefix: only meaningful")),
            "{p:?}"
        );
    }
}
