//! `[state] url = "rediss://…"` against a real `redis-server --tls-port` that requires a client
//! certificate and a password: with the right CA, client certificate and `password_file` the
//! gateway serves and writes its usage to Redis; with another CA, without the client
//! certificate, or with a wrong password it cannot reach its state and fails closed (503, and
//! `/readyz` says not ready).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use portcullis::devcert::DevCa;

use crate::support::*;

#[path = "../support/child.rs"]
#[expect(
    clippy::duplicate_mod,
    reason = "shared_state.rs includes the same helper through redis_server.rs"
)]
mod child;
use child::{free_port, ChildProcess};

const KEY: &str = "pcs_redis_tls_key_0123456789abcdef012";
const ACME: &str = "spiffe://corp.example/partner/acme";
const PASSWORD: &str = "s3cret-redis-pass";

/// A redis-server speaking TLS on `tls_port` (client certificates required, signed by its CA)
/// and plain RESP on `port` for the test's own inspection; both need the password.
struct TlsRedis {
    port: u16,
    tls_port: u16,
    _child: ChildProcess,
}

impl TlsRedis {
    fn start(ca: &DevCa, dir: &Path) -> TlsRedis {
        let server = ca.server(&["localhost", "127.0.0.1"]).unwrap();
        std::fs::write(dir.join("redis.pem"), &server.cert_pem).unwrap();
        std::fs::write(dir.join("redis.key"), &server.key_pem).unwrap();
        std::fs::write(dir.join("redis-ca.pem"), ca.cert_pem()).unwrap();
        let mut tries = 0;
        loop {
            let (port, tls_port) = (free_port(), free_port());
            let ready = move || {
                TcpStream::connect(("127.0.0.1", port)).is_ok_and(|mut s| {
                    let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
                    let mut buf = [0_u8; 64];
                    // Without AUTH it answers -NOAUTH: it is up.
                    s.write_all(b"PING\r\n").is_ok()
                        && s.read(&mut buf).is_ok_and(|n| {
                            buf[..n].starts_with(b"+PONG") || buf[..n].starts_with(b"-NOAUTH")
                        })
                })
            };
            let started = ChildProcess::spawn(
                "redis-server",
                Command::new("redis-server")
                    .args(["--port", &port.to_string()])
                    .args(["--tls-port", &tls_port.to_string()])
                    .args(["--bind", "127.0.0.1"])
                    .args(["--save", "", "--appendonly", "no"])
                    .args(["--requirepass", PASSWORD])
                    .arg("--tls-cert-file")
                    .arg(dir.join("redis.pem"))
                    .arg("--tls-key-file")
                    .arg(dir.join("redis.key"))
                    .arg("--tls-ca-cert-file")
                    .arg(dir.join("redis-ca.pem"))
                    .args(["--tls-auth-clients", "yes"])
                    .arg("--dir")
                    .arg(dir),
                &dir.join("redis.log"),
                Duration::from_secs(10),
                ": the rediss:// tests need redis-server built with TLS \
                 (apt-get install -y redis-server; scripts/test installs it)",
                ready,
            );
            match started {
                Ok(child) => {
                    return TlsRedis {
                        port,
                        tls_port,
                        _child: child,
                    }
                }
                Err(log) => {
                    tries += 1;
                    assert!(tries < 3, "redis-server --tls-port did not start:\n{log}");
                }
            }
        }
    }

    /// Keys under `portcullis:` (over the plain port, not through the code under test).
    fn keys(&self) -> String {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let cmd = format!("AUTH {PASSWORD}\r\nKEYS portcullis:*\r\n");
        s.write_all(cmd.as_bytes()).unwrap();
        std::thread::sleep(Duration::from_millis(100));
        let mut buf = vec![0_u8; 64 * 1024];
        let n = s.read(&mut buf).unwrap();
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }
}

/// A gateway whose `[state]` is the TLS Redis, with `state` (the `[state]` keys after `url`).
async fn gateway(
    pki: &Pki,
    up: &Upstream,
    redis: &TlsRedis,
    state: &str,
) -> portcullis::server::Running {
    let dir = pki.dir.path();
    write_api_keys(dir, &[("acme", ACME, KEY)]);
    let extra = format!(
        "{ISSUER}[state]\nbackend = \"redis\"\nurl = \"rediss://127.0.0.1:{}\"\nflush_every = \"200ms\"\n{state}\n{}{}",
        redis.tls_port,
        partner_keys(dir),
        partner_route(
            "orders",
            "path_prefix = \"/orders/\"",
            ALLOW_PARTNERS,
            &up.url(),
            "",
            ""
        ),
    );
    start_in_process(dir, &base_config(dir, "", &pki.tls_section(), &extra)).await
}

async fn status(pki: &Pki, gw: &portcullis::server::Running) -> (u16, u16) {
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
    let ready = reqwest::get(format!("http://{}/readyz", gw.admin_addr))
        .await
        .unwrap()
        .status()
        .as_u16();
    (r.status().as_u16(), ready)
}

