//! `[reload]`: the polled watch of the configuration file and the plans directory.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;

use super::validate::Collector;

/// `[reload]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawReload {
    watch: Option<String>,
}

/// `[reload]` as checked.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReloadSettings {
    /// How often the config file and the plans directory are hashed; a change reloads.
    /// `None` (default): reload only on SIGHUP or the admin API.
    pub watch: Option<Duration>,
    /// The plans directory read (`[migration] plans_dir`, or `migration-plans` by default).
    pub plans_dir: Option<PathBuf>,
}

/// Shortest watch interval: each tick reads and hashes the files.
const MIN_WATCH: Duration = Duration::from_secs(1);

pub(super) fn reload(
    c: &mut Collector<'_>,
    v: Option<&Value>,
    plans_dir: Option<PathBuf>,
) -> ReloadSettings {
    let raw = match v {
        None => RawReload::default(),
        Some(v) => c.section::<RawReload>("reload", v).unwrap_or_default(),
    };
    let watch = match raw.watch.as_deref() {
        None | Some("off") => None,
        Some(s) => {
            let d = c.duration("reload.watch", Some(&s.to_owned()), MIN_WATCH);
            if d < MIN_WATCH {
                c.push("reload.watch", "at least \"1s\" (or \"off\")");
            }
            Some(d.max(MIN_WATCH))
        }
    };
    ReloadSettings { watch, plans_dir }
}
