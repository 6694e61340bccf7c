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
    /// Chunked body: skipping chunk data.
    ChunkData(u64),
    /// Chunked body: the CRLF after chunk data; `true` once its CR was seen.
    ChunkDataEnd(bool),
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
    /// Bodies read to their end so far (tells whether a poisoning read is still in the body
    /// whose head hyper already has).
    bodies_ended: u64,
    /// Reads fail from now on: the body hyper is streaming became ambiguous.
    aborted: bool,
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
            bodies_ended: 0,
            aborted: false,
        }
    }

    /// Whether hyper has the current message's head and is reading its body.
    fn in_body(&self) -> bool {
        !matches!(self.state, State::Head | State::Done)
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
                        self.bodies_ended += 1;
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
                    match self.after_chunked_line(&line) {
                        Some(next) => self.state = next,
                        None => return self.poison(),
                    }
                }
                State::ChunkData(n) => {
                    let take = (data.len() as u64).min(n);
                    data = data.get(take as usize..).unwrap_or_default();
                    self.state = if n == take {
                        State::ChunkDataEnd(false)
                    } else {
                        State::ChunkData(n - take)
                    };
                }
                // Chunk data must be followed by exactly CRLF: a parser that skips two bytes
                // whatever they are and one that refuses them would disagree about what follows.
                State::ChunkDataEnd(cr_seen) => {
                    let expected = if cr_seen { b'\n' } else { b'\r' };
                    if data.first() != Some(&expected) {
                        return self.poison();
                    }
                    data = data.get(1..).unwrap_or_default();
                    self.state = if cr_seen {
                        State::ChunkSize
                    } else {
                        State::ChunkDataEnd(true)
                    };
                }
            }
        }
    }

    /// The state after one complete line (without its LF) of a chunked body, in `ChunkSize` or
    /// `Trailers`; `None` when the line could be read two ways.
    fn after_chunked_line(&mut self, line: &[u8]) -> Option<State> {
        // Lines of a chunked body end in CRLF (RFC 9112 §7.1). A bare LF is read as a line end
        // by some parsers and not by others (hyper waits, h11 refuses), so the same bytes would
        // be framed two ways.
        let line = line.strip_suffix(b"\r")?;
        if matches!(self.state, State::Trailers) {
            if line.is_empty() {
                self.bodies_ended += 1;
                return Some(State::Head);
            }
            return is_field_line(line).then_some(State::Trailers);
        }
        match chunk_size(line)? {
            0 => Some(State::Trailers),
            n => Some(State::ChunkData(n)),
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
        // hyper takes `GET *`, an authority-form `GET host:port` and a `#fragment` (which
        // `http::Uri` then drops quietly), so the pipeline would route a target other than the
        // one sent; the native core refuses them by the same rule.
        let (method, target) = (req.method.unwrap_or_default(), req.path.unwrap_or_default());
        if target_misfit(method.as_bytes(), target.as_bytes()).is_some() {
            return None;
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
            // Transfer-Encoding means nothing in HTTP/1.0 (RFC 9112 §6.1): hyper refuses the head,
            // but h11 reads a chunked body. Mid-pipeline hyper just closes; flagging makes it a
            // 400 like every other disagreement.
            if req.version == Some(0) {
                return None;
            }
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

/// Why a request-target's form does not fit its method (RFC 9112 §3.2), or `None`: `*` only for
/// OPTIONS, the authority form only and always for CONNECT, no fragment. Read from the bytes, so
/// that the native core and this guard (which watches hyper's input) apply one rule.
pub(super) fn target_misfit(method: &[u8], target: &[u8]) -> Option<&'static str> {
    let asterisk = target == b"*";
    if asterisk && method != b"OPTIONS" {
        return Some("the asterisk request target is only for OPTIONS");
    }
    // Neither origin form (`/…`), absolute form (`scheme://…`) nor `*`: what `http::Uri` reads
    // as an authority.
    let authority_form =
        !asterisk && !target.starts_with(b"/") && memchr::memmem::find(target, b"://").is_none();
    if authority_form != (method == b"CONNECT") {
        return Some("the authority-form request target is for CONNECT, and only it");
    }
    if memchr::memchr(b'#', target).is_some() {
        return Some("a fragment in the request target");
    }
    None
}

/// The size on a chunk-size line (without its CRLF): 1-16 hex digits, then either nothing,
/// spaces or tabs, or `;` and chunk extensions. `None` for anything else (a sign, leading
/// whitespace, `0x`, whitespace before `;`, overflow): parsers differ on those, so the line is
/// not trusted (hyper accepts `5 ;ext`, h11 refuses it; Rust's radix parser accepts `+5`).
/// The extensions must follow their grammar (RFC 9112 §7.1.1): a control byte such as a bare CR
/// in them ends the line for hyper (which then refuses what follows) and not for a parser that
/// only looks for the LF, and an unclosed quoted string is read to the line end by one parser and
/// across it by another.
pub(super) fn chunk_size(line: &[u8]) -> Option<u64> {
    let digits = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
    if digits == 0 || digits > 16 {
        return None;
    }
    let (size, rest) = line.split_at(digits);
    let well_formed = if rest.first() == Some(&b';') {
        chunk_extensions(rest)
    } else {
        rest.iter().all(|b| *b == b' ' || *b == b'\t')
    };
    if !well_formed {
        return None;
    }
    u64::from_str_radix(std::str::from_utf8(size).ok()?, 16).ok()
}

/// `*( BWS ";" BWS name [ BWS "=" BWS ( token / quoted-string ) ] )`, trailing whitespace
/// allowed (RFC 9112 §7.1.1).
fn chunk_extensions(mut s: &[u8]) -> bool {
    let ws = |s: &[u8]| s.iter().take_while(|b| **b == b' ' || **b == b'\t').count();
    let token = |s: &[u8]| s.iter().take_while(|b| is_tchar(**b)).count();
    loop {
        s = s.get(ws(s)..).unwrap_or_default();
        if s.is_empty() {
            return true;
        }
        let Some(r) = s.strip_prefix(b";") else {
            return false;
        };
        s = r.get(ws(r)..).unwrap_or_default();
        let name = token(s);
        if name == 0 {
            return false;
        }
        s = s.get(name..).unwrap_or_default();
        let after = s.get(ws(s)..).unwrap_or_default();
        let Some(r) = after.strip_prefix(b"=") else {
            continue;
        };
        s = r.get(ws(r)..).unwrap_or_default();
        let value = match s.first() {
            Some(b'"') => quoted_string(s),
            _ => Some(token(s)).filter(|n| *n > 0),
        };
        let Some(value) = value else {
            return false;
        };
        s = s.get(value..).unwrap_or_default();
    }
}

/// The length of the quoted-string at the start of `s` (RFC 9110 §5.6.4), or `None`.
fn quoted_string(s: &[u8]) -> Option<usize> {
    let text = |b: u8| b == b'\t' || b == b' ' || (0x21..=0x7e).contains(&b) || b >= 0x80;
    let mut i = 1;
    loop {
        match *s.get(i)? {
            b'"' => return Some(i + 1),
            b'\\' if s.get(i + 1).is_some_and(|b| text(*b)) => i += 2,
            b'\\' => return None,
            b if text(b) => i += 1,
            _ => return None,
        }
    }
}

/// A token character (RFC 9110 §5.6.2).
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Whether a trailer line is a header field line (`name: value`), by the parser hyper uses. hyper
/// skips trailer lines it cannot parse, h11 refuses them: `0\r\n` followed by a request line
/// and no blank line is a body end for one and a smuggled request for another.
pub(super) fn is_field_line(line: &[u8]) -> bool {
    let mut one = [httparse::EMPTY_HEADER; 1];
    let field = [line, b"\r\n\r\n"].concat();
    matches!(
        httparse::parse_headers(&field, &mut one),
        Ok(httparse::Status::Complete(_))
    )
}

fn ambiguous_body() -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        "ambiguous chunked body framing (see transport::framing)",
    )
}

