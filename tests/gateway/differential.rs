//! Differential framing test: the gateway against a second, independent HTTP/1 parser, Python's
//! `h11` (`tests/gateway/h11_frame.py`). A seeded corpus of request streams with framing variants
//! (Content-Length / Transfer-Encoding spellings, obs-fold, bare LF, chunk-size oddities,
//! pipelining, HTTP/1.0) is framed by h11 and sent, raw, to a gateway whose upstream records what
//! reaches it.
//!
//! Property: the gateway forwards only what h11 frames the same way (same method, target and body
//! length, in order), and wherever the two disagree the gateway refuses with 400 and closes the
//! connection. The gateway may be stricter than h11, never looser.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

use crate::support::*;

/// Seed of the generated part of the corpus (fixed: CI runs the same corpus every time).
/// `DIFFERENTIAL_SEED` picks another.
const SEED: u64 = 0x5eed_f4a3_11d1_ff00;
/// Generated cases on top of the hand-written ones. `DIFFERENTIAL_CASES` runs more.
const GENERATED: usize = 160;

fn from_env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// SplitMix64: small, deterministic, and not a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

/// Hand-written cases: each framing variant on its own. `@P` is replaced by the case's own path
/// prefix (how the upstream's records are told apart).
const FIXED: &[&[u8]] = &[
    b"GET @P/plain HTTP/1.1\r\nHost: a\r\n\r\n",
    b"POST @P/cl HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello",
    b"POST @P/te HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    // Transfer-Encoding spellings.
    b"POST @P/te HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, identity\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    b"POST @P/te HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: identity, chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    b"POST @P/te HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked \r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    b"POST @P/te HTTP/1.1\r\nHost: a\r\nTransfer-Encoding:\tchunked\t\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    b"POST @P/te HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: CHUNKED\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    b"POST @P/te HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked,\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    b"POST @P/te HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: \"chunked\"\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    b"POST @P/te HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: xchunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    b"POST @P/te HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: identity\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    b"POST @P/te HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    b"POST @P/te HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    b"POST @P/te HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    b"POST @P/te HTTP/1.1\r\nHost: a\r\nTransfer_Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    // obs-fold continuation lines.
    b"POST @P/fold HTTP/1.1\r\nHost: a\r\nTransfer-Encoding:\r\n chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    b"POST @P/fold HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n 0\r\n\r\nhello",
    b"POST @P/fold HTTP/1.1\r\nHost: a\r\nX-A: 1\r\n\tfolded\r\nContent-Length: 5\r\n\r\nhello",
    b"POST @P/fold HTTP/1.1\r\n Host: a\r\nContent-Length: 5\r\n\r\nhello",
    // Bare LF line endings.
    b"POST @P/lf HTTP/1.1\nHost: a\nContent-Length: 5\n\nhello",
    b"POST @P/lf HTTP/1.1\r\nHost: a\nContent-Length: 5\r\n\nhello",
    b"POST @P/lf HTTP/1.1\nHost: a\nTransfer-Encoding: chunked\n\n5\nhello\n0\n\n",
    b"POST @P/lf HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\nhello\r\n0\r\n\r\n",
    b"POST @P/lf HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\n0\r\n\r\n",
    b"POST @P/lf HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\nGET @P/next HTTP/1.1\r\nHost: a\r\n\r\n",
    // Content-Length spellings.
    b"POST @P/cl HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello",
    b"POST @P/cl HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
    b"POST @P/cl HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 5\r\n\r\nhello",
    b"POST @P/cl HTTP/1.1\r\nHost: a\r\nContent-Length: 5,\r\n\r\nhello",
    b"POST @P/cl HTTP/1.1\r\nHost: a\r\nContent-Length: +5\r\n\r\nhello",
    b"POST @P/cl HTTP/1.1\r\nHost: a\r\nContent-Length: -5\r\n\r\nhello",
    b"POST @P/cl HTTP/1.1\r\nHost: a\r\nContent-Length: 0x10\r\n\r\nhellohellohello!",
    b"POST @P/cl HTTP/1.1\r\nHost: a\r\nContent-Length: 0005\r\n\r\nhello",
    b"POST @P/cl HTTP/1.1\r\nHost: a\r\nContent-Length: 5 \r\n\r\nhello",
    b"POST @P/cl HTTP/1.1\r\nHost: a\r\nContent-Length: 5.0\r\n\r\nhello",
    b"POST @P/cl HTTP/1.1\r\nHost: a\r\nContent-Length: 5e0\r\n\r\nhello",
    b"POST @P/cl HTTP/1.1\r\nHost: a\r\nContent-Length: \r\n\r\nhello",
    b"POST @P/cl HTTP/1.1\r\nHost: a\r\nContent-Length: 18446744073709551616\r\n\r\nhello",
    b"POST @P/cl HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999999999999999999999\r\n\r\nhello",
    b"POST @P/cl HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\ncontent-length: 5\r\n\r\nhello",
    b"POST @P/cl HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    b"POST @P/cl HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n",
    b"POST @P/cl HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    // Chunk sizes.
    b"POST @P/chunk HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n005\r\nhello\r\n0\r\n\r\n",
    b"POST @P/chunk HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n0\r\n\r\n",
    b"POST @P/chunk HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=\"a;b\"\r\nhello\r\n0\r\n\r\n",
    b"POST @P/chunk HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5 ;ext=1\r\nhello\r\n0\r\n\r\n",
    b"POST @P/chunk HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5 \r\nhello\r\n0\r\n\r\n",
    b"POST @P/chunk HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n 5\r\nhello\r\n0\r\n\r\n",
    b"POST @P/chunk HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0x5\r\nhello\r\n0\r\n\r\n",
    b"POST @P/chunk HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n+5\r\nhello\r\n0\r\n\r\n",
    b"POST @P/chunk HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n\r\nhello\r\n0\r\n\r\n",
    b"POST @P/chunk HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n10000000000000005\r\nhello\r\n0\r\n\r\n",
    b"POST @P/chunk HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nfffffffffffffffff\r\nhello\r\n0\r\n\r\n",
    b"POST @P/chunk HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhelloXX0\r\n\r\n",
    b"POST @P/chunk HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nhello\r\n0\r\n\r\n",
    b"POST @P/chunk HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nX-T: 1\r\n\r\n",
    b"POST @P/chunk HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nContent-Length: 7\r\n\r\n",
    b"POST @P/chunk HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nX-T: 1\r\n folded\r\n\r\n",
    b"POST @P/chunk HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n000\r\n\r\n",
    b"POST @P/chunk HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nGET @P/smuggled HTTP/1.1\r\nHost: a\r\n\r\n",
    b"POST @P/chunk HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nX-T: 1\r\nPOST @P/smuggled HTTP/1.0\r\nHost: a\r\n\r\n",
    b"POST @P/chunk HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0;x\r\n\r\n",
    // Missing final CRLF: the stream stops inside the message.
    b"POST @P/short HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n",
    b"POST @P/short HTTP/1.1\r\nHost: a\r\nContent-Length: 6\r\n\r\nhello",
    // HTTP/1.0.
    b"POST @P/v10 HTTP/1.0\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    b"POST @P/v10 HTTP/1.0\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello",
    b"POST @P/v10 HTTP/1.0\r\nHost: a\r\nConnection: keep-alive\r\nContent-Length: 5\r\n\r\nhelloGET @P/next HTTP/1.1\r\nHost: a\r\n\r\n",
    b"GET @P/v10 HTTP/1.0\r\n\r\nGET @P/next HTTP/1.1\r\nHost: a\r\n\r\n",
    // Header names and values.
    b"POST @P/name HTTP/1.1\r\nHost: a\r\nContent-Length : 5\r\n\r\nhello",
    b"POST @P/name HTTP/1.1\r\nHost: a\r\nTransfer-Encoding : chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    b"POST @P/name HTTP/1.1\r\nHost: a\r\nContent-Length\t: 5\r\n\r\nhello",
    b"POST @P/name HTTP/1.1\r\nHost: a\r\n Content-Length: 5\r\n\r\nhello",
    b"POST @P/name HTTP/1.1\r\nHost: a\r\nX-A: a\x00b\r\nContent-Length: 5\r\n\r\nhello",
    b"POST @P/name HTTP/1.1\r\nHost: a\r\nX-A: a\rb\r\nContent-Length: 5\r\n\r\nhello",
    b"POST @P/name HTTP/1.1\r\nHost: a\r\nContent-Length: 5\x00\r\n\r\nhello",
    b"POST @P/name HTTP/1.1\r\nHost: a\r\nContent-Length: 5\rContent-Length: 0\r\n\r\nhello",
    b"POST @P/name HTTP/1.1\r\nHost: a\r\nX-A: \x7f\r\nContent-Length: 5\r\n\r\nhello",
    b"POST @P/name HTTP/1.1\r\nHost: a\r\nX-A: caf\xc3\xa9\r\nContent-Length: 5\r\n\r\nhello",
    b"POST @P/name HTTP/1.1\r\nHost: a\r\n: empty\r\nContent-Length: 5\r\n\r\nhello",
    // Request lines.
    b"GET http://a@P/abs HTTP/1.1\r\nHost: a\r\n\r\n",
    b"POST http://a@P/abs HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello",
    b"GET  @P/spaces HTTP/1.1\r\nHost: a\r\n\r\n",
    b"GET @P/tab\tHTTP/1.1\r\nHost: a\r\n\r\n",
    b"GET @P/ver HTTP/1.2\r\nHost: a\r\n\r\n",
    b"GET @P/ver http/1.1\r\nHost: a\r\n\r\n",
    b"GET @P/ver HTTP/2.0\r\nHost: a\r\n\r\n",
    b"get @P/lower HTTP/1.1\r\nHost: a\r\n\r\n",
    b"\r\n\r\nGET @P/lead HTTP/1.1\r\nHost: a\r\n\r\n",
    b"\nGET @P/lead HTTP/1.1\r\nHost: a\r\n\r\n",
    b"\rGET @P/lead HTTP/1.1\r\nHost: a\r\n\r\n",
    // Pipelined second requests, including ones a misread length would expose.
    b"GET @P/p1 HTTP/1.1\r\nHost: a\r\n\r\nGET @P/p2 HTTP/1.1\r\nHost: a\r\n\r\n",
    b"POST @P/p1 HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhelloPOST @P/p2 HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\nhi",
    b"POST @P/p1 HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\nGET @P/p2 HTTP/1.1\r\nHost: a\r\n\r\n",
    b"GET @P/p1 HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\nGET @P/p2 HTTP/1.1\r\nHost: a\r\n\r\n",
    b"GET @P/p1 HTTP/1.1\r\nHost: a\r\n\r\nX-Not-A-Request: 1\r\n\r\n",
    b"POST @P/p1 HTTP/1.1\r\nHost: a\r\nContent-Length: 44\r\n\r\nGET @P/p2 HTTP/1.1\r\nHost: a\r\n\r\n",
    b"POST @P/p1 HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET @P/p2 HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 7\r\n\r\nhello",
    b"GET @P/p1 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\nGET @P/p2 HTTP/1.1\r\nHost: a\r\n\r\n",
    b"POST @P/p1 HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\nhelloGET @P/p2 HTTP/1.1\r\nHost: a\r\n\r\n",
];

