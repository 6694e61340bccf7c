//! `[listen] send_timeout`: a caller that takes none of its answer for this long is cut.
//!
//! Without it, a caller that keeps its connection open but stops reading holds the connection,
//! the request's concurrency slot and the upstream connection behind it for as long as it likes
//! (back-pressure stops the bytes, not the waiting). nginx's `send_timeout` and HAProxy's
//! `timeout client` bound the same thing the same way: the timer runs only while a write is
//! blocked, and any progress restarts it, so a slow reader that keeps reading is never cut.
//!
//! The wrapper sits directly on the TCP stream, under TLS and under both HTTP/1.1 cores and h2,
//! so it bounds every byte the gateway sends a caller, TLS records included. On the normal path it
//! costs one branch per write: the timer is armed only when a write would block.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// A stream whose writes fail with `TimedOut` once one has been blocked for `timeout`.
#[derive(Debug)]
pub struct SendDeadline<S> {
    io: S,
    timeout: Duration,
    /// Created at the first blocked write, then reused.
    sleep: Option<Pin<Box<Sleep>>>,
    /// A write is blocked and `sleep` holds its deadline.
    armed: bool,
}

impl<S> SendDeadline<S> {
    pub fn new(io: S, timeout: Duration) -> Self {
        SendDeadline {
            io,
            timeout,
            sleep: None,
            armed: false,
        }
    }

    pub fn get_ref(&self) -> &S {
        &self.io
    }

    /// The inner write returned `Pending`: start the clock if it is not running, and fail once it
    /// has run out.
    fn blocked<T>(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<T>> {
        if !self.armed {
            self.armed = true;
            let deadline = Instant::now() + self.timeout;
            match &mut self.sleep {
                Some(s) => s.as_mut().reset(deadline),
                None => self.sleep = Some(Box::pin(tokio::time::sleep_until(deadline))),
            }
        }
        let expired = match &mut self.sleep {
            Some(s) => s.as_mut().poll(cx).is_ready(),
            None => false,
        };
        if expired {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the caller took nothing of its answer for send_timeout",
            )));
        }
        Poll::Pending
    }

    fn progressed<T>(
        &mut self,
        r: Poll<io::Result<T>>,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<T>> {
        match r {
            Poll::Pending => self.blocked(cx),
            ready => {
                self.armed = false;
                ready
            }
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for SendDeadline<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for SendDeadline<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        let r = Pin::new(&mut this.io).poll_write(cx, buf);
        this.progressed(r, cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        let r = Pin::new(&mut this.io).poll_write_vectored(cx, bufs);
        this.progressed(r, cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    // A flush or shutdown that completes has moved no byte of the answer (a TCP stream's flush
    // is a no-op): it never restarts the clock, only a blocked one runs it.
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        match Pin::new(&mut this.io).poll_flush(cx) {
            Poll::Pending => this.blocked(cx),
            ready => ready,
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        match Pin::new(&mut this.io).poll_shutdown(cx) {
            Poll::Pending => this.blocked(cx),
            ready => ready,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn a_reader_that_takes_nothing_is_cut_and_one_that_keeps_reading_is_not() {
        // A pipe of 64 bytes: writes block as soon as the reader falls behind.
        let (a, mut b) = tokio::io::duplex(64);
        let timeout = Duration::from_millis(400);
        let mut w = SendDeadline::new(a, timeout);
        let chunk = [7u8; 64];
        w.write_all(&chunk).await.expect("fits the pipe");
        // Slow but steady: 64 bytes every 150 ms, well within the timeout each time, 750 ms in
        // all (longer than the timeout: only restarting the clock on progress lets it pass).
        let reader = tokio::spawn(async move {
            let mut buf = [0u8; 64];
            for _ in 0..5 {
                tokio::time::sleep(Duration::from_millis(150)).await;
                b.read_exact(&mut buf).await.expect("read");
            }
            b
        });
        for _ in 0..4 {
            w.write_all(&chunk)
                .await
                .expect("a reader that keeps reading");
        }
        let b = reader.await.expect("reader");
        // Now nobody reads: the next blocked write fails after the timeout, not before.
        w.write_all(&chunk).await.expect("fits the drained pipe");
        let t = Instant::now();
        let e = w.write_all(&chunk).await.expect_err("cut");
        assert_eq!(e.kind(), io::ErrorKind::TimedOut);
        assert!(t.elapsed() >= timeout, "{:?}", t.elapsed());
        assert!(t.elapsed() < timeout * 3, "{:?}", t.elapsed());
        drop(b);
    }
}
