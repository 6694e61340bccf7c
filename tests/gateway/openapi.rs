//! The admin API's OpenAPI document (`docs/openapi.json`): valid OpenAPI 3.1
//! (`openapi-spec-validator`), served as is at `/admin/v1/openapi.json`, naming every admin
//! endpoint and no other, and fuzzed by schemathesis against a running gateway: no 5xx, every
//! response conforming to the document, every request the document calls invalid refused. Then
//! one regression test per thing schemathesis found.

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use serde_json::Value;

use crate::docs_support::repo_file;
use crate::support::*;

const KEY: &str = "pcs_openapi_test_key_0123456789abcdef01";

/// A gateway with the ops API: state on disk, a plan in bridge, an API-key route (plain HTTP,
/// so `dangerous_allow_plaintext_credentials`).
fn config(dir: &Path, up: &Upstream) -> String {
    write_api_keys(
        dir,
        &[("partner-acme", "spiffe://corp.example/partner/acme", KEY)],
    );
    write_partner_plan(dir);
    let route = partner_route(
        "partner",
        "path_prefix = \"/partner/\"",
        &format!("{ALLOW_PARTNERS}\nplan = \"partner-api\"\ndangerous_allow_plaintext_credentials = true"),
        &up.url(),
        "",
        "",
    );
    let extra = format!(
        "{ISSUER}[state]\npath = \"{d}/state.db\"\nflush_every = \"1s\"\n[migration]\nplans_dir = \"{d}/plans\"\n{keys}{route}",
        d = dir.display(),
        keys = partner_keys(dir),
    );
    base_config(dir, "", "", &extra)
}

/// `python3 -m MODULE ARGS…` from the test venv (`scripts/test` puts it first on PATH), in a
/// scratch directory (schemathesis writes its cache into the working directory).
fn python(args: &[&str]) -> std::process::Output {
    let scratch = tempfile::tempdir().unwrap();
    Command::new("python3")
        .args(args)
        .current_dir(scratch.path())
        .output()
        .unwrap_or_else(|e| panic!("python3 {args:?}: {e} (run the tests through scripts/test)"))
}

#[test]
fn the_document_is_valid_openapi_3_1() {
    let path = repo_file("docs/openapi.json");
    let out = python(&["-m", "openapi_spec_validator", path.to_str().unwrap()]);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && text.contains("OK"),
        "openapi-spec-validator (pip install openapi-spec-validator into the test venv):\n{text}"
    );
    let doc: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
}

