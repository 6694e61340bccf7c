//! The usage inventory's request path against a running gateway (issue 22): every request of an
//! API key is counted once in usage and inventory, its source is the connection's address and
//! the User-Agent as stored (whatever spelling reached the gateway: a tab or a bidi override for
//! `?`, bytes past the 128-character cut, invalid UTF-8, no header or an empty one), never a
//! header a legacy app would trust for the client address; a principal rotating its sources is
//! capped at 32 with an exact overflow count, a known source past the cap still counts as itself;
//! nothing is lost across a periodic flush and the final flush at shutdown, as the SQLite file
//! shows.

use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

use reqwest::header::HeaderValue;

use crate::support::*;

const ROTATOR: &str = "pcs_usage_rotator_key_0123456789abcdef01234";
const TWINS: &str = "pcs_usage_twins_key_0123456789abcdef0123456";

/// A plaintext client whose connections come from `ip` (a loopback address).
fn client_from(ip: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(ip.parse::<IpAddr>().unwrap())
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

/// `GET /u/x` with `key` and, if any, the User-Agent `agent` (raw bytes); asserts 200.
async fn call(c: &reqwest::Client, base: &str, key: &str, agent: Option<&[u8]>) {
    let mut r = c.get(format!("{base}/u/x")).header("x-api-key", key);
    if let Some(a) = agent {
        r = r.header("user-agent", HeaderValue::from_bytes(a).unwrap());
    }
    let got = r.send().await.unwrap().status();
    assert_eq!(got, 200, "{:?}", agent.map(String::from_utf8_lossy));
}

/// `(ip, agent, count)` of the listed sources of `key`, sorted, and its overflow count.
fn sources(db: &Path, key: &str) -> (Vec<(String, String, u64)>, u64) {
    let c = rusqlite::Connection::open(db).unwrap();
    let mut q = c
        .prepare("SELECT overflow, ip, agent, count FROM sources WHERE key = ?1")
        .unwrap();
    let rows: Vec<(i64, String, String, i64)> = q
        .query_map([key], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let mut listed: Vec<_> = rows
        .iter()
        .filter(|r| r.0 == 0)
        .map(|r| (r.1.clone(), r.2.clone(), u64::try_from(r.3).unwrap()))
        .collect();
    listed.sort();
    let overflow = rows.iter().filter(|r| r.0 == 1).map(|r| r.3).sum::<i64>();
    (listed, u64::try_from(overflow).unwrap())
}

fn one_number(db: &Path, sql: &str, key: &str) -> u64 {
    let c = rusqlite::Connection::open(db).unwrap();
    let n = c
        .query_row(sql, [key], |r| r.get::<_, Option<i64>>(0))
        .unwrap();
    u64::try_from(n.unwrap_or(0)).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sources_are_counted_exactly_whatever_their_spelling_past_the_cap_and_across_flushes() {
    let up = Upstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write_api_keys(
        d,
        &[
            ("rotator", "spiffe://corp.example/partner/rotator", ROTATOR),
            ("twins", "spiffe://corp.example/partner/twins", TWINS),
        ],
    );
    let db = d.join("state.db");
    let extra = format!(
        "{ISSUER}\n[state]\npath = \"{}\"\nflush_every = \"1s\"\n{}{}",
        db.display(),
        partner_keys(d),
        partner_route(
            "usage",
            "path_prefix = \"/u/\"",
            &format!("{ALLOW_PARTNERS}\ndangerous_allow_plaintext_credentials = true"),
            &up.url(),
            "",
            ""
        )
    );
    let gw = start_in_process(d, &base_config(d, "", "", &extra)).await;
    let base = format!("http://127.0.0.1:{}", gw.data_addr.port());
    let from2 = client_from("127.0.0.2");
    let from3 = client_from("127.0.0.3");

    // The same source in every spelling that is stored the same, and one twin from elsewhere.
    let long = "L".repeat(128);
    let twins: [(&reqwest::Client, Option<Vec<u8>>); 12] = [
        (&from2, Some(b"twin\tagent".to_vec())),
        (&from2, Some(b"twin?agent".to_vec())),
        (&from2, Some("twin\u{202e}agent".as_bytes().to_vec())),
        (&from2, Some(format!("{long}A").into_bytes())),
        (&from2, Some(format!("{long}B").into_bytes())),
        (&from2, None),
        (&from2, Some(Vec::new())),
        (&from2, Some(b"bad \xff".to_vec())),
        (&from2, Some(b"bad \xff".to_vec())),
        (&from2, Some(b"plain/1.0".to_vec())),
        (&from3, Some(b"plain/1.0".to_vec())),
        (&from2, Some(b"plain/1.0".to_vec())),
    ];
    for (c, agent) in &twins {
        call(c, &base, TWINS, agent.as_deref()).await;
    }
    // A header a legacy app would trust for the client address is not the source.
    let spoofed = from2
        .get(format!("{base}/u/x"))
        .header("x-api-key", TWINS)
        .header("user-agent", "plain/1.0")
        .header("x-forwarded-for", "10.9.9.9")
        .header("x-real-ip", "10.8.8.8")
        .send()
        .await
        .unwrap();
    assert_eq!(spoofed.status(), 200);

    // 40 sources (8 addresses × 5 agents) from one principal: 20, a flush, 20 more, and the
    // first one again.
    let clients: Vec<_> = (2..10)
        .map(|i| client_from(&format!("127.0.0.{i}")))
        .collect();
    let rotation: Vec<(usize, String)> = (0..5)
        .flat_map(|a| (0..8).map(move |i| (i, format!("rot/{a}"))))
        .collect();
    for (i, agent) in &rotation[..20] {
        call(&clients[*i], &base, ROTATOR, Some(agent.as_bytes())).await;
    }
    let sql = "SELECT sum(count) FROM usage WHERE route = ?1";
    for _ in 0..100 {
        if one_number(&db, sql, "usage") == 13 + 20 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(one_number(&db, sql, "usage"), 33, "no periodic flush");
    for (i, agent) in &rotation[20..] {
        call(&clients[*i], &base, ROTATOR, Some(agent.as_bytes())).await;
    }
    call(&clients[0], &base, ROTATOR, Some(b"rot/0")).await;
    // Graceful shutdown writes the rest.
    gw.shutdown();
    gw.wait().await;

    assert_eq!(one_number(&db, sql, "usage"), 13 + 41);
    let inv = "SELECT count FROM inventory WHERE key = ?1";
    assert_eq!(one_number(&db, inv, "twins"), 13);
    assert_eq!(one_number(&db, inv, "rotator"), 41);
    let routes = "SELECT count(*) FROM inventory_routes WHERE route = ?1";
    assert_eq!(one_number(&db, routes, "usage"), 2);

    let s = |ip: &str, agent: &str, n: u64| (ip.to_owned(), agent.to_owned(), n);
    let (listed, overflow) = sources(&db, "twins");
    assert_eq!(
        listed,
        [
            s("127.0.0.2", "", 2),
            s("127.0.0.2", &long, 2),
            s("127.0.0.2", "bad \u{fffd}", 2),
            s("127.0.0.2", "plain/1.0", 3),
            s("127.0.0.2", "twin?agent", 3),
            s("127.0.0.3", "plain/1.0", 1),
        ]
    );
    assert_eq!(overflow, 0);

    let (listed, overflow) = sources(&db, "rotator");
    assert_eq!(listed.len(), 32, "{listed:?}");
    assert_eq!(overflow, 8);
    assert_eq!(listed.iter().map(|r| r.2).sum::<u64>() + overflow, 41);
    // The first 32 seen are the ones listed; the first, seen again past the cap, as itself.
    for (i, agent) in &rotation[..32] {
        let ip = format!("127.0.0.{}", i + 2);
        let n = if (*i, agent.as_str()) == (0, "rot/0") {
            2
        } else {
            1
        };
        assert!(
            listed.contains(&s(&ip, agent, n)),
            "{ip} {agent} in {listed:?}"
        );
    }
}
