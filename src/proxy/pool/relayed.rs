//! An upstream answer's fields, relayed as they arrived: the frozen head and where each field is
//! in it, carried with the `Response` as an extension. The `Response`'s own `HeaderMap` then
//! holds only what the gateway sets (`X-Request-Id`, `RateLimit*`, `Sunset`...).
//!
//! Why (issue 22): building a `HeaderMap` of the answer (a `HeaderName` and a `HeaderValue` per
//! field, a hash and an insertion each), editing it and walking it again to write it cost about
//! 3k instructions per proxied request; the native HTTP/1.1 writer (`transport::h1::write`)
//! copies these field lines instead. Every other reader (hyper's server for the `hyper` engine
//! and h2 callers) sees them through [`Relayed::materialise`], which turns them into map entries
//! under the same rule the writer follows ([`Relayed::replaced`]).
//!
//! The checks were made when the head was parsed (`response::parse`): httparse accepts exactly
//! the name bytes `HeaderName` accepts (tchar, not empty) and the value bytes `HeaderValue`
//! accepts (HTAB, SP, VCHAR, obs-text), bare LF, obs-fold and framing ambiguities are refused,
//! and names are lower-cased in place.

use std::cell::Cell;

use bytes::Bytes;
use http::{Extensions, HeaderMap, HeaderName, HeaderValue, Response};

/// Where a field's name and value are in the head: (name start, name end, value start, value
/// end).
pub(super) type Span = (u16, u16, u16, u16);

/// The spans of a head's fields, inline for the usual answer.
pub(super) type Spans = smallvec::SmallVec<[Span; 16]>;

/// Names the gateway appends to rather than replaces: `migration::SunsetHeaders::apply` appends
/// `Deprecation`, `Sunset` and `Link` (an upstream sends `Link` fields of its own), so the
/// upstream's fields of those names stay, before the gateway's.
const APPENDED: [&[u8]; 3] = [b"deprecation", b"sunset", b"link"];

/// An upstream answer's fields to relay to the caller, in the order they arrived.
#[derive(Debug, Clone)]
pub struct Relayed {
    head: Bytes,
    spans: Spans,
    /// The value of the relayed `Content-Length` field, when there is one.
    length: Option<u64>,
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
            return Relayed {
                head,
                spans,
                length,
            };
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
        Relayed {
            head,
            spans,
            length,
        }
    }

    /// The relayed fields, (lower-case name, value), in order.
    pub fn iter(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        self.spans.iter().map(|&(ns, ne, vs, ve)| {
            (
                self.head.get(ns as usize..ne as usize).unwrap_or_default(),
                self.head.get(vs as usize..ve as usize).unwrap_or_default(),
            )
        })
    }

    /// How many fields are relayed.
    pub fn len(&self) -> usize {
        self.spans.len()
    }

    /// Whether no field is relayed.
    pub fn is_empty(&self) -> bool {
        self.spans.is_empty()
    }

    /// The relayed `Content-Length`, when there is one.
    pub fn content_length(&self) -> Option<u64> {
        self.length
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
        let mut map = HeaderMap::with_capacity(self.spans.len() + gateway.keys_len());
        for &(ns, ne, vs, ve) in &self.spans {
            let Some(name) = self.head.get(ns as usize..ne as usize) else {
                continue;
            };
            if Self::replaced(name, &gateway) {
                continue;
            }
            // Both checked by the parse (see the module's comment): neither fails.
            let name = HeaderName::from_bytes(name);
            let value = HeaderValue::from_maybe_shared(self.head.slice(vs as usize..ve as usize));
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

    /// Attach these fields to `resp` (its extensions), in the extension set the last
    /// [`Relayed::detach`] on this thread emptied, if any.
    pub(super) fn attach<B>(self, resp: &mut Response<B>) {
        let mut ext = SPARE.with(Cell::take).unwrap_or_default();
        ext.insert(self);
        *resp.extensions_mut() = ext;
    }

    /// Take the relayed fields out of a response's extensions; an extension set left empty is
    /// kept for the next [`Relayed::attach`] on this thread.
    pub fn detach(ext: &mut Extensions) -> Option<Relayed> {
        let relayed = ext.remove::<Relayed>()?;
        if ext.is_empty() {
            SPARE.with(|s| s.set(Some(std::mem::take(ext))));
        }
        Some(relayed)
    }

    /// Drop the relayed fields a response's extensions hold, keeping the extension set for the
    /// next [`Relayed::attach`] on this thread when they were all it held.
    pub fn recycle(ext: &mut Extensions) {
        if ext.len() == 1 && ext.get::<Relayed>().is_some() {
            ext.clear();
            SPARE.with(|s| s.set(Some(std::mem::take(ext))));
        }
    }

    /// Move the relayed fields of `resp`, if any, into its map: for anything that reads or
    /// writes a response other than the native HTTP/1.1 writer (hyper's server).
    pub fn materialise<B>(resp: &mut Response<B>) {
        if let Some(relayed) = Self::detach(resp.extensions_mut()) {
            let gateway = std::mem::take(resp.headers_mut());
            *resp.headers_mut() = relayed.into_map(gateway);
        }
    }
}

thread_local! {
    /// An emptied extension set (its map allocated), for the next answer relayed on this thread:
    /// an extension set allocates its map and table on its first insertion, and a data-plane
    /// worker relays one answer after another (issue 22: about 0.4k instructions per request).
    static SPARE: Cell<Option<Extensions>> = const { Cell::new(None) };
}
