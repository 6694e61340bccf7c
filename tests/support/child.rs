//! A child process for tests (slapd, redis-server): free loopback ports, wait until ready, killed
//! on drop, its log shown when it fails to start and when a test panics while it runs.
//!
//! One file shared by path: `src/authn/ldap/tests/slapd.rs` and
//! `src/state/redis/tests/redis_server.rs` include it (`#[path]`), and they are themselves
//! included by `tests/gateway` and `benches/ldap.rs`; so it only uses std.

#![allow(
    dead_code,
    reason = "each includer uses a different part (and `#[expect]` would fail for the others)"
)]

use std::fs;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A loopback port nobody listens on right now (someone may take it before the child binds it:
/// callers retry with fresh ones).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A running child, its stdout and stderr appended to a log file; killed (SIGKILL) on drop.
pub struct ChildProcess {
    name: String,
    log: PathBuf,
    child: Option<Child>,
}

impl ChildProcess {
    /// Spawn `cmd` (stdin closed, stdout and stderr appended to `log`) and poll `ready` every
    /// 5 ms until it says yes. `Err` carries the log when the child exits first or is not ready
    /// within `timeout` (it is killed then). A child that cannot be spawned at all panics, with
    /// `hint` (how to install it): the tests fail loudly, they never skip.
    pub fn spawn(
        name: &str,
        cmd: &mut Command,
        log: &Path,
        timeout: Duration,
        hint: &str,
        mut ready: impl FnMut() -> bool,
    ) -> Result<ChildProcess, String> {
        let out = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .unwrap();
        let child = cmd
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}{hint}"));
        let mut p = ChildProcess {
            name: name.to_owned(),
            log: log.to_owned(),
            child: Some(child),
        };
        let start = Instant::now();
        loop {
            if ready() {
                return Ok(p);
            }
            if let Some(status) = p.child.as_mut().and_then(|c| c.try_wait().unwrap()) {
                p.child = None;
                return Err(format!("{name} exited ({status}):\n{}", p.log()));
            }
            if start.elapsed() > timeout {
                p.stop();
                return Err(format!(
                    "{name} was not ready within {}s:\n{}",
                    timeout.as_secs(),
                    p.log()
                ));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Everything the child wrote so far.
    pub fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Kill the child (SIGKILL: no goodbye to its clients, like a crash) and reap it.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for ChildProcess {
    fn drop(&mut self) {
        if std::thread::panicking() && self.child.is_some() {
            let log = self.log();
            let lines: Vec<&str> = log.lines().collect();
            let tail = lines
                .get(lines.len().saturating_sub(40)..)
                .unwrap_or_default();
            eprintln!(
                "--- last lines of {}'s log ({}):\n{}",
                self.name,
                self.log.display(),
                tail.join("\n")
            );
        }
        self.stop();
    }
}
