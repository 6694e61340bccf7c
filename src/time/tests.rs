use super::*;

#[test]
fn known_dates() {
    assert_eq!(Date::from_ymd(1970, 1, 1).unwrap().days(), 0);
    let d = Date::from_ymd(2026, 12, 1).unwrap();
    assert_eq!(d.unix_seconds(), 1_796_083_200);
    assert_eq!(d.to_string(), "2026-12-01");
    assert_eq!(
        Date::from_ymd(2000, 2, 29).unwrap().to_string(),
        "2000-02-29"
    );
    assert!(Date::from_ymd(2027, 2, 29).is_none());
    assert!(Date::from_ymd(2027, 13, 1).is_none());
    assert_eq!(Date::parse("2027-03-01"), Date::from_ymd(2027, 3, 1));
    assert!(Date::parse("2027-3-01").is_none());
    assert!(Date::parse("2027-03-01T00:00").is_none());
}

#[test]
fn round_trip_and_instants() {
    for days in -800_000..800_000 {
        if days % 997 != 0 {
            continue;
        }
        let d = Date::from_days(days);
        let (y, m, dd) = d.ymd();
        assert_eq!(Date::from_ymd(y, m, dd), Some(d));
        assert_eq!(Date::of(d.midnight()), d);
        assert_eq!(Date::of(d.midnight() + Duration::from_secs(86_399)), d);
        assert_eq!(Date::of(d.midnight() - Duration::from_secs(1)), d.plus(-1));
    }
}

#[test]
fn timestamps() {
    assert_eq!(Timestamp(1_796_117_400).to_string(), "2026-12-01T09:30:00Z");
    assert_eq!(Timestamp(-1).to_string(), "1969-12-31T23:59:59Z");
    assert_eq!(
        Timestamp::of(UNIX_EPOCH + Duration::from_millis(1_500)),
        Timestamp(1)
    );
}
