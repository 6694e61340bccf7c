//! Request-smuggling guard for HTTP/1.1. hyper quietly resolves some ambiguous framings (it drops
//! `Content-Length` when `Transfer-Encoding` is present and folds repeated equal lengths), so the
//! parsed request no longer shows the ambiguity. This reader watches the raw bytes hyper reads,
//! parses each request head with the same parser hyper uses (httparse), skips bodies by their
//! framing, and raises a per-connection flag when a head could be framed two ways. The pipeline's
//! first stage refuses any request on a flagged connection with 400 and closes it.

use std::io;
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Header slots parsed on the stack; heads with more fields use the heap.
const STACK_HEADERS: usize = 64;

/// Where in the inbound byte stream we are.
#[derive(Debug)]
enum State {
    /// Accumulating a request head (bytes kept in `head`).
    Head,
    /// Skipping a body of known length.
    Fixed(u64),
    /// Chunked body: reading a chunk-size line.
    ChunkSize,
    /// Chunked body: skipping chunk data (plus its CRLF).
    ChunkData(u64),
    /// Chunked body: reading trailer lines until an empty one.
    Trailers,
    /// Stopped watching: the connection is flagged.
    Done,
}

/// Wraps the connection's read side.
#[derive(Debug)]
pub struct FramingGuard<S> {
    inner: S,
    state: State,
    /// Current head or line being accumulated.
    buf: Vec<u8>,
    max_head: usize,
    max_headers: usize,
    flag: Arc<AtomicBool>,
}

impl<S> FramingGuard<S> {
    /// Watch `inner`; `flag` turns true on ambiguous framing.
    pub fn new(inner: S, max_head: usize, max_headers: usize, flag: Arc<AtomicBool>) -> Self {
        FramingGuard {
            inner,
            state: State::Head,
            buf: Vec::new(),
            max_head,
            max_headers,
            flag,
        }
    }

    fn poison(&mut self) {
        self.flag.store(true, Ordering::Release);
        self.state = State::Done;
        self.buf = Vec::new();
    }

