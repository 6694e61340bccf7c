//! systemd's readiness protocol (`Type=notify`, `WatchdogSec=`), written out rather than pulled
//! in as a crate: one datagram per state change to the Unix socket named by `NOTIFY_SOCKET`
//! (a path, or `@name` in Linux's abstract namespace). See sd_notify(3) and docs/deploy.md.
//!
//! `serve` sends `READY=1` once both listeners are bound, `WATCHDOG=1` every half
//! `WATCHDOG_USEC` while the runtime schedules tasks, and `STOPPING=1` when a shutdown signal
//! arrives, before draining. Without `NOTIFY_SOCKET` (not under systemd) nothing is sent.
//! Failing to notify never stops the gateway: it is logged, and systemd's own timeouts decide.

use std::io;
use std::os::unix::net::UnixDatagram;
use std::time::Duration;

/// Where `NOTIFY_SOCKET` points.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A socket file.
    Path(std::path::PathBuf),
    /// `@name`: Linux's abstract namespace (systemd uses it for some services).
    Abstract(Vec<u8>),
}

impl Target {
    /// Parse `NOTIFY_SOCKET`: an absolute path or `@name`; anything else is not a socket
    /// systemd would hand out (a relative path would depend on the working directory).
    pub fn parse(v: &str) -> Option<Target> {
        if let Some(name) = v.strip_prefix('@') {
            return (!name.is_empty()).then(|| Target::Abstract(name.as_bytes().to_vec()));
        }
        v.starts_with('/')
            .then(|| Target::Path(std::path::PathBuf::from(v)))
    }
}

/// The interval systemd expects `WATCHDOG=1` within, from `WATCHDOG_USEC` and `WATCHDOG_PID`:
/// `None` when unset, zero, unparsable, or meant for another process (`WATCHDOG_PID` names a
/// different pid, as when the variable leaked from a parent).
pub fn watchdog_interval(usec: Option<&str>, pid: Option<&str>, my_pid: u32) -> Option<Duration> {
    if let Some(pid) = pid {
        if pid.trim().parse::<u32>().ok() != Some(my_pid) {
            return None;
        }
    }
    let usec: u64 = usec?.trim().parse().ok()?;
    (usec > 0).then(|| Duration::from_micros(usec))
}

/// A connection to systemd's notification socket.
#[derive(Debug)]
pub struct Notifier {
    sock: UnixDatagram,
    target: Target,
}

impl Notifier {
    /// For `target`: an unbound datagram socket that sends to it.
    pub fn new(target: Target) -> io::Result<Notifier> {
        let sock = UnixDatagram::unbound()?;
        // Never block a runtime thread on a notification: a reader that stops reading (a full
        // socket buffer) costs a dropped `WATCHDOG=1`, not a stuck worker (it once hung the
        // shutdown it was about to announce).
        sock.set_nonblocking(true)?;
        Ok(Notifier { sock, target })
    }

    /// From `NOTIFY_SOCKET`; `None` when it is unset (not started by systemd). A value that is
    /// set but unusable is logged: the unit asked for notifications the gateway cannot send.
    pub fn from_env() -> Option<Notifier> {
        let raw = std::env::var("NOTIFY_SOCKET").ok()?;
        let Some(target) = Target::parse(&raw) else {
            tracing::warn!(NOTIFY_SOCKET = %raw, "not a socket path or @name: systemd is not notified");
            return None;
        };
        match Notifier::new(target) {
            Ok(n) => Some(n),
            Err(e) => {
                tracing::warn!("systemd notification socket: {e}");
                None
            }
        }
    }

    /// Send one notification (`READY=1`, `STOPPING=1`, `WATCHDOG=1`, `STATUS=…`; several
    /// separated by newlines).
    pub fn notify(&self, state: &str) -> io::Result<()> {
        let sent = match &self.target {
            Target::Path(p) => self.sock.send_to(state.as_bytes(), p)?,
            Target::Abstract(name) => send_abstract(&self.sock, name, state.as_bytes())?,
        };
        if sent != state.len() {
            return Err(io::Error::other("short write to NOTIFY_SOCKET"));
        }
        Ok(())
    }

    /// [`notify`](Self::notify), logging a failure instead of returning it.
    pub fn send(&self, state: &str) {
        if let Err(e) = self.notify(state) {
            tracing::warn!(state, "notifying systemd: {e}");
        }
    }
}

#[cfg(target_os = "linux")]
fn send_abstract(sock: &UnixDatagram, name: &[u8], data: &[u8]) -> io::Result<usize> {
    use std::os::linux::net::SocketAddrExt as _;
    let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
    sock.send_to_addr(data, &addr)
}

#[cfg(not(target_os = "linux"))]
fn send_abstract(_: &UnixDatagram, _: &[u8], _: &[u8]) -> io::Result<usize> {
    Err(io::Error::other("abstract sockets exist on Linux only"))
}

/// What `serve` does with systemd: ready, watchdog, stopping. Inert without `NOTIFY_SOCKET`.
#[derive(Debug)]
pub struct Systemd {
    notifier: Option<std::sync::Arc<Notifier>>,
    watchdog: Option<tokio::task::JoinHandle<()>>,
}

impl Systemd {
    /// Tell systemd the gateway is serving (`status` also shows in `systemctl status`), and
    /// start the watchdog pings when the unit sets `WatchdogSec=`.
    pub fn ready(status: &str) -> Systemd {
        let Some(notifier) = Notifier::from_env().map(std::sync::Arc::new) else {
            return Systemd {
                notifier: None,
                watchdog: None,
            };
        };
        notifier.send(&format!("READY=1\nSTATUS={}", one_line(status)));
        let interval = watchdog_interval(
            std::env::var("WATCHDOG_USEC").ok().as_deref(),
            std::env::var("WATCHDOG_PID").ok().as_deref(),
            std::process::id(),
        );
        // Half the interval, as sd_watchdog_enabled(3) advises. The ping runs as an ordinary
        // task: a runtime too stuck to schedule it stops the pings, and systemd restarts us.
        let watchdog = interval.map(|every| {
            let n = notifier.clone();
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(every / 2);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tick.tick().await;
                    n.send("WATCHDOG=1");
                }
            })
        });
        Systemd {
            notifier: Some(notifier),
            watchdog,
        }
    }

    /// Tell systemd the gateway is stopping (draining); the watchdog keeps pinging meanwhile,
    /// since a long drain is not a hang.
    pub fn stopping(&self) {
        if let Some(n) = &self.notifier {
            n.send("STOPPING=1\nSTATUS=draining");
        }
    }
}

impl Drop for Systemd {
    fn drop(&mut self) {
        if let Some(w) = self.watchdog.take() {
            w.abort();
        }
    }
}

/// systemd reads one `KEY=value` per line: a newline inside a value would start a new key.
fn one_line(s: &str) -> String {
    s.replace(['\n', '\r'], " ")
}

#[cfg(test)]
mod tests;
