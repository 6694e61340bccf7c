use super::*;
use std::time::Duration;

const S: u64 = 1_000_000_000;

fn quota(rate: &str, burst: u32) -> Quota {
    Quota::new(Rate::parse(rate).unwrap(), burst)
}

#[test]
fn burst_then_one_per_interval() {
    let q = quota("10/s", 3);
    let mut tat = 0;
    let now = 1_000 * S;
    for want in [2, 1, 0] {
        assert_eq!(
            q.check(&mut tat, now),
            Decision::Allowed {
                remaining: want,
                reset_ns: (3 - want) * S / 10
            }
        );
    }
    assert_eq!(
        q.check(&mut tat, now),
        Decision::Refused {
            retry_ns: S / 10,
            reset_ns: 3 * S / 10
        }
    );
    assert!(matches!(
        q.check(&mut tat, now + S / 10 - 1),
        Decision::Refused { retry_ns: 1, .. }
    ));
    assert!(matches!(
        q.check(&mut tat, now + S / 10),
        Decision::Allowed { remaining: 0, .. }
    ));
}

#[test]
fn backward_clock_step_costs_at_most_one_burst() {
    let q = quota("1/s", 2);
    let mut tat = 0;
    let now = 10_000 * S;
    q.check(&mut tat, now);
    q.check(&mut tat, now);
    // The clock jumps back an hour: the key is empty, not locked out for an hour.
    let back = now - 3600 * S;
    match q.check(&mut tat, back) {
        Decision::Refused { retry_ns, .. } => assert_eq!(retry_ns, S),
        d => panic!("{d:?}"),
    }
    assert!(matches!(
        q.check(&mut tat, back + S),
        Decision::Allowed { .. }
    ));
}

#[test]
fn refund_gives_the_charge_back() {
    let q = quota("1/s", 1);
    let mut tat = 0;
    assert!(matches!(q.check(&mut tat, 5 * S), Decision::Allowed { .. }));
    q.refund(&mut tat);
    assert!(matches!(q.check(&mut tat, 5 * S), Decision::Allowed { .. }));
}

#[test]
fn table_is_bounded_and_idle_keys_are_swept() {
    let t: KeyedGcra<Box<str>> = KeyedGcra::new(quota("1/s", 1), 32, Overflow::Shared);
    let now = 100 * S;
    for i in 0..1000 {
        t.check(format!("id-{i}").as_str(), now);
    }
    assert!(t.len() <= 32, "{}", t.len());
    // Overflow keys share one bucket: the first took it, the rest are refused.
    let refused = (1000..1010)
        .filter(|i| {
            matches!(
                t.check(format!("id-{i}").as_str(), now),
                Decision::Refused { .. }
            )
        })
        .count();
    assert_eq!(refused, 10);
    // After a second every key is idle; a sweep empties the table.
    t.sweep(now + S);
    assert_eq!(t.len(), 0);
    // And a full shard makes room by itself on the request path.
    let later = now + 2 * S;
    for i in 0..1000 {
        t.check(format!("x-{i}").as_str(), later);
    }
    let after = later + Duration::from_secs(2).as_nanos() as u64;
    assert!(matches!(t.check("fresh", after), Decision::Allowed { .. }));
}

#[test]
fn untracked_overflow_peeks_as_allowed_and_inserts_nothing() {
    let t: KeyedGcra<std::net::IpAddr> = KeyedGcra::new(quota("1/s", 1), 16, Overflow::Untracked);
    let now = 100 * S;
    for i in 0..255u8 {
        let ip = std::net::IpAddr::from([10, 0, 0, i]);
        t.check(&ip, now);
    }
    assert!(t.len() <= 16);
    let ip = std::net::IpAddr::from([10, 0, 1, 1]);
    assert!(matches!(t.peek(&ip, now), Decision::Allowed { .. }));
}

#[test]
fn keys_sharing_a_hash_keep_their_own_buckets() {
    // A 64-bit collision of the keyed hash cannot be made on purpose; put two keys under one
    // hash by hand, as a collision would.
    let q = quota("1/s", 1);
    let mut shard: Shard<Box<str>> = Shard {
        map: PreHashedMap::default(),
        len: 0,
        last_sweep: 0,
    };
    let now = 100 * S;
    for key in ["alice", "mallory"] {
        let mut tat = 0;
        assert!(matches!(q.check(&mut tat, now), Decision::Allowed { .. }));
        shard.map.entry(7).or_default().push((key.into(), tat));
        shard.len += 1;
    }
    // mallory's spent quota is not alice's, and the other way round.
    let mallory = shard.tat(7, "mallory").unwrap();
    assert!(matches!(q.check(mallory, now), Decision::Refused { .. }));
    let alice = *shard.tat(7, "alice").unwrap();
    assert_eq!(alice, now + S, "alice charged once, by her own request");
    assert!(shard.tat(7, "eve").is_none() && shard.tat(8, "alice").is_none());
    // The sweep counts keys, not buckets.
    assert_eq!(shard.sweep(now + 2 * S, true), 2);
    assert_eq!((shard.len, shard.map.len()), (0, 0));
}

