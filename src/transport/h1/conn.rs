//! The connection's state, shared by the driver and the request body it hands the pipeline. The
//! body reads from the connection (and writes `100 Continue`) when it is polled, wherever that
//! happens (the handler's future runs in the connection's task; an upstream client may poll the
//! body from its own), so the stream, the read buffer and the decoder sit behind one mutex that
//! is only ever held within a single poll, never across an await.

use std::future::Future;
use std::io;
use std::pin::{pin, Pin};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{ready, Context, Poll, Waker};

use bytes::{Bytes, BytesMut};
use http_body::{Frame, SizeHint};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};

use super::chunked::{Chunked, Step};
use crate::body::BoxError;

/// Bytes asked of the stream at a time, at least.
pub(super) const READ_CHUNK: usize = 8 * 1024;

/// A read buffer grown beyond this (for one large head) is given back once it is empty.
pub(super) const READ_KEEP: usize = 2 * READ_CHUNK;

const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

/// The body of the request in flight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum BodyState {
    /// Read to its end (or there was none).
    Done,
    /// `Content-Length`: this many bytes left.
    Length(u64),
    Chunked(Chunked),
    /// Ill-formed, cut short or failed to read: the connection cannot be reused.
    Failed,
}

/// `Expect: 100-continue`: not asked, owed (this many bytes of it written), or written and to be
/// flushed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Continue {
    None,
    Owed(usize),
    Flush,
}

#[derive(Debug)]
pub(super) struct Conn<S> {
    pub io: S,
    pub rbuf: BytesMut,
    /// Which request's body `body` is: a body value of an earlier request reads nothing more.
    pub seq: u64,
    pub body: BodyState,
    pub cont: Continue,
    /// The driver gave up the connection: bodies still held elsewhere fail.
    pub closed: bool,
    /// The driver, waiting for the body to end before it watches for the caller going away
    /// (`poll_gone`): woken when it ends, wherever the body is read.
    pub watcher: Option<Waker>,
    /// `rbuf`'s allocation grew beyond `READ_KEEP`.
    grown: bool,
}

pub(super) type Shared<S> = Arc<Mutex<Conn<S>>>;

