//! A request target whose form does not fit its method (RFC 9112 §3.2) is refused on both
//! HTTP/1.1 engines before any stage routes it: `GET *`, an authority-form `GET host:port` and a
//! `#fragment`, which `http::Uri` drops quietly (the gateway would route and forward `/a` for a
//! caller that sent `/a#../admin`: not the request it was sent). The native core refuses these
//! heads itself; on the hyper engine the framing guard, which watches the bytes hyper reads,
//! flags them, so the two engines answer alike.

use std::time::Duration;

use crate::support::*;

/// `(request line, refused)`.
const CASES: &[(&str, bool)] = &[
    ("GET /api/x#../admin HTTP/1.1", true),
    ("GET /api/x?a=1#b HTTP/1.1", true),
    ("GET * HTTP/1.1", true),
    ("POST * HTTP/1.1", true),
    ("GET 127.0.0.1:80 HTTP/1.1", true),
    ("CONNECT /api/x HTTP/1.1", true),
    // Their well-formed twins reach the upstream.
    ("GET /api/x?a=%23b HTTP/1.1", false),
    ("GET /api/x HTTP/1.1", false),
];

async fn refused_on(engine: &str) {
    let dir = tempfile::tempdir().unwrap();
    let up = Upstream::start().await;
    let routes = route("api", "/api", &up.url(), "");
    let extra = format!("http1_engine = \"{engine}\"\n");
    let gw = start_in_process(dir.path(), &base_config(dir.path(), &extra, "", &routes)).await;
    for (line, refused) in CASES {
        let before = up.count();
        let raw = format!("{line}\r\nHost: a.example\r\nConnection: close\r\n\r\n");
        let (text, _) = raw_exchange(gw.data_addr, raw.as_bytes(), Duration::from_secs(5)).await;
        let status = status_of(&text);
        if *refused {
            assert_eq!(status, 400, "{engine}: {line}: {text}");
            assert_eq!(up.count(), before, "{engine}: {line} reached the upstream");
        } else {
            assert_eq!(status, 200, "{engine}: {line}: {text}");
            assert_eq!(up.count(), before + 1, "{engine}: {line}");
        }
    }
}

#[tokio::test]
async fn a_target_that_does_not_fit_its_method_is_refused_on_the_native_engine() {
    refused_on("native").await;
}

#[tokio::test]
async fn a_target_that_does_not_fit_its_method_is_refused_on_the_hyper_engine() {
    refused_on("hyper").await;
}
