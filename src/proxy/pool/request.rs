//! Writing a request to an upstream: the head as the pipeline described it (written in one pass
//! from [`UpstreamHead::for_each_field`]: the caller's fields in order minus the withheld ones, then the
//! gateway's), and the body with `Content-Length` or chunked framing.

use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::{Buf, Bytes};
use http::header::{CONTENT_LENGTH, TRANSFER_ENCODING};
use hyper::body::Body;
use tokio::io::AsyncWrite;
use tokio::net::TcpStream;

use crate::body::{BoxError, ProxyBody};
use crate::proxy::headers::UpstreamHead;
use crate::proxy::Outbound;

/// Body bytes up to this size are copied behind the head (or the previous chunk) so that they
/// go out in the same write; larger frames are written from their own buffer.
const COALESCE: usize = 16 * 1024;

/// How the request body is framed on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plan {
    /// No body (no framing field is added).
    None,
    Length(u64),
    Chunked,
}

/// The request body as the exchange holds it.
pub enum Payload {
    Empty,
    /// All of it, already in hand (a buffered body): it can be sent again on a fresh
    /// connection.
    InHand(Bytes),
    /// Streamed from the caller while being sent (`first`: a frame already taken from it). Once
    /// an attempt took it, it is gone: such a request is never sent twice.
    Stream {
        first: Option<Bytes>,
        body: Option<ProxyBody>,
    },
}

impl Payload {
    /// `in_hand`: the pipeline buffered the body (or it is empty), so its frames are ready now.
    pub fn new(mut body: ProxyBody, in_hand: bool) -> Payload {
        if body.is_end_stream() {
            return Payload::Empty;
        }
        if !in_hand {
            return Payload::Stream {
                first: None,
                body: Some(body),
            };
        }
        // A buffered body (`body::full`) yields its one frame at once, then ends.
        let waker = std::task::Waker::noop();
        let mut cx = Context::from_waker(waker);
        match Pin::new(&mut body).poll_frame(&mut cx) {
            Poll::Ready(None) => Payload::Empty,
            Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                Ok(data) if body.is_end_stream() => Payload::InHand(data),
                Ok(data) => Payload::Stream {
                    first: Some(data),
                    body: Some(body),
                },
                Err(_) if body.is_end_stream() => Payload::Empty,
                Err(_) => Payload::Stream {
                    first: None,
                    body: Some(body),
                },
            },
            // Not what a buffered body does: send it as a stream, never twice.
            Poll::Ready(Some(Err(_))) | Poll::Pending => Payload::Stream {
                first: None,
                body: Some(body),
            },
        }
    }

    /// Whether another attempt could send the same body.
    pub fn replayable(&self) -> bool {
        !matches!(self, Payload::Stream { .. })
    }

    /// How the body goes on the wire, from the fields the upstream receives and what the body
    /// knows of itself (hyper's client rules: the pipeline's `Content-Length` is kept, an exact
    /// size gets one, anything else is chunked).
    pub fn plan(&self, head: &UpstreamHead) -> Plan {
        let exact = match self {
            Payload::Empty => return Plan::None,
            Payload::InHand(b) => Some(b.len() as u64),
            Payload::Stream { first, body } => match (first, body) {
                (Some(f), Some(b)) => b.size_hint().exact().map(|n| n + f.len() as u64),
                (None, Some(b)) => b.size_hint().exact(),
                (Some(f), None) => Some(f.len() as u64),
                (None, None) => Some(0),
            },
        };
        // One pass over the fields the upstream receives (a scan, no hashing).
        let (mut declared, mut chunked) = (None, false);
        head.for_each_field(|name, v| {
            if name == TRANSFER_ENCODING {
                chunked = true;
            } else if name == CONTENT_LENGTH {
                match super::response::content_length(v.as_bytes()) {
                    Ok(n) if declared.is_none_or(|d| d == n) => declared = Some(n),
                    // Unusable or conflicting (the framing guard refuses those first): chunked.
                    _ => chunked = true,
                }
            }
        });
        if chunked {
            return Plan::Chunked;
        }
        match declared.or(exact) {
            Some(n) => Plan::Length(n),
            None => Plan::Chunked,
        }
    }

    /// The body for one attempt.
    pub fn take(&mut self) -> (Option<Bytes>, Option<ProxyBody>) {
        match self {
            Payload::Empty => (None, None),
            Payload::InHand(b) => (Some(b.clone()), None),
            Payload::Stream { first, body } => (first.take(), body.take()),
        }
    }
}

/// Write the request head to `out`: origin-form target, the fields in the order of
/// [`UpstreamHead::fields`] ([`UpstreamHead::for_each_field`]), no `Host` added, the framing field the plan needs.
pub fn write_head(req: &Outbound, plan: Plan, out: &mut Vec<u8>) {
    out.extend_from_slice(req.method.as_str().as_bytes());
    out.push(b' ');
    let target = req.uri.path_and_query().map_or("/", |pq| pq.as_str());
    out.extend_from_slice(if target.is_empty() {
        b"/"
    } else {
        target.as_bytes()
    });
    out.extend_from_slice(b" HTTP/1.1\r\n");
    let mut has_length = false;
    req.head.for_each_field(|name, value| {
        has_length |= name == CONTENT_LENGTH;
        // The framing fields are ours to write: the caller's hop-by-hop coding is never
        // forwarded, and a length does not go with a chunked body.
        if name == TRANSFER_ENCODING || (name == CONTENT_LENGTH && plan == Plan::Chunked) {
            return;
        }
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    });
    match plan {
        Plan::Length(n) if !has_length => {
            out.extend_from_slice(b"content-length: ");
            out.extend_from_slice(crate::units::decimal(n, &mut [0; 20]));
            out.extend_from_slice(b"\r\n");
        }
        Plan::Chunked => out.extend_from_slice(b"transfer-encoding: chunked\r\n"),
        _ => {}
    }
    out.extend_from_slice(b"\r\n");
}