/// Pieces the generator combines.
const CL_SPELLINGS: &[&str] = &[
    "Content-Length: {n}",
    "content-length: {n}",
    "Content-Length:{n}",
    "Content-Length: 0{n}",
    "Content-Length: {n} ",
    "Content-Length:\t{n}",
    "Content-Length: +{n}",
    "Content-Length: {n}, {n}",
    "Content-Length : {n}",
];
const TE_SPELLINGS: &[&str] = &[
    "Transfer-Encoding: chunked",
    "transfer-encoding: chunked",
    "Transfer-Encoding: Chunked",
    "Transfer-Encoding: chunked ",
    "Transfer-Encoding:\tchunked",
    "Transfer-Encoding: chunked, identity",
    "Transfer-Encoding: identity",
    "Transfer-Encoding: gzip, chunked",
    "Transfer-Encoding: chunked\r\n ",
    "Transfer-Encoding : chunked",
];
const OTHER_HEADERS: &[&str] = &[
    "X-Pad: 1",
    "Connection: keep-alive",
    "Connection: close",
    "Expect: 100-continue",
    "X-Fold: a\r\n b",
    "Accept: */*",
];
const SIZE_SPELLINGS: &[&str] = &["{x}", "0{x}", "{X}", "{x};e=1", "{x} ", "{x};e=\"q\""];

