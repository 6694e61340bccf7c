use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use http::StatusCode;

use super::*;
use crate::clock::FakeClock;

fn clock() -> Arc<FakeClock> {
    Arc::new(FakeClock::new(
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000),
    ))
}

fn limits(s: RouteLimitSettings, c: &Arc<FakeClock>) -> RouteLimits {
    RouteLimits::new(&s, c.clone()).unwrap()
}

fn header(r: &Refusal, name: &HeaderName) -> String {
    r.extra_headers()
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.to_str().unwrap().to_owned())
        .unwrap()
}

#[test]
fn burst_passes_at_once_then_one_per_interval() {
    let c = clock();
    let l = limits(
        RouteLimitSettings {
            rate: Some(Rate::parse("50/s").unwrap()),
            burst: Some(100),
            ..Default::default()
        },
        &c,
    );
    for i in 0..100 {
        let h = l.check_rate("spiffe://corp.example/a").unwrap();
        let pairs = h.pairs();
        assert_eq!(pairs[0].0, RATELIMIT_POLICY);
        assert_eq!(pairs[0].1, "\"identity\";q=100;w=2");
        assert_eq!(pairs[1].0, RATELIMIT);
        assert!(
            pairs[1]
                .1
                .to_str()
                .unwrap()
                .starts_with(&format!("\"identity\";r={};", 99 - i)),
            "{:?}",
            pairs[1].1
        );
    }
    let r = l.check_rate("spiffe://corp.example/a").unwrap_err();
    assert_eq!(r.code, Code::RateLimited);
    assert_eq!(r.retry_after, Some(1), "20 ms rounds up to 1 s");
    assert_eq!(header(&r, &RATELIMIT_POLICY), "\"identity\";q=100;w=2");
    assert_eq!(header(&r, &RATELIMIT), "\"identity\";r=0;t=2");
    let resp = r.into_response("rid");
    assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(resp.headers()["retry-after"], "1");
    assert_eq!(resp.headers()["ratelimit"], "\"identity\";r=0;t=2");

    // Another identity is unaffected.
    assert!(l.check_rate("spiffe://corp.example/b").is_ok());

    // 1/rate later exactly one more passes.
    c.advance(Duration::from_millis(19));
    assert!(l.check_rate("spiffe://corp.example/a").is_err());
    c.advance(Duration::from_millis(1));
    assert!(l.check_rate("spiffe://corp.example/a").is_ok());
    assert!(l.check_rate("spiffe://corp.example/a").is_err());
}

#[test]
fn slow_rates_report_whole_seconds() {
    let c = clock();
    let l = limits(
        RouteLimitSettings {
            rate: Some(Rate::parse("2/m").unwrap()),
            ..Default::default()
        },
        &c,
    );
    let ok = l.check_rate("x").unwrap().pairs();
    assert_eq!(ok[0].1, "\"identity\";q=2;w=60");
    assert_eq!(ok[1].1, "\"identity\";r=1;t=30");
    l.check_rate("x").unwrap();
    let r = l.check_rate("x").unwrap_err();
    assert_eq!(r.retry_after, Some(30));
}

#[test]
fn total_rate_limits_all_identities_and_refunds_the_identity() {
    let c = clock();
    let l = limits(
        RouteLimitSettings {
            rate: Some(Rate::parse("1/s").unwrap()),
            burst: Some(2),
            total_rate: Some(Rate::parse("3/s").unwrap()),
            ..Default::default()
        },
        &c,
    );
    let h = l.check_rate("a").unwrap().pairs();
    assert_eq!(h[0].1, "\"identity\";q=2;w=2, \"route\";q=3;w=1");
    assert_eq!(h[1].1, "\"identity\";r=1;t=1, \"route\";r=2;t=1");
    l.check_rate("b").unwrap();
    l.check_rate("c").unwrap();
    let r = l.check_rate("d").unwrap_err();
    assert_eq!(header(&r, &RATELIMIT), "\"route\";r=0;t=1");
    assert_eq!(r.detail, "rate limit for this route exceeded");
    // "a" was refunded nothing (it passed), but "d" was refused by the route limit, so its own
    // bucket is still full: after the route refills, "d" gets its whole burst of 2.
    c.advance(Duration::from_secs(1));
    l.check_rate("d").unwrap();
    l.check_rate("d").unwrap();
    assert!(l.check_rate("d").is_err());
}

#[test]
fn unlimited_route_adds_no_headers() {
    let c = clock();
    let l = limits(RouteLimitSettings::default(), &c);
    for _ in 0..1000 {
        assert!(l.check_rate("x").unwrap().pairs().is_empty());
    }
    let mut hm = HeaderMap::new();
    l.check_rate("x").unwrap().apply_to(&mut hm);
    assert!(hm.is_empty());
    let _permit = l.try_acquire().unwrap();
}

#[test]
fn apply_to_replaces_upstream_fields() {
    let c = clock();
    let l = limits(
        RouteLimitSettings {
            rate: Some(Rate::parse("5/s").unwrap()),
            ..Default::default()
        },
        &c,
    );
    let mut hm = HeaderMap::new();
    hm.insert(RATELIMIT, HeaderValue::from_static("\"upstream\";r=1"));
    l.check_rate("x").unwrap().apply_to(&mut hm);
    assert_eq!(hm.get_all(RATELIMIT).iter().count(), 1);
    assert_eq!(hm[RATELIMIT], "\"identity\";r=4;t=1");
}

#[test]
fn bad_settings_are_named() {
    let c = clock();
    let bad = |s: RouteLimitSettings| RouteLimits::new(&s, c.clone()).unwrap_err();
    assert!(bad(RouteLimitSettings {
        rate: Some(Rate::parse("1/s").unwrap()),
        burst: Some(0),
        ..Default::default()
    })
    .starts_with("burst"));
    assert!(bad(RouteLimitSettings {
        burst: Some(3),
        ..Default::default()
    })
    .starts_with("burst"));
    assert!(bad(RouteLimitSettings {
        concurrency: Some(0),
        ..Default::default()
    })
    .starts_with("concurrency"));
}

