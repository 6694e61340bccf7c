//! The request head, parsed once with httparse (the parser hyper uses) from the connection's read
//! buffer, under the framing rules of `transport::framing` and `pipeline::head::check_framing`:
//! what another parser could frame differently is refused here, before any stage runs.

use std::mem::MaybeUninit;

use bytes::{Buf, Bytes, BytesMut};
use http::header::{CONNECTION, CONTENT_LENGTH, EXPECT, HOST, TRANSFER_ENCODING};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Uri, Version};

use crate::problem::{Code, Refusal};

/// Header slots parsed on the stack; heads with more fields (when the limit allows) use the heap.
const STACK_HEADERS: usize = 64;

/// The head limits of the connection: the same as hyper's on the other engine
/// (`transport::hyper_header_bytes`, `hyper_max_headers`), above the pipeline's own, so that
/// ordinary overruns meet the pipeline's 431 and only absurd ones are stopped here (also 431).
#[derive(Debug, Clone, Copy)]
pub(super) struct Limits {
    pub max_bytes: usize,
    pub max_fields: usize,
}

/// How the request's body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Framing {
    /// No body (no `Content-Length`, or `Content-Length: 0`).
    None,
    Length(u64),
    Chunked,
}

/// A parsed request head and what it says about the connection.
#[derive(Debug)]
pub(super) struct Head {
    pub method: Method,
    pub uri: Uri,
    pub version: Version,
    pub headers: HeaderMap,
    pub framing: Framing,
    /// The caller keeps the connection open after this exchange (1.1 without `close`, 1.0 with
    /// `keep-alive`).
    pub keep_alive: bool,
    /// `Expect: 100-continue` on an HTTP/1.1 request.
    pub expect_continue: bool,
}

/// Where the search for the end of the head resumes: a head trickling in byte by byte is not
/// scanned again from its start at every read.
#[derive(Debug, Default)]
pub(super) struct Scan {
    pub from: usize,
}

fn bad(detail: &'static str) -> Refusal {
    Refusal::new(Code::InvalidRequest, detail).closing()
}

fn too_large() -> Refusal {
    Refusal::new(Code::HeadersTooLarge, "the request head is too large").closing()
}

/// Take one request head off the front of `buf`. `Ok(None)`: not complete yet (read more).
/// Every refusal closes the connection: after a head that could not be read, nothing that
/// follows can be trusted to be where a request starts.
pub(super) fn parse(
    buf: &mut BytesMut,
    scan: &mut Scan,
    limits: Limits,
    spare: &mut Option<HeaderMap>,
) -> Result<Option<Head>, Refusal> {
    // Empty lines (CRLF) before a request line are ignored (RFC 9112 §2.2). Only whole CRLF
    // pairs: a lone CR or LF there is refused by hyper and by every line rule of this parser, and
    // skipping it would read `\rGET` as a request where hyper sees a malformed method. Looked at
    // after every read, not only the first: a pair split across reads (`\r`, then `\n\r\n…`)
    // would otherwise end an empty "head" at its first four bytes.
    let lead = buf.chunks_exact(2).take_while(|p| *p == b"\r\n").count() * 2;
    buf.advance(lead);
    scan.from = scan.from.saturating_sub(lead);
    let end = match head_end(buf, scan.from) {
        Ok(Some(end)) => end,
        Ok(None) => {
            scan.from = buf.len();
            if buf.len() > limits.max_bytes {
                return Err(too_large());
            }
            return Ok(None);
        }
        Err(refusal) => return Err(refusal),
    };
    scan.from = 0;
    if end > limits.max_bytes {
        return Err(too_large());
    }
    let head = buf.split_to(end).freeze();
    parse_complete(&head, limits, spare.take()).map(Some)
}

