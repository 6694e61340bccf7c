//! The standard `process_*` metrics (Prometheus client conventions, no `portcullis_` prefix),
//! read from `/proc` at scrape time. Elsewhere than Linux nothing is written.

use std::fmt::Write as _;

/// The kernel reports CPU times and the start time in `USER_HZ` ticks, which Linux fixes at
/// 100 for user space on every architecture it exports `/proc` for.
const USER_HZ: f64 = 100.0;

/// What `/proc/self` says now.
#[derive(Debug, Default, PartialEq)]
pub struct Sample {
    pub cpu_seconds: Option<f64>,
    pub resident_bytes: Option<f64>,
    pub virtual_bytes: Option<f64>,
    pub open_fds: Option<f64>,
    pub max_fds: Option<f64>,
    pub start_time_seconds: Option<f64>,
}

/// Read every value that can be read; one missing file costs only its metrics.
pub fn sample() -> Sample {
    let stat = std::fs::read_to_string("/proc/self/stat").ok();
    let fields = stat.as_deref().and_then(after_comm);
    let tick = |i: usize| -> Option<f64> {
        fields
            .as_ref()?
            .get(i)?
            .parse::<f64>()
            .ok()
            .map(|t| t / USER_HZ)
    };
    // Fields 14 (utime), 15 (stime), 22 (starttime) of proc(5); the list starts at field 3.
    let cpu_seconds = tick(11).zip(tick(12)).map(|(u, s)| u + s);
    let boot = std::fs::read_to_string("/proc/stat")
        .ok()
        .and_then(|s| field_value(&s, "btime"));
    let start_time_seconds = tick(19).zip(boot).map(|(t, b)| b + t);
    let status = std::fs::read_to_string("/proc/self/status").ok();
    let kib = |name: &str| {
        status
            .as_deref()
            .and_then(|s| field_value(s, name))
            .map(|v| v * 1024.0)
    };
    let open_fds = std::fs::read_dir("/proc/self/fd")
        .ok()
        .map(|d| d.count() as f64);
    let max_fds = std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|l| max_open_files(&l));
    Sample {
        cpu_seconds,
        resident_bytes: kib("VmRSS:"),
        virtual_bytes: kib("VmSize:"),
        open_fds,
        max_fds,
        start_time_seconds,
    }
}

/// The fields after `(comm)`: the command name may hold spaces and parentheses.
fn after_comm(stat: &str) -> Option<Vec<&str>> {
    let (_, rest) = stat.rsplit_once(')')?;
    Some(rest.split_whitespace().collect())
}

/// The number after `name` on its line (`btime 1700000000`, `VmRSS:  1234 kB`).
fn field_value(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

/// The soft limit of `Max open files` (`unlimited`: none).
fn max_open_files(limits: &str) -> Option<f64> {
    limits
        .lines()
        .find_map(|l| l.strip_prefix("Max open files"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

/// Append the `process_*` families.
pub fn render(out: &mut String) {
    let s = sample();
    let rows: [(&str, &str, &str, Option<f64>); 6] = [
        (
            "process_cpu_seconds_total",
            "counter",
            "Total user and system CPU time spent in seconds.",
            s.cpu_seconds,
        ),
        (
            "process_resident_memory_bytes",
            "gauge",
            "Resident memory size in bytes.",
            s.resident_bytes,
        ),
        (
            "process_virtual_memory_bytes",
            "gauge",
            "Virtual memory size in bytes.",
            s.virtual_bytes,
        ),
        (
            "process_open_fds",
            "gauge",
            "Number of open file descriptors.",
            s.open_fds,
        ),
        (
            "process_max_fds",
            "gauge",
            "Maximum number of open file descriptors.",
            s.max_fds,
        ),
        (
            "process_start_time_seconds",
            "gauge",
            "Start time of the process since unix epoch in seconds.",
            s.start_time_seconds,
        ),
    ];
    for (name, kind, help, value) in rows {
        if let Some(v) = value {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} {kind}");
            let _ = writeln!(out, "{name} {v}");
        }
    }
}

#[cfg(test)]
mod tests;
