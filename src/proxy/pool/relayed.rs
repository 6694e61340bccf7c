//! An upstream answer's fields, relayed as they arrived: the frozen head and where each field is
//! in it, carried beside the `Response` (the pool returns the pair, the pipeline's handler hands
//! both to the transport: `transport::Answer`). The `Response`'s own `HeaderMap` then holds only
//! what the gateway sets (`X-Request-Id`, `RateLimit*`, `Sunset`...).
//!
//! Why (issue 22): building a `HeaderMap` of the answer (a `HeaderName` and a `HeaderValue` per
//! field, a hash and an insertion each), editing it and walking it again to write it cost about
//! 3k instructions per proxied request; the native HTTP/1.1 writer (`transport::h1::write`)
//! copies these field lines instead. Beside the response rather than in its extensions: an
//! extension is a boxed value in a map allocated on first insertion (about 0.4k instructions per
//! request even with a per-thread spare set). The fields are boxed, and the box goes back to a
//! per-thread spare when they are dropped: what travels through the layers of futures is one
//! pointer, not the two hundred bytes of the head's spans (moved by value, those cost about as
//! many instructions in copies as the extension did).
//! Every other reader (hyper's server for the `hyper` engine and h2 callers) sees them through
//! [`Relayed::materialise`], which turns them into map entries under the same rule the writer
//! follows ([`Relayed::replaced`]).
//!
//! The checks were made when the head was parsed (`response::parse`): httparse accepts exactly
//! the name bytes `HeaderName` accepts (tchar, not empty) and the value bytes `HeaderValue`
//! accepts (HTAB, SP, VCHAR, obs-text), bare LF, obs-fold and framing ambiguities are refused,
//! and names are lower-cased in place.

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Response};

/// Where a field's name and value are in the head: (name start, name end, value start, value
/// end).
pub(super) type Span = (u16, u16, u16, u16);

/// The spans of a head's fields, inline for the usual answer.
pub(super) type Spans = smallvec::SmallVec<[Span; 16]>;

/// Names the gateway appends to rather than replaces: `migration::SunsetHeaders::apply` appends
/// `Deprecation`, `Sunset` and `Link` (an upstream sends `Link` fields of its own), so the
/// upstream's fields of those names stay, before the gateway's.
const APPENDED: [&[u8]; 3] = [b"deprecation", b"sunset", b"link"];

/// An upstream answer's fields to relay to the caller, in the order they arrived. Always holds
/// its fields (`None` only while it is dropped).
pub struct Relayed(Option<Box<Fields>>);

/// What a [`Relayed`] holds.
#[derive(Debug, Default, Clone)]
struct Fields {
    head: Bytes,
    spans: Spans,
    /// The value of the relayed `Content-Length` field, when there is one.
    length: Option<u64>,
}

impl std::fmt::Debug for Relayed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.iter().map(|(n, _)| n.escape_ascii().to_string()))
            .finish()
    }
}

impl Clone for Relayed {
    fn clone(&self) -> Self {
        Relayed(self.0.clone())
    }
}

impl Drop for Relayed {
    /// The head's bytes are released now (the upstream connection's buffer can be reused); the
    /// box becomes this thread's spare for the next answer.
    fn drop(&mut self) {
        if let Some(mut fields) = self.0.take() {
            fields.head = Bytes::new();
            fields.spans.clear();
            // A thread being torn down has no spare to keep: the box is freed then.
            let _ = SPARE.try_with(|s| s.set(Some(fields)));
        }
    }
}

thread_local! {
    /// An emptied box of fields, for the next answer relayed on this thread: a data-plane worker
    /// relays one answer after another, and taking the spare is cheaper than an allocation.
    static SPARE: std::cell::Cell<Option<Box<Fields>>> = const { std::cell::Cell::new(None) };
}