/// One generated request: a head with 0-2 framing fields and 0-2 other fields, and a body
/// encoded as one of the framings it declares (or none, or the wrong one).
fn generated_request(rng: &mut Rng, target: &str) -> Vec<u8> {
    let eol = *rng.pick(&["\r\n", "\r\n", "\r\n", "\n"]);
    let version = *rng.pick(&["HTTP/1.1", "HTTP/1.1", "HTTP/1.1", "HTTP/1.0"]);
    let method = *rng.pick(&["POST", "PUT", "GET"]);
    let body: Vec<u8> = (0..rng.below(20)).map(|i| b'a' + (i % 26) as u8).collect();
    let n = body.len();
    let mut fields = vec!["Host: a".to_string()];
    let mut chunked = false;
    let mut declared = false;
    for _ in 0..rng.below(3) {
        if rng.below(2) == 0 {
            let len = if rng.below(4) == 0 { n + 1 } else { n };
            fields.push(rng.pick(CL_SPELLINGS).replace("{n}", &len.to_string()));
            declared = true;
        } else {
            fields.push(rng.pick(TE_SPELLINGS).to_string());
            chunked = true;
        }
    }
    for _ in 0..rng.below(3) {
        fields.push(rng.pick(OTHER_HEADERS).to_string());
    }
    let order = rng.below(fields.len());
    fields.rotate_left(order);
    let mut out = format!("{method} {target} {version}{eol}");
    for f in &fields {
        out.push_str(f);
        out.push_str(eol);
    }
    out.push_str(eol);
    let mut out = out.into_bytes();
    let encode_chunked = chunked && (!declared || rng.below(2) == 0);
    if encode_chunked {
        let mut rest = &body[..];
        while !rest.is_empty() {
            let take = 1 + rng.below(rest.len());
            let size = rng
                .pick(SIZE_SPELLINGS)
                .replace("{x}", &format!("{take:x}"))
                .replace("{X}", &format!("{take:X}"));
            out.extend_from_slice(format!("{size}{eol}").as_bytes());
            out.extend_from_slice(&rest[..take]);
            out.extend_from_slice(eol.as_bytes());
            rest = &rest[take..];
        }
        let last = *rng.pick(&["0", "000", "0;e=1"]);
        out.extend_from_slice(format!("{last}{eol}").as_bytes());
        if rng.below(4) == 0 {
            out.extend_from_slice(format!("X-Trailer: t{eol}").as_bytes());
        }
        if rng.below(8) != 0 {
            out.extend_from_slice(eol.as_bytes());
        }
    } else if declared || rng.below(3) == 0 {
        out.extend_from_slice(&body);
    }
    out
}

