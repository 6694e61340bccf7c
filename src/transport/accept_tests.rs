//! The workers' accept loops: who serves a connection, and what its task costs.

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};
use tokio_util::task::TaskTracker;

use super::settings::Listen;
use super::{guarded, http1, pick_worker, Accepting, Handler, OpenGauge, Slot, BALANCE_SLACK};
use crate::body::{full, CallerBody};
use crate::conn::ConnInfo;
use crate::metrics::Metrics;

fn loads(n: &[usize]) -> Vec<AtomicUsize> {
    n.iter().map(|&n| AtomicUsize::new(n)).collect()
}

#[test]
fn a_worker_keeps_what_it_accepts_while_the_spread_is_even() {
    assert_eq!(pick_worker(&loads(&[0, 0]), 0), 0);
    assert_eq!(pick_worker(&loads(&[0, 0]), 1), 1);
    assert_eq!(pick_worker(&loads(&[3, 2]), 0), 0);
    assert_eq!(pick_worker(&loads(&[2, 3, 2]), 1), 1);
    assert_eq!(pick_worker(&loads(&[5]), 0), 0);
}

#[test]
fn a_worker_ahead_by_more_than_the_slack_hands_over_to_the_least_loaded() {
    assert_eq!(BALANCE_SLACK, 1);
    assert_eq!(pick_worker(&loads(&[2, 0]), 0), 1);
    assert_eq!(pick_worker(&loads(&[9, 4, 3]), 0), 2);
    assert_eq!(pick_worker(&loads(&[1, 7, 3]), 1), 0);
}

/// A burst accepted by one worker (the one whose reactor woke first) ends spread as round
/// robin would spread it, within the slack.
#[test]
fn a_burst_accepted_by_one_worker_is_spread() {
    for workers in [2usize, 3, 8] {
        let load = loads(&vec![0; workers]);
        for _ in 0..64 {
            let to = pick_worker(&load, 0);
            load[to].fetch_add(1, Ordering::Relaxed);
        }
        let counts: Vec<usize> = load.iter().map(|l| l.load(Ordering::Relaxed)).collect();
        let (lo, hi) = (counts.iter().min().copied(), counts.iter().max().copied());
        assert!(
            matches!((lo, hi), (Some(lo), Some(hi)) if hi - lo <= BALANCE_SLACK + 1),
            "{workers} workers: {counts:?}"
        );
        assert_eq!(counts.iter().sum::<usize>(), 64);
    }
}

#[test]
fn out_of_range_positions_do_not_panic() {
    assert_eq!(pick_worker(&loads(&[]), 0), 0);
    assert_eq!(pick_worker(&loads(&[4, 0]), 7), 7);
}

/// A handler whose future holds 64 KiB across an await: a stand-in for the gateway's pipeline
/// (about 14 KB), large enough that no accident of layout hides it.
struct Heavy;

const BALLAST: usize = 64 * 1024;

impl Handler for Heavy {
    async fn handle(&self, _conn: &ConnInfo, _req: hyper::Request<CallerBody>) -> super::Answer {
        let ballast = [7u8; BALLAST];
        tokio::task::yield_now().await;
        let first = std::hint::black_box(&ballast)[0];
        (
            hyper::Response::new(full(Bytes::from(vec![first]))),
            None,
            None,
        )
    }
}

/// The task spawned for each accepted connection is a few hundred bytes whatever the handler's
/// future: tokio moves a task's future whole into its cell and at each of its stage changes,
/// and with the connection's state machine inline that was ~120 KB of copying per connection
/// (three quarters of a new connection's instructions under callgrind, `bench/cg_row.py` with
/// `CG_NEW_CONNECTION=1`: 162k per connection, 59k with the state machine boxed).
#[tokio::test]
async fn a_connection_task_is_small_whatever_the_handler() {
    let metrics = Arc::new(Metrics::default());
    let (_stop, shutdown) = watch::channel(false);
    let ctx = Arc::new(Accepting {
        settings: Listen::for_tests(),
        gateway: Arc::new(Heavy),
        tls: None,
        metrics: metrics.clone(),
        shutdown,
        permits: Arc::new(Semaphore::new(4)),
        tracker: TaskTracker::new(),
        gauge: OpenGauge {
            open: AtomicI64::new(0),
            metrics,
        },
        workers: Vec::new(),
        load: vec![AtomicUsize::new(0)],
    });
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let a = TcpStream::connect(addr).await.unwrap();
    let b = TcpStream::connect(addr).await.unwrap();
    // Accepted and kept open, so that neither end is reset while the futures are built.
    let _accepted = (
        listener.accept().await.unwrap(),
        listener.accept().await.unwrap(),
    );
    let peer = a.peer_addr().unwrap();

    // The plain path's state machine does hold the handler's future...
    let flag = Arc::new(AtomicBool::new(false));
    let plain = http1(
        guarded(a, &ctx.settings, flag.clone()),
        Arc::new(ConnInfo::new(peer, None, flag)),
        &ctx.settings,
        ctx.gateway.clone(),
        ctx.shutdown.clone(),
    );
    assert!(std::mem::size_of_val(&plain) >= BALLAST);
    drop(plain);

    // ...and the connection's task does not: `serve_connection` boxes it when the task runs.
    let permit = ctx.permits.clone().try_acquire_owned().unwrap();
    let task = Slot::take(&ctx, 0).serve(b, peer, permit);
    let size = std::mem::size_of_val(&task);
    assert!(size <= 1024, "the connection task is {size} bytes");
    assert_eq!(ctx.load[0].load(Ordering::Relaxed), 1);
    drop(task);
    assert_eq!(
        ctx.load[0].load(Ordering::Relaxed),
        0,
        "the slot is given back"
    );
    assert_eq!(ctx.permits.available_permits(), 4);
}
