//! Added latency of the gateway: the same small GET sent directly to an upstream and through a
//! pass-through route, interleaved, one request at a time on keep-alive connections; prints the
//! medians and the difference. Run: `cargo run --release --example latency`.

#![expect(
    clippy::expect_used,
    clippy::indexing_slicing,
    reason = "a measuring tool, not gateway code: failing loudly is the right behaviour here"
)]

use std::convert::Infallible;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;

async fn upstream() -> std::net::SocketAddr {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = l.local_addr().expect("addr");
    tokio::spawn(async move {
        loop {
            let Ok((s, _)) = l.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let svc = service_fn(|_req| async {
                    Ok::<_, Infallible>(hyper::Response::new(Full::new(Bytes::from_static(b"ok"))))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(s), svc)
                    .await;
            });
        }
    });
    addr
}

async fn sender(
    addr: std::net::SocketAddr,
) -> hyper::client::conn::http1::SendRequest<Empty<Bytes>> {
    let s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    s.set_nodelay(true).expect("nodelay");
    let (tx, conn) = hyper::client::conn::http1::handshake(TokioIo::new(s))
        .await
        .expect("handshake");
    tokio::spawn(conn);
    tx
}

async fn once(
    tx: &mut hyper::client::conn::http1::SendRequest<Empty<Bytes>>,
    path: &str,
) -> Duration {
    let started = Instant::now();
    tx.ready().await.expect("ready");
    let req = hyper::Request::get(path)
        .header("host", "bench")
        .body(Empty::new())
        .expect("request");
    let resp = tx.send_request(req).await.expect("response");
    let _ = resp.into_body().collect().await;
    started.elapsed()
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

#[tokio::main]
async fn main() {
    let up = upstream().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let toml = format!(
        "version = 1\n[listen]\naddr = \"127.0.0.1:0\"\n[admin]\naddr = \"127.0.0.1:0\"\n[audit]\nsink = \"{}\"\n[[routes]]\nname = \"pass\"\nmatch = {{ path_prefix = \"/\" }}\n[routes.upstream]\nurl = \"http://{up}\"\n",
        dir.path().join("audit.jsonl").display()
    );
    let cfg = portcullis::config::from_toml_str(&toml, &dir.path().join("portcullis.toml"))
        .expect("config");
    let gw = portcullis::server::start(cfg, portcullis::server::Options::default())
        .await
        .expect("start");
    let mut direct = sender(up).await;
    let mut proxied = sender(gw.data_addr).await;
    for _ in 0..500 {
        once(&mut direct, "/x").await;
        once(&mut proxied, "/x").await;
    }
    let (mut d, mut p) = (Vec::new(), Vec::new());
    for _ in 0..5000 {
        d.push(once(&mut direct, "/x").await);
        p.push(once(&mut proxied, "/x").await);
    }
    let (md, mp) = (median(d), median(p));
    println!(
        "p50 direct {:?}, p50 through portcullis {:?}, added {:?} ({:.2}x)",
        md,
        mp,
        mp.saturating_sub(md),
        mp.as_secs_f64() / md.as_secs_f64()
    );
    gw.stop().await;
}
