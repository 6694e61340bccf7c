//! Start-up work a caller must not wait for. A test binary of its own, so that it is the first
//! user of AWS-LC's random generator in its process (the unit and e2e test processes use it long
//! before).

use std::time::{Duration, Instant};

/// This thread's time on a CPU so far (`/proc/thread-self/schedstat`, nanoseconds): unlike the
/// wall clock, not lengthened when a loaded machine runs something else meanwhile. The wall clock
/// where the file is missing.
fn on_cpu() -> Duration {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .map(Duration::from_nanos)
        .unwrap_or_else(|| {
            static ORIGIN: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
            ORIGIN.get_or_init(Instant::now).elapsed()
        })
}

/// AWS-LC gathers jitter entropy at the first use of its random generator in a process (20 ms of
/// CPU in the release build, more in the debug one). The gateway pays it in `install_crypto`, at
/// start, before it listens; the first token it mints (a `jti`) must not. Before, the first
/// request after every start took 22-31 ms (release build) against 1.2 ms now.
#[test]
fn the_random_generator_is_seeded_at_start_not_by_the_first_token() {
    portcullis::server::install_crypto();
    let mut jti = [0u8; 16];
    let before = on_cpu();
    aws_lc_rs::rand::fill(&mut jti).unwrap();
    let took = on_cpu().saturating_sub(before);
    assert!(
        took < Duration::from_millis(5),
        "the first random bytes after install_crypto took {took:?} of CPU: the generator was not seeded at start"
    );
}