/// Poll until the gateway's request and readiness statuses are `want` (the store connects in
/// the background), or give up after 5 s and return the last ones.
async fn settle(pki: &Pki, gw: &portcullis::server::Running, want: (u16, u16)) -> (u16, u16) {
    let mut last = (0, 0);
    for _ in 0..50 {
        last = status(pki, gw).await;
        if last == want {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    last
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rediss_with_ca_client_certificate_and_password_file() {
    let pki = Pki::new();
    let up = Upstream::start().await;
    let dir = pki.dir.path();
    let redis_ca = DevCa::new("redis CA").unwrap();
    let redis = TlsRedis::start(&redis_ca, dir);
    let client = redis_ca.svid("spiffe://corp.example/portcullis").unwrap();
    std::fs::write(dir.join("client.pem"), &client.cert_pem).unwrap();
    std::fs::write(dir.join("client.key"), &client.key_pem).unwrap();
    std::fs::write(dir.join("redis.pass"), format!("{PASSWORD}\n")).unwrap();
    let files = |ca: &str, cert: bool, pass: &str| {
        let mut s = format!("ca = \"{}\"\n", dir.join(ca).display());
        if cert {
            s.push_str(&format!(
                "client_cert = \"{}\"\nclient_key = \"{}\"\n",
                dir.join("client.pem").display(),
                dir.join("client.key").display()
            ));
        }
        s.push_str(&format!(
            "password_file = \"{}\"\n",
            dir.join(pass).display()
        ));
        s
    };

    let gw = gateway(
        &pki,
        &up,
        &redis,
        &files("redis-ca.pem", true, "redis.pass"),
    )
    .await;
    assert_eq!(settle(&pki, &gw, (200, 200)).await, (200, 200));
    // Usage reached Redis over TLS.
    let mut keys = String::new();
    for _ in 0..50 {
        keys = redis.keys();
        if keys.contains("portcullis:usage:") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(keys.contains("portcullis:usage:"), "{keys}");
    gw.stop().await;

    // Another CA: Redis's certificate is not trusted, the gateway fails closed.
    let other = DevCa::new("some other CA").unwrap();
    std::fs::write(dir.join("other-ca.pem"), other.cert_pem()).unwrap();
    let gw = gateway(
        &pki,
        &up,
        &redis,
        &files("other-ca.pem", true, "redis.pass"),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(settle(&pki, &gw, (503, 503)).await, (503, 503));
    gw.stop().await;

    // No client certificate: Redis refuses the handshake.
    let gw = gateway(
        &pki,
        &up,
        &redis,
        &files("redis-ca.pem", false, "redis.pass"),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(settle(&pki, &gw, (503, 503)).await, (503, 503));
    gw.stop().await;

    // A wrong password: refused by AUTH.
    std::fs::write(dir.join("wrong.pass"), "not-the-password\n").unwrap();
    let gw = gateway(
        &pki,
        &up,
        &redis,
        &files("redis-ca.pem", true, "wrong.pass"),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(settle(&pki, &gw, (503, 503)).await, (503, 503));
    gw.stop().await;
}

#[test]
fn rediss_settings_are_checked() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("ca.pem"), "x").unwrap();
    let check = |state: &str| -> Vec<String> {
        let text = format!(
            "version = 1\n[listen]\naddr = \"127.0.0.1:0\"\n[admin]\naddr = \"127.0.0.1:0\"\n[state]\n{state}"
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
    let ca = d.join("ca.pem");
    assert!(check(&format!(
        "backend = \"redis\"\nurl = \"rediss://r:6380\"\nca = \"{}\"",
        ca.display()
    ))
    .is_empty());
    // TLS files with a plain redis:// URL would silently go unused: refused.
    let p = check(&format!(
        "backend = \"redis\"\nurl = \"redis://r:6379\"\nca = \"{}\"",
        ca.display()
    ));
    assert!(
        p.iter()
            .any(|m| m.starts_with("state.ca: only meaningful with a rediss://")),
        "{p:?}"
    );
    // `#insecure` would turn certificate checks off.
    let p = check("backend = \"redis\"\nurl = \"rediss://r:6380/#insecure\"");
    assert!(p.iter().any(|m| m.starts_with("state.url:")), "{p:?}");
    // Half a client identity, a missing file, a password twice.
    let p = check(&format!(
        "backend = \"redis\"\nurl = \"rediss://u:pw@r:6380\"\nclient_cert = \"{}\"\npassword_file = \"{}\"\nca = \"{}/nope.pem\"",
        ca.display(),
        ca.display(),
        d.display()
    ));
    assert!(
        p.iter()
            .any(|m| m.contains("client_cert and client_key go together")),
        "{p:?}"
    );
    assert!(
        p.iter()
            .any(|m| m.starts_with("state.password_file: the url already carries")),
        "{p:?}"
    );
    assert!(p.iter().any(|m| m.starts_with("state.ca: file")), "{p:?}");
    assert!(!p.join("\n").contains("u:pw@"), "{p:?}");
    // Embedded: none of these apply.
    let p = check(&format!("password_file = \"{}\"", ca.display()));
    assert!(
        p.iter()
            .any(|m| m.starts_with("state.password_file: only meaningful")),
        "{p:?}"
    );
}
