use super::*;
use crate::authn::ldap::cache::Hasher;

const IP: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

fn t0() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000)
}

#[test]
fn unknown_passwords_stop_at_the_limit_known_good_keeps_working() {
    let h = Hasher::random();
    let good = h.digest("U", "good");
    let l = Lockout::new(3, 100, Duration::from_secs(900), 10);
    // Learn the good password.
    assert_eq!(
        l.admit("U", &good, IP, t0(), false),
        Admit::Ask { known_good: false }
    );
    l.finish("U", &good, false, "p", IP, Finish::Success, t0());
    // Two bad ones reach the directory; the third slot is reserved for the known-good one.
    for i in 0..2 {
        let bad = h.digest("U", &format!("bad{i}"));
        assert_eq!(
            l.admit("U", &bad, IP, t0(), false),
            Admit::Ask { known_good: false }
        );
        l.finish("U", &bad, false, "p", IP, Finish::Failure, t0());
    }
    let bad = h.digest("U", "bad9");
    assert_eq!(l.admit("U", &bad, IP, t0(), false), Admit::Refuse);
    assert_eq!(
        l.admit("U", &good, IP, t0(), false),
        Admit::Ask { known_good: true }
    );
    // A second known-good check while the first is in flight waits.
    assert_eq!(l.admit("U", &good, IP, t0(), false), Admit::Wait);
    l.finish("U", &good, true, "p", IP, Finish::Success, t0());
    // Known-good fails (password changed): counted, forgotten, now fully locked.
    assert_eq!(
        l.admit("U", &good, IP, t0(), false),
        Admit::Ask { known_good: true }
    );
    l.finish("U", &good, true, "p", IP, Finish::Failure, t0());
    assert_eq!(l.admit("U", &good, IP, t0(), false), Admit::Refuse);
    // The window ends.
    let later = t0() + Duration::from_secs(901);
    assert_eq!(
        l.admit("U", &bad, IP, later, false),
        Admit::Ask { known_good: false }
    );
}

#[test]
fn a_stored_verifier_keeps_a_bind_for_the_owner() {
    let h = Hasher::random();
    let l = Lockout::new(3, 100, Duration::from_secs(900), 10);
    let stranger = IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 2));
    // Nothing known in memory (a restart), but a verifier is stored: strangers get two.
    for i in 0..2 {
        let bad = h.digest("U", &format!("bad{i}"));
        assert_eq!(
            l.admit("U", &bad, stranger, t0(), true),
            Admit::Ask { known_good: false }
        );
        l.finish("U", &bad, false, "p", stranger, Finish::Failure, t0());
    }
    let bad = h.digest("U", "bad9");
    assert_eq!(l.admit("U", &bad, stranger, t0(), true), Admit::Refuse);
    // Checks against the verifier are limited per (user, source)…
    for _ in 0..3 {
        assert!(l.verifier_guess("U", stranger, t0()));
    }
    assert!(!l.verifier_guess("U", stranger, t0()));
    // …so the owner's source still has its own.
    assert!(l.verifier_guess("U", IP, t0()));
    l.verified("U", IP);
    assert_eq!(l.admit_verified("U", t0()), Admit::Ask { known_good: true });
    assert_eq!(l.admit_verified("U", t0()), Admit::Wait);
    let good = h.digest("U", "good");
    l.finish("U", &good, true, "p", IP, Finish::Success, t0());
    // Now known good in memory as well.
    assert_eq!(
        l.admit("U", &good, IP, t0(), true),
        Admit::Ask { known_good: true }
    );
}

#[test]
fn in_flight_guesses_count() {
    let h = Hasher::random();
    let l = Lockout::new(3, 100, Duration::from_secs(900), 10);
    let asks = (0..10)
        .filter(|i| {
            matches!(
                l.admit("U", &h.digest("U", &i.to_string()), IP, t0(), false),
                Admit::Ask { .. }
            )
        })
        .count();
    assert_eq!(asks, 3);
}

