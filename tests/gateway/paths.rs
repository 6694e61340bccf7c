//! Path normalization end to end: every case is either routed to the upstream with exactly the
//! canonical path, or refused with 400 invalid-request before any route is consulted.

use std::time::Duration;

use crate::support::*;

/// (raw request target, Some(path the upstream must see) | None = refused with `status`).
const CASES: &[(&str, Option<&str>, u16)] = &[
    ("/files/a/b", Some("/files/a/b"), 200),
    ("/files/a/b/", Some("/files/a/b/"), 200),
    ("/files/%41bc", Some("/files/Abc"), 200),
    ("/files/a%7eb", Some("/files/a~b"), 200),
    ("/files/a%3fb", Some("/files/a%3Fb"), 200),
    ("/files/a%20b", Some("/files/a%20b"), 200),
    ("/files/caf%C3%A9", Some("/files/caf%C3%A9"), 200),
    ("/files/a;v=1/b", None, 400),
    ("/files/.../x", Some("/files/.../x"), 200),
    ("/files/x?q=%2e%2e/../", Some("/files/x?q=%2e%2e/../"), 200),
    ("/files/../secret", None, 400),
    ("/files/./a", None, 400),
    ("/files/%2e%2e/secret", None, 400),
    ("/files/%2E%2e/secret", None, 400),
    ("/files/.%2e/secret", None, 400),
    ("/files/..;/secret", None, 400),
    ("/files/a%2fb", None, 400),
    ("/files/a%2Fb", None, 400),
    ("/files/a%5cb", None, 400),
    ("/files/a\\b", None, 400),
    ("/files//a", None, 400),
    ("//files/a", None, 400),
    ("/files/a%00b", None, 400),
    ("/files/a%0d%0aSet-Cookie:x", None, 400),
    ("/files/a%zz", None, 400),
    ("/files/a%", None, 400),
    ("/files/%u002e%u002e/x", None, 400),
    ("/files/%252e%252e/x", None, 400),
    ("/files/%c0%ae%c0%ae/x", None, 400),
    ("/files/%e0%80%ae/x", None, 400),
    ("/files/..", None, 400),
    ("/elsewhere/..%2f..%2ffiles/x", None, 400),
    ("/fileshare/x", None, 404),
    ("*", None, 400),
];

#[tokio::test]
async fn path_normalization_table() {
    let dir = tempfile::tempdir().unwrap();
    let up = Upstream::start().await;
    let toml = base_config(dir.path(), "", "", &route("files", "/files", &up.url(), ""));
    let gw = start_in_process(dir.path(), &toml).await;
    let mut failures = Vec::new();
    for (target, expect, status) in CASES {
        let before = up.count();
        let req = format!("GET {target} HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n");
        let (resp, _) = raw_exchange(gw.data_addr, req.as_bytes(), Duration::from_secs(3)).await;
        let got = status_of(&resp);
        match expect {
            Some(path) => {
                if got != 200 || up.count() != before + 1 || up.last().path_and_query != *path {
                    failures.push(format!(
                        "{target}: expected upstream to see {path}, got {got} / {:?}",
                        up.seen
                            .lock()
                            .unwrap()
                            .last()
                            .map(|s| s.path_and_query.clone())
                    ));
                }
            }
            None => {
                if got != *status || up.count() != before {
                    failures.push(format!(
                        "{target}: expected {status} and no upstream request, got {got}"
                    ));
                }
                if *status == 400
                    && got == 400
                    && !resp.contains("urn:portcullis:invalid-request")
                    && !resp.contains("content-length: 0")
                {
                    failures.push(format!("{target}: 400 without problem+json: {resp}"));
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        CASES.len(),
        failures.join("\n")
    );
    gw.stop().await;
}
