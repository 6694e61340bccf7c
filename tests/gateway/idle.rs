//! An idle gateway sleeps: between requests its threads wake only for its periodic work (file
//! watching, once a second), not a hundred times a second (the audit writer polled every 10 ms
//! whether or not anything was queued).

use std::time::Duration;

use crate::support::*;

/// Context switches (voluntary and involuntary) of all the process's threads so far.
fn switches(pid: u32) -> u64 {
    let mut total = 0;
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
        let status =
            std::fs::read_to_string(task.unwrap().path().join("status")).unwrap_or_default();
        total += status
            .lines()
            .filter(|l| l.contains("ctxt_switches:"))
            .filter_map(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
            .sum::<u64>();
    }
    total
}

#[tokio::test]
async fn an_idle_gateway_wakes_rarely_and_still_audits_the_next_request_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let up = Upstream::start().await;
    let toml = base_config(dir.path(), "", "", &route("api", "/api", &up.url(), ""));
    let gw = Proc::spawn(dir.path(), &toml);
    let url = format!("http://{}/api/x", gw.data_addr);
    let client = reqwest::Client::new();
    assert_eq!(client.get(&url).send().await.unwrap().status(), 200);
    assert_eq!(audit_lines(dir.path(), 1).await.len(), 1);

    // Past the writer's quiet spell (100 ms), then measure 3 s of idleness.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = switches(gw.pid());
    let window = Duration::from_secs(3);
    tokio::time::sleep(window).await;
    let per_second = (switches(gw.pid()) - before) as f64 / window.as_secs_f64();
    assert!(
        per_second < 30.0,
        "an idle gateway switched {per_second:.0} times a second"
    );

    // The first request after the quiet spell is audited without waiting for a poll.
    let t0 = std::time::Instant::now();
    assert_eq!(client.get(&url).send().await.unwrap().status(), 200);
    assert_eq!(audit_lines(dir.path(), 2).await.len(), 2);
    assert!(
        t0.elapsed() < Duration::from_millis(500),
        "audited after {:?}",
        t0.elapsed()
    );
}
