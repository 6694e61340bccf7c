//! Reading an upstream's answer: the response head (httparse, checked as strictly as the caller
//! side's framing guard) and the chunked-body decoder.
//!
//! Why so strict: the gateway relays this answer to callers whose own parsers may disagree with
//! ours about an ambiguous one (two lengths, a length and a coding, a bare LF), and a response
//! the gateway misreads desynchronises a pooled connection that other callers' requests use
//! next. An ambiguous answer is a [`Malformed`] failure (502), never a guess.

use bytes::{Buf, Bytes, BytesMut};
use http::{StatusCode, Version};

pub use super::relayed::Relayed;
use super::relayed::Span;

/// The largest response head read (hyper's default buffer limit is of this order).
pub const MAX_HEAD_BYTES: usize = 64 * 1024;
/// The most fields a response head (or a chunked body's trailer section) may carry (hyper's
/// default).
pub const MAX_FIELDS: usize = 100;
/// The most bytes of trailer fields a chunked body may end with; they are read and dropped.
pub const MAX_TRAILER_BYTES: usize = 16 * 1024;
/// The most bytes of chunk extensions on one size line; extensions are ignored.
pub const MAX_EXTENSION_BYTES: usize = 4 * 1024;

/// Why an upstream answer cannot be relayed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("malformed upstream response: {0}")]
pub struct Malformed(pub &'static str);

/// How a response body ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// No body: HEAD, 204, 304, or `Content-Length: 0`.
    Empty,
    Length(u64),
    Chunked,
    /// Until the upstream closes the connection (which then cannot be reused).
    Close,
}

/// A final response head.
#[derive(Debug)]
pub struct Head {
    pub status: StatusCode,
    pub version: Version,
    /// The fields to relay to the caller, as they arrived (hop-by-hop ones, those `Connection`
    /// lists and a repeated `Content-Length` already left out).
    pub fields: Relayed,
    /// The reason phrase when it is not the status code's canonical one (hyper keeps it the
    /// same way, so the caller sees what the upstream said).
    pub reason: Option<Bytes>,
    pub framing: Framing,
    /// The upstream may take another request on this connection after this answer.
    pub keep_alive: bool,
}

/// What [`parse`] found at the start of the buffer.
#[derive(Debug)]
pub enum Parsed {
    /// Not a whole head yet.
    Partial,
    /// A 1xx interim answer (100, 102, 103), removed from the buffer: the real one follows.
    Interim,
    Final(Head),
}

