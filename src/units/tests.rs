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
