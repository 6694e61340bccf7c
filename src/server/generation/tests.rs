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