impl Relayed {
    /// The fields of `head` at `spans`, less the hop-by-hop ones (RFC 9110 §7.6.1: those a
    /// `Connection` field lists too, as [`crate::proxy::headers::to_caller`] removes them from
    /// a map) and less a repeated `Content-Length` (checked equal by the parse: the caller gets
    /// one unambiguous length). Names are lower case.
    pub(super) fn new(head: Bytes, mut spans: Spans) -> Self {
        let name = |s: &Span| head.get(s.0 as usize..s.1 as usize).unwrap_or_default();
        let value = |s: &Span| head.get(s.2 as usize..s.3 as usize).unwrap_or_default();
        // The usual answer: no hop-by-hop field, at most one length; one pass, nothing removed.
        let (mut hop, mut lengths, mut length) = (false, 0u32, None);
        for s in &spans {
            let n = name(s);
            if n == b"content-length" {
                lengths += 1;
                length = super::response::content_length(value(s)).ok();
            } else {
                hop |= crate::proxy::headers::is_hop_by_hop_name(n);
            }
        }
        if !hop && lengths <= 1 {
            return Self::boxed(head, spans, length);
        }
        if hop {
            // Rare: the names the `Connection` fields list, then one pass to drop them all.
            let listed: smallvec::SmallVec<[&[u8]; 4]> = spans
                .iter()
                .filter(|s| name(s) == b"connection")
                .flat_map(|s| value(s).split(|b| *b == b','))
                .map(<[u8]>::trim_ascii)
                .filter(|t| !t.is_empty())
                .collect();
            let listed = |n: &[u8]| listed.iter().any(|t| t.eq_ignore_ascii_case(n));
            let keep: Spans = spans
                .iter()
                .copied()
                .filter(|s| !crate::proxy::headers::is_hop_by_hop_name(name(s)) && !listed(name(s)))
                .collect();
            spans = keep;
        }
        length = None;
        let mut seen = false;
        spans.retain(|s| {
            if name(s) != b"content-length" {
                return true;
            }
            if seen {
                return false;
            }
            seen = true;
            length = super::response::content_length(value(s)).ok();
            true
        });
        Self::boxed(head, spans, length)
    }

    /// The fields in this thread's spare box, else a new one.
    fn boxed(head: Bytes, spans: Spans, length: Option<u64>) -> Self {
        let mut fields = SPARE
            .try_with(std::cell::Cell::take)
            .ok()
            .flatten()
            .unwrap_or_default();
        fields.head = head;
        fields.spans = spans;
        fields.length = length;
        Relayed(Some(fields))
    }

    /// The head and the spans of its relayed fields.
    fn parts(&self) -> (&[u8], &[Span]) {
        match &self.0 {
            Some(f) => (&f.head, &f.spans),
            None => (&[], &[]),
        }
    }

    /// The relayed fields, (lower-case name, value), in order.
    pub fn iter(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        let (head, spans) = self.parts();
        spans.iter().map(move |&(ns, ne, vs, ve)| {
            (
                head.get(ns as usize..ne as usize).unwrap_or_default(),
                head.get(vs as usize..ve as usize).unwrap_or_default(),
            )
        })
    }

    /// How many fields are relayed.
    pub fn len(&self) -> usize {
        self.parts().1.len()
    }

    /// Whether no field is relayed.
    pub fn is_empty(&self) -> bool {
        self.parts().1.is_empty()
    }

    /// The relayed `Content-Length`, when there is one.
    pub fn content_length(&self) -> Option<u64> {
        self.0.as_ref().and_then(|f| f.length)
    }

    /// Whether a relayed field `name` gives way to the gateway's fields `gateway`: the gateway
    /// sets that name (with `insert`, which replaces every field of the name), unless it is one
    /// the gateway appends to. The gateway's map holds a handful of names at most: compared one
    /// by one, no hashing.
    pub fn replaced(name: &[u8], gateway: &HeaderMap) -> bool {
        !gateway.is_empty()
            && gateway.keys().any(|k| k.as_str().as_bytes() == name)
            && !APPENDED.contains(&name)
    }

    /// The relayed fields as a map, with the gateway's fields `gateway` after them (replacing or
    /// appended to, as [`Relayed::replaced`] says): what the caller would get from the native
    /// writer.
    pub fn into_map(self, gateway: HeaderMap) -> HeaderMap {
        let Some(Fields { head, spans, .. }) = self.0.as_deref() else {
            return gateway;
        };
        let mut map = HeaderMap::with_capacity(spans.len() + gateway.keys_len());
        for &(ns, ne, vs, ve) in spans {
            let Some(name) = head.get(ns as usize..ne as usize) else {
                continue;
            };
            if Self::replaced(name, &gateway) {
                continue;
            }
            // Both checked by the parse (see the module's comment): neither fails.
            let name = HeaderName::from_bytes(name);
            let value = HeaderValue::from_maybe_shared(head.slice(vs as usize..ve as usize));
            if let (Ok(name), Ok(value)) = (name, value) {
                map.append(name, value);
            }
        }
        let mut last = None;
        for (name, value) in gateway {
            if let Some(n) = name {
                last = Some(n);
            }
            if let Some(n) = &last {
                map.append(n.clone(), value);
            }
        }
        map
    }

    /// Move these fields into `resp`'s map, before the gateway's fields it holds: for anything
    /// that reads or writes a response other than the native HTTP/1.1 writer (hyper's server).
    pub fn materialise<B>(self, resp: &mut Response<B>) {
        let gateway = std::mem::take(resp.headers_mut());
        *resp.headers_mut() = self.into_map(gateway);
    }
}