/// Index just past the blank line ending a head (`\r\n\r\n` or a bare `\n\n`).
pub(super) fn find_head_end(buf: &[u8]) -> Option<usize> {
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
        if this.aborted {
            return Poll::Ready(Err(ambiguous_body()));
        }
        let res = Pin::new(&mut this.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = res {
            if !matches!(this.state, State::Done) {
                let (streaming, ended) = (this.in_body(), this.bodies_ended);
                this.observe(buf.filled().get(before..).unwrap_or_default());
                // The body hyper is already streaming (its head came in an earlier read, passed
                // the pipeline's check and may be on its way upstream) turned out ambiguous. The
                // flag only stops later requests, so fail the read: hyper ends the body with an
                // error and the upstream gets an aborted request, never a complete one that
                // another parser would have framed differently.
                if streaming && ended == this.bodies_ended && matches!(this.state, State::Done) {
                    this.aborted = true;
                    return Poll::Ready(Err(ambiguous_body()));
                }
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

/// How the guard reads the body framing of a complete request head: `Some(None)` chunked,
/// `Some(Some(n))` a length (0: no body), `None` ambiguous (flagged). For the native core's
/// differential tests (`transport::h1`).
#[cfg(test)]
pub(super) fn framing_verdict(head: &[u8], max_headers: usize) -> Option<Option<u64>> {
    let guard = FramingGuard::new(
        (),
        usize::MAX,
        max_headers,
        Arc::new(AtomicBool::new(false)),
    );
    match guard.framing_of(head)? {
        State::Head => Some(Some(0)),
        State::Fixed(n) => Some(Some(n)),
        State::ChunkSize => Some(None),
        _ => None,
    }
}

/// What the guard made of a byte stream: the framing of every head it passed (`None` chunked,
/// `Some(n)` a length, 0 for no body), whether it flagged the connection, and how many bodies
/// it saw end.
#[cfg(any(test, feature = "fuzzing"))]
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct GuardTrace {
    pub heads: Vec<Option<u64>>,
    pub flagged: bool,
    pub bodies_ended: u64,
}

/// The ends of the pieces a stream of `len` bytes is delivered in, for the split-anywhere tests
/// and fuzz targets: `cuts` are offsets in any order (out-of-range ones ignored), the last piece
/// ends at `len`.
#[cfg(any(test, feature = "fuzzing"))]
pub fn piece_ends(cuts: &[usize], len: usize) -> Vec<usize> {
    let mut ends: Vec<usize> = cuts
        .iter()
        .copied()
        .filter(|c| *c > 0 && *c < len)
        .collect();
    ends.push(len);
    ends.sort_unstable();
    ends
}

/// Run the guard over `stream` one byte at a time, noting each head it passes, and again in the
/// pieces `cuts` marks (offsets, any order): the second run must end in the same place (checked
/// by the callers: it takes the whole-head fast path and the line buffers across reads).
#[cfg(any(test, feature = "fuzzing"))]
pub fn guard_trace(stream: &[u8], cuts: &[usize]) -> (GuardTrace, GuardTrace) {
    const MAX_HEAD: usize = 16 * 1024;
    let flag = Arc::new(AtomicBool::new(false));
    let mut g = FramingGuard::new((), MAX_HEAD, 100, flag.clone());
    let mut bytewise = GuardTrace::default();
    for b in stream {
        let had_head = !g.buf.is_empty() && matches!(g.state, State::Head);
        g.observe(std::slice::from_ref(b));
        if had_head && g.buf.is_empty() {
            match g.state {
                State::Head => bytewise.heads.push(Some(0)),
                State::Fixed(n) => bytewise.heads.push(Some(n)),
                State::ChunkSize => bytewise.heads.push(None),
                _ => {}
            }
        }
    }
    bytewise.flagged = flag.load(Ordering::Acquire);
    bytewise.bodies_ended = g.bodies_ended;
    let ends = piece_ends(cuts, stream.len());
    let flag = Arc::new(AtomicBool::new(false));
    let mut g = FramingGuard::new((), MAX_HEAD, 100, flag.clone());
    let mut from = 0;
    for end in ends {
        g.observe(stream.get(from..end).unwrap_or_default());
        from = end;
    }
    let pieces = GuardTrace {
        heads: Vec::new(),
        flagged: flag.load(Ordering::Acquire),
        bodies_ended: g.bodies_ended,
    };
    (bytewise, pieces)
}

#[cfg(test)]
mod tests;
