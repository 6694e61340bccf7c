//! Every data-plane worker accepts on its own copy of the listening socket: clients that open a
//! connection per request (legacy jobs, `curl` in a loop) and a pool that opens many at once are
//! all served, whichever worker accepted them, and the open-connections gauge comes back to zero.

use std::time::Duration;

use crate::support::*;

const CLOSE: &[u8] = b"GET /api/one HTTP/1.1\r\nHost: gw.example\r\nConnection: close\r\n\r\n";

async fn open_connections(admin: std::net::SocketAddr) -> Option<f64> {
    let text = reqwest::get(format!("http://{admin}/metrics"))
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    text.lines()
        .find(|l| l.starts_with("portcullis_connections_open "))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
}

#[tokio::test]
async fn a_connection_per_request_and_a_burst_of_pooled_ones_are_all_served() {
    let up = Upstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let routes = route("api", "/api", &up.url(), "");
    let toml = base_config(dir.path(), "workers = 3", "", &routes);
    let gw = start_in_process(dir.path(), &toml).await;

    // 12 clients at once, each opening 20 connections one after another, one request each.
    let mut clients = Vec::new();
    for _ in 0..12 {
        let addr = gw.data_addr;
        clients.push(tokio::spawn(async move {
            let mut statuses = Vec::new();
            for _ in 0..20 {
                let (raw, closed) = raw_exchange(addr, CLOSE, Duration::from_secs(10)).await;
                assert!(
                    closed,
                    "the gateway did not close after `Connection: close`: {raw}"
                );
                statuses.push(status_of(&raw));
            }
            statuses
        }));
    }
    for c in clients {
        let statuses = c.await.unwrap();
        assert!(statuses.iter().all(|&s| s == 200), "{statuses:?}");
    }
    assert_eq!(up.count(), 240);

    // A pool opening 48 keep-alive connections at once, each used three times.
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(64)
        .build()
        .unwrap();
    for round in 0..3 {
        let mut requests = Vec::new();
        for i in 0..48 {
            let (client, url) = (client.clone(), format!("http://{}/api/k{i}", gw.data_addr));
            requests.push(tokio::spawn(async move {
                client.get(url).send().await.map(|r| r.status().as_u16())
            }));
        }
        for r in requests {
            assert_eq!(r.await.unwrap().unwrap(), 200, "round {round}");
        }
    }
    assert_eq!(up.count(), 240 + 3 * 48);
    drop(client);

    // Every connection counted when it opened is uncounted when it ends, on whichever worker.
    let mut open = None;
    for _ in 0..100 {
        open = open_connections(gw.admin_addr).await;
        if open == Some(0.0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        open,
        Some(0.0),
        "portcullis_connections_open after every client left"
    );
    gw.stop().await;
}