/// Parse the response head at the start of `buf`; a whole head is removed from it (the body's
/// first bytes stay). `head_request`: the request was `HEAD` (no body follows whatever the head
/// says).
pub fn parse(buf: &mut BytesMut, head_request: bool) -> Result<Parsed, Malformed> {
    // (start, end) of each field's name and value in the head, to slice the frozen head after
    // httparse's borrow of the buffer ends: the values share its allocation (as in hyper).
    // Inline room for the usual answer: a zeroed array for all 100 fields cost a 1.6 KB memset
    // per answer (issue 22).
    let mut spans: super::relayed::Spans = smallvec::SmallVec::new();
    let (len, status, version, reason, framing, keep_alive) = {
        // Uninitialised slots: filling 100 empty headers first cost ~450 instructions an answer.
        let mut slots = [const { std::mem::MaybeUninit::uninit() }; MAX_FIELDS];
        let mut resp = httparse::Response::new(&mut []);
        let len = match httparse::ParserConfig::default()
            .parse_response_with_uninit_headers(&mut resp, buf, &mut slots)
        {
            Ok(httparse::Status::Complete(n)) if n <= MAX_HEAD_BYTES => n,
            Ok(httparse::Status::Partial) if buf.len() <= MAX_HEAD_BYTES => {
                return Ok(Parsed::Partial)
            }
            Ok(_) => return Err(Malformed("response head over 64 KiB")),
            Err(httparse::Error::TooManyHeaders) => {
                return Err(Malformed("more than 100 response header fields"))
            }
            Err(_) => return Err(Malformed("not an HTTP/1.x response head")),
        };
        let code = resp.code.unwrap_or(0);
        if code == 101 {
            return Err(Malformed("the upstream switched protocols"));
        }
        if (100..200).contains(&code) {
            if has_bare_lf(buf.get(..len).unwrap_or_default()) {
                return Err(Malformed("bare LF in the response head"));
            }
            buf.advance(len);
            return Ok(Parsed::Interim);
        }
        let version = if resp.version == Some(1) {
            Version::HTTP_11
        } else {
            Version::HTTP_10
        };
        let status =
            StatusCode::from_u16(code).map_err(|_| Malformed("status code out of range"))?;
        let reason = resp
            .reason
            .filter(|r| Some(*r) != status.canonical_reason())
            .map(|r| Bytes::copy_from_slice(r.as_bytes()));
        let base = buf.as_ptr() as usize;
        let mut fields = Fields::default();
        for h in resp.headers.iter() {
            fields.see(h.name.as_bytes(), h.value)?;
            // Offsets in a head of at most 64 KiB, whose fields end before its last four bytes:
            // a u16 each (the spans travel with the answer, `Relayed`: smaller is cheaper).
            let at = |s: &[u8]| {
                let start = (s.as_ptr() as usize).wrapping_sub(base);
                Some((
                    u16::try_from(start).ok()?,
                    u16::try_from(start + s.len()).ok()?,
                ))
            };
            let (Some((ns, ne)), Some((vs, ve))) = (at(h.name.as_bytes()), at(h.value)) else {
                return Err(Malformed("response head over 64 KiB"));
            };
            spans.push((ns, ne, vs, ve));
        }
        // httparse takes a bare LF as a line end: the caller's parser might not.
        let head = buf.get(..len).unwrap_or_default();
        if !crlf_line_ends(head, &spans) {
            return Err(Malformed("bare LF in the response head"));
        }
        let framing = fields.framing(version, code, head_request)?;
        // A 204 must not announce a body (RFC 9110 §8.6, RFC 9112 §6.1); one that does may
        // send it too, and those bytes would be read as the next caller's answer: such a
        // connection is not reused.
        let body_after_204 = code == 204 && (fields.codings > 0 || fields.length.unwrap_or(0) > 0);
        let keep_alive = !fields.close
            && (version == Version::HTTP_11 || fields.keep_alive)
            && framing != Framing::Close
            && !body_after_204;
        (len, status, version, reason, framing, keep_alive)
    };
    // Names in lower case, as `HeaderName` spelled them when the answer was a map (the caller
    // sees the same bytes), so that every comparison below is a plain one.
    for &(ns, ne, ..) in &spans {
        if let Some(name) = buf.get_mut(ns as usize..ne as usize) {
            name.make_ascii_lowercase();
        }
    }
    let head = buf.split_to(len).freeze();
    let fields = Relayed::new(head, spans);
    Ok(Parsed::Final(Head {
        status,
        version,
        fields,
        reason,
        framing,
        keep_alive,
    }))
}

/// What the framing fields of a head said.
#[derive(Default)]
struct Fields {
    length: Option<u64>,
    /// `Transfer-Encoding` fields seen, and whether the only one is exactly `chunked`.
    codings: u8,
    chunked: bool,
    close: bool,
    keep_alive: bool,
}

impl Fields {
    fn see(&mut self, name: &[u8], value: &[u8]) -> Result<(), Malformed> {
        if name.eq_ignore_ascii_case(b"content-length") {
            let n = content_length(value)?;
            if self.length.is_some_and(|m| m != n) {
                return Err(Malformed("two different Content-Length values"));
            }
            self.length = Some(n);
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            self.codings = self.codings.saturating_add(1);
            self.chunked = self.codings == 1 && value.trim_ascii().eq_ignore_ascii_case(b"chunked");
        } else if name.eq_ignore_ascii_case(b"connection") {
            self.close |= has_token(value, b"close");
            self.keep_alive |= has_token(value, b"keep-alive");
        }
        Ok(())
    }

