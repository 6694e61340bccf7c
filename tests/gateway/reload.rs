//! Whole-config reload (`POST /admin/v1/reload`, `portcullis reload`, SIGHUP) and audit file
//! rotation, against a real gateway and upstream: a reload under load drops nothing, a broken
//! reload keeps the old configuration serving and lists every problem, SIGHUP and the API agree,
//! and rotating the audit file under load loses and duplicates no line.

use std::collections::HashSet;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use crate::support::*;

const KEY: &str = "pcs_reload_test_key_0123456789abcdef0";
const NEW_KEY: &str = "pcs_reload_test_key_rotated_456789abc";
const ACME: &str = "spiffe://corp.example/partner/acme";

/// A gateway config with the partner-keys credential and `routes` (each a [`partner_route`]).
fn config(dir: &Path, pki: &Pki, routes: &[(&str, &str)], up: &Upstream, audit: &str) -> String {
    let mut extra = format!("{ISSUER}{}", partner_keys(dir));
    for (name, prefix) in routes {
        extra.push_str(&partner_route(
            name,
            &format!("path_prefix = \"{prefix}\""),
            ALLOW_PARTNERS,
            &up.url(),
            "",
            "",
        ));
    }
    base_config(dir, "", &pki.tls_section(), &extra).replace(
        &format!(
            "[audit]\nsink = \"{}\"\n",
            dir.join("audit.jsonl").display()
        ),
        &format!(
            "[audit]\nsink = \"{}\"\n{audit}\n",
            dir.join("audit.jsonl").display()
        ),
    )
}

async fn admin_post(admin: std::net::SocketAddr, path: &str) -> (u16, String, Value) {
    let r = reqwest::Client::new()
        .post(format!("http://{admin}{path}"))
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let ct = r
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    (status, ct, r.json().await.unwrap())
}