/// Parse a complete head (it ends with its blank line).
fn parse_complete(head: &Bytes, limits: Limits, map: Option<HeaderMap>) -> Result<Head, Refusal> {
    let mut slots = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; STACK_HEADERS];
    let mut heap: Vec<MaybeUninit<httparse::Header<'_>>> = Vec::new();
    let max = limits.max_fields.max(1);
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
        Err(httparse::Error::TooManyHeaders) => return Err(too_large()),
        // Partial although the blank line is there (a bare CR, say), or ill-formed.
        _ => return Err(bad("malformed request head")),
    }
    let version = match req.version {
        Some(1) => Version::HTTP_11,
        Some(0) => Version::HTTP_10,
        _ => return Err(bad("unsupported HTTP version")),
    };
    let method = Method::from_bytes(req.method.unwrap_or_default().as_bytes())
        .map_err(|_| bad("malformed request method"))?;
    let target = req.path.unwrap_or_default().as_bytes();
    // The target's form fits the method (the rule the framing guard applies on the hyper
    // engine): hyper accepts what it refuses; this core answers 400.
    if let Some(misfit) =
        crate::transport::framing::target_misfit(method.as_str().as_bytes(), target)
    {
        return Err(bad(misfit));
    }
    let uri = Uri::from_maybe_shared(head.slice_ref(target))
        .map_err(|_| bad("malformed request target"))?;
    let fields = fields(head, req.headers, version, map)?;
    Ok(Head {
        method,
        uri,
        version,
        headers: fields.map,
        framing: fields.framing,
        keep_alive: if version == Version::HTTP_11 {
            !fields.close
        } else {
            fields.keep_alive && !fields.close
        },
        expect_continue: fields.expect_continue && version == Version::HTTP_11,
    })
}

/// Where the head at the start of `buf` ends (just past its blank line), looking at the line
/// ends from `from` on (those before were looked at already). Every line of a head ends in CRLF:
/// a bare LF is a line end to some parsers and not to others (httparse takes it as one), so the
/// first one refuses the head, before its end has even arrived. A bare CR is refused by httparse
/// itself, wherever it is.
pub(super) fn head_end(buf: &[u8], from: usize) -> Result<Option<usize>, Refusal> {
    let Some(rest) = buf.get(from..) else {
        return Ok(None);
    };
    for lf in memchr::memchr_iter(b'\n', rest).map(|i| i + from) {
        if lf == 0 || buf.get(lf - 1) != Some(&b'\r') {
            return Err(bad("bare CR or LF in the request head"));
        }
        if lf >= 3 && buf.get(lf - 3..=lf) == Some(b"\r\n\r\n") {
            return Ok(Some(lf + 1));
        }
    }
    Ok(None)
}

/// What one pass over the fields found.
struct Fields {
    map: HeaderMap,
    framing: Framing,
    close: bool,
    keep_alive: bool,
    expect_continue: bool,
}

