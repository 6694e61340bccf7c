use super::*;

#[test]
fn durations() {
    assert_eq!(parse_duration("300ms").unwrap(), Duration::from_millis(300));
    assert_eq!(parse_duration("5m").unwrap(), Duration::from_secs(300));
    assert_eq!(
        parse_duration("14d").unwrap(),
        Duration::from_secs(14 * 86400)
    );
    assert!(parse_duration("").is_err());
    assert!(parse_duration("5 parsecs").is_err());
    assert!(parse_duration("10").is_err());
}

#[test]
fn sizes() {
    assert_eq!(parse_size("1MiB").unwrap(), 1 << 20);
    assert_eq!(parse_size("64KiB").unwrap(), 64 << 10);
    assert_eq!(parse_size("10MB").unwrap(), 10_000_000);
    assert_eq!(parse_size("512").unwrap(), 512);
    assert!(parse_size("1.5MiB").is_err());
    assert!(parse_size("MiB").is_err());
    assert!(parse_size("99999999999999999999GiB").is_err());
    assert!(parse_size("-1").is_err());
}

#[test]
fn decimal_writes_what_to_string_writes() {
    let mut cases = vec![
        0u64,
        1,
        9,
        10,
        99,
        100,
        1_000_000,
        u64::from(u32::MAX),
        u64::MAX,
    ];
    cases.extend((0..64).map(|b| 1u64 << b));
    cases.extend((1..20).map(|e| 10u64.pow(e) - 1));
    for n in cases {
        assert_eq!(decimal(n, &mut [0xAA; 20]), n.to_string().as_bytes(), "{n}");
    }
}