async fn admin_get(admin: std::net::SocketAddr, path: &str) -> String {
    reqwest::get(format!("http://{admin}{path}"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// Keep-alive clients sending requests with `KEY` until stopped; counts sent and failed
/// (any error, reset, or non-200).
struct Load {
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    fn start(pki: &Pki, addr: std::net::SocketAddr, path: &str, workers: usize) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(AtomicU64::new(0));
        let failed = Arc::new(AtomicU64::new(0));
        let tasks = (0..workers)
            .map(|i| {
                // Half over HTTP/1.1 keep-alive, half over h2: one connection each, kept.
                let client = pki.client(i % 2 == 0);
                let url = format!("https://127.0.0.1:{}{path}", addr.port());
                let (stop, sent, failed) = (stop.clone(), sent.clone(), failed.clone());
                tokio::spawn(async move {
                    while !stop.load(Ordering::Relaxed) {
                        let r = client.get(&url).header("x-api-key", KEY).send().await;
                        sent.fetch_add(1, Ordering::Relaxed);
                        match r {
                            Ok(r) if r.status() == 200 => {
                                let _ = r.bytes().await;
                            }
                            Ok(r) => {
                                eprintln!("load: status {}", r.status());
                                failed.fetch_add(1, Ordering::Relaxed);
                            }
                            Err(e) => {
                                eprintln!("load: {e:?}");
                                failed.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    }
                })
            })
            .collect();
        Load {
            stop,
            sent,
            failed,
            tasks,
        }
    }

    async fn finish(self) -> (u64, u64) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.tasks {
            t.await.unwrap();
        }
        (
            self.sent.load(Ordering::Relaxed),
            self.failed.load(Ordering::Relaxed),
        )
    }
}

type Pinned = hyper::client::conn::http1::SendRequest<http_body_util::Empty<bytes::Bytes>>;

async fn pinned_connection(pki: &Pki, addr: std::net::SocketAddr) -> Pinned {
    let mut cfg = pki.client_config();
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let tls = tokio_rustls::TlsConnector::from(Arc::new(cfg))
        .connect(
            rustls::pki_types::ServerName::try_from("localhost").unwrap(),
            tcp,
        )
        .await
        .unwrap();
    let (sender, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
        .await
        .unwrap();
    tokio::spawn(conn);
    sender
}

/// A request on the pinned connection; panics if the connection was closed.
async fn pinned_get(sender: &mut Pinned, path: &str, key: &str) -> u16 {
    use http_body_util::BodyExt as _;
    sender.ready().await.expect("the connection is still open");
    let req = http::Request::get(path)
        .header("host", "localhost")
        .header("x-api-key", key)
        .body(http_body_util::Empty::new())
        .unwrap();
    let resp = sender.send_request(req).await.unwrap();
    let status = resp.status().as_u16();
    let _ = resp.into_body().collect().await;
    status
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_adding_a_route_and_rotating_keys_under_load_drops_nothing() {
    let pki = Pki::new();
    let up = Upstream::start().await;
    let dir = pki.dir.path();
    write_api_keys(dir, &[("acme", ACME, KEY)]);
    let toml = config(dir, &pki, &[("orders", "/orders/")], &up, "");
    let gw = start_in_process(dir, &toml).await;
    let load = Load::start(&pki, gw.data_addr, "/orders/1", 4);
    // One raw HTTP/1.1 connection, no client-side retry or pooling: it must survive as is.
    let mut pinned = pinned_connection(&pki, gw.data_addr).await;
    assert_eq!(pinned_get(&mut pinned, "/orders/1", KEY).await, 200);
    tokio::time::sleep(Duration::from_millis(300)).await;

    // The new route is not there yet.
    let client = pki.client(true);
    let base = format!("https://127.0.0.1:{}", gw.data_addr.port());
    let r = client
        .get(format!("{base}/invoices/1"))
        .header("x-api-key", KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);

    // Rotate the keys file (a new key beside the old one) and add a route, then reload.
    write_api_keys(dir, &[("acme", ACME, KEY), ("acme-2", ACME, NEW_KEY)]);
    let toml = config(
        dir,
        &pki,
        &[("orders", "/orders/"), ("invoices", "/invoices/")],
        &up,
        "",
    );
    std::fs::write(
        dir.join("portcullis.toml"),
        crate::native_h1::engine_from_env(&toml),
    )
    .unwrap();
    let (status, _, v) = admin_post(gw.admin_addr, "/admin/v1/reload").await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["result"], "ok");
    assert_eq!(v["generation"], 2);
    assert_eq!(v["restart_required"], serde_json::json!([]));

    tokio::time::sleep(Duration::from_millis(300)).await;
    let r = client
        .get(format!("{base}/invoices/7"))
        .header("x-api-key", NEW_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "the new route with the rotated key");
    // Reloading twice more (same file) while the load runs: still nothing dropped.
    for want in [3, 4] {
        let (status, _, v) = admin_post(gw.admin_addr, "/admin/v1/reload").await;
        assert_eq!((status, v["generation"].as_u64()), (200, Some(want)));
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    // The connection opened under generation 1 serves generation 4's new route.
    assert_eq!(pinned_get(&mut pinned, "/invoices/3", NEW_KEY).await, 200);
    let (sent, failed) = load.finish().await;
    assert!(sent > 50, "the load loop ran ({sent} requests)");
    assert_eq!(
        failed, 0,
        "{failed} of {sent} requests failed across the reloads"
    );

    let cfg: Value =
        serde_json::from_str(&admin_get(gw.admin_addr, "/admin/v1/config").await).unwrap();
    assert_eq!(cfg["generation"], 4);
    assert_eq!(cfg["last_reload"]["result"], "ok");
    assert_eq!(cfg["last_reload"]["trigger"], "api");
    let routes: Vec<&str> = cfg["config"]["routes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(routes, ["orders", "invoices"]);
    let metrics = admin_get(gw.admin_addr, "/metrics").await;
    assert!(
        metrics.contains("portcullis_config_reload_total{result=\"ok\"} 3"),
        "{metrics}"
    );
    assert!(
        metrics.contains("portcullis_config_generation 4"),
        "{metrics}"
    );
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_reload_keeps_serving_and_reports_every_problem() {
    let pki = Pki::new();
    let up = Upstream::start().await;
    let dir = pki.dir.path();
    write_api_keys(dir, &[("acme", ACME, KEY)]);
    let good = config(dir, &pki, &[("orders", "/orders/")], &up, "");
    let gw = start_in_process(dir, &good).await;
    // Two problems at once: a route accepting an unknown credential, and a bad rate.
    let broken = good.replace("accept = [\"partner-keys\"]", "accept = [\"nobody\"]")
        + "[routes.limits]\nrate = \"lots\"\n";
    std::fs::write(
        dir.join("portcullis.toml"),
        crate::native_h1::engine_from_env(&broken),
    )
    .unwrap();
    let (status, ct, v) = admin_post(gw.admin_addr, "/admin/v1/reload").await;
    assert_eq!(status, 422, "{v}");
    assert_eq!(ct, "application/problem+json");
    assert_eq!(v["type"], "urn:portcullis:invalid-config");
    assert_eq!(v["generation"], 1);
    let problems: Vec<&str> = v["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap())
        .collect();
    assert!(problems.len() >= 2, "{problems:?}");
    assert!(
        problems.iter().any(|p| p.contains("nobody")),
        "{problems:?}"
    );
    assert!(problems.iter().any(|p| p.contains("rate")), "{problems:?}");

    // The old configuration serves on.
    let r = pki
        .client(true)
        .get(format!(
            "https://127.0.0.1:{}/orders/1",
            gw.data_addr.port()
        ))
        .header("x-api-key", KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    // The CLI prints every problem and fails.
    let out = std::process::Command::new(bin())
        .args(["reload", "--admin"])
        .arg(format!("http://{}", gw.admin_addr))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("reload refused"), "{stderr}");
    for p in &problems {
        assert!(stderr.contains(p), "{p} missing from {stderr}");
    }
    // A file that is not even TOML, and one that vanished: refused too, never a crash.
    std::fs::write(dir.join("portcullis.toml"), "[[[ not toml").unwrap();
    let (status, _, v) = admin_post(gw.admin_addr, "/admin/v1/reload").await;
    assert_eq!(status, 422, "{v}");
    std::fs::remove_file(dir.join("portcullis.toml")).unwrap();
    let (status, _, v) = admin_post(gw.admin_addr, "/admin/v1/reload").await;
    assert_eq!(status, 422, "{v}");

    // Fixed again: the CLI reports the new generation.
    std::fs::write(
        dir.join("portcullis.toml"),
        crate::native_h1::engine_from_env(&good),
    )
    .unwrap();
    let out = std::process::Command::new(bin())
        .args(["reload", "--admin"])
        .arg(format!("http://{}", gw.admin_addr))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(stdout.contains("generation 2"), "{stdout}");

    let cfg: Value =
        serde_json::from_str(&admin_get(gw.admin_addr, "/admin/v1/config").await).unwrap();
    assert_eq!(cfg["generation"], 2);
    let metrics = admin_get(gw.admin_addr, "/metrics").await;
    assert!(
        metrics.contains("portcullis_config_reload_total{result=\"error\"} 4"),
        "{metrics}"
    );
    // Only POST reloads (a GET, e.g. from a page's <img>, does nothing); a form post is refused.
    let r = reqwest::get(format!("http://{}/admin/v1/reload", gw.admin_addr))
        .await
        .unwrap();
    assert_eq!(r.status(), 405);
    let r = reqwest::Client::new()
        .post(format!("http://{}/admin/v1/reload", gw.admin_addr))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("a=b")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 415);
    gw.stop().await;
}

#[tokio::test]
async fn sighup_and_the_api_agree_and_a_listen_change_needs_a_restart() {
    let pki = Pki::new();
    let up = Upstream::start().await;
    let dir = pki.dir.path();
    write_api_keys(dir, &[("acme", ACME, KEY)]);
    let toml = config(dir, &pki, &[("orders", "/orders/")], &up, "");
    portcullis::server::install_crypto();
    let gw = Proc::spawn(dir, &toml);
    let client = pki.client(true);
    let base = format!("https://127.0.0.1:{}", gw.data_addr.port());

    let with_route = config(
        dir,
        &pki,
        &[("orders", "/orders/"), ("invoices", "/invoices/")],
        &up,
        "",
    );
    std::fs::write(
        dir.join("portcullis.toml"),
        crate::native_h1::engine_from_env(&with_route),
    )
    .unwrap();
    gw.signal("-HUP");
    let mut cfg = Value::Null;
    for _ in 0..100 {
        cfg = serde_json::from_str(&admin_get(gw.admin_addr, "/admin/v1/config").await).unwrap();
        if cfg["generation"] == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(cfg["generation"], 2, "{cfg}");
    assert_eq!(cfg["last_reload"]["trigger"], "sighup", "{cfg}");
    let r = client
        .get(format!("{base}/invoices/1"))
        .header("x-api-key", KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "the route SIGHUP added serves");

    // The API continues the same count; a moved listener is reported, not applied.
    let moved = with_route.replacen("addr = \"127.0.0.1:0\"", "addr = \"127.0.0.1:1\"", 1);
    std::fs::write(
        dir.join("portcullis.toml"),
        crate::native_h1::engine_from_env(&moved),
    )
    .unwrap();
    let (status, _, v) = admin_post(gw.admin_addr, "/admin/v1/reload").await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["generation"], 3);
    let restart = v["restart_required"].as_array().unwrap();
    assert!(
        restart
            .iter()
            .any(|r| r.as_str().unwrap().starts_with("[listen] addr changed")),
        "{v}"
    );
    let r = client
        .get(format!("{base}/orders/1"))
        .header("x-api-key", KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "still on the address it started with");
    // A broken file on SIGHUP: logged, the process lives on, the generation stays.
    std::fs::write(dir.join("portcullis.toml"), "version = 1\n[listen]\n").unwrap();
    gw.signal("-HUP");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let cfg: Value =
        serde_json::from_str(&admin_get(gw.admin_addr, "/admin/v1/config").await).unwrap();
    assert_eq!(cfg["generation"], 3);
    assert_eq!(cfg["last_reload"]["result"], "error", "{cfg}");
    let log = gw.stderr.lock().unwrap().join("\n");
    assert!(log.contains("configuration reload refused"), "{log}");
}

/// Every audit line in `files`: (count, distinct request ids).
fn audit_ids(files: &[std::path::PathBuf]) -> (usize, HashSet<String>) {
    let mut n = 0;
    let mut ids = HashSet::new();
    for f in files {
        let text = std::fs::read_to_string(f).unwrap_or_default();
        for line in text.lines() {
            let v: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
            n += 1;
            ids.insert(v["request_id"].as_str().unwrap().to_owned());
        }
    }
    (n, ids)
}

async fn audit_settles(files: &[std::path::PathBuf], want: u64) -> (usize, HashSet<String>) {
    for _ in 0..100 {
        let got = audit_ids(files);
        if got.0 as u64 >= want {
            return got;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    audit_ids(files)
}

#[tokio::test]
async fn audit_file_renamed_and_reopened_on_sighup_under_load_loses_and_duplicates_nothing() {
    let pki = Pki::new();
    let up = Upstream::start().await;
    let dir = pki.dir.path();
    write_api_keys(dir, &[("acme", ACME, KEY)]);
    let toml = config(dir, &pki, &[("orders", "/orders/")], &up, "");
    portcullis::server::install_crypto();
    let gw = Proc::spawn(dir, &toml);
    let load = Load::start(&pki, gw.data_addr, "/orders/1", 4);
    let audit = dir.join("audit.jsonl");
    let mut files = vec![audit.clone()];
    // logrotate's `create` mode: rename, then SIGHUP (postrotate), three times under load.
    for n in 1..=3 {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let rotated = dir.join(format!("audit.jsonl.r{n}"));
        std::fs::rename(&audit, &rotated).unwrap();
        files.push(rotated);
        gw.signal("-HUP");
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (sent, failed) = load.finish().await;
    assert_eq!(failed, 0);
    let (lines, ids) = audit_settles(&files, sent).await;
    assert_eq!(
        lines as u64, sent,
        "one audit line per request across the files"
    );
    assert_eq!(ids.len(), lines, "no line written twice");
    for f in &files[1..] {
        let (n, _) = audit_ids(std::slice::from_ref(f));
        assert!(n > 0, "{} got lines", f.display());
    }
    let (n, _) = audit_ids(std::slice::from_ref(&audit));
    assert!(
        n > 0,
        "the reopened file gets the lines after the last rotation"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn built_in_rotation_by_size_under_load_loses_and_duplicates_nothing() {
    let pki = Pki::new();
    let up = Upstream::start().await;
    let dir = pki.dir.path();
    write_api_keys(dir, &[("acme", ACME, KEY)]);
    // Small files and room for all of them: every line must be found again.
    let toml = config(
        dir,
        &pki,
        &[("orders", "/orders/")],
        &up,
        "max_size = \"16KiB\"\nmax_files = 1000",
    );
    let gw = start_in_process(dir, &toml).await;
    let load = Load::start(&pki, gw.data_addr, "/orders/1", 4);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (sent, failed) = load.finish().await;
    assert_eq!(failed, 0);
    gw.stop().await;
    let mut files = vec![dir.join("audit.jsonl")];
    files.extend((1..=1000).map(|n| dir.join(format!("audit.jsonl.{n}"))));
    let rotated = files.iter().filter(|f| f.exists()).count();
    assert!(rotated > 3, "rotated into {rotated} files");
    let (lines, ids) = audit_ids(&files);
    assert_eq!(
        lines as u64, sent,
        "one audit line per request across the files"
    );
    assert_eq!(ids.len(), lines, "no line written twice");
    for f in files.iter().skip(1).filter(|f| f.exists()) {
        let len = std::fs::metadata(f).unwrap().len();
        assert!(
            (16 * 1024..16 * 1024 + 4096).contains(&len),
            "{} is {len} bytes",
            f.display()
        );
    }
}

#[tokio::test]
async fn built_in_rotation_keeps_max_files() {
    let pki = Pki::new();
    let up = Upstream::start().await;
    let dir = pki.dir.path();
    write_api_keys(dir, &[("acme", ACME, KEY)]);
    let toml = config(
        dir,
        &pki,
        &[("orders", "/orders/")],
        &up,
        "max_size = \"2KiB\"\nmax_files = 2",
    );
    let gw = start_in_process(dir, &toml).await;
    let client = pki.client(true);
    for _ in 0..60 {
        let r = client
            .get(format!(
                "https://127.0.0.1:{}/orders/1",
                gw.data_addr.port()
            ))
            .header("x-api-key", KEY)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    gw.stop().await;
    assert!(dir.join("audit.jsonl.1").exists());
    assert!(dir.join("audit.jsonl.2").exists());
    assert!(
        !dir.join("audit.jsonl.3").exists(),
        "beyond max_files is deleted"
    );
}

#[test]
fn audit_rotation_and_retention_settings_are_checked() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let check = |extra: &str| -> Vec<String> {
        let text = format!(
            "version = 1\n[listen]\naddr = \"127.0.0.1:0\"\n[admin]\naddr = \"127.0.0.1:0\"\n{extra}"
        );
        std::fs::write(d.join("p.toml"), text).unwrap();
        match portcullis::config::load(&d.join("p.toml")) {
            Ok(_) => Vec::new(),
            Err(e) => {
                e.0.iter()
                    .map(|p| format!("{}: {}", p.key, p.message))
                    .collect()
            }
        }
    };
    let ok = check("[audit]\nsink = \"a.jsonl\"\nmax_size = \"100MiB\"\nmax_files = 3\n[state]\nretention = \"30d\"");
    assert!(ok.is_empty(), "{ok:?}");
    let p = check("[audit]\nmax_size = \"1MiB\"");
    assert!(
        p.iter()
            .any(|m| m.starts_with("audit.max_size: rotation needs a file sink")),
        "{p:?}"
    );
    let p = check("[audit]\nsink = \"a.jsonl\"\nmax_files = 3");
    assert!(
        p.iter()
            .any(|m| m.starts_with("audit.max_files: only meaningful")),
        "{p:?}"
    );
    let p = check("[audit]\nsink = \"a.jsonl\"\nmax_size = \"0\"\nmax_files = 0");
    assert!(p.iter().any(|m| m.starts_with("audit.max_size:")), "{p:?}");
    assert!(p.iter().any(|m| m.starts_with("audit.max_files:")), "{p:?}");
    let p = check("[state]\nretention = \"soon\"");
    assert!(p.iter().any(|m| m.starts_with("state.retention:")), "{p:?}");
    // Shorter than a plan's 14-day window: readiness would be computed on deleted rows.
    write_partner_plan(d);
    write_api_keys(d, &[("acme", ACME, KEY)]);
    let plan = format!(
        "{}[migration]\nplans_dir = \"{}/plans\"\n",
        partner_keys(d),
        d.display()
    );
    assert!(check(&format!("{plan}[state]\nretention = \"14d\"")).is_empty());
    let p = check(&format!("{plan}[state]\nretention = \"7d\""));
    assert!(
        p.iter()
            .any(|m| m.starts_with("state.retention: 7 days is shorter than plan partner-api")),
        "{p:?}"
    );
}

/// `[reload] watch` with the config mounted the way Kubernetes mounts a ConfigMap: the file is
/// a symlink through `..data`, and an update swaps `..data` atomically to a new directory.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_follows_a_configmap_symlink_swap_and_the_plans_directory() {
    use std::os::unix::fs::symlink;
    let pki = Pki::new();
    let up = Upstream::start().await;
    let dir = pki.dir.path();
    write_api_keys(dir, &[("acme", ACME, KEY)]);
    std::fs::create_dir_all(dir.join("plans")).unwrap();
    let mount = dir.join("configmap");
    std::fs::create_dir_all(mount.join("..v1")).unwrap();
    let watch = format!(
        "[reload]\nwatch = \"1s\"\n[migration]\nplans_dir = \"{}/plans\"\n",
        dir.display()
    );
    let v1 = config(dir, &pki, &[("orders", "/orders/")], &up, "") + &watch;
    std::fs::write(mount.join("..v1/portcullis.toml"), &v1).unwrap();
    symlink("..v1", mount.join("..data")).unwrap();
    symlink("..data/portcullis.toml", mount.join("portcullis.toml")).unwrap();
    portcullis::server::install_crypto();
    let cfg = portcullis::config::load(&mount.join("portcullis.toml")).unwrap();
    let gw = portcullis::server::start(cfg, portcullis::server::Options::default())
        .await
        .unwrap();
    let generation = || async {
        let v: Value =
            serde_json::from_str(&admin_get(gw.admin_addr, "/admin/v1/config").await).unwrap();
        v
    };
    let wait_for = |want: u64| async move {
        let mut last = Value::Null;
        for _ in 0..60 {
            last = generation().await;
            if last["generation"] == want {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        last
    };
    // A swap to identical content is no change.
    std::fs::create_dir_all(mount.join("..v2")).unwrap();
    std::fs::write(mount.join("..v2/portcullis.toml"), &v1).unwrap();
    symlink("..v2", mount.join("..data_tmp")).unwrap();
    std::fs::rename(mount.join("..data_tmp"), mount.join("..data")).unwrap();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(generation().await["generation"], 1);

    // The real update: a new route.
    let v3 = config(
        dir,
        &pki,
        &[("orders", "/orders/"), ("invoices", "/invoices/")],
        &up,
        "",
    ) + &watch;
    std::fs::create_dir_all(mount.join("..v3")).unwrap();
    std::fs::write(mount.join("..v3/portcullis.toml"), &v3).unwrap();
    symlink("..v3", mount.join("..data_tmp")).unwrap();
    std::fs::rename(mount.join("..data_tmp"), mount.join("..data")).unwrap();
    let v = wait_for(2).await;
    assert_eq!(v["generation"], 2, "{v}");
    assert_eq!(v["last_reload"]["trigger"], "watch");
    let r = pki
        .client(true)
        .get(format!(
            "https://127.0.0.1:{}/invoices/1",
            gw.data_addr.port()
        ))
        .header("x-api-key", KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    // A plan dropped into plans_dir is picked up as well.
    write_partner_plan(dir);
    let v = wait_for(3).await;
    assert_eq!(v["generation"], 3, "{v}");
    assert_eq!(v["config"]["plans"], serde_json::json!(["partner-api"]));
    gw.stop().await;
}

/// Reloads sent at once (API calls racing a SIGHUP, two operators) run one at a time: each gets
/// its own generation, and the last one is what serves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_reloads_are_serialized_and_numbered_once() {
    let pki = Pki::new();
    let up = Upstream::start().await;
    let dir = pki.dir.path();
    write_api_keys(dir, &[("acme", ACME, KEY)]);
    let gw = start_in_process(dir, &config(dir, &pki, &[("orders", "/orders/")], &up, "")).await;
    let calls: Vec<_> = (0..6)
        .map(|_| {
            let admin = gw.admin_addr;
            tokio::spawn(async move { admin_post(admin, "/admin/v1/reload").await })
        })
        .collect();
    let mut generations = Vec::new();
    for c in calls {
        let (status, _, v) = c.await.unwrap();
        assert_eq!(status, 200, "{v}");
        generations.push(v["generation"].as_u64().unwrap());
    }
    generations.sort_unstable();
    assert_eq!(generations, [2, 3, 4, 5, 6, 7]);
    let cfg: Value =
        serde_json::from_str(&admin_get(gw.admin_addr, "/admin/v1/config").await).unwrap();
    assert_eq!(cfg["generation"], 7);
    gw.stop().await;
}

/// A reload is not a way to reset a rate limit: an unchanged route keeps its spent budget; a
/// route whose limits changed starts from the new ones. A key removed from the keys file is
/// refused from the reload on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limiter_state_survives_a_reload_of_an_unchanged_route() {
    let pki = Pki::new();
    let up = Upstream::start().await;
    let dir = pki.dir.path();
    write_api_keys(dir, &[("acme", ACME, KEY)]);
    let limited = |rate: &str| {
        let mut extra = format!("{ISSUER}{}", partner_keys(dir));
        extra.push_str(&partner_route(
            "orders",
            "path_prefix = \"/orders/\"",
            ALLOW_PARTNERS,
            &up.url(),
            "",
            &format!("[routes.limits]\nrate = \"{rate}\"\n"),
        ));
        base_config(dir, "", &pki.tls_section(), &extra)
    };
    let gw = start_in_process(dir, &limited("3/m")).await;
    let client = pki.client(true);
    let get = |key: &'static str| {
        let client = client.clone();
        let url = format!("https://127.0.0.1:{}/orders/1", gw.data_addr.port());
        async move {
            client
                .get(url)
                .header("x-api-key", key)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    for _ in 0..3 {
        assert_eq!(get(KEY).await, 200);
    }
    assert_eq!(get(KEY).await, 429);
    let (status, _, v) = admin_post(gw.admin_addr, "/admin/v1/reload").await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(get(KEY).await, 429, "the spent budget survived the reload");

    // Changed limits: a fresh limiter with the new rate. The old key is rotated out at once.
    write_api_keys(dir, &[("acme-2", ACME, NEW_KEY)]);
    std::fs::write(
        dir.join("portcullis.toml"),
        crate::native_h1::engine_from_env(&limited("100/m")),
    )
    .unwrap();
    let (status, _, v) = admin_post(gw.admin_addr, "/admin/v1/reload").await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(get(NEW_KEY).await, 200);
    assert_eq!(
        get(KEY).await,
        401,
        "a key removed by the reload is refused"
    );
    gw.stop().await;
}
