//! A throwaway `redis-server` for tests: a free loopback port, no persistence (`--save ''
//! --appendonly no`), its own temp dir, killed on drop. It can be stopped and started again on
//! the same port, to test what a gateway does while its Redis is away.
//!
//! Fails loudly, never skips: without redis-server the shared-state tests cannot show anything.
//! Also compiled into `tests/gateway` (by `#[path]`), so it only uses std and tempfile.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::fs;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const REDIS_SERVER: &str = "redis-server";

pub struct RedisServer {
    dir: tempfile::TempDir,
    pub port: u16,
    child: Option<Child>,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
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
            let _ = c.kill();
            let _ = c.wait();
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

    fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("redis.log")).unwrap_or_default()
    }

    fn try_run(&mut self) -> Result<(), String> {
        let d = self.dir.path();
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(d.join("redis.log"))
            .unwrap();
        let mut child = Command::new(REDIS_SERVER)
            .args(["--port", &self.port.to_string()])
            .args(["--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(d)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start {REDIS_SERVER}: {e}: the shared-state tests need a real Redis \
                     (apt-get install -y redis-server; scripts/test installs it)"
                )
            });
        let start = Instant::now();
        loop {
            if let Ok(mut s) = TcpStream::connect(("127.0.0.1", self.port)) {
                // Listening is not enough: wait until it answers (it may still be loading).
                let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
                let mut buf = [0_u8; 64];
                if s.write_all(b"PING\r\n").is_ok()
                    && s.read(&mut buf)
                        .is_ok_and(|n| buf[..n].starts_with(b"+PONG"))
                {
                    self.child = Some(child);
                    return Ok(());
                }
            }
            if let Some(status) = child.try_wait().unwrap() {
                return Err(format!("redis-server exited ({status}):\n{}", self.log()));
            }
            if start.elapsed() > Duration::from_secs(10) {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "redis-server did not answer within 10s:\n{}",
                    self.log()
                ));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}
