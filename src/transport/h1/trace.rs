//! The native server core run over a byte stream the way its connection driver runs it, reporting
//! what it framed: shared by the unit tests' property tests (`parse::review_tests`) and the fuzz
//! targets (`transport::fuzzing`, which compiles the parsers a second time), so both check the
//! same thing. `super` provides the `parse` and `chunked` modules.

use bytes::BytesMut;

use super::{chunked, parse};

/// How the native core framed a request's body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framed {
    /// No body (none announced, or a length of 0).
    None,
    Length(u64),
    Chunked,
}

/// What the native server core made of a byte stream a caller sent.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct NativeTrace {
    /// The framing of every head it accepted, in order.
    pub heads: Vec<Framed>,
    /// Body bytes decoded (all bodies together).
    pub body_bytes: u64,
    /// Bodies read to their end.
    pub bodies_ended: u64,
    /// It refused a head or a body (the connection closes there).
    pub refused: bool,
    /// The last body was still going when the bytes ran out.
    pub in_body: bool,
}

const LIMITS: parse::Limits = parse::Limits {
    max_bytes: 16 * 1024,
    max_fields: 100,
};

/// Run the native head parser and body decoders over `stream`, delivered in the pieces `cuts`
/// marks (offsets into `stream`, in any order; out-of-range ones are ignored), as the connection
/// would: a head waits for more bytes, a body is decoded from what is buffered.
pub fn native_trace(stream: &[u8], cuts: &[usize]) -> NativeTrace {
    let ends = crate::transport::framing::piece_ends(cuts, stream.len());
    let mut t = NativeTrace::default();
    let (mut buf, mut scan, mut from) = (BytesMut::new(), parse::Scan::default(), 0);
    let mut body: Option<Body> = None;
    // The head asked for the connection to close (1.0 without keep-alive, `Connection: close`,
    // CONNECT): the driver reads nothing after its body.
    let mut last = false;
    for end in ends {
        buf.extend_from_slice(stream.get(from..end).unwrap_or_default());
        from = end;
        loop {
            if let Some(b) = body.as_mut() {
                match b.step(&mut buf) {
                    // Nothing more buffered of this body: read more.
                    Ok(Some(0)) => break,
                    Ok(Some(n)) => t.body_bytes += n,
                    Ok(None) => {
                        t.bodies_ended += 1;
                        body = None;
                        if last {
                            return t;
                        }
                    }
                    Err(()) => {
                        t.refused = true;
                        return t;
                    }
                }
                continue;
            }
            match parse::parse(&mut buf, &mut scan, LIMITS, &mut None) {
                Ok(Some(head)) => {
                    let (framed, next) = match head.framing {
                        parse::Framing::None => (Framed::None, None),
                        parse::Framing::Length(n) => (Framed::Length(n), Some(Body::Length(n))),
                        parse::Framing::Chunked => {
                            (Framed::Chunked, Some(Body::Chunked(chunked::Chunked::Size)))
                        }
                    };
                    t.heads.push(framed);
                    last = !head.keep_alive || head.method == http::Method::CONNECT;
                    if last && next.is_none() {
                        return t;
                    }
                    body = next;
                }
                Ok(None) => break,
                Err(_) => {
                    t.refused = true;
                    return t;
                }
            }
        }
    }
    t.in_body = body.is_some();
    t
}

/// A request body being read.
enum Body {
    Length(u64),
    Chunked(chunked::Chunked),
}

impl Body {
    /// `Ok(Some(n))`: n data bytes (0: nothing buffered, read more), `Ok(None)`: the body
    /// ended.
    fn step(&mut self, buf: &mut BytesMut) -> Result<Option<u64>, ()> {
        match self {
            Body::Length(0) => Ok(None),
            Body::Length(left) => {
                let take = usize::try_from(*left).unwrap_or(usize::MAX).min(buf.len());
                let _ = buf.split_to(take);
                *left -= take as u64;
                Ok(Some(take as u64))
            }
            Body::Chunked(c) => match c.step(buf) {
                Ok(chunked::Step::Data(d)) => Ok(Some(d.len() as u64)),
                Ok(chunked::Step::More) => Ok(Some(0)),
                Ok(chunked::Step::End) => Ok(None),
                Err(_) => Err(()),
            },
        }
    }
}

/// The request chunked decoder over `body` fed in the pieces `cuts` marks: the data it
/// returned, and whether it ended (`Some(true)`), failed (`Some(false)`) or waits (`None`).
pub fn request_chunked(body: &[u8], cuts: &[usize]) -> (Vec<u8>, Option<bool>) {
    let ends = crate::transport::framing::piece_ends(cuts, body.len());
    let (mut buf, mut from, mut out) = (BytesMut::new(), 0, Vec::new());
    let mut dec = chunked::Chunked::Size;
    for end in ends {
        buf.extend_from_slice(body.get(from..end).unwrap_or_default());
        from = end;
        loop {
            match dec.step(&mut buf) {
                Ok(chunked::Step::Data(d)) => out.extend_from_slice(&d),
                Ok(chunked::Step::More) => break,
                Ok(chunked::Step::End) => return (out, Some(true)),
                Err(_) => return (out, Some(false)),
            }
        }
    }
    (out, None)
}
