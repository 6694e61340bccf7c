//! The stages on the request head, before any route is known (framing, head limits, request
//! id), and the body limit once one is.

use http::header::{HeaderValue, CONTENT_LENGTH, TRANSFER_ENCODING};
use http::request::Parts;
use http::Version;

use super::HeadLimits;
use crate::conn::ConnInfo;
use crate::problem::{Code, Refusal};
use crate::proxy::headers;

/// Keep the caller's `X-Request-Id` when it is well-formed (1–128 of `[A-Za-z0-9._:-]`), else make one.
pub(super) fn request_id(h: &http::HeaderMap) -> HeaderValue {
    let mut ids = h.get_all(&headers::X_REQUEST_ID).iter();
    if let (Some(v), None) = (ids.next(), ids.next()) {
        let b = v.as_bytes();
        if !b.is_empty()
            && b.len() <= 128
            && b.iter()
                .all(|c| c.is_ascii_alphanumeric() || b"._:-".contains(c))
        {
            return v.clone();
        }
    }
    // 128 random bits as 32 lower-case hex digits, two digits a byte (without the formatting
    // machinery: this runs for every request that brings no id of its own).
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut id = [0u8; 32];
    let bits = rand::random::<u128>().to_be_bytes();
    for (pair, byte) in id.chunks_exact_mut(2).zip(bits) {
        if let [hi, lo] = pair {
            *hi = HEX.get(usize::from(byte >> 4)).copied().unwrap_or(b'0');
            *lo = HEX.get(usize::from(byte & 0xf)).copied().unwrap_or(b'0');
        }
    }
    HeaderValue::from_maybe_shared(fresh_id(&id)).unwrap_or(HeaderValue::from_static("0"))
}

/// Generated ids a shared buffer holds: 32 of 32 bytes, 1 KiB. An id kept (in the audit queue,
/// say) keeps its buffer, so the buffer stays small.
const IDS_PER_BUFFER: usize = 32;

thread_local! {
    /// The worker thread's buffer that generated ids are written into, one after another, each
    /// split off as its own `Bytes`: one allocation per [`IDS_PER_BUFFER`] ids, not one an id
    /// (issue 22). The ids share the buffer's reference count, so cloning one for the upstream
    /// and the response is a count, as it was with an id owning its allocation.
    static IDS: std::cell::RefCell<bytes::BytesMut> =
        std::cell::RefCell::new(bytes::BytesMut::new());
}

/// `id` as a `Bytes` of its own, from the thread's [`IDS`] buffer.
fn fresh_id(id: &[u8; 32]) -> bytes::Bytes {
    IDS.with_borrow_mut(|buf| {
        if buf.capacity() < id.len() {
            *buf = bytes::BytesMut::with_capacity(id.len() * IDS_PER_BUFFER);
        }
        buf.extend_from_slice(id);
        buf.split().freeze()
    })
}

/// Framing stage: a request whose length could be read two ways is refused and the connection
/// closed (request smuggling). hyper refuses most of these itself; this is the belt to its braces.
pub(crate) fn check_framing(conn: &ConnInfo, parts: &Parts) -> Result<(), Refusal> {
    let bad = |d: &'static str| Err(Refusal::new(Code::InvalidRequest, d).closing());
    if conn
        .ambiguous_framing
        .load(std::sync::atomic::Ordering::Acquire)
    {
        return bad(
            "a request head on this connection could be read two ways (Content-Length / Transfer-Encoding, or a request target that does not fit its method)",
        );
    }
    // The native HTTP/1.1 core refused all of what follows when it parsed the head (the same
    // rules, as strict or stricter: `transport::h1::parse::fields`); two more map look-ups per
    // request would find nothing (issue 22). hyper's heads (and h2's) are checked here.
    if conn.framing_checked {
        return Ok(());
    }
    let mut lengths = parts.headers.get_all(CONTENT_LENGTH).iter();
    let first = lengths.next();
    if lengths.next().is_some() {
        return bad("duplicate Content-Length");
    }
    if let Some(v) = first {
        if v.is_empty() || !v.as_bytes().iter().all(u8::is_ascii_digit) {
            return bad("malformed Content-Length");
        }
    }
    let mut te = parts.headers.get_all(TRANSFER_ENCODING).iter();
    if let Some(v) = te.next() {
        if parts.version != Version::HTTP_11 {
            return bad("Transfer-Encoding is only valid in HTTP/1.1");
        }
        if first.is_some() {
            return bad("both Content-Length and Transfer-Encoding");
        }
        if te.next().is_some() || !v.as_bytes().eq_ignore_ascii_case(b"chunked") {
            return bad("unsupported Transfer-Encoding (only a single \"chunked\" is accepted)");
        }
    }
    Ok(())
}

