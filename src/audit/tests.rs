use super::*;

#[test]
fn query_values_are_redacted() {
    assert_eq!(
        redact_query("/a", Some("api_key=s3cret&x=1&flag")),
        "/a?api_key=REDACTED&x=REDACTED&REDACTED"
    );
    assert_eq!(redact_query("/a", None), "/a");
}

fn record(n: usize) -> Record {
    Record {
        ts: SystemTime::UNIX_EPOCH,
        request_id: http::HeaderValue::from_str(&format!("r{n}")).unwrap(),
        route: None,
        method: http::Method::GET,
        target: http::Uri::from_static("/"),
        source: SocketAddr::from(([127, 0, 0, 1], 1)),
        decision: Decision::Allow,
        reason: "ok",
        credential: None,
        kind: None,
        principal: None,
        identity: None,
        plan: None,
        phase: None,
        status: 200,
        upstream_status: None,
        latency_ms: 0.0,
        jti: None,
        trace_id: None,
        mode: "proxy",
    }
}

/// The request ids of the lines in `file`, in order.
fn ids(file: &Path) -> Vec<String> {
    std::fs::read_to_string(file)
        .unwrap()
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            v["request_id"].as_str().unwrap().to_owned()
        })
        .collect()
}

/// A full queue drops (and counts) what does not fit; what fits is written in order, and the
/// writer writes everything queued and ends once the last sender is gone.
#[tokio::test]
async fn a_full_queue_drops_and_counts_and_keeps_order() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("audit.jsonl");
    let metrics = Arc::new(Metrics::default());
    let (auditor, writer) = start(&AuditSink::File(file.clone()), 4, metrics.clone()).unwrap();
    for n in 0..100 {
        auditor.record(record(n));
    }
    drop(auditor);
    writer.await.unwrap();
    let written = ids(&file);
    let dropped = metrics.audit_dropped_total.get();
    assert_eq!(written.len() as u64 + dropped, 100);
    assert!(written.len() >= 4, "{written:?}");
    let numbers: Vec<usize> = written.iter().map(|s| s[1..].parse().unwrap()).collect();
    assert!(numbers.windows(2).all(|w| w[0] < w[1]), "{numbers:?}");
    assert_eq!(numbers.first(), Some(&0));
}

/// `close` with senders still alive (the process-wide ones outlive every request): what was
/// queued before is written, then the writer ends.
#[tokio::test]
async fn close_drains_what_is_queued() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("audit.jsonl");
    let metrics = Arc::new(Metrics::default());
    let (auditor, writer) = start(&AuditSink::File(file.clone()), 64, metrics.clone()).unwrap();
    for n in 0..50 {
        auditor.record(record(n));
    }
    auditor.close();
    tokio::time::timeout(std::time::Duration::from_secs(5), writer)
        .await
        .expect("the writer ends after close")
        .unwrap();
    let want: Vec<String> = (0..50).map(|n| format!("r{n}")).collect();
    assert_eq!(ids(&file), want);
    assert_eq!(metrics.audit_dropped_total.get(), 0);
    drop(auditor);
}

/// After a burst, the queue's vectors give back their room once the traffic is small again.
#[tokio::test]
async fn room_grown_by_a_burst_is_given_back() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("audit.jsonl");
    let metrics = Arc::new(Metrics::default());
    let (auditor, writer) = start(&AuditSink::File(file.clone()), 8192, metrics.clone()).unwrap();
    for n in 0..6000 {
        auditor.record(record(n));
    }
    let grown = auditor.queue.lock().capacity();
    // A few quiet drains (each vector is the writer's spare in turn); up to 5 s on a busy host.
    let mut quiet = 0;
    let kept = loop {
        tokio::time::sleep(DRAIN_EVERY * 2).await;
        auditor.record(record(6000 + quiet));
        quiet += 1;
        let kept = auditor.queue.lock().capacity();
        if kept <= KEEP_ROOM || quiet == 250 {
            break kept;
        }
    };
    assert!(kept <= KEEP_ROOM, "grown to {grown}, kept {kept}");
    drop(auditor);
    writer.await.unwrap();
    let total = 6000 + quiet as u64;
    assert_eq!(
        ids(&file).len() as u64 + metrics.audit_dropped_total.get(),
        total
    );
}

/// Wait (up to 5 s) until the writer has parked.
async fn parked(auditor: &Auditor) {
    for _ in 0..500 {
        if auditor.queue.asleep.load(Ordering::Relaxed) {
            return;
        }
        tokio::time::sleep(DRAIN_EVERY).await;
    }
    panic!("the writer never parked");
}

/// An idle writer parks instead of polling (an idle gateway woke a hundred times a second), and
/// the first record after the quiet spell wakes it: written at once, not at the backstop.
#[tokio::test]
async fn an_idle_writer_parks_and_the_next_record_wakes_it() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("audit.jsonl");
    let metrics = Arc::new(Metrics::default());
    let (auditor, writer) = start(&AuditSink::File(file.clone()), 64, metrics).unwrap();
    auditor.record(record(0));
    parked(&auditor).await;
    assert_eq!(ids(&file), ["r0"]);
    let passes = auditor.queue.passes.load(Ordering::Relaxed);
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(
        auditor.queue.passes.load(Ordering::Relaxed),
        passes,
        "a parked writer drains nothing"
    );
    for round in 1..=3 {
        let t0 = std::time::Instant::now();
        auditor.record(record(round));
        while ids(&file).len() <= round {
            assert!(t0.elapsed() < std::time::Duration::from_secs(5));
            tokio::time::sleep(std::time::Duration::from_millis(2)).await;
        }
        assert!(
            t0.elapsed() < PARKED_BACKSTOP / 2,
            "round {round}: written after {:?}, the backstop's time",
            t0.elapsed()
        );
        parked(&auditor).await;
    }
    assert_eq!(ids(&file), ["r0", "r1", "r2", "r3"]);
    drop(auditor);
    writer.await.unwrap();
}

/// `reopen`, `close` and the last sender's drop each reach a parked writer at once.
#[tokio::test]
async fn a_parked_writer_answers_reopen_close_and_the_last_drop_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("audit.jsonl");
    let metrics = Arc::new(Metrics::default());
    let soon = PARKED_BACKSTOP / 2;

    let (auditor, writer) = start(&AuditSink::File(file.clone()), 64, metrics.clone()).unwrap();
    parked(&auditor).await;
    std::fs::rename(&file, dir.path().join("audit.jsonl.old")).unwrap();
    let t0 = std::time::Instant::now();
    auditor.reopen();
    while !file.exists() {
        assert!(t0.elapsed() < std::time::Duration::from_secs(5));
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    }
    assert!(t0.elapsed() < soon, "reopened after {:?}", t0.elapsed());

    parked(&auditor).await;
    let t0 = std::time::Instant::now();
    auditor.close();
    tokio::time::timeout(std::time::Duration::from_secs(5), writer)
        .await
        .expect("the writer ends after close")
        .unwrap();
    assert!(t0.elapsed() < soon, "ended {:?} after close", t0.elapsed());
    drop(auditor);

    let (auditor, writer) = start(&AuditSink::File(file.clone()), 64, metrics).unwrap();
    let other = auditor.clone();
    parked(&auditor).await;
    drop(other);
    let t0 = std::time::Instant::now();
    drop(auditor);
    tokio::time::timeout(std::time::Duration::from_secs(5), writer)
        .await
        .expect("the writer ends once the last sender is gone")
        .unwrap();
    assert!(
        t0.elapsed() < soon,
        "ended {:?} after the last drop",
        t0.elapsed()
    );
}
