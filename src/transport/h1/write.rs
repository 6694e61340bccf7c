//! The response, written once: status line and fields in one buffer with the body's first frame
//! when it is already in hand (one write for the usual proxied answer), then the rest of the
//! body as it comes. Framing as hyper's server chooses it: the response's `Content-Length`, or
//! the body's exact size, else chunked for HTTP/1.1 and delimited by the close for HTTP/1.0; no
//! body for `HEAD`, 1xx, 204 and 304.

use std::cell::RefCell;
use std::io;
use std::pin::Pin;
use std::task::Poll;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::header::{CONNECTION, CONTENT_LENGTH, DATE, TRANSFER_ENCODING};
use http::{HeaderMap, Response, StatusCode, Version};
use http_body::Body as _;
use http_body_util::BodyExt as _;
use tokio::io::{AsyncWrite, AsyncWriteExt};

use crate::body::ProxyBody;
use crate::limits::RateHeaders;
use crate::proxy::Relayed;

/// The largest response map kept for the next request, in fields.
const SPARE_MAX_FIELDS: usize = 128;

/// A frame larger than this is written from its own buffer rather than copied.
const COPY_MAX: usize = 16 * 1024;

/// The output buffer kept for the connection's next response, at most (a larger one, grown for
/// a response head with very many fields, is given back).
pub(super) const OUT_KEEP: usize = 4 * COPY_MAX;

/// What the request said about its response.
#[derive(Debug, Clone, Copy)]
pub(super) struct For {
    pub version: Version,
    pub head_method: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Out {
    /// No body on the wire.
    None,
    Length(u64),
    Chunked,
    /// HTTP/1.0 without a length: the close ends it.
    UntilClose,
}

/// Write `resp`, after the fields `relayed` beside it (a proxied answer's own, as they arrived;
/// the map holds the gateway's) and with the `RateLimit` fields `rate` beside it after the
/// map's. `close` (or a `Connection: close` in the map): the connection ends after it
/// (`Connection: close` is sent); the returned value is whether it must end (also when only
/// the close can delimit the body). An error means the response was cut short: the caller
/// drops the connection.
#[expect(
    clippy::too_many_arguments,
    reason = "the answer's three parts as the handler gave them, and the connection's reused buffers"
)]
pub(super) async fn response<W: AsyncWrite + Unpin>(
    w: &mut W,
    out: &mut Vec<u8>,
    resp: Response<ProxyBody>,
    relayed: &mut Option<Relayed>,
    rate: Option<&RateHeaders>,
    req: For,
    close: bool,
    spare: &mut Option<HeaderMap>,
) -> io::Result<bool> {
    let (parts, body) = resp.into_parts();
    let (framing, close) = head(
        out,
        &parts,
        (relayed.as_ref(), rate),
        body.size_hint().exact(),
        req,
        close,
    );
    // Dropped in place once copied (by reference: a move would copy it whole): the upstream
    // head's bytes are not held while the body streams.
    *relayed = None;
    // The emptied map becomes the next request's (a modest one only: a response with hundreds
    // of fields does not pin that much memory for the connection's life).
    let mut headers = parts.headers;
    if headers.capacity() <= SPARE_MAX_FIELDS {
        headers.clear();
        *spare = Some(headers);
    }
    if framing == Out::None {
        drop(body);
        w.write_all(out).await?;
    } else {
        send_body(w, out, body, framing).await?;
    }
    if out.capacity() > OUT_KEEP {
        *out = Vec::with_capacity(1024);
    }
    w.flush().await?;
    Ok(close)
}

