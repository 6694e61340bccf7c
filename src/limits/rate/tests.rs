use super::*;

#[test]
fn parses_units_and_durations() {
    assert_eq!(Rate::parse("50/s").unwrap().interval_nanos(), 20_000_000);
    assert_eq!(Rate::parse("60/m").unwrap().interval_nanos(), 1_000_000_000);
    assert_eq!(
        Rate::parse(" 2/h ").unwrap().interval_nanos(),
        1_800_000_000_000
    );
    assert_eq!(
        Rate::parse("3/15m").unwrap().period(),
        Duration::from_secs(900)
    );
}

#[test]
fn refuses_nonsense() {
    for s in [
        "",
        "50",
        "/s",
        "x/s",
        "0/s",
        "5/0s",
        "-1/s",
        "5/fortnight",
        "5/s/s",
    ] {
        assert!(Rate::parse(s).is_err(), "{s:?} parsed");
    }
}