    fn observe(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            match self.state {
                State::Done => return,
                State::Head => {
                    // Leading CRLFs between messages are allowed (RFC 9112 §2.2).
                    if self.buf.is_empty() {
                        let skip = data
                            .iter()
                            .take_while(|b| **b == b'\r' || **b == b'\n')
                            .count();
                        data = data.get(skip..).unwrap_or_default();
                        if data.is_empty() {
                            return;
                        }
                        // The usual case: the whole head arrived in one read. Look at it where it
                        // is, without copying it.
                        if let Some(end) = find_head_end(data) {
                            let next = self.framing_of(data.get(..end).unwrap_or_default());
                            match next {
                                Some(next) => self.state = next,
                                None => return self.poison(),
                            }
                            data = data.get(end..).unwrap_or_default();
                            continue;
                        }
                    }
                    let before = self.buf.len();
                    self.buf.extend_from_slice(data);
                    // The blank line may straddle the reads: search from a little before the new
                    // bytes.
                    let from = before.saturating_sub(3);
                    let Some(end) = self
                        .buf
                        .get(from..)
                        .and_then(find_head_end)
                        .map(|e| e + from)
                    else {
                        if self.buf.len() > self.max_head {
                            // hyper refuses such a head too; flagging costs nothing and fails closed.
                            self.poison();
                        }
                        return;
                    };
                    let consumed_here = end.saturating_sub(before);
                    data = data.get(consumed_here..).unwrap_or_default();
                    let next = self.framing_of(self.buf.get(..end).unwrap_or_default());
                    // Keep the allocation for the next head that arrives in pieces.
                    self.buf.clear();
                    match next {
                        Some(next) => self.state = next,
                        None => return self.poison(),
                    }
                }
                State::Fixed(n) => {
                    let take = (data.len() as u64).min(n);
                    data = data.get(take as usize..).unwrap_or_default();
                    self.state = if n == take {
                        State::Head
                    } else {
                        State::Fixed(n - take)
                    };
                }
                State::ChunkSize | State::Trailers => {
                    let Some(nl) = data.iter().position(|b| *b == b'\n') else {
                        self.buf.extend_from_slice(data);
                        if self.buf.len() > 4096 {
                            return self.poison();
                        }
                        return;
                    };
                    self.buf
                        .extend_from_slice(data.get(..nl).unwrap_or_default());
                    data = data.get(nl + 1..).unwrap_or_default();
                    let line = std::mem::take(&mut self.buf);
                    let line = line.strip_suffix(b"\r").unwrap_or(&line);
                    if matches!(self.state, State::Trailers) {
                        if line.is_empty() {
                            self.state = State::Head;
                        }
                        continue;
                    }
                    let size = line.split(|b| *b == b';').next().unwrap_or_default();
                    match std::str::from_utf8(size)
                        .ok()
                        .and_then(|s| u64::from_str_radix(s.trim(), 16).ok())
                    {
                        Some(0) => self.state = State::Trailers,
                        // The data is followed by CRLF.
                        Some(n) => self.state = State::ChunkData(n.saturating_add(2)),
                        None => return self.poison(),
                    }
                }
                State::ChunkData(n) => {
                    let take = (data.len() as u64).min(n);
                    data = data.get(take as usize..).unwrap_or_default();
                    self.state = if n == take {
                        State::ChunkSize
                    } else {
                        State::ChunkData(n - take)
                    };
                }
            }
        }
    }

    /// The body framing of a request head, or `None` when it is ambiguous.
    fn framing_of(&self, head: &[u8]) -> Option<State> {
        // Up to STACK_HEADERS header slots live on the stack, uninitialized; only a head with more
        // fields (when `max_headers` allows that many) is parsed again with a heap array.
        let mut slots = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; STACK_HEADERS];
        let mut heap: Vec<MaybeUninit<httparse::Header<'_>>> = Vec::new();
        let max = self.max_headers.max(1);
        let mut req = httparse::Request::new(&mut []);
        let on_stack = slots.get_mut(..max.min(STACK_HEADERS)).unwrap_or_default();
        let parsed = match req.parse_with_uninit_headers(head, on_stack) {
            Err(httparse::Error::TooManyHeaders) if max > STACK_HEADERS => {
                heap.resize_with(max, MaybeUninit::uninit);
                req = httparse::Request::new(&mut []);
                req.parse_with_uninit_headers(head, &mut heap)
            }
            other => other,
        };
        match parsed {
            Ok(httparse::Status::Complete(_)) => {}
            // hyper parses with the same parser and limits and rejects this head too; fail closed.
            _ => return None,
        }
        let mut lengths = req
            .headers
            .iter()
            .filter(|h| h.name.eq_ignore_ascii_case("content-length"));
        let mut codings = req
            .headers
            .iter()
            .filter(|h| h.name.eq_ignore_ascii_case("transfer-encoding"));
        let (cl, cl2, te, te2) = (
            lengths.next(),
            lengths.next(),
            codings.next(),
            codings.next(),
        );
        if cl2.is_some() || te2.is_some() || (cl.is_some() && te.is_some()) {
            return None;
        }
        if let Some(te) = te {
            return te
                .value
                .trim_ascii()
                .eq_ignore_ascii_case(b"chunked")
                .then_some(State::ChunkSize);
        }
        match cl {
            None => Some(State::Head),
            Some(h) => {
                let v = h.value.trim_ascii();
                if v.is_empty() || !v.iter().all(u8::is_ascii_digit) {
                    return None;
                }
                let n: u64 = std::str::from_utf8(v).ok()?.parse().ok()?;
                Some(if n == 0 { State::Head } else { State::Fixed(n) })
            }
        }
    }
}