/// The admin listener's endpoints: every path the document lists answers (no 404), and the
/// served document is the repository's file byte for byte.
#[tokio::test]
async fn the_served_document_is_the_repository_file_and_lists_what_exists() {
    let dir = tempfile::tempdir().unwrap();
    let up = Upstream::start().await;
    let gw = start_in_process(dir.path(), &config(dir.path(), &up)).await;
    let admin = format!("http://{}", gw.admin_addr);
    let served = reqwest::get(format!("{admin}/admin/v1/openapi.json"))
        .await
        .unwrap();
    assert_eq!(served.status(), 200);
    assert_eq!(
        served.headers()["content-type"].to_str().unwrap(),
        "application/json"
    );
    let served = served.text().await.unwrap();
    let file = std::fs::read_to_string(repo_file("docs/openapi.json")).unwrap();
    assert_eq!(
        served, file,
        "the binary serves another document than docs/openapi.json"
    );

    let doc: Value = serde_json::from_str(&file).unwrap();
    let paths = doc["paths"].as_object().unwrap();
    let client = reqwest::Client::new();
    for (path, ops) in paths {
        for method in ops.as_object().unwrap().keys() {
            let m = http::Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let mut req = client.request(m.clone(), format!("{admin}{path}"));
            if path == "/admin/v1/policy/suggest" {
                req = req.query(&[("route", "partner")]);
            }
            if m != http::Method::GET {
                req = req
                    .header("content-type", "application/json")
                    .body(r#"{"jti":"openapi-probe","reason":"probe"}"#);
            }
            let status = req.send().await.unwrap().status().as_u16();
            assert!(
                status != 404 || (m == http::Method::DELETE),
                "{method} {path}: the document lists it, the listener answers 404"
            );
            assert!(status < 500, "{method} {path}: {status}");
        }
    }
    // And nothing the listener answers is missing from the document: every path literal of
    // the admin listener's source (`src/admin.rs`, `src/admin/*.rs`).
    let served = admin_path_literals();
    for path in ["/healthz", "/admin/v1/revocations", "/dashboard.js", "/"] {
        assert!(
            served.contains(path),
            "the source scan missed {path}: {served:?}"
        );
    }
    let missing: Vec<String> = served
        .iter()
        .filter(|p| !paths.contains_key(p.as_str()))
        .map(|p| format!("{p} is served (src/admin) but not in docs/openapi.json"))
        .collect();
    crate::docs_support::assert_none_missing("docs/openapi.json", &missing);
    gw.stop().await;
}

/// schemathesis (pip) against a running gateway (a child process): every operation, positive and
/// negative data, every check except `positive_data_acceptance` (a revocation target is only
/// acceptable when it names a configured credential, and `since` is a humantime duration:
/// neither is expressible in JSON Schema, so schema-valid requests may rightly get 400/422;
/// the reverse, a schema-invalid request accepted, is checked). Bounded: 40 cases per operation,
/// one worker, a fixed seed (`--max-time` would repeat fuzzing until the time is spent); about
/// 10 s on 2 cores.
#[tokio::test]
async fn schemathesis_finds_no_5xx_and_no_nonconforming_response() {
    // The gateway is a child process; this process's reqwest client needs the provider too.
    portcullis::server::install_crypto();
    let dir = tempfile::tempdir().unwrap();
    let up = Upstream::start().await;
    let gw = Proc::spawn(dir.path(), &config(dir.path(), &up));
    // Traffic first, so the inventory, the migration report and the suggestion are not empty.
    let client = reqwest::Client::new();
    for _ in 0..3 {
        let r = client
            .get(format!("http://{}/partner/orders/1", gw.data_addr))
            .header("x-api-key", KEY)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    let admin = format!("http://{}", gw.admin_addr);
    let started = Instant::now();
    let out = tokio::task::spawn_blocking(move || {
        let spec = format!("{admin}/admin/v1/openapi.json");
        python(&[
            "-m",
            "schemathesis.cli",
            "run",
            &spec,
            "--url",
            &admin,
            "--checks",
            "all",
            "--exclude-checks",
            "positive_data_acceptance",
            "--max-examples",
            "40",
            "--workers",
            "1",
            "--seed",
            "20261206",
            "--request-timeout",
            "10",
        ])
    })
    .await
    .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "schemathesis failed:\n{text}");
    assert!(text.contains("15 selected / 15 total"), "{text}");
    assert!(
        started.elapsed().as_secs() < 180,
        "schemathesis took {:?}",
        started.elapsed()
    );
}

/// String literals of the admin listener's source that are paths it serves.
fn admin_path_literals() -> std::collections::BTreeSet<String> {
    let mut files = vec![repo_file("src/admin.rs")];
    for e in std::fs::read_dir(repo_file("src/admin")).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "rs") {
            files.push(p);
        }
    }
    let mut out = std::collections::BTreeSet::new();
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        for lit in text.split('"').skip(1).step_by(2) {
            let served = lit == "/"
                || lit
                    .strip_prefix("/admin/v1/")
                    .is_some_and(|rest| !rest.is_empty())
                || matches!(lit, "/healthz" | "/readyz" | "/metrics")
                || (lit.starts_with('/')
                    && [".html", ".css", ".js"].iter().any(|x| lit.ends_with(x)));
            if served && lit.bytes().all(|b| b.is_ascii_graphic()) {
                out.insert(lit.to_owned());
            }
        }
    }
    out
}

