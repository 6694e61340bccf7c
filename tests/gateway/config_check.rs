//! `portcullis check`: every problem in a config is reported at once as `file: key: message`,
//! exit 2; a valid config prints its summary, exit 0. Environment overrides apply.

use std::process::Command;

use crate::support::bin;

fn check(dir: &std::path::Path, toml: &str, env: &[(&str, &str)]) -> (i32, String, String) {
    let path = dir.join("portcullis.toml");
    std::fs::write(&path, toml).unwrap();
    let mut cmd = Command::new(bin());
    cmd.arg("check").arg("-c").arg(&path);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    (
        out.status.code().unwrap(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

const BROKEN: &str = r#"
version = 1
bogus = true

[listen]
addr = "not-an-addr"
header_timeout = "5 parsecs"
max_connections = 0

[admin]
addr = "127.0.0.1:9090"

[[routes]]
name = "a"
match = { path_prefix = "/a/../b", methods = ["GET", "fetch"] }
[routes.upstream]
url = "ftp://legacy.example"

[[routes]]
name = "b"
match = { path_prefix = "/c", colour = "red" }
[routes.upstream]
url = "http://x"

[[routes]]
name = "a"
match = { path_prefix = "/d" }
[routes.upstream]
url = "http://up.example"
timeout = "soon"
[routes.limits]
max_body = "lots"
"#;

#[test]
fn every_problem_is_reported_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let (code, _out, err) = check(dir.path(), BROKEN, &[]);
    assert_eq!(code, 2, "{err}");
    let file = dir.path().join("portcullis.toml").display().to_string();
    let expected = [
        ("bogus", "unknown key"),
        ("listen.addr", "invalid address"),
        ("listen.header_timeout", "invalid duration"),
        ("listen.max_connections", "must be greater than zero"),
        ("routes[0].match.path_prefix", "'..' segment"),
        ("routes[0].match.methods[1]", "upper case"),
        ("routes[0].upstream.url", "scheme must be http or https"),
        ("routes[1].match.colour", "unknown field `colour`"),
        ("routes[2].name", "duplicate route name"),
        ("routes[2].upstream.timeout", "invalid duration"),
        ("routes[2].limits.max_body", "invalid size"),
    ];
    let mut missing = Vec::new();
    for (key, msg) in expected {
        let prefix = format!("{file}: {key}: ");
        if !err
            .lines()
            .any(|l| l.starts_with(&prefix) && l.to_lowercase().contains(&msg.to_lowercase()))
        {
            missing.push(format!("{key}: …{msg}…"));
        }
    }
    assert!(
        missing.is_empty(),
        "missing messages {missing:#?}\nstderr:\n{err}"
    );
    assert!(err.contains("11 problem(s)"), "{err}");
}

#[test]
fn syntax_errors_and_missing_files_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let (code, _, err) = check(dir.path(), "version = 1\n[listen\naddr = \"x\"\n", &[]);
    assert_eq!(code, 2);
    assert!(err.contains("portcullis.toml: -: "), "{err}");

    let out = Command::new(bin())
        .args(["check", "-c", "/nonexistent/portcullis.toml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr)
        .contains("/nonexistent/portcullis.toml: -: cannot read file"));

    let out = Command::new(bin()).args(["frobnicate"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "bad usage is exit 2");
}

const VALID: &str = r#"
version = 1
[listen]
addr = "127.0.0.1:8443"
[[routes]]
name = "cics-payments"
match = { path_prefix = "/cics/payments/", methods = ["GET", "POST"] }
[routes.upstream]
url = "https://cics.corp.example:9443"
"#;

#[test]
fn valid_config_prints_a_summary_and_env_overrides_apply() {
    let dir = tempfile::tempdir().unwrap();
    let (code, out, err) = check(dir.path(), VALID, &[]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("cics-payments"), "{out}");
    assert!(out.contains("/cics/payments/"), "{out}");
    assert!(out.contains("GET,POST"), "{out}");
    assert!(
        out.contains("plain HTTP"),
        "the plain-HTTP warning is shown: {out}"
    );

    let (code, out, _) = check(
        dir.path(),
        VALID,
        &[("PORTCULLIS__LISTEN__ADDR", "127.0.0.1:7443")],
    );
    assert_eq!(code, 0);
    assert!(out.contains("listen  127.0.0.1:7443"), "{out}");

    let (code, _, err) = check(
        dir.path(),
        VALID,
        &[("PORTCULLIS__LISTEN__ADDR", "nowhere")],
    );
    assert_eq!(code, 2);
    assert!(
        err.contains("listen.addr: invalid address \"nowhere\""),
        "{err}"
    );
}

#[test]
fn shipped_example_config_is_valid() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/portcullis.toml");
    let out = Command::new(bin())
        .args(["check", "-c", path])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("legacy-orders"));
}
