//! A throwaway `redis-server` for tests: a free loopback port, no persistence (`--save ''
//! --appendonly no`), its own temp dir, killed on drop. It can be stopped and started again on
//! the same port, to test what a gateway does while its Redis is away.
//!
//! Fails loudly, never skips: without redis-server the shared-state tests cannot show anything.
//! Also compiled into `tests/gateway` (by `#[path]`), so it only uses std and tempfile.

#![allow(
    dead_code,
    reason = "tests/gateway includes this file by path and uses only part of it"
)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

#[path = "../../../../tests/support/child.rs"]
#[allow(
    clippy::duplicate_mod,
    reason = "the lib's tests include both slapd.rs and redis_server.rs, each with this helper"
)]
mod child;
use child::{free_port, ChildProcess};

const REDIS_SERVER: &str = "redis-server";

pub struct RedisServer {
    dir: tempfile::TempDir,
    pub port: u16,
    child: Option<ChildProcess>,
}

impl RedisServer {
    /// Start a fresh server.
    pub fn start() -> RedisServer {
        let mut s = RedisServer {
            dir: tempfile::tempdir().unwrap(),
            port: free_port(),
            child: None,
        };
        // The free port may be taken by someone else before redis binds it: try fresh ones.
        let mut tries = 0;
        while let Err(log) = s.try_run() {
            tries += 1;
            assert!(tries < 3, "redis-server did not start:\n{log}");
            s.port = free_port();
        }
        s
    }

    /// `redis://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Kill the server (SIGKILL: no goodbye to the clients, like a crash).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.stop();
        }
    }

    /// Start it again on the same port (empty: nothing was persisted).
    pub fn restart(&mut self) {
        self.stop();
        let start = Instant::now();
        // The port can linger briefly after the kill.
        while let Err(log) = self.try_run() {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "redis-server did not restart:\n{log}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Run one command over RESP (inline form: arguments without spaces) and return the raw
    /// reply, for assertions that must not go through the code under test.
    pub fn cmd(&self, args: &[&str]) -> String {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut req = format!("*{}\r\n", args.len());
        for a in args {
            req.push_str(&format!("${}\r\n{a}\r\n", a.len()));
        }
        s.write_all(req.as_bytes()).unwrap();
        let mut buf = vec![0_u8; 64 * 1024];
        let n = s.read(&mut buf).unwrap();
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }

    fn try_run(&mut self) -> Result<(), String> {
        let d = self.dir.path();
        let port = self.port;
        let child = ChildProcess::spawn(
            REDIS_SERVER,
            Command::new(REDIS_SERVER)
                .args(["--port", &port.to_string()])
                .args(["--bind", "127.0.0.1"])
                .args(["--save", "", "--appendonly", "no"])
                .arg("--dir")
                .arg(d),
            &d.join("redis.log"),
            Duration::from_secs(10),
            ": the shared-state tests need a real Redis \
             (apt-get install -y redis-server; scripts/test installs it)",
            || {
                // Listening is not enough: wait until it answers (it may still be loading).
                TcpStream::connect(("127.0.0.1", port)).is_ok_and(|mut s| {
                    let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
                    let mut buf = [0_u8; 64];
                    s.write_all(b"PING\r\n").is_ok()
                        && s.read(&mut buf)
                            .is_ok_and(|n| buf[..n].starts_with(b"+PONG"))
                })
            },
        )?;
        self.child = Some(child);
        Ok(())
    }
}
