//! The HTTP/1.1 parsers as the fuzz targets in `fuzz/` see them (cargo feature `fuzzing`, off by
//! default; docs/security.md). The request head parser, the request chunked decoder and the
//! upstream response parser are private to their modules: they are compiled here a second time
//! from the same files (so the driver modules they belong to need no hook), next to the framing
//! guard's own verdicts. Each function runs one parser over bytes the way its connection would and
//! reports what it framed; the targets compare the reports.

// Parts of the copied modules only their own drivers use (the head's fields, the `Expect`
// handling) are dead here.
#[allow(
    dead_code,
    reason = "a second copy of the parser, of which only some items are used"
)]
#[expect(clippy::duplicate_mod, reason = "a second copy, see above")]
#[path = "h1/chunked.rs"]
mod chunked;
#[allow(
    dead_code,
    reason = "a second copy of the parser, of which only some items are used"
)]
#[expect(clippy::duplicate_mod, reason = "a second copy, see above")]
#[path = "h1/parse.rs"]
mod parse;
#[allow(
    dead_code,
    reason = "a second copy of the parser, of which only some items are used"
)]
#[expect(clippy::duplicate_mod, reason = "a second copy, see above")]
#[path = "../proxy/pool/response.rs"]
mod response;

#[path = "h1/trace.rs"]
mod trace;

use bytes::BytesMut;

pub use super::framing::{guard_trace, GuardTrace};
pub use trace::{native_trace, request_chunked, Framed, NativeTrace};

/// How the upstream client delimits a response body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delimited {
    /// No body (HEAD, 204, 304, a length of 0).
    Empty,
    Length(u64),
    Chunked,
    /// Until the upstream closes.
    Close,
}

/// What the upstream client made of an answer.
#[derive(Debug, PartialEq, Eq)]
pub enum Answer {
    /// The head is not complete yet.
    Partial,
    /// Refused (502 to the caller).
    Malformed,
    /// A final head, its framing, and for a body of known framing what decoding it from the
    /// bytes after the head gave: the data, and whether it ended (`Some(true)`), failed
    /// (`Some(false)`) or waits (`None`).
    Final {
        framed: Delimited,
        keep_alive: bool,
        data: Vec<u8>,
        ended: Option<bool>,
    },
}

/// The upstream client's head parse (interim answers skipped) and body decoding over `bytes`,
/// fed in the pieces `cuts` marks.
pub fn upstream_response(bytes: &[u8], cuts: &[usize], head_request: bool) -> Answer {
    let ends = crate::transport::framing::piece_ends(cuts, bytes.len());
    let (mut buf, mut from) = (BytesMut::new(), 0);
    let mut head = None;
    let mut data = Vec::new();
    let mut dec = response::Chunked::default();
    let mut left = 0u64;
    for end in ends {
        buf.extend_from_slice(bytes.get(from..end).unwrap_or_default());
        from = end;
        while head.is_none() {
            match response::parse(&mut buf, head_request) {
                Ok(response::Parsed::Partial) => break,
                Ok(response::Parsed::Interim) => {}
                Ok(response::Parsed::Final(h)) => {
                    if let response::Framing::Length(n) = h.framing {
                        left = n;
                    }
                    head = Some(h);
                }
                Err(_) => return Answer::Malformed,
            }
        }
        let Some(h) = head.as_ref() else { continue };
        match h.framing {
            response::Framing::Chunked => loop {
                match dec.decode(&mut buf) {
                    Ok(response::Decoded::Data(d)) => data.extend_from_slice(&d),
                    Ok(response::Decoded::NeedMore) => break,
                    Ok(response::Decoded::End) => break,
                    Err(_) => {
                        return final_answer(h, data, Some(false));
                    }
                }
            },
            response::Framing::Length(_) => {
                let take = usize::try_from(left).unwrap_or(usize::MAX).min(buf.len());
                data.extend_from_slice(&buf.split_to(take));
                left -= take as u64;
            }
            response::Framing::Close => data.extend_from_slice(&buf.split()),
            response::Framing::Empty => {}
        }
    }
    let Some(h) = head.as_ref() else {
        return Answer::Partial;
    };
    let ended = match h.framing {
        response::Framing::Chunked => dec.is_done().then_some(true),
        response::Framing::Length(_) => (left == 0).then_some(true),
        response::Framing::Empty => Some(true),
        response::Framing::Close => None,
    };
    final_answer(h, data, ended)
}

fn final_answer(h: &response::Head, data: Vec<u8>, ended: Option<bool>) -> Answer {
    Answer::Final {
        framed: match h.framing {
            response::Framing::Empty => Delimited::Empty,
            response::Framing::Length(n) => Delimited::Length(n),
            response::Framing::Chunked => Delimited::Chunked,
            response::Framing::Close => Delimited::Close,
        },
        keep_alive: h.keep_alive,
        data,
        ended,
    }
}