/// Head-limits stage.
pub(super) fn check_head_limits(parts: &Parts, limits: HeadLimits) -> Result<(), Refusal> {
    if parts.headers.len() > limits.max_headers {
        return Err(Refusal::new(
            Code::HeadersTooLarge,
            format!("at most {} header fields are accepted", limits.max_headers),
        ));
    }
    let bytes: usize = parts
        .headers
        .iter()
        .map(|(k, v)| k.as_str().len() + v.len() + 4)
        .sum();
    if bytes > limits.max_header_bytes {
        return Err(Refusal::new(
            Code::HeadersTooLarge,
            format!("request headers exceed {} bytes", limits.max_header_bytes),
        ));
    }
    Ok(())
}

fn declared_length(parts: &Parts) -> Option<u64> {
    parts
        .headers
        .get(CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

/// Body limit stage: a declared `Content-Length` above the route's `max_body` is 413 at once.
pub(super) fn check_body_limit(parts: &Parts, body_limit: u64) -> Result<(), Refusal> {
    if let Some(len) = declared_length(parts) {
        if len > body_limit {
            return Err(Refusal::new(
                Code::PayloadTooLarge,
                format!("this route accepts bodies up to {body_limit} bytes"),
            )
            .closing());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// On a connection whose heads the native core parsed (`framing_checked`), the guard's flag
    /// still refuses every request; elsewhere the fields are checked here as well.
    #[test]
    fn the_guards_flag_is_read_on_every_connection() {
        let (mut parts, ()) = http::Request::builder()
            .header("content-length", "5")
            .header("content-length", "6")
            .body(())
            .unwrap()
            .into_parts();
        let mut conn = ConnInfo::for_tests(None);
        assert!(check_framing(&conn, &parts).is_err());
        conn.framing_checked = true;
        // (A head the native parse would have refused: not looked at again.)
        assert!(check_framing(&conn, &parts).is_ok());
        parts.headers.clear();
        assert!(check_framing(&conn, &parts).is_ok());
        conn.ambiguous_framing
            .store(true, std::sync::atomic::Ordering::Release);
        let refused = check_framing(&conn, &parts).unwrap_err();
        assert!(refused.close);
        assert_eq!(refused.code, Code::InvalidRequest);
    }

    /// Generated ids share a buffer per thread: each stays what it was when made, however many
    /// follow it (several buffers' worth), and no two are equal.
    #[test]
    fn generated_ids_are_distinct_and_never_overwritten() {
        let none = http::HeaderMap::new();
        let ids: Vec<(HeaderValue, String)> = (0..IDS_PER_BUFFER * 5 + 3)
            .map(|_| {
                let v = request_id(&none);
                let copy = v.to_str().unwrap().to_owned();
                (v, copy)
            })
            .collect();
        for (v, copy) in &ids {
            assert_eq!(v.to_str().unwrap(), copy);
            assert_eq!(copy.len(), 32);
            assert!(copy
                .bytes()
                .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c)));
        }
        let distinct: std::collections::HashSet<&str> =
            ids.iter().map(|(_, c)| c.as_str()).collect();
        assert_eq!(distinct.len(), ids.len());
        // A caller's well-formed id is kept; a malformed one or two ids are replaced.
        let mut h = http::HeaderMap::new();
        h.insert(
            &headers::X_REQUEST_ID,
            HeaderValue::from_static("abc-1.2:3_x"),
        );
        assert_eq!(request_id(&h), "abc-1.2:3_x");
        h.insert(&headers::X_REQUEST_ID, HeaderValue::from_static("a b"));
        assert_eq!(request_id(&h).len(), 32);
        h.insert(&headers::X_REQUEST_ID, HeaderValue::from_static("abc"));
        h.append(&headers::X_REQUEST_ID, HeaderValue::from_static("abc"));
        assert_eq!(request_id(&h).len(), 32);
    }
}
