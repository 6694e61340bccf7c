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
