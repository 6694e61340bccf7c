//! The response body of a plain-HTTP upstream: it owns the connection while it streams and puts
//! it back into the pool when the body ended cleanly.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};

use super::response::{Chunked, Decoded, Framing};
use super::{Conn, H1Pool};
use crate::body::BoxError;

/// How the rest of the body is delimited.
enum Reading {
    Length(u64),
    Chunked(Chunked),
    /// Until the upstream closes.
    Close,
}

/// A body that reads from its upstream connection as the caller's side polls it. Ended cleanly
/// (its length reached, the last chunk and trailers read), the connection goes back into the
/// pool when `back` is set; dropped early, failed or close-delimited, the connection is dropped,
/// which closes it.
pub struct UpstreamBody {
    conn: Option<Conn>,
    reading: Reading,
    back: Option<Arc<H1Pool>>,
}

/// The upstream closed before the body's end (the caller's connection is cut, as with hyper).
#[derive(Debug, thiserror::Error)]
#[error("the upstream closed the connection before the end of the response body")]
pub struct Truncated;

impl UpstreamBody {
    /// `framing` is not [`Framing::Empty`] (that answer gets an empty body and its connection
    /// back at once).
    pub(super) fn new(conn: Conn, framing: Framing, back: Option<Arc<H1Pool>>) -> Self {
        let reading = match framing {
            Framing::Length(n) => Reading::Length(n),
            Framing::Chunked => Reading::Chunked(Chunked::default()),
            Framing::Close | Framing::Empty => Reading::Close,
        };
        let back = if matches!(reading, Reading::Close) {
            None
        } else {
            back
        };
        UpstreamBody {
            conn: Some(conn),
            reading,
            back,
        }
    }

    /// The body ended cleanly: the connection goes back, unless the upstream sent more than
    /// this answer (bytes nobody asked for make it unusable).
    fn end(&mut self) {
        if let (Some(conn), Some(pool)) = (self.conn.take(), self.back.take()) {
            if conn.buf.is_empty() {
                pool.put(conn);
            }
        }
    }

    fn fail(&mut self, e: BoxError) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        self.conn = None;
        self.back = None;
        Poll::Ready(Some(Err(e)))
    }
}

impl Body for UpstreamBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        loop {
            let Some(conn) = this.conn.as_mut() else {
                return Poll::Ready(None);
            };
            // First what is in hand.
            match &mut this.reading {
                Reading::Length(0) => {
                    this.end();
                    return Poll::Ready(None);
                }
                Reading::Length(left) if !conn.buf.is_empty() => {
                    let take = usize::try_from(*left)
                        .unwrap_or(usize::MAX)
                        .min(conn.buf.len());
                    *left -= take as u64;
                    let data = conn.buf.split_to(take).freeze();
                    if *left == 0 {
                        // Back into the pool before the caller even asks for the end.
                        this.end();
                    }
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                Reading::Chunked(dec) if !conn.buf.is_empty() || dec.is_done() => {
                    match dec.decode(&mut conn.buf) {
                        Ok(Decoded::Data(data)) => return Poll::Ready(Some(Ok(Frame::data(data)))),
                        Ok(Decoded::End) => {
                            this.end();
                            return Poll::Ready(None);
                        }
                        Ok(Decoded::NeedMore) => {}
                        Err(e) => return this.fail(Box::new(e)),
                    }
                }
                Reading::Close if !conn.buf.is_empty() => {
                    let data = conn.buf.split().freeze();
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                _ => {}
            }
            match conn.poll_fill(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Ok(0)) if matches!(this.reading, Reading::Close) => {
                    this.conn = None;
                    return Poll::Ready(None);
                }
                Poll::Ready(Ok(0)) => return this.fail(Box::new(Truncated)),
                Poll::Ready(Ok(_)) => {}
                Poll::Ready(Err(e)) => return this.fail(Box::new(e)),
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.conn.is_none() || matches!(self.reading, Reading::Length(0))
    }

    fn size_hint(&self) -> SizeHint {
        match self.reading {
            Reading::Length(n) => SizeHint::with_exact(n),
            _ => SizeHint::default(),
        }
    }
}