/// The whole corpus; case `i`'s targets all start with `/d{i}/`.
fn corpus() -> Vec<Vec<u8>> {
    let mut cases: Vec<Vec<u8>> = FIXED
        .iter()
        .enumerate()
        .map(|(i, t)| replace(t, b"@P", format!("/d{i}").as_bytes()))
        .collect();
    let mut rng = Rng(from_env("DIFFERENTIAL_SEED", SEED));
    for _ in 0..from_env("DIFFERENTIAL_CASES", GENERATED as u64) {
        let i = cases.len();
        let mut case = generated_request(&mut rng, &format!("/d{i}/g1"));
        if rng.below(2) == 0 {
            case.extend(generated_request(&mut rng, &format!("/d{i}/g2")));
        }
        cases.push(case);
    }
    cases
}

fn replace(hay: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(hay.len() + 8);
    let mut i = 0;
    while i < hay.len() {
        if hay[i..].starts_with(from) {
            out.extend_from_slice(to);
            i += from.len();
        } else {
            out.push(hay[i]);
            i += 1;
        }
    }
    out
}

/// How h11 frames each case (see `h11_frame.py`).
fn h11_framing(cases: &[Vec<u8>]) -> Vec<Value> {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/gateway/h11_frame.py");
    let mut child = Command::new("python3")
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run python3 for the differential framing test: {e}"));
    let input: Vec<String> = cases.iter().map(hex::encode).collect();
    let mut stdin = child.stdin.take().unwrap();
    stdin
        .write_all(serde_json::to_string(&input).unwrap().as_bytes())
        .unwrap();
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "h11 framing failed (scripts/test installs h11 in its venv): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Write the whole case at once, then read until the gateway closes or stays quiet. The socket is
/// returned open: a request whose body never ends stays in flight (as h11 says: incomplete)
/// instead of reaching the upstream as an aborted body when the client goes away.
async fn exchange(addr: std::net::SocketAddr, bytes: &[u8]) -> (String, bool, TcpStream) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let _ = s.write_all(bytes).await;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let hard = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let idle = tokio::time::Instant::now() + Duration::from_millis(800);
        match tokio::time::timeout_at(idle.min(hard), s.read(&mut chunk)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return (String::from_utf8_lossy(&buf).into_owned(), true, s),
            Ok(Ok(n)) => buf.extend_from_slice(&chunk[..n]),
            Err(_) => return (String::from_utf8_lossy(&buf).into_owned(), false, s),
        }
    }
}

