use super::*;
use http_body_util::{Full, StreamBody};

fn budget(total: usize, per_source: usize) -> Arc<BodyBudget> {
    BodyBudget::new(BodyPolicy {
        timeout: Duration::from_secs(5),
        min_rate: 0,
        max_total: total,
        max_per_source: per_source,
    })
}

const A: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 1));
const B: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 2));

#[tokio::test]
async fn caps_count_held_bytes_and_release_on_drop() {
    let b = budget(100, 60);
    let (bytes, lease) = b
        .read(A, Full::new(Bytes::from(vec![1; 50])), 1000)
        .await
        .unwrap();
    assert_eq!(bytes.len(), 50);
    assert_eq!(b.held(), 50);
    // Same source: 50 + 20 > 60.
    let r = b.read(A, Full::new(Bytes::from(vec![1; 20])), 1000).await;
    assert_eq!(r.unwrap_err().code, Code::Overloaded);
    // Another source, but the total: 50 + 55 > 100.
    let r = b.read(B, Full::new(Bytes::from(vec![1; 55])), 1000).await;
    assert_eq!(r.unwrap_err().code, Code::Overloaded);
    assert_eq!(b.held(), 50, "a refused body holds nothing");
    drop(lease);
    assert_eq!(b.held(), 0);
    let (_, _l) = b
        .read(B, Full::new(Bytes::from(vec![1; 55])), 1000)
        .await
        .unwrap();
}

#[tokio::test]
async fn ipv6_sources_share_their_64() {
    let b = budget(1000, 60);
    let x: IpAddr = "2001:db8::1".parse().unwrap();
    let y: IpAddr = "2001:db8::2".parse().unwrap();
    let (_, _l) = b
        .read(x, Full::new(Bytes::from(vec![1; 50])), 1000)
        .await
        .unwrap();
    let r = b.read(y, Full::new(Bytes::from(vec![1; 20])), 1000).await;
    assert_eq!(r.unwrap_err().code, Code::Overloaded);
}

#[tokio::test]
async fn a_stalled_body_times_out() {
    let b = BodyBudget::new(BodyPolicy {
        timeout: Duration::from_millis(200),
        min_rate: 0,
        max_total: 1 << 20,
        max_per_source: 1 << 20,
    });
    let stalled = StreamBody::new(futures_util::stream::pending::<
        Result<http_body::Frame<Bytes>, std::convert::Infallible>,
    >());
    let r = b.read(A, stalled, 1000).await;
    let r = r.unwrap_err();
    assert_eq!(r.code, Code::RequestTimeout);
    assert!(r.close);
    assert_eq!(b.held(), 0);
}

#[test]
fn each_min_rate_worth_of_bytes_buys_a_second_after_the_grace() {
    let b = BodyBudget::new(BodyPolicy {
        timeout: Duration::from_secs(60),
        min_rate: 100,
        max_total: 1,
        max_per_source: 1,
    });
    let t0 = Instant::now();
    assert_eq!(b.deadline(t0, 0), t0 + RATE_GRACE);
    assert_eq!(
        b.deadline(t0, 250),
        t0 + RATE_GRACE + Duration::from_millis(2500)
    );
    // Never beyond the total deadline, however fast the start.
    assert_eq!(b.deadline(t0, 1 << 30), t0 + Duration::from_secs(60));
}