#[test]
fn sources_are_limited() {
    let h = Hasher::random();
    let l = Lockout::new(3, 4, Duration::from_secs(900), 10);
    for u in ["a", "b", "c", "d"] {
        let d = h.digest(u, "x");
        assert!(matches!(l.admit(u, &d, IP, t0(), false), Admit::Ask { .. }));
        l.finish(u, &d, false, "p", IP, Finish::Failure, t0());
    }
    assert_eq!(
        l.admit("e", &h.digest("e", "x"), IP, t0(), false),
        Admit::Refuse
    );
    let other = IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 2));
    assert!(matches!(
        l.admit("e", &h.digest("e", "x"), other, t0(), false),
        Admit::Ask { .. }
    ));
}

#[test]
fn tables_are_bounded() {
    let h = Hasher::random();
    let l = Lockout::new(3, 1000, Duration::from_secs(900), 5);
    for i in 0..50 {
        let u = format!("u{i}");
        let d = h.digest(&u, "x");
        assert!(matches!(
            l.admit(&u, &d, IP, t0(), false),
            Admit::Ask { .. }
        ));
        l.finish(&u, &d, false, "p", IP, Finish::Failure, t0());
    }
    assert!(l.tracked_users() <= 5);
}

/// A shared store without refill for [`Lockout::share`]: each bucket starts at its burst.
fn fake_store(down: Arc<std::sync::atomic::AtomicBool>) -> crate::limits::cluster::LeaseFn {
    use crate::limits::cluster::{Ask, Grant};
    let tokens = Arc::new(std::sync::Mutex::new(HashMap::<String, u64>::new()));
    Arc::new(move |asks: Vec<Ask>| {
        let (tokens, down) = (tokens.clone(), down.clone());
        Box::pin(async move {
            if down.load(std::sync::atomic::Ordering::SeqCst) {
                return Err("connection refused".to_string());
            }
            let mut t = tokens.lock().unwrap();
            Ok(asks
                .iter()
                .map(|a| {
                    let left = t.entry(a.bucket.clone()).or_insert(a.burst);
                    let granted = a.want.min(*left);
                    *left -= granted;
                    Grant {
                        granted,
                        remaining: *left,
                        wait_us: if *left == 0 { 60_000_000 } else { 0 },
                    }
                })
                .collect())
        })
    })
}

use std::sync::Arc;

#[tokio::test]
async fn failures_on_one_replica_lock_the_account_on_the_others() {
    let h = Hasher::random();
    let down = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let store = fake_store(down.clone());
    let replica = || {
        let mut l = Lockout::new(3, 100, Duration::from_secs(900), 10);
        l.share("dir", store.clone()).unwrap();
        l
    };
    let (a, b, c) = (replica(), replica(), replica());
    let now = SystemTime::now;
    // Two wrong passwords for U through replica a: its shared budget (3 − 1 reserved) is spent.
    for i in 0..2 {
        let bad = h.digest("U", &format!("bad{i}"));
        assert_eq!(
            a.admit("U", &bad, IP, now(), false),
            Admit::Ask { known_good: false }
        );
        a.finish("U", &bad, false, "u", IP, Finish::Failure, now());
    }
    // Replica b has seen nothing of U itself; the first failure it reports (one tick) tells it.
    let bad = h.digest("U", "bad-b");
    assert_eq!(
        b.admit("U", &bad, IP, now(), false),
        Admit::Ask { known_good: false }
    );
    b.finish("U", &bad, false, "u", IP, Finish::Failure, now());
    tokio::time::sleep(Duration::from_millis(100)).await;
    let bad = h.digest("U", "bad-b2");
    assert_eq!(b.admit("U", &bad, IP, now(), false), Admit::Refuse);
    // Another account is untouched.
    let other = h.digest("V", "x");
    assert_eq!(
        b.admit("V", &other, IP, now(), false),
        Admit::Ask { known_good: false }
    );
    b.finish("V", &other, false, "v", IP, Finish::Success, now());
    // Redis unreachable: replica c counts on its own, as without Redis (it has room for U).
    down.store(true, std::sync::atomic::Ordering::SeqCst);
    let bad = h.digest("U", "bad-c");
    assert_eq!(
        c.admit("U", &bad, IP, now(), false),
        Admit::Ask { known_good: false }
    );
    c.finish("U", &bad, false, "u", IP, Finish::Failure, now());
    tokio::time::sleep(Duration::from_millis(100)).await;
    let bad = h.digest("U", "bad-c2");
    // One local failure, budget 3 with no known-good reserve: still asks.
    assert_eq!(
        c.admit("U", &bad, IP, now(), false),
        Admit::Ask { known_good: false }
    );
}