/// (method, path and query, body length) as the upstream can compare them.
type Framed = (String, String, u64);

/// h11's request target as the upstream sees it: absolute form loses scheme and authority.
fn origin_form(target: &str) -> String {
    match target.split_once("://") {
        Some((_, rest)) => rest.find('/').map_or("/".into(), |i| rest[i..].to_string()),
        None => target.to_string(),
    }
}

fn case_of(path: &str) -> Option<usize> {
    let digits: String = path
        .strip_prefix("/d")?
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

/// What went wrong with one case, if anything.
fn judge(h11: &Value, forwarded: &[Framed], response: &str, closed: bool) -> Option<String> {
    let framed: Vec<(Framed, bool)> = h11["requests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let f = (
                r[0].as_str().unwrap().to_string(),
                origin_form(r[1].as_str().unwrap()),
                r[2].as_u64().unwrap(),
            );
            (f, r[3].as_bool().unwrap())
        })
        .collect();
    let end = h11["end"].as_str().unwrap();
    // A chunked body on GET or HEAD is not forwarded (hyper's client sends no body of unknown
    // length with those methods), so the upstream cannot count it; the requests after it still
    // show whether it was framed alike.
    let same = |f: &Framed, h: &Framed| {
        f.0 == h.0
            && f.1 == h.1
            && (f.2 == h.2 || (f.2 == 0 && matches!(f.0.as_str(), "GET" | "HEAD")))
    };
    // For the same reason a GET or HEAD goes upstream, complete, as soon as its head is read: one
    // whose body h11 is still waiting for may already be there.
    let pending = h11.get("pending").map(|p| {
        let (method, target) = (p[0].as_str().unwrap(), p[1].as_str().unwrap());
        (method.to_string(), origin_form(target), 0)
    });
    let forwarded = match (forwarded.split_last(), pending) {
        (Some((last, rest)), Some(p))
            if rest.len() == framed.len()
                && *last == p
                && matches!(p.0.as_str(), "GET" | "HEAD") =>
        {
            rest
        }
        _ => forwarded,
    };
    let agree = forwarded.len() <= framed.len()
        && forwarded.iter().zip(&framed).all(|(f, (h, _))| same(f, h));
    if !agree {
        return Some(format!(
            "forwarded {forwarded:?}, but h11 frames {framed:?} then {end}"
        ));
    }
    let statuses: Vec<&str> = response
        .split("\r\n")
        .filter(|l| l.starts_with("HTTP/1."))
        .filter_map(|l| l.split_whitespace().nth(1))
        // Interim responses (100 Continue) answer no request.
        .filter(|s| !s.starts_with('1'))
        .collect();
    let refused = closed && statuses.last() == Some(&"400");
    // A server may close a connection after any response (RFC 9112 §9.6); hyper does when a body
    // was left unread (as above, with GET). Nothing after it was read as a request.
    let closed_early = closed && end != "error" && statuses.len() == forwarded.len();
    // The gateway stopped where h11 would close the connection too (HTTP/1.0, Connection: close).
    let closed_like_h11 = closed
        && forwarded.len() == statuses.len()
        && forwarded.len().checked_sub(1).is_some_and(|i| framed[i].1);
    let stopped_short = forwarded.len() < framed.len();
    let disagree = end == "error" || stopped_short;
    if disagree && !refused && !closed_like_h11 && !closed_early {
        return Some(format!(
            "h11 frames {framed:?} then {end} ({}); the gateway forwarded {forwarded:?} and answered {statuses:?} (closed: {closed}) instead of 400 and close",
            h11["error"].as_str().unwrap_or("")
        ));
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_never_frames_a_request_differently_from_h11() {
    let dir = tempfile::tempdir().unwrap();
    let up = Upstream::start().await;
    // A long upstream timeout: a body that never ends must stay in flight for the whole test,
    // not reach the upstream as an aborted (partial) body when the route times out.
    let routes = route("all", "/", &up.url(), "").replace("timeout = \"2s\"", "timeout = \"60s\"");
    let toml = base_config(dir.path(), "", "", &routes);
    let gw = start_in_process(dir.path(), &toml).await;

    let cases = corpus();
    let h11 = h11_framing(&cases);
    assert_eq!(h11.len(), cases.len());
    let mut answers = Vec::new();
    for batch in cases.chunks(48) {
        let runs = batch.iter().map(|c| exchange(gw.data_addr, c));
        answers.extend(futures_util::future::join_all(runs).await);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;

    let mut forwarded: BTreeMap<usize, Vec<Framed>> = BTreeMap::new();
    for s in up.seen.lock().unwrap().iter() {
        let case = case_of(&s.path_and_query)
            .unwrap_or_else(|| panic!("upstream saw a target of no case: {s:?}"));
        forwarded.entry(case).or_default().push((
            s.method.clone(),
            s.path_and_query.clone(),
            s.body_bytes,
        ));
    }
    let (mut agreed, mut refused) = (0, 0);
    let mut failures = Vec::new();
    for (i, (case, (response, closed, _open))) in cases.iter().zip(&answers).enumerate() {
        let fwd = forwarded.get(&i).map(Vec::as_slice).unwrap_or_default();
        match judge(&h11[i], fwd, response, *closed) {
            Some(why) => failures.push(format!(
                "case {i} {:?}:\n  {why}",
                String::from_utf8_lossy(case)
            )),
            None if fwd.is_empty() && !h11[i]["requests"].as_array().unwrap().is_empty() => {
                refused += 1
            }
            None => agreed += 1,
        }
    }
    eprintln!(
        "{} cases: {agreed} framed alike, {refused} refused by the gateway, {} disagreements",
        cases.len(),
        failures.len()
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    drop(answers);
    gw.stop().await;
}

/// Chunked bodies h11 and hyper read differently (found by the test above). In one write the
/// guard sees the whole request before the pipeline checks it: 400 and close, nothing upstream.
const AMBIGUOUS_CHUNKED: &[(&str, &str)] = &[
    ("bare-lf-size", "5\nhello\r\n0\r\n\r\n"),
    ("space-before-ext", "5 ;ext=1\r\nhello\r\n0\r\n\r\n"),
    ("leading-space", " 5\r\nhello\r\n0\r\n\r\n"),
    ("plus-sign", "+5\r\nhello\r\n0\r\n\r\n"),
    ("data-not-crlf", "5\r\nhelloXX0\r\n\r\n"),
    (
        "request-line-in-trailers",
        "5\r\nhello\r\n0\r\nX-T: 1\r\nGET /c/smuggled HTTP/1.1\r\nHost: a\r\n\r\n",
    ),
    (
        "bare-lf-trailers",
        "5\r\nhello\r\n0\r\n\nGET /c/smuggled HTTP/1.1\r\nHost: a\r\n\r\n",
    ),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunked_bodies_other_parsers_read_differently_are_refused_and_closed() {
    let dir = tempfile::tempdir().unwrap();
    let up = Upstream::start().await;
    let routes = route("all", "/", &up.url(), "");
    let gw = start_in_process(dir.path(), &base_config(dir.path(), "", "", &routes)).await;
    for (name, body) in AMBIGUOUS_CHUNKED {
        let req = format!(
            "POST /c/{name} HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n{body}"
        );
        let (resp, closed) =
            raw_exchange(gw.data_addr, req.as_bytes(), Duration::from_secs(3)).await;
        assert_eq!(status_of(&resp), 400, "{name}: {resp}");
        assert!(closed, "{name}: the connection must be closed");
        assert_eq!(resp.matches("HTTP/1.1 ").count(), 1, "{name}: {resp}");
    }
    assert_eq!(up.count(), 0);
    gw.stop().await;
}

/// The same bodies arriving after their head, in a later read: the request has passed the
/// pipeline and may be streaming upstream when the ambiguity shows. The upstream must never get
/// it complete (hyper alone accepts `5 ;ext=1` and would deliver all five bytes).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ambiguous_chunked_body_after_its_head_never_completes_upstream() {
    let dir = tempfile::tempdir().unwrap();
    let up = Upstream::start().await;
    let routes = route("all", "/", &up.url(), "");
    let gw = start_in_process(dir.path(), &base_config(dir.path(), "", "", &routes)).await;
    for (name, body) in AMBIGUOUS_CHUNKED {
        let mut s = TcpStream::connect(gw.data_addr).await.unwrap();
        let head =
            format!("POST /c/{name} HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n");
        s.write_all(head.as_bytes()).await.unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
        let _ = s.write_all(body.as_bytes()).await;
        let mut buf = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut buf)).await;
        assert!(
            matches!(read, Ok(Ok(_)) | Ok(Err(_))),
            "{name}: the connection must be closed"
        );
        let resp = String::from_utf8_lossy(&buf);
        assert!(!resp.contains("HTTP/1.1 200"), "{name}: {resp}");
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    for s in up.seen.lock().unwrap().iter() {
        assert!(
            s.body_bytes < 5 && !s.path_and_query.contains("smuggled"),
            "the upstream got {s:?}"
        );
    }
    gw.stop().await;
}

const WHSEC: &str = "whsec_differential_5f1e0c";

/// Stripe's header re-spelled in ways Stripe's libraries refuse: a space after the comma, the
/// hex in upper case. Refused before the upstream; the canonical spelling of the same delivery is
/// accepted, and once accepted any spelling of it is a replay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn respelled_stripe_signatures_are_refused_end_to_end() {
    use hmac::{Hmac, Mac};
    let pki = Pki::new();
    let dir = pki.dir.path();
    let up = Upstream::start().await;
    std::fs::write(dir.join("whsec"), format!("{WHSEC}\n")).unwrap();
    let extra = format!(
        r#"
[issuer]
url = "https://portcullis.corp.example"
spiffe_id = "spiffe://corp.example/portcullis"

{credential}{route}"#,
        credential = webhook_credential(
            "stripe-hooks",
            "stripe",
            &dir.join("whsec"),
            "spiffe://corp.example/external/stripe"
        ),
        route = RouteToml::new("hooks", "/hooks/", &up.url())
            .methods(&["POST"])
            .accept(&["stripe-hooks"])
            .allow(&["spiffe://corp.example/external/stripe"])
            .audience("billing"),
    );
    let gw = start_in_process(dir, &base_config(dir, "", &pki.tls_section(), &extra)).await;
    let client = pki.client(false);
    let url = format!("https://127.0.0.1:{}/hooks/stripe", gw.data_addr.port());
    let body = r#"{"id":"evt_1","type":"charge.succeeded"}"#;
    let ts = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(WHSEC.as_bytes()).unwrap();
    mac.update(format!("{ts}.{body}").as_bytes());
    let sig = hex::encode(mac.finalize().into_bytes());
    let send = |header: String| {
        client
            .post(&url)
            .header("content-type", "application/json")
            .header("stripe-signature", header)
            .body(body)
            .send()
    };
    for respelled in [
        format!("t={ts}, v1={sig}"),
        format!("t={ts},v1={}", sig.to_ascii_uppercase()),
        format!("t={ts},V1={sig}"),
        format!("t={ts},v1= {sig}"),
    ] {
        let r = send(respelled.clone()).await.unwrap();
        assert_eq!(r.status(), 401, "{respelled}");
    }
    assert_eq!(up.count(), 0);
    assert_eq!(
        send(format!("t={ts},v1={sig}")).await.unwrap().status(),
        200
    );
    assert_eq!(up.count(), 1);
    // Extra commas are a spelling Stripe's libraries accept: the same delivery, so a replay.
    let again = send(format!(",t={ts},,v1={sig},")).await.unwrap();
    assert_eq!(again.status(), 401);
    assert_eq!(up.count(), 1);
    gw.stop().await;
}

/// `portcullis check` names the key of every plan problem the TOML decoder finds (found by the
/// plan parser's property test: a wrong type or an unknown field used to be reported as `-`).
#[test]
fn plan_problems_from_the_toml_decoder_name_their_key() {
    let dir = tempfile::tempdir().unwrap();
    let plans = dir.path().join("plans");
    std::fs::create_dir_all(&plans).unwrap();
    let plan = |owner: &str, phases: &str| {
        format!("name = \"{{}}\"\nowner = {owner}\nlegacy_credentials = [\"k\"]\n[phases]\n{phases}\n[exit_criteria]\nmax_legacy_share = 0.01\nwindow = \"14d\"\n")
    };
    for (name, text) in [
        ("wrong-type", plan("5", "observe = 2026-11-01")),
        (
            "wrong-date",
            plan("\"o\"", "observe = 2026-11-01\nbridge = \"soon\""),
        ),
        (
            "unknown",
            plan("\"o\"", "observe = 2026-11-01\nsunset = 2027-01-01"),
        ),
    ] {
        std::fs::write(plans.join(format!("{name}.toml")), text.replace("{}", name)).unwrap();
    }
    let toml = format!(
        "{}\n[migration]\nplans_dir = \"{}\"\n",
        base_config(dir.path(), "", "", ""),
        plans.display()
    );
    let path = dir.path().join("portcullis.toml");
    std::fs::write(&path, toml).unwrap();
    let out = Command::new(bin())
        .arg("check")
        .arg("-c")
        .arg(&path)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    for (file, key) in [
        ("wrong-type.toml", "owner"),
        ("wrong-date.toml", "phases.bridge"),
        ("unknown.toml", "phases.sunset"),
    ] {
        assert!(
            err.lines()
                .any(|l| l.contains(file) && l.contains(&format!(": {key}: "))),
            "{file}: {key} missing in:\n{err}"
        );
    }
}
