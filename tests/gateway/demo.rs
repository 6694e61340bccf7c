//! `portcullis demo`: the curl lines it prints work as printed and give the status each one's
//! comment promises.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::bin;

#[test]
fn printed_curl_lines_succeed() {
    let mut child = Command::new(bin())
        .args(["demo", "--port", "0", "--admin-port", "0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let mut pairs = Vec::new();
    let mut expect = None;
    let started = Instant::now();
    while let Some(Ok(line)) = lines.next() {
        let t = line.trim();
        if let Some(i) = t.find("(expect ") {
            expect = t[i + 8..i + 11].parse::<u16>().ok();
        }
        if t.starts_with("curl ") || t.contains("| curl ") {
            pairs.push((
                t.to_string(),
                expect
                    .take()
                    .expect("every curl line has an (expect NNN) comment"),
            ));
        }
        if t.starts_with("curl -sS http://") && t.ends_with("/metrics") {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "demo output incomplete"
        );
    }
    assert!(pairs.len() >= 5, "{pairs:?}");
    for (cmd, status) in &pairs {
        let out = Command::new("sh")
            .arg("-c")
            .arg(format!("{cmd} -o /dev/null -w '%{{http_code}}'"))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{cmd}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            status.to_string(),
            "{cmd}"
        );
    }
    // The audit log follows the banner: one JSON line per request.
    let mut audited = 0;
    while audited < pairs.len() - 1 {
        let line = lines.next().unwrap().unwrap();
        if line.starts_with('{') {
            let v: serde_json::Value = serde_json::from_str(&line).unwrap();
            assert!(v["request_id"].is_string());
            audited += 1;
        }
    }
    let _ = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status();
    let status = child.wait().unwrap();
    assert!(status.success(), "demo exits 0 on Ctrl-C: {status:?}");
}