    fn framing(
        &self,
        version: Version,
        code: u16,
        head_request: bool,
    ) -> Result<Framing, Malformed> {
        if self.codings > 0 {
            if self.length.is_some() {
                return Err(Malformed("both Content-Length and Transfer-Encoding"));
            }
            // Any other coding (`gzip, chunked`, `chunked, gzip`, two fields) would reach the
            // caller undecoded once the hop-by-hop field is removed, or be delimited by the close
            // where another parser reads chunks.
            if !self.chunked {
                return Err(Malformed("a Transfer-Encoding other than a single chunked"));
            }
            if version == Version::HTTP_10 {
                return Err(Malformed("Transfer-Encoding in an HTTP/1.0 response"));
            }
        }
        Ok(if head_request || code == 204 || code == 304 {
            Framing::Empty
        } else if self.chunked {
            Framing::Chunked
        } else {
            match self.length {
                Some(0) => Framing::Empty,
                Some(n) => Framing::Length(n),
                None => Framing::Close,
            }
        })
    }
}

/// A `Content-Length` value: 1 to 19 digits, nothing else (no sign, list, space or hex).
pub fn content_length(v: &[u8]) -> Result<u64, Malformed> {
    const BAD: Malformed = Malformed("ill-formed Content-Length");
    if v.is_empty() || v.len() > 19 || !v.iter().all(u8::is_ascii_digit) {
        return Err(BAD);
    }
    Ok(v.iter().fold(0u64, |n, d| n * 10 + u64::from(d - b'0')))
}

/// Whether a comma-separated field value lists `token` (ASCII case-insensitive).
pub fn has_token(v: &[u8], token: &[u8]) -> bool {
    v.split(|b| *b == b',')
        .any(|t| t.trim_ascii().eq_ignore_ascii_case(token))
}

/// Whether every line of a head that httparse accepted ends with CRLF. httparse ends a line only
/// at an LF (obs-fold is refused) and takes a CR only right before one, so the LFs are exactly
/// the byte before each field's name and the last byte: checking the byte before each of those
/// costs a few instructions per field, where scanning the head cost several per byte.
fn crlf_line_ends(head: &[u8], spans: &[Span]) -> bool {
    head.ends_with(b"\r\n\r\n")
        && spans.iter().all(|&(name, ..)| {
            let at = name as usize;
            at >= 2 && head.get(at - 2..at) == Some(b"\r\n")
        })
}

/// The same for a head whose fields were not recorded (an interim answer): a byte scan.
fn has_bare_lf(head: &[u8]) -> bool {
    head.iter()
        .enumerate()
        .any(|(i, b)| *b == b'\n' && (i == 0 || head.get(i - 1) != Some(&b'\r')))
}

/// A token character (RFC 9110 §5.6.2): field names.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// A control byte other than HTAB, or DEL: never in a field value or a chunk extension.
fn is_ctl(b: u8) -> bool {
    (b < 0x20 && b != b'\t') || b == 0x7f
}

/// What [`Chunked::decode`] produced.
#[derive(Debug, PartialEq, Eq)]
pub enum Decoded {
    Data(Bytes),
    /// The buffer holds no more of the body.
    NeedMore,
    /// The last chunk and the trailer section were read.
    End,
}

/// A chunked body decoder with the framing guard's strictness: size lines of 1–16 hex digits
/// ended by CRLF, extensions after `;` skipped (bounded), CRLF after each chunk's data, field-
/// line trailers (bounded, dropped), and no whitespace, `0x` or bare LF anywhere.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Chunked {
    state: State,
    /// Extension bytes on the current size line; trailer bytes and lines so far.
    ext: usize,
    trailer: usize,
    trailer_lines: usize,
    /// In a trailer line, past its colon.
    trailer_value: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Size { digits: u8, size: u64 },
    Ext { size: u64 },
    SizeLf { size: u64 },
    Data(u64),
    DataCr,
    DataLf,
    TrailerStart,
    Trailer,
    TrailerLf,
    EndLf,
    Done,
}

impl Default for Chunked {
    fn default() -> Self {
        Chunked {
            state: State::Size { digits: 0, size: 0 },
            ext: 0,
            trailer: 0,
            trailer_lines: 0,
            trailer_value: false,
        }
    }
}