#[test]
fn memory_is_bounded_and_idle_identities_are_dropped() {
    let c = clock();
    let l = limits(
        RouteLimitSettings {
            rate: Some(Rate::parse("10/s").unwrap()),
            burst: Some(1),
            max_keys: Some(1000),
            ..Default::default()
        },
        &c,
    );
    for i in 0..50_000 {
        let _ = l.check_rate(&format!("spiffe://corp.example/bot/{i}"));
    }
    assert!(l.tracked_keys() <= 1000, "{}", l.tracked_keys());
    c.advance(Duration::from_millis(100));
    l.sweep();
    assert_eq!(l.tracked_keys(), 0);
}

#[tokio::test]
async fn concurrency_permits_are_held_until_dropped() {
    let c = clock();
    let l = limits(
        RouteLimitSettings {
            concurrency: Some(2),
            ..Default::default()
        },
        &c,
    );
    let a = l.try_acquire().unwrap();
    let b = l.try_acquire().unwrap();
    let r = l.try_acquire().unwrap_err();
    assert_eq!(r.code, Code::Overloaded);
    assert_eq!(r.retry_after, Some(1));
    let resp = r.into_response("rid");
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(resp.headers()["retry-after"], "1");
    // A permit moved into another task (as into a response body) is released when it ends.
    tokio::spawn(async move { drop(a) }).await.unwrap();
    let _c = l.try_acquire().unwrap();
    drop(b);
    assert!(l.try_acquire().is_ok());
}

#[test]
fn failing_sources_are_slowed_and_successful_ones_never() {
    let c = clock();
    let s = SourceLimiter::new(Rate::parse("6/m").unwrap(), 3, 1000, c.clone());
    let bad: IpAddr = "198.51.100.7".parse().unwrap();
    let good: IpAddr = "198.51.100.8".parse().unwrap();
    for _ in 0..3 {
        s.check_source(bad).unwrap();
        s.note_auth_failure(bad);
    }
    let r = s.check_source(bad).unwrap_err();
    assert_eq!(r.code, Code::RateLimited);
    assert_eq!(r.retry_after, Some(10));
    assert!(
        r.extra_headers().is_empty(),
        "thresholds are not advertised"
    );
    for _ in 0..100 {
        s.check_source(good).unwrap();
    }
    c.advance(Duration::from_secs(10));
    s.check_source(bad).unwrap();
    s.note_auth_failure(bad);
    assert!(s.check_source(bad).is_err());
}

/// The pipeline hands the throttle the wall-clock reading it made for the request (one reading
/// less per request): the source is judged at that time, not at another reading of the clock.
#[test]
fn a_source_is_judged_at_the_time_it_is_given() {
    let c = clock();
    let s = SourceLimiter::new(Rate::parse("6/m").unwrap(), 3, 1000, c.clone());
    let bad: IpAddr = "198.51.100.7".parse().unwrap();
    for _ in 0..3 {
        s.note_auth_failure(bad);
    }
    let now = c.now();
    assert!(s.check_source_at(bad, now).is_err());
    assert!(s.check_source(bad).is_err());
    // Ten seconds on, one failure's worth of budget is back (6 a minute).
    let later = now + Duration::from_secs(10);
    assert!(s.check_source_at(bad, later).is_ok());
    assert!(
        s.check_source(bad).is_err(),
        "the clock itself has not moved"
    );
}

#[test]
fn ipv6_sources_are_keyed_by_slash_64_and_mapped_v4_as_v4() {
    let c = clock();
    let s = SourceLimiter::new(Rate::parse("1/h").unwrap(), 2, 1000, c.clone());
    s.note_auth_failure("2001:db8:1:2::1".parse().unwrap());
    s.note_auth_failure("2001:db8:1:2:ffff::9".parse().unwrap());
    assert!(s
        .check_source("2001:db8:1:2:abcd::5".parse().unwrap())
        .is_err());
    assert!(s.check_source("2001:db8:1:3::1".parse().unwrap()).is_ok());

    s.note_auth_failure("192.0.2.1".parse().unwrap());
    s.note_auth_failure("::ffff:192.0.2.1".parse().unwrap());
    assert!(s.check_source("192.0.2.1".parse().unwrap()).is_err());
    assert_eq!(s.tracked_keys(), 2);
}

#[test]
fn limit_items_are_written_as_format_would() {
    for (remaining, reset_ns) in [
        (0, 0),
        (1, 1),
        (9, 999_999_999),
        (10, 1_000_000_000),
        (37, 1_000_000_001),
        (u64::MAX, u64::MAX),
    ] {
        let mut out = Field::new();
        push_limit_item(&mut out, "identity", remaining, reset_ns);
        push_limit_item(&mut out, "route", reset_ns, remaining);
        let value = field_value(out).unwrap();
        assert_eq!(
            value.to_str().unwrap(),
            format!(
                "\"identity\";r={remaining};t={}, \"route\";r={reset_ns};t={}",
                ceil_secs(reset_ns),
                ceil_secs(remaining)
            )
        );
    }
}

#[test]
fn a_field_that_does_not_fit_is_not_sent_cut_short() {
    let mut out = Field::new();
    push_limit_item(&mut out, &"x".repeat(100), u64::MAX, u64::MAX);
    // `"`, the name, `";r=`, 20 digits and `;t=` fill the 128 bytes; the seconds do not fit.
    assert_eq!(out.as_ref().len(), 128);
    assert!(field_value(out).is_none());
}
