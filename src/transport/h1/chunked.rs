//! The chunked request body, decoded strictly with the framing guard's rules
//! (`transport::framing`): lines end in CRLF, a chunk size is 1–16 hex digits followed by
//! nothing, spaces or tabs, or `;` and extensions, chunk data is followed by exactly CRLF, and
//! trailers are field lines, bounded in size. Anything else fails the body (and so the
//! connection). The decoder reads from the connection's buffer, where a line that has not fully
//! arrived simply waits: a body split at any byte decodes the same.

use bytes::{Buf, Bytes, BytesMut};

use crate::transport::framing::{chunk_size, is_field_line};

/// Longest chunk-size or trailer line (the framing guard's bound too).
pub(super) const MAX_LINE: usize = 4096;
/// All trailer lines of one body together.
pub(super) const MAX_TRAILERS: usize = 16 * 1024;

/// Where in a chunked body the decoder is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Chunked {
    /// At a chunk-size line.
    Size,
    /// In chunk data: this many bytes left.
    Data(u64),
    /// At the CRLF after chunk data.
    DataEnd,
    /// In the trailer section: this many bytes of it seen.
    Trailers(usize),
    Done,
}

/// One step of decoding.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Step {
    Data(Bytes),
    /// The buffer holds no more of the body: read more.
    More,
    /// The body ended (its last CRLF consumed).
    End,
}

impl Chunked {
    /// Decode from the front of `buf`, consuming what it decodes.
    pub(super) fn step(&mut self, buf: &mut BytesMut) -> Result<Step, &'static str> {
        loop {
            match *self {
                Chunked::Done => return Ok(Step::End),
                Chunked::Data(n) => {
                    if buf.is_empty() {
                        return Ok(Step::More);
                    }
                    let take = usize::try_from(n).unwrap_or(usize::MAX).min(buf.len());
                    let data = buf.split_to(take).freeze();
                    let left = n - take as u64;
                    *self = if left == 0 {
                        Chunked::DataEnd
                    } else {
                        Chunked::Data(left)
                    };
                    return Ok(Step::Data(data));
                }
                Chunked::DataEnd => match (buf.first(), buf.get(1)) {
                    (None, _) | (Some(b'\r'), None) => return Ok(Step::More),
                    (Some(b'\r'), Some(b'\n')) => {
                        buf.advance(2);
                        *self = Chunked::Size;
                    }
                    _ => return Err("chunk data not followed by CRLF"),
                },
                Chunked::Size => {
                    let Some(line) = line(buf, MAX_LINE)? else {
                        return Ok(Step::More);
                    };
                    let size = chunk_size(line.get(..line.len() - 2).unwrap_or_default())
                        .ok_or("malformed chunk size")?;
                    *self = if size == 0 {
                        Chunked::Trailers(0)
                    } else {
                        Chunked::Data(size)
                    };
                }
                Chunked::Trailers(seen) => {
                    let room = MAX_TRAILERS.saturating_sub(seen).min(MAX_LINE);
                    let Some(line) = line(buf, room).map_err(|_| "trailers too long")? else {
                        return Ok(Step::More);
                    };
                    let text = line.get(..line.len() - 2).unwrap_or_default();
                    if text.is_empty() {
                        *self = Chunked::Done;
                        return Ok(Step::End);
                    }
                    if !is_field_line(text) {
                        return Err("malformed trailer field");
                    }
                    *self = Chunked::Trailers(seen + line.len());
                }
            }
        }
    }
}

/// Take one CRLF-terminated line (CRLF included) off the front of `buf`; `None` when it has not
/// fully arrived. A bare LF, or a line longer than `max`, fails.
fn line(buf: &mut BytesMut, max: usize) -> Result<Option<Bytes>, &'static str> {
    let Some(nl) = buf.iter().take(max + 1).position(|b| *b == b'\n') else {
        return if buf.len() > max {
            Err("chunked body line too long")
        } else {
            Ok(None)
        };
    };
    if nl == 0 || buf.get(nl - 1) != Some(&b'\r') {
        return Err("bare LF in a chunked body");
    }
    Ok(Some(buf.split_to(nl + 1).freeze()))
}
