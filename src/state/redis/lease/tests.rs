//! The lease script against a real redis-server.

use std::time::Duration;

use super::*;

use crate::state::redis::tests::redis_server::RedisServer;

async fn leases(redis: &RedisServer) -> RedisLeases {
    let client = redis::Client::open(redis.url()).unwrap();
    let conn = ConnectionManager::new(client).await.unwrap();
    RedisLeases::new(conn, "t:", Duration::from_secs(2))
}

fn ask(bucket: &str, interval_us: u64, burst: u64, want: u64) -> LeaseAsk {
    LeaseAsk {
        bucket: bucket.into(),
        interval_us,
        burst,
        want,
    }
}

#[tokio::test]
async fn a_full_bucket_grants_its_burst_then_only_what_refills() {
    let redis = RedisServer::start();
    let l = leases(&redis).await;
    // 10/s (100 ms per token), burst 5: asking 3 then 3 gets 3 then 2, and the bucket is empty.
    let g = l.lease(&[ask("a", 100_000, 5, 3)]).await.unwrap();
    assert_eq!((g[0].granted, g[0].remaining, g[0].wait_us), (3, 2, 0));
    let g = l.lease(&[ask("a", 100_000, 5, 3)]).await.unwrap();
    assert_eq!((g[0].granted, g[0].remaining), (2, 0));
    assert!(g[0].wait_us > 0 && g[0].wait_us <= 100_000, "{g:?}");
    // Nothing more right away; a read (want 0) takes nothing.
    let g = l
        .lease(&[ask("a", 100_000, 5, 3), ask("a", 100_000, 5, 0)])
        .await
        .unwrap();
    assert_eq!(g[0].granted, 0);
    assert_eq!(g[1].granted, 0);
    // After 250 ms, two tokens have refilled (not three: 250 ms is 2.5 intervals).
    tokio::time::sleep(Duration::from_millis(250)).await;
    let g = l.lease(&[ask("a", 100_000, 5, 10)]).await.unwrap();
    assert_eq!(g[0].granted, 2, "{g:?}");
    // Other buckets in the same call are independent.
    let g = l
        .lease(&[ask("b", 1_000, 2, 5), ask("c", 1_000, 1, 1)])
        .await
        .unwrap();
    assert_eq!((g[0].granted, g[1].granted), (2, 1));
    // Keys expire once full again: nothing is left behind for an idle bucket.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(redis.cmd(&["EXISTS", "t:rl:b"]).trim(), ":0");
}

#[tokio::test]
async fn concurrent_leases_never_hand_out_more_than_the_rate() {
    // Three "replicas" leasing as fast as they can from one 200/s bucket (burst 20) for 1 s:
    // the total granted is the burst plus one second of rate, within the refill granularity.
    let redis = RedisServer::start();
    let l = leases(&redis).await;
    let start = std::time::Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..3 {
        let l = l.clone();
        tasks.push(tokio::spawn(async move {
            let mut got = 0;
            while start.elapsed() < Duration::from_secs(1) {
                got += l.lease(&[ask("shared", 5_000, 20, 7)]).await.unwrap()[0].granted;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            got
        }));
    }
    let mut total = 0;
    for t in tasks {
        total += t.await.unwrap();
    }
    let secs = start.elapsed().as_secs_f64();
    let most = 20.0 + 200.0 * secs;
    assert!(
        (total as f64) <= most + 1.0 && (total as f64) >= 200.0 * 0.9,
        "granted {total} in {secs:.2}s (at most {most})"
    );
}

#[tokio::test]
async fn a_dead_redis_is_an_error_not_a_hang() {
    let mut redis = RedisServer::start();
    let client = redis::Client::open(redis.url()).unwrap();
    let conn = ConnectionManager::new(client).await.unwrap();
    let l = RedisLeases::new(conn, "t:", Duration::from_millis(300));
    redis.stop();
    let t = std::time::Instant::now();
    assert!(l.lease(&[ask("a", 1_000, 5, 1)]).await.is_err());
    assert!(t.elapsed() < Duration::from_secs(2));
    redis.restart();
    let mut ok = false;
    for _ in 0..50 {
        if l.lease(&[ask("a", 1_000, 5, 1)]).await.is_ok() {
            ok = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(ok, "leases resume once redis is back");
}