/// The fields as `http` types (values share the head's bytes, as hyper's do), and the framing
/// rules, decided after every field was seen: `Transfer-Encoding` before `Content-Length` is the
/// same ambiguity as after it.
fn fields(
    head: &Bytes,
    raw: &[httparse::Header<'_>],
    version: Version,
    map: Option<HeaderMap>,
) -> Result<Fields, Refusal> {
    // Room for what the pipeline adds before the request goes upstream (`Forwarded`,
    // `X-Forwarded-*`, `X-Request-Id`, the token): growing the map then would rehash it. The
    // previous response's map, emptied, saves allocating one (hyper does the same).
    let room = raw.len() + 8;
    let mut map = match map {
        Some(mut m) => {
            m.reserve(room);
            m
        }
        None => HeaderMap::with_capacity(room),
    };
    let (mut lengths, mut codings, mut hosts) = (0u32, 0u32, 0u32);
    let (mut length, mut chunked) = (0u64, false);
    let (mut close, mut keep_alive, mut expect_continue) = (false, false, false);
    for (at, h) in raw.iter().enumerate() {
        let name = field_name(at, h.name.as_bytes())?;
        let value = HeaderValue::from_maybe_shared(head.slice_ref(h.value))
            .map_err(|_| bad("malformed field value"))?;
        if name == CONTENT_LENGTH {
            lengths += 1;
            length = content_length(h.value)?;
        } else if name == TRANSFER_ENCODING {
            codings += 1;
            chunked = h.value.trim_ascii().eq_ignore_ascii_case(b"chunked");
        } else if name == HOST {
            hosts += 1;
        } else if name == CONNECTION {
            close |= has_token(h.value, b"close");
            keep_alive |= has_token(h.value, b"keep-alive");
        } else if name == EXPECT {
            expect_continue = h.value.trim_ascii().eq_ignore_ascii_case(b"100-continue");
        }
        map.append(name, value);
    }
    if lengths > 1 {
        return Err(bad("duplicate Content-Length"));
    }
    let framing = if codings > 0 {
        if version == Version::HTTP_10 {
            return Err(bad("Transfer-Encoding is only valid in HTTP/1.1"));
        }
        if lengths > 0 {
            return Err(bad("both Content-Length and Transfer-Encoding"));
        }
        if codings > 1 || !chunked {
            return Err(bad(
                "unsupported Transfer-Encoding (only a single \"chunked\" is accepted)",
            ));
        }
        Framing::Chunked
    } else if length > 0 {
        Framing::Length(length)
    } else {
        Framing::None
    };
    if hosts > 1 || (hosts == 0 && version == Version::HTTP_11) {
        return Err(bad("exactly one Host header is required"));
    }
    Ok(Fields {
        map,
        framing,
        close,
        keep_alive,
        expect_continue,
    })
}

/// Field names remembered per position in the head (the first [`MEMO_FIELDS`] fields).
const MEMO_FIELDS: usize = 16;

/// Longer names are not remembered (a name's bytes are kept in the slot itself).
const MEMO_NAME_MAX: usize = 48;

/// One remembered name: the bytes as sent (any case) and the `HeaderName` they gave.
struct NameSlot {
    raw: [u8; MEMO_NAME_MAX],
    len: usize,
    name: Option<HeaderName>,
}

thread_local! {
    /// The field names of the last heads this worker thread read, by position. A client sends
    /// its fields in the same order, with the same spelling, request after request: the name
    /// at a position is then one compare and a copy (a reference count for a custom name),
    /// not the standard-name lookup and, for a custom name, a new allocation (issue 22). Only
    /// names are kept, never values (which carry credentials). A slot answers only for the
    /// very bytes it holds; any other spelling is read afresh and replaces it.
    static NAMES: std::cell::RefCell<[NameSlot; MEMO_FIELDS]> = const {
        std::cell::RefCell::new(
            [const {
                NameSlot {
                    raw: [0; MEMO_NAME_MAX],
                    len: 0,
                    name: None,
                }
            }; MEMO_FIELDS],
        )
    };
}

/// The name of the field at position `at` of the head, through [`NAMES`].
fn field_name(at: usize, raw: &[u8]) -> Result<HeaderName, Refusal> {
    let parse = |raw: &[u8]| HeaderName::from_bytes(raw).map_err(|_| bad("malformed field name"));
    if raw.len() > MEMO_NAME_MAX || at >= MEMO_FIELDS {
        return parse(raw);
    }
    NAMES.with_borrow_mut(|slots| {
        let Some(slot) = slots.get_mut(at) else {
            return parse(raw);
        };
        if let (Some(name), Some(held)) = (&slot.name, slot.raw.get(..slot.len)) {
            if held == raw {
                return Ok(name.clone());
            }
        }
        let name = parse(raw)?;
        if let Some(to) = slot.raw.get_mut(..raw.len()) {
            to.copy_from_slice(raw);
            slot.len = raw.len();
            slot.name = Some(name.clone());
        }
        Ok(name)
    })
}

/// `Content-Length`: digits only (no sign, list, or empty value), at most 19 of them.
fn content_length(v: &[u8]) -> Result<u64, Refusal> {
    if v.is_empty() || v.len() > 19 || !v.iter().all(u8::is_ascii_digit) {
        return Err(bad("malformed Content-Length"));
    }
    Ok(v.iter()
        .fold(0u64, |n, d| n * 10 + u64::from(d.saturating_sub(b'0'))))
}

/// Whether a comma-separated header value lists `token` (case-insensitive).
pub(super) fn has_token(v: &[u8], token: &[u8]) -> bool {
    v.split(|b| *b == b',')
        .any(|t| t.trim_ascii().eq_ignore_ascii_case(token))
}

#[cfg(test)]
#[path = "parse_tests.rs"]
mod review_tests;
