//! The fast upstream of `bench/run`: HTTP/1.1 with keep-alive, a tiny fixed `200` answer to every
//! request, no logging. Every proxy in the benchmark forwards to this one process, so whatever it
//! costs is the same for all of them.
//!
//! Run: `cargo run --release --example bench_upstream -- --addr 127.0.0.1:18080 [--threads 1]`.
//! Prints `listening <addr>` once bound, then serves until killed.

#![expect(
    clippy::expect_used,
    reason = "a measuring tool, not gateway code: failing loudly is the right behaviour here"
)]

use std::convert::Infallible;
use std::net::SocketAddr;

use bytes::Bytes;
use clap::Parser;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;

#[derive(Parser, Debug)]
struct Args {
    /// Address to listen on (`127.0.0.1:0` picks a free port).
    #[arg(long, default_value = "127.0.0.1:0")]
    addr: SocketAddr,
    /// Runtime worker threads.
    #[arg(long, default_value_t = 1)]
    threads: usize,
}

/// The body every request gets: small, like a health or lookup answer.
const BODY: &[u8] = b"{\"ok\":true}\n";

fn main() {
    let args = Args::parse();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.threads.max(1))
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let l = tokio::net::TcpListener::bind(args.addr)
            .await
            .expect("bind");
        println!("listening {}", l.local_addr().expect("addr"));
        loop {
            let Ok((s, _)) = l.accept().await else {
                continue;
            };
            let _ = s.set_nodelay(true);
            tokio::spawn(async move {
                let svc = service_fn(|_req| async {
                    let mut resp = hyper::Response::new(Full::new(Bytes::from_static(BODY)));
                    resp.headers_mut().insert(
                        hyper::header::CONTENT_TYPE,
                        hyper::header::HeaderValue::from_static("application/json"),
                    );
                    Ok::<_, Infallible>(resp)
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .keep_alive(true)
                    .serve_connection(TokioIo::new(s), svc)
                    .await;
            });
        }
    });
}
