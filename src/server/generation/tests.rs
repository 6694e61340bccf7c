use std::path::Path;

use super::*;

fn config(extra: &str) -> Config {
    let text = format!(
        "version = 1\n[listen]\naddr = \"127.0.0.1:0\"\n[admin]\naddr = \"127.0.0.1:0\"\n{extra}"
    );
    crate::config::from_toml_str(&text, Path::new("/nonexistent/p.toml")).unwrap()
}

#[test]
fn restart_required_names_what_a_reload_cannot_apply() {
    let old = config("");
    assert!(restart_required(&old, &config("")).is_empty());
    let moved = crate::config::from_toml_str(
        "version = 1\n[listen]\naddr = \"127.0.0.1:8443\"\n[admin]\naddr = \"127.0.0.1:0\"\n",
        Path::new("/nonexistent/p.toml"),
    )
    .unwrap();
    let r = restart_required(&old, &moved);
    assert_eq!(r.len(), 1, "{r:?}");
    assert!(r[0].starts_with("[listen] addr changed"), "{r:?}");
    let r = restart_required(&old, &config("[state]\nflush_every = \"1s\"\n"));
    assert!(r.iter().any(|m| m.starts_with("[state]")), "{r:?}");
}

#[test]
fn redacted_config_shows_no_secret() {
    let c = config("[state]\nbackend = \"redis\"\nurl = \"redis://gw:hunter2@redis:6379/1\"\n");
    let text = redacted(&c).to_string();
    assert!(!text.contains("hunter2"), "{text}");
    assert!(text.contains("gw:***@redis"), "{text}");
}

#[test]
fn userinfo_is_removed_from_urls() {
    assert_eq!(
        without_userinfo("https://u:p@legacy.corp:8443/x"),
        "https://***@legacy.corp:8443/x"
    );
    assert_eq!(without_userinfo("http://legacy/a@b"), "http://legacy/a@b");
    assert_eq!(without_userinfo("no scheme"), "no scheme");
}

/// `[spiffe]` with `body` (a Workload API section, so each key can be changed alone).
fn spiffe(body: &str) -> Config {
    config(&format!("[spiffe]\n{body}"))
}

#[test]
fn a_changed_spiffe_section_needs_a_restart_field_by_field() {
    let base = "workload_api = \"unix:///run/spire/agent.sock\"\nsvid_hint = \"internal\"\nstartup_timeout = \"30s\"\n";
    let old = spiffe(base);
    let changed = [
        base.replace("/run/spire/agent.sock", "/run/spire/other.sock"),
        base.replace("\"internal\"", "\"external\""),
        base.replace("svid_hint = \"internal\"\n", ""),
        base.replace("\"30s\"", "\"31s\""),
        // A millisecond apart is still a change.
        base.replace("\"30s\"", "\"30001ms\""),
    ];
    for new in changed {
        let r = restart_required(&old, &spiffe(&new));
        assert_eq!(r.len(), 1, "{new}: {r:?}");
        assert!(r[0].starts_with("[spiffe] changed"), "{new}: {r:?}");
    }
    // Section added or removed.
    let none = config("");
    assert!(none.spiffe.is_none());
    for (a, b) in [(&none, &old), (&old, &none)] {
        let r = restart_required(a, b);
        assert!(r.iter().any(|m| m.starts_with("[spiffe]")), "{r:?}");
    }
}

#[test]
fn the_same_spiffe_settings_spelled_differently_need_no_restart() {
    let old =
        spiffe("workload_api = \"unix:///run/spire/agent.sock\"\nstartup_timeout = \"30s\"\n");
    for same in [
        // The default written out, another unit, another key order, comments.
        "workload_api = \"unix:///run/spire/agent.sock\"\n",
        "startup_timeout = \"30000ms\"\nworkload_api = \"unix:///run/spire/agent.sock\"\n",
        "# the agent\nworkload_api = \"unix:///run/spire/agent.sock\" # socket\nstartup_timeout = \"30s\"\n",
    ] {
        let r = restart_required(&old, &spiffe(same));
        assert!(r.is_empty(), "{same}: {r:?}");
    }
}

#[test]
fn spiffe_settings_are_compared_as_values_not_as_their_debug_text() {
    use crate::spiffe::workload::Settings;
    let a = Settings {
        endpoint: "unix:///run/spire/agent.sock".into(),
        svid_hint: None,
        startup_timeout: std::time::Duration::from_secs(30),
    };
    let mut b = a.clone();
    b.startup_timeout += std::time::Duration::from_nanos(1);
    let (mut old, mut new) = (config(""), config(""));
    old.spiffe = Some(a.clone());
    new.spiffe = Some(b);
    assert_eq!(restart_required(&old, &new).len(), 1);
    new.spiffe = Some(a);
    assert!(restart_required(&old, &new).is_empty());
}

#[test]
fn the_http1_engine_is_checked_and_needs_a_restart() {
    use crate::transport::settings::Http1Engine;
    // The default is the native core: a config that omits the key is one that says "native".
    let omitted = config("");
    assert_eq!(omitted.listen.http1_engine, Http1Engine::Native);
    let text = |engine: &str| {
        format!("version = 1\n[listen]\naddr = \"127.0.0.1:0\"\nhttp1_engine = \"{engine}\"\n[admin]\naddr = \"127.0.0.1:0\"\n")
    };
    let load = |t: String| crate::config::from_toml_str(&t, Path::new("/nonexistent/p.toml"));
    let native = load(text("native")).unwrap();
    assert_eq!(native.listen.http1_engine, Http1Engine::Native);
    assert!(restart_required(&omitted, &native).is_empty());
    assert!(restart_required(&native, &omitted).is_empty());
    let hyper = load(text("hyper")).unwrap();
    assert_eq!(hyper.listen.http1_engine, Http1Engine::Hyper);
    // Another spelling is a problem naming the key, not a silent default.
    for bad in ["Native", "h1", ""] {
        let e = load(text(bad)).unwrap_err().to_string();
        assert!(e.contains("listen.http1_engine"), "{bad}: {e}");
    }
    // To the fallback and back: each a restart.
    for (old, new) in [(&omitted, &hyper), (&hyper, &omitted), (&hyper, &native)] {
        assert_eq!(
            restart_required(old, new),
            ["[listen] http1_engine changed: takes effect after a restart"]
        );
    }
}