impl Chunked {
    /// Decode from the start of `buf`, consuming what was decoded: at most one piece of chunk
    /// data per call.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Decoded, Malformed> {
        loop {
            match self.state {
                State::Data(n) => {
                    if buf.is_empty() {
                        return Ok(Decoded::NeedMore);
                    }
                    let take = usize::try_from(n).unwrap_or(usize::MAX).min(buf.len());
                    let rest = n - take as u64;
                    self.state = if rest == 0 {
                        State::DataCr
                    } else {
                        State::Data(rest)
                    };
                    return Ok(Decoded::Data(buf.split_to(take).freeze()));
                }
                State::Done => return Ok(Decoded::End),
                _ => {}
            }
            let mut used = 0;
            for &b in buf.iter() {
                used += 1;
                self.step(b)?;
                if matches!(self.state, State::Data(_) | State::Done) {
                    break;
                }
            }
            buf.advance(used);
            if !matches!(self.state, State::Data(_) | State::Done) {
                return Ok(Decoded::NeedMore);
            }
        }
    }

    /// Whether the whole body has been decoded.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    fn step(&mut self, b: u8) -> Result<(), Malformed> {
        const BAD: Malformed = Malformed("ill-formed chunked body");
        self.state = match self.state {
            State::Size { digits, size } => match b {
                b'\r' if digits > 0 => State::SizeLf { size },
                b';' if digits > 0 => {
                    self.ext = 0;
                    State::Ext { size }
                }
                _ => match (b as char).to_digit(16) {
                    Some(d) if digits < 16 => State::Size {
                        digits: digits + 1,
                        size: size << 4 | u64::from(d),
                    },
                    _ => return Err(BAD),
                },
            },
            State::Ext { size } => match b {
                b'\r' => State::SizeLf { size },
                // Control bytes (a NUL, a bare LF): the caller side's guard refuses them in
                // extensions too.
                _ if is_ctl(b) => return Err(BAD),
                _ => {
                    self.ext += 1;
                    if self.ext > MAX_EXTENSION_BYTES {
                        return Err(Malformed("chunk extensions too long"));
                    }
                    State::Ext { size }
                }
            },
            State::SizeLf { size } if b == b'\n' => match size {
                0 => State::TrailerStart,
                n => State::Data(n),
            },
            State::DataCr if b == b'\r' => State::DataLf,
            State::DataLf if b == b'\n' => State::Size { digits: 0, size: 0 },
            // Each trailer line is a field line, `name: value` (a request line or any other text
            // is refused, as the caller side's guard does): a bare LF, obs-fold (a line starting
            // with whitespace), a name that is not a token, no colon, or a control byte fails.
            State::TrailerStart => match b {
                b'\r' => State::EndLf,
                _ if is_tchar(b) => {
                    self.trailer_lines += 1;
                    if self.trailer_lines > MAX_FIELDS {
                        return Err(Malformed("more than 100 trailer fields"));
                    }
                    self.trailer_value = false;
                    self.trailer_byte()?
                }
                _ => return Err(BAD),
            },
            State::Trailer if !self.trailer_value => match b {
                b':' => {
                    self.trailer_value = true;
                    self.trailer_byte()?
                }
                _ if is_tchar(b) => self.trailer_byte()?,
                _ => return Err(BAD),
            },
            State::Trailer => match b {
                b'\r' => State::TrailerLf,
                _ if is_ctl(b) => return Err(BAD),
                _ => self.trailer_byte()?,
            },
            State::TrailerLf if b == b'\n' => State::TrailerStart,
            State::EndLf if b == b'\n' => State::Done,
            _ => return Err(BAD),
        };
        Ok(())
    }

    fn trailer_byte(&mut self) -> Result<State, Malformed> {
        self.trailer += 1;
        if self.trailer > MAX_TRAILER_BYTES {
            return Err(Malformed("trailer section over 16 KiB"));
        }
        Ok(State::Trailer)
    }
}

#[cfg(test)]
#[path = "response_tests.rs"]
mod tests;