/// The lock is never held across an await, and no code under it panics; a poisoned one still
/// holds consistent state.
pub(super) fn lock<S>(m: &Mutex<Conn<S>>) -> MutexGuard<'_, Conn<S>> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl<S> Conn<S> {
    pub fn new(io: S) -> Self {
        Conn {
            io,
            rbuf: BytesMut::with_capacity(READ_CHUNK),
            seq: 0,
            body: BodyState::Done,
            cont: Continue::None,
            closed: false,
            watcher: None,
            grown: false,
        }
    }

    /// Decode the current body from what is buffered.
    pub fn decode(&mut self) -> Result<Step, &'static str> {
        match &mut self.body {
            BodyState::Done => Ok(Step::End),
            BodyState::Failed => Err("the request body failed earlier"),
            BodyState::Length(n) => {
                if self.rbuf.is_empty() {
                    return Ok(Step::More);
                }
                let take = usize::try_from(*n)
                    .unwrap_or(usize::MAX)
                    .min(self.rbuf.len());
                let data = self.rbuf.split_to(take).freeze();
                *n -= take as u64;
                if *n == 0 {
                    self.ended();
                }
                Ok(Step::Data(data))
            }
            BodyState::Chunked(c) => {
                let step = c.step(&mut self.rbuf);
                if step == Ok(Step::End) {
                    self.ended();
                }
                step
            }
        }
    }

    fn ended(&mut self) {
        self.body = BodyState::Done;
        if let Some(w) = self.watcher.take() {
            w.wake();
        }
    }

    /// Consume what is already buffered of a body nobody reads any more, without waiting for
    /// more: a refusal answered before a small body was read need not cost the connection.
    pub fn drain_buffered(&mut self) {
        loop {
            match self.decode() {
                Ok(Step::Data(_)) => {}
                Ok(Step::End) => return,
                Ok(Step::More) => return,
                Err(_) => {
                    self.body = BodyState::Failed;
                    return;
                }
            }
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Conn<S> {
    /// Read more into the buffer; `Ok(0)` at the end of the stream.
    pub fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        if self.grown && self.rbuf.is_empty() {
            // One large head does not cost the connection that much memory for its life (the
            // allocation goes once the head's fields are dropped).
            self.rbuf = BytesMut::with_capacity(READ_CHUNK);
            self.grown = false;
        } else if self.rbuf.capacity() - self.rbuf.len() < READ_CHUNK / 2 {
            self.rbuf.reserve(READ_CHUNK);
            self.grown = self.rbuf.capacity() > READ_KEEP;
        }
        // Cancel-safe: the future is dropped at once whatever it returned, and bytes it read
        // are in the buffer.
        let read = pin!(self.io.read_buf(&mut self.rbuf));
        read.poll(cx)
    }

    /// While a request is in flight, whether its caller went away: `true` at the end of the
    /// stream or on a read error (a reset), `false` once bytes arrived (a pipelined request,
    /// kept in the buffer: from then on the caller is not watched, and its end counts only
    /// after those bytes, as hyper's `mid_message_detect_eof`). Nothing is read before the
    /// request body ended: its reader reads it. Each poll is a readiness check of the stream
    /// (a read only when the socket is readable), and at most one read is buffered, so a flood
    /// of pipelined bytes waits in the socket (back-pressure).
    pub fn poll_gone(&mut self, cx: &mut Context<'_>) -> Poll<bool> {
        if self.body != BodyState::Done {
            if !self
                .watcher
                .as_ref()
                .is_some_and(|w| w.will_wake(cx.waker()))
            {
                self.watcher = Some(cx.waker().clone());
            }
            return Poll::Pending;
        }
        self.watcher = None;
        if !self.rbuf.is_empty() {
            return Poll::Ready(false);
        }
        match ready!(self.poll_fill(cx)) {
            Ok(0) | Err(_) => Poll::Ready(true),
            Ok(_) => Poll::Ready(false),
        }
    }

    /// Write what is owed of `100 Continue`.
    pub fn poll_continue(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while let Continue::Owed(off) = self.cont {
            let rest = CONTINUE.get(off..).unwrap_or_default();
            let n = ready!(Pin::new(&mut self.io).poll_write(cx, rest))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.cont = if off + n >= CONTINUE.len() {
                Continue::Flush
            } else {
                Continue::Owed(off + n)
            };
        }
        if self.cont == Continue::Flush {
            ready!(Pin::new(&mut self.io).poll_flush(cx))?;
            self.cont = Continue::None;
        }
        Poll::Ready(Ok(()))
    }

    fn poll_body(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Bytes, BoxError>>> {
        if self.closed {
            return Poll::Ready(Some(Err("the connection was closed".into())));
        }
        // hyper's rule: the caller is told to go on when the body is first wanted, not before
        // (a refusal from the head alone never asks for it).
        if self.cont != Continue::None {
            if let Err(e) = ready!(self.poll_continue(cx)) {
                self.body = BodyState::Failed;
                return Poll::Ready(Some(Err(e.into())));
            }
        }
        loop {
            match self.decode() {
                Ok(Step::Data(b)) => return Poll::Ready(Some(Ok(b))),
                Ok(Step::End) => return Poll::Ready(None),
                Ok(Step::More) => {}
                Err(e) => {
                    self.body = BodyState::Failed;
                    return Poll::Ready(Some(Err(
                        io::Error::new(io::ErrorKind::InvalidData, e).into()
                    )));
                }
            }
            match ready!(self.poll_fill(cx)) {
                Ok(0) => {
                    self.body = BodyState::Failed;
                    return Poll::Ready(Some(Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the caller closed the connection before the request body ended",
                    )
                    .into())));
                }
                Ok(_) => {}
                Err(e) => {
                    self.body = BodyState::Failed;
                    return Poll::Ready(Some(Err(e.into())));
                }
            }
        }
    }
}

/// The request body handed to the pipeline: reads from the connection as it is polled (with
/// back-pressure: nothing is read ahead of the reader beyond one buffer).
pub(super) struct NativeBody<S> {
    pub conn: Shared<S>,
    pub seq: u64,
}

impl<S> NativeBody<S> {
    fn state(&self) -> BodyState {
        let c = lock(&self.conn);
        if c.seq == self.seq {
            c.body
        } else {
            BodyState::Done
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> http_body::Body for NativeBody<S> {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let mut c = lock(&self.conn);
        if c.seq != self.seq {
            // A later request owns the connection: this body ended before it started.
            return Poll::Ready(None);
        }
        c.poll_body(cx).map(|o| o.map(|r| r.map(Frame::data)))
    }

    fn is_end_stream(&self) -> bool {
        self.state() == BodyState::Done
    }

    fn size_hint(&self) -> SizeHint {
        match self.state() {
            BodyState::Done => SizeHint::with_exact(0),
            BodyState::Length(n) => SizeHint::with_exact(n),
            BodyState::Chunked(_) | BodyState::Failed => SizeHint::default(),
        }
    }
}

/// The connection's write side, for the driver: each poll takes the lock for that poll only.
pub(super) struct Writer<'a, S>(pub &'a Mutex<Conn<S>>);

impl<S: AsyncWrite + Unpin> AsyncWrite for Writer<'_, S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut lock(self.0).io).poll_write(cx, buf)
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut lock(self.0).io).poll_flush(cx)
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut lock(self.0).io).poll_shutdown(cx)
    }
}