/// Why sending the request stopped.
#[derive(Debug)]
pub enum SendError {
    /// The caller's body failed (too large, the caller went away, a stall): never retried.
    Body(BoxError),
    /// The body did not match its declared length.
    Length(&'static str),
    /// Writing to the upstream failed.
    Io(std::io::Error),
}

/// The request on its way out: the head, then the body, polled alongside the response so that
/// an upstream that answers before reading the whole body is never waited on.
pub struct Sending<'a> {
    out: &'a mut Vec<u8>,
    at: usize,
    /// A large frame written from its own buffer after `out`.
    big: Bytes,
    chunked: bool,
    /// Bytes the declared length still expects.
    left: Option<u64>,
    body: Option<ProxyBody>,
    done: bool,
}

impl<'a> Sending<'a> {
    /// `out` holds the head already.
    pub fn new(
        out: &'a mut Vec<u8>,
        plan: Plan,
        first: Option<Bytes>,
        body: Option<ProxyBody>,
    ) -> Result<Sending<'a>, SendError> {
        let mut s = Sending {
            out,
            at: 0,
            big: Bytes::new(),
            chunked: plan == Plan::Chunked,
            left: match plan {
                Plan::Length(n) => Some(n),
                Plan::None => Some(0),
                Plan::Chunked => None,
            },
            body,
            done: false,
        };
        if let Some(data) = first {
            s.push(data)?;
        }
        if s.body.is_none() {
            s.finish()?;
        }
        Ok(s)
    }

    /// Whether the whole request was written.
    pub fn is_done(&self) -> bool {
        self.done && self.at >= self.out.len() && self.big.is_empty()
    }

    fn push(&mut self, data: Bytes) -> Result<(), SendError> {
        if data.is_empty() {
            // An empty chunk would end a chunked body.
            return Ok(());
        }
        if let Some(left) = self.left.as_mut() {
            *left = left
                .checked_sub(data.len() as u64)
                .ok_or(SendError::Length(
                    "request body longer than its Content-Length",
                ))?;
        }
        if self.chunked {
            let mut hex = [0u8; 16];
            self.out.extend_from_slice(hex_len(data.len(), &mut hex));
            self.out.extend_from_slice(b"\r\n");
        }
        if data.len() <= COALESCE {
            self.out.extend_from_slice(&data);
            if self.chunked {
                self.out.extend_from_slice(b"\r\n");
            }
        } else {
            self.big = data;
        }
        Ok(())
    }

    fn finish(&mut self) -> Result<(), SendError> {
        self.done = true;
        if self.chunked {
            self.out.extend_from_slice(b"0\r\n\r\n");
        }
        match self.left {
            Some(n) if n > 0 => Err(SendError::Length(
                "request body shorter than its Content-Length",
            )),
            _ => Ok(()),
        }
    }

    /// Write what is in hand and take more of the body; `Ready(Ok)` once all was written.
    pub fn poll(
        &mut self,
        cx: &mut Context<'_>,
        io: &mut TcpStream,
    ) -> Poll<Result<(), SendError>> {
        loop {
            // Gather what the body has ready (behind what is still to write), up to a bound.
            while self.big.is_empty() && self.out.len() - self.at.min(self.out.len()) < COALESCE {
                let Some(body) = self.body.as_mut() else {
                    break;
                };
                match Pin::new(body).poll_frame(cx) {
                    Poll::Ready(Some(Ok(frame))) => {
                        // Trailers of the caller's body are not forwarded.
                        if let Ok(data) = frame.into_data() {
                            self.push(data)?;
                        }
                    }
                    Poll::Ready(Some(Err(e))) => return Poll::Ready(Err(SendError::Body(e))),
                    Poll::Ready(None) => {
                        self.body = None;
                        self.finish()?;
                    }
                    Poll::Pending => break,
                }
            }
            if self.at < self.out.len() {
                let pending = self.out.get(self.at..).unwrap_or_default();
                let n =
                    ready!(Pin::new(&mut *io).poll_write(cx, pending)).map_err(SendError::Io)?;
                if n == 0 {
                    return Poll::Ready(Err(SendError::Io(std::io::ErrorKind::WriteZero.into())));
                }
                self.at += n;
                if self.at >= self.out.len() {
                    self.out.clear();
                    self.at = 0;
                }
                continue;
            }
            if !self.big.is_empty() {
                let n =
                    ready!(Pin::new(&mut *io).poll_write(cx, &self.big)).map_err(SendError::Io)?;
                if n == 0 {
                    return Poll::Ready(Err(SendError::Io(std::io::ErrorKind::WriteZero.into())));
                }
                self.big.advance(n);
                if self.big.is_empty() && self.chunked {
                    self.out.extend_from_slice(b"\r\n");
                }
                continue;
            }
            if self.done {
                return Poll::Ready(Ok(()));
            }
            // Nothing to write and the body has nothing ready: it will wake us.
            return Poll::Pending;
        }
    }
}

fn hex_len(n: usize, digits: &mut [u8; 16]) -> &[u8] {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut at = digits.len();
    let mut n = n as u64;
    loop {
        at -= 1;
        if let Some(d) = digits.get_mut(at) {
            *d = HEX.get((n & 0xf) as usize).copied().unwrap_or(b'0');
        }
        n >>= 4;
        if n == 0 || at == 0 {
            break;
        }
    }
    digits.get(at..).unwrap_or_default()
}

#[cfg(test)]
#[path = "request_tests.rs"]
mod tests;