/// The status line and fields into `out`: the `relayed` fields of a proxied answer (less those
/// the gateway's map or `rate` replaces, [`Relayed::replaced`]), then the map's, then `rate`'s
/// (where a map insert would have put them: the handler leaves them beside only a map that
/// then holds nothing after them); the body's framing and whether the connection ends
/// (`close`, or a `Connection: close` in the map).
fn head(
    out: &mut Vec<u8>,
    parts: &http::response::Parts,
    (relayed, rate): (Option<&Relayed>, Option<&RateHeaders>),
    exact: Option<u64>,
    req: For,
    mut close: bool,
) -> (Out, bool) {
    let status = parts.status;
    close |= status == StatusCode::SWITCHING_PROTOCOLS;
    out.clear();
    // As hyper: a caller that only knows HTTP/1.0 is answered in HTTP/1.0.
    out.extend_from_slice(if req.version == Version::HTTP_10 {
        b"HTTP/1.0 "
    } else {
        b"HTTP/1.1 "
    });
    out.extend_from_slice(status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(status.canonical_reason().unwrap_or("").as_bytes());
    out.extend_from_slice(b"\r\n");
    let mut dated = false;
    let rate = rate.filter(|r| r.is_set());
    for (name, value) in relayed.iter().flat_map(|r| r.iter()) {
        // Hop-by-hop fields were left out when the head was parsed; the length is stated below.
        if name == b"content-length"
            || Relayed::replaced(name, &parts.headers)
            || (rate.is_some() && RateHeaders::names().contains(&name))
        {
            continue;
        }
        dated |= name == b"date";
        field(out, name, value);
    }
    // The map's framing fields are read in the pass that writes its other fields, not looked
    // up by name first (issue 22): its first `Content-Length`, and whether any `Connection`
    // field says `close` (the handler's way to end the connection after this response).
    let mut declared_here = None;
    for (name, value) in &parts.headers {
        // The framing and the connection's fate are this writer's to state.
        if name == CONTENT_LENGTH {
            declared_here.get_or_insert(value);
            continue;
        }
        if name == CONNECTION {
            close |= super::parse::has_token(value.as_bytes(), b"close");
            continue;
        }
        if name == TRANSFER_ENCODING {
            continue;
        }
        dated |= name == DATE;
        field(out, name.as_str().as_bytes(), value.as_bytes());
    }
    if let Some(r) = rate {
        r.write_lines(out);
    }
    let declared = match declared_here {
        Some(v) => std::str::from_utf8(v.as_bytes())
            .ok()
            .and_then(|v| v.parse::<u64>().ok()),
        None => relayed.and_then(Relayed::content_length),
    };
    let (framing, length) = if status.is_informational() || status == StatusCode::NO_CONTENT {
        (Out::None, None)
    } else if status == StatusCode::NOT_MODIFIED {
        (Out::None, declared)
    } else if req.head_method {
        (Out::None, declared.or(exact))
    } else if let Some(n) = declared.or(exact) {
        (Out::Length(n), Some(n))
    } else if req.version == Version::HTTP_11 {
        (Out::Chunked, None)
    } else {
        close = true;
        (Out::UntilClose, None)
    };
    if let Some(n) = length {
        field(
            out,
            b"content-length",
            crate::units::decimal(n, &mut [0u8; 20]),
        );
    }
    if framing == Out::Chunked {
        field(out, b"transfer-encoding", b"chunked");
    }
    if close {
        field(out, b"connection", b"close");
    } else if req.version == Version::HTTP_10 {
        field(out, b"connection", b"keep-alive");
    }
    if !dated {
        with_date(|d| field(out, b"date", d));
    }
    out.extend_from_slice(b"\r\n");
    (framing, close)
}

/// The head in `out`, then the body: its first frame in the same write when it is already in
/// hand, the rest as it comes.
async fn send_body<W: AsyncWrite + Unpin>(
    w: &mut W,
    out: &mut Vec<u8>,
    mut body: ProxyBody,
    framing: Out,
) -> io::Result<()> {
    let mut sent = 0u64;
    let mut ended = body.is_end_stream();
    if !ended {
        let first =
            std::future::poll_fn(|cx| Poll::Ready(Pin::new(&mut body).poll_frame(cx))).await;
        match first {
            Poll::Ready(Some(Ok(frame))) => {
                if let Ok(data) = frame.into_data() {
                    sent += data.len() as u64;
                    if matches!(framing, Out::Length(n) if sent > n) {
                        // Never a byte past the length: a pipelining caller would read it
                        // as the next answer.
                        return Err(io::Error::other("response body longer than its length"));
                    }
                    if data.len() > COPY_MAX {
                        // Written from its own buffer, never copied: the head goes first.
                        put(w, out, &data, framing).await?;
                    } else {
                        encode(out, &data, framing);
                    }
                }
                ended = body.is_end_stream();
            }
            Poll::Ready(Some(Err(e))) => return Err(io::Error::other(e)),
            Poll::Ready(None) => ended = true,
            Poll::Pending => {}
        }
    }
    if (!ended || out.len() > COPY_MAX) && !out.is_empty() {
        w.write_all(out).await?;
        out.clear();
    }
    while !ended {
        match body.frame().await {
            Some(Ok(frame)) => {
                let Ok(data) = frame.into_data() else {
                    continue;
                };
                sent += data.len() as u64;
                if matches!(framing, Out::Length(n) if sent > n) {
                    return Err(io::Error::other("response body longer than its length"));
                }
                out.clear();
                put(w, out, &data, framing).await?;
                ended = body.is_end_stream();
            }
            Some(Err(e)) => return Err(io::Error::other(e)),
            None => ended = true,
        }
        out.clear();
    }
    match framing {
        Out::Chunked => out.extend_from_slice(b"0\r\n\r\n"),
        Out::Length(n) if sent != n => {
            return Err(io::Error::other(
                "response body length differs from its header",
            ));
        }
        _ => {}
    }
    if !out.is_empty() {
        w.write_all(out).await?;
    }
    Ok(())
}

/// Write what `out` holds, then the frame `data` with its framing: copied into `out` when small,
/// else from its own buffer between its chunk's size line and end, so that `out` never grows to
/// the size of a frame (a response's frames can be megabytes; `out` lives as long as the
/// connection). Leaves `out` empty.
async fn put<W: AsyncWrite + Unpin>(
    w: &mut W,
    out: &mut Vec<u8>,
    data: &Bytes,
    framing: Out,
) -> io::Result<()> {
    if data.len() <= COPY_MAX {
        encode(out, data, framing);
        w.write_all(out).await?;
    } else {
        if framing == Out::Chunked {
            size_line(out, data.len());
        }
        if !out.is_empty() {
            w.write_all(out).await?;
        }
        w.write_all(data).await?;
        if framing == Out::Chunked {
            w.write_all(b"\r\n").await?;
        }
    }
    out.clear();
    Ok(())
}

fn field(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

fn encode(out: &mut Vec<u8>, data: &Bytes, framing: Out) {
    if data.is_empty() {
        return;
    }
    if framing == Out::Chunked {
        size_line(out, data.len());
        out.extend_from_slice(data);
        out.extend_from_slice(b"\r\n");
    } else {
        out.extend_from_slice(data);
    }
}

/// A chunk's size line: `len` in hex, CRLF.
fn size_line(out: &mut Vec<u8>, len: usize) {
    let mut hex = [0u8; 16];
    let mut i = hex.len();
    let mut n = len;
    loop {
        i -= 1;
        if let Some(d) = hex.get_mut(i) {
            *d = b"0123456789abcdef".get(n & 0xf).copied().unwrap_or(b'0');
        }
        n >>= 4;
        if n == 0 || i == 0 {
            break;
        }
    }
    out.extend_from_slice(hex.get(i..).unwrap_or_default());
    out.extend_from_slice(b"\r\n");
}

thread_local! {
    /// The `Date` value of the current second, rendered once per second per worker thread.
    static NOW: RefCell<(u64, [u8; 29])> = const { RefCell::new((u64::MAX, [0u8; 29])) };
}

fn with_date(f: impl FnOnce(&[u8])) {
    let now = SystemTime::now();
    let secs = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    NOW.with(|cell| {
        let mut d = cell.borrow_mut();
        if d.0 != secs {
            let text = httpdate::fmt_http_date(now);
            if let Some(bytes) = text.as_bytes().get(..29) {
                d.1.copy_from_slice(bytes);
                d.0 = secs;
            }
        }
        f(&d.1);
    });
}