/// Index just past the blank line ending a head (`\r\n\r\n` or a bare `\n\n`).
fn find_head_end(buf: &[u8]) -> Option<usize> {
    let mut i = 0;
    while let Some(rel) = buf
        .get(i..)
        .and_then(|s| s.iter().position(|b| *b == b'\n'))
    {
        let nl = i + rel;
        match buf.get(nl + 1) {
            Some(b'\n') => return Some(nl + 2),
            Some(b'\r') if buf.get(nl + 2) == Some(&b'\n') => return Some(nl + 3),
            _ => i = nl + 1,
        }
    }
    None
}

impl<S: AsyncRead + Unpin> AsyncRead for FramingGuard<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let this = &mut *self;
        let res = Pin::new(&mut this.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = res {
            if !matches!(this.state, State::Done) {
                this.observe(buf.filled().get(before..).unwrap_or_default());
            }
        }
        res
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for FramingGuard<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(chunks: &[&[u8]]) -> bool {
        let flag = Arc::new(AtomicBool::new(false));
        let mut g = FramingGuard::new((), 64 * 1024, 100, flag.clone());
        for c in chunks {
            g.observe(c);
        }
        flag.load(Ordering::Acquire)
    }

    #[test]
    fn ambiguous_heads_are_flagged() {
        assert!(run(&[
            b"POST / HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"
        ]));
        assert!(run(&[
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n"
        ]));
        assert!(run(&[
            b"POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello"
        ]));
        assert!(run(&[
            b"POST / HTTP/1.1\r\nContent-Length: 5, 5\r\n\r\nhello"
        ]));
        assert!(run(&[
            b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"
        ]));
        assert!(run(&[
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n"
        ]));
    }

    #[test]
    fn well_framed_pipelines_are_followed_across_reads() {
        // A fixed body, then a chunked one split at awkward places, then a smuggling attempt:
        // the third head is only found if both bodies were skipped exactly.
        let stream: &[u8] = b"POST /a HTTP/1.1\r\nContent-Length: 3\r\n\r\nabcPOST /b HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3;ext=1\r\nxyz\r\n0\r\nX-Trailer: 1\r\n\r\nGET /c HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n";
        assert!(!run(&[stream.get(..120).unwrap()]));
        for split in [1, 7, 40, 45, 60, 100, 118, 130] {
            let (a, b) = stream.split_at(split);
            assert!(run(&[a, b]), "split at {split}");
        }
        assert!(!run(&[
            b"GET / HTTP/1.1\r\nHost: a\r\n\r\n\r\nGET / HTTP/1.1\r\n\r\n"
        ]));
        // Every split point, including inside the blank line that ends a head.
        for split in 1..stream.len() {
            let (a, b) = stream.split_at(split);
            assert!(run(&[a, b]), "split at {split}");
            let (a, c) = a.split_at(split / 2);
            assert!(run(&[a, c, b]), "split at {} and {split}", split / 2);
        }
    }

    #[test]
    fn heads_with_more_fields_than_the_stack_holds() {
        let head = |n: usize, tail: &str| {
            let mut h = String::from("POST / HTTP/1.1\r\n");
            for i in 0..n {
                h.push_str(&format!("X-F{i}: v\r\n"));
            }
            h.push_str(tail);
            h.push_str("\r\n");
            h.into_bytes()
        };
        let smuggle = "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n";
        // max_headers = 100 (run): a long head is parsed in full, so the ambiguity at its end is seen.
        assert!(run(&[&head(90, smuggle)]));
        assert!(!run(&[&head(90, "Content-Length: 0\r\n")]));
        // More fields than max_headers: hyper refuses the head; the guard fails closed.
        assert!(run(&[&head(120, "")]));
        // A small max_headers is honoured even though the stack holds more.
        let flag = Arc::new(AtomicBool::new(false));
        let mut g = FramingGuard::new((), 64 * 1024, 8, flag.clone());
        g.observe(&head(4, ""));
        assert!(!flag.load(Ordering::Acquire));
        g.observe(&head(9, ""));
        assert!(flag.load(Ordering::Acquire));
    }
}