#[test]
fn a_peek_sees_a_charge_made_once_the_table_was_empty() {
    let t: KeyedGcra<std::net::IpAddr> = KeyedGcra::new(quota("1/s", 1), 16, Overflow::Untracked);
    let ip = std::net::IpAddr::from([192, 0, 2, 1]);
    let now = 100 * S;
    // Empty: answered without a lookup.
    assert!(matches!(t.peek(&ip, now), Decision::Allowed { .. }));
    t.check(&ip, now);
    assert!(matches!(t.peek(&ip, now), Decision::Refused { .. }));
    // Swept empty again, then charged again: the fast path must not hide the new charge.
    t.sweep(now + 2 * S);
    assert_eq!(t.len(), 0);
    assert!(matches!(t.peek(&ip, now + 2 * S), Decision::Allowed { .. }));
    t.check(&ip, now + 2 * S);
    assert!(matches!(t.peek(&ip, now + 2 * S), Decision::Refused { .. }));
    // A refund of an untracked key changes nothing.
    t.refund(&std::net::IpAddr::from([192, 0, 2, 2]));
    assert_eq!(t.len(), 1);
}

#[test]
fn a_key_is_hashed_by_its_bytes_alone_and_told_apart_in_full() {
    // One SipHash write of the bytes, keyed per table.
    let t: KeyedGcra<Box<str>> = KeyedGcra::new(quota("1/s", 1), 64, Overflow::Shared);
    let (h, shard) = t.shard("spiffe://example.org/a");
    drop(shard);
    let mut direct = t.hasher.build_hasher();
    direct.write(b"spiffe://example.org/a");
    assert_eq!(h, direct.finish());
    // Spellings a caller could choose for "the same" key are different keys, each limited.
    let t: KeyedGcra<std::net::IpAddr> = KeyedGcra::new(quota("1/s", 1), 64, Overflow::Shared);
    let v4: std::net::IpAddr = "10.0.0.1".parse().unwrap();
    let mapped: std::net::IpAddr = "::ffff:10.0.0.1".parse().unwrap();
    assert!(matches!(t.check(&v4, S), Decision::Allowed { .. }));
    assert!(matches!(t.check(&v4, S), Decision::Refused { .. }));
    assert!(matches!(t.check(&mapped, S), Decision::Allowed { .. }));
    assert!(matches!(t.check(&mapped, S), Decision::Refused { .. }));
    assert_eq!(t.len(), 2);
}

/// A thread's remembered hash (`LAST`) is taken only for the same table and the same bytes:
/// interleaved keys and tables, a table made after another was dropped, a key that only
/// starts like the remembered one and one too long to remember all hash as the table's own
/// keyed SipHash does, and a second table never finds the first one's keys.
#[test]
fn a_remembered_hash_is_only_the_same_tables_same_key() {
    let direct = |t: &KeyedGcra<Box<str>>, k: &str| {
        let mut h = t.hasher.build_hasher();
        h.write(k.as_bytes());
        h.finish()
    };
    let long = "x".repeat(REMEMBER_MAX + 1);
    let keys = [
        "spiffe://x/a",
        "spiffe://x/a",
        "spiffe://x/ab",
        "spiffe://x/",
        &long,
        &long,
    ];
    for _ in 0..3 {
        let a: KeyedGcra<Box<str>> = KeyedGcra::new(quota("1/s", 1), 64, Overflow::Shared);
        let b: KeyedGcra<Box<str>> = KeyedGcra::new(quota("1/s", 1), 64, Overflow::Shared);
        assert_ne!(a.id, b.id);
        for k in keys {
            for t in [&a, &a, &b, &a] {
                assert_eq!(t.hash(k.as_bytes()), direct(t, k), "{k}");
            }
        }
        assert!(matches!(
            a.check("spiffe://x/a", S),
            Decision::Allowed { .. }
        ));
        assert!(matches!(
            a.check("spiffe://x/a", S),
            Decision::Refused { .. }
        ));
        assert!(matches!(
            b.check("spiffe://x/a", S),
            Decision::Allowed { .. }
        ));
        assert!(matches!(
            a.peek("spiffe://x/a", S),
            Decision::Refused { .. }
        ));
        assert_eq!((a.len(), b.len()), (1, 1));
    }
}