async fn admin_gateway() -> (
    tempfile::TempDir,
    Upstream,
    portcullis::server::Running,
    String,
) {
    let dir = tempfile::tempdir().unwrap();
    let up = Upstream::start().await;
    let gw = start_in_process(dir.path(), &config(dir.path(), &up)).await;
    let admin = format!("http://{}", gw.admin_addr);
    (dir, up, gw, admin)
}

/// Found by schemathesis (`unsupported_method`): a method an admin path never answers got 415
/// (the JSON content-type guard ran first) instead of 405 with `Allow`.
#[tokio::test]
async fn a_method_an_admin_path_never_answers_is_405_with_allow_not_415() {
    let (_dir, _up, gw, admin) = admin_gateway().await;
    let client = reqwest::Client::new();
    for (method, path, allow) in [
        ("PATCH", "/admin/v1/migration", "GET"),
        ("PUT", "/admin/v1/revocations", "GET, POST, DELETE"),
        ("TRACE", "/admin/v1/inventory", "GET"),
        ("POST", "/admin/v1/openapi.json", "GET, HEAD"),
        ("DELETE", "/", "GET, HEAD"),
    ] {
        let r = client
            .request(
                http::Method::from_bytes(method.as_bytes()).unwrap(),
                format!("{admin}{path}"),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 405, "{method} {path}");
        assert_eq!(r.headers()["allow"], allow, "{method} {path}");
        let p: Value = r.json().await.unwrap();
        assert_eq!(p["type"], "urn:portcullis:method-not-allowed");
    }
    // The guard still stands where the method is one the path answers: a form POST is 415.
    let r = client
        .post(format!("{admin}/admin/v1/revocations"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("jti=x&reason=y")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 415);
    // And a rebound Host is refused before any of this.
    let r = client
        .patch(format!("{admin}/admin/v1/migration"))
        .header("host", "evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    gw.stop().await;
}

/// Found by schemathesis (negative data): serde reads a struct from a JSON array, so
/// `["spiffe://…", null, null, "why"]` revoked an identity although the documented body is an
/// object.
#[tokio::test]
async fn a_revocation_body_that_is_not_an_object_is_refused() {
    let (_dir, _up, gw, admin) = admin_gateway().await;
    let client = reqwest::Client::new();
    for body in [
        r#"["spiffe://corp.example/partner/acme", null, null, "left"]"#,
        r#"[null, null, "some-jti", "why"]"#,
        r#""spiffe://corp.example/partner/acme""#,
        "null",
    ] {
        let r = client
            .post(format!("{admin}/admin/v1/revocations"))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "{body}");
    }
    let list: Value = client
        .get(format!("{admin}/admin/v1/revocations"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list["revocations"], serde_json::json!([]), "{list}");
    // The object form still works.
    let r = client
        .post(format!("{admin}/admin/v1/revocations"))
        .header("content-type", "application/json")
        .body(r#"{"identity":"spiffe://corp.example/partner/acme","reason":"left"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    gw.stop().await;
}

/// Found by schemathesis (negative data against `maxLength: 512`): the reason's limit was applied
/// after trimming, so 10,000 spaces and a letter were accepted as a 1-byte reason.
#[tokio::test]
async fn the_reason_limit_counts_what_was_sent() {
    let (_dir, _up, gw, admin) = admin_gateway().await;
    let client = reqwest::Client::new();
    let post = |reason: String| {
        let body = serde_json::json!({ "jti": "reason-test", "reason": reason }).to_string();
        client
            .post(format!("{admin}/admin/v1/revocations"))
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    let padded = format!("{}x", " ".repeat(10_000));
    assert_eq!(post(padded).await.unwrap().status(), 400);
    assert_eq!(
        post(format!("{}x", " ".repeat(512)))
            .await
            .unwrap()
            .status(),
        400
    );
    assert_eq!(post("x".repeat(512)).await.unwrap().status(), 201);
    // Trimmed when stored: surrounding spaces within the limit are fine.
    let r = post("  offboarded  ".into()).await.unwrap();
    assert_eq!(
        r.status(),
        200,
        "the same target again only updates the reason"
    );
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["reason"], "offboarded");
    gw.stop().await;
}
