//! The workers' accept loops: who serves a connection.

use std::sync::atomic::{AtomicUsize, Ordering};

use super::{pick_worker, BALANCE_SLACK};

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
