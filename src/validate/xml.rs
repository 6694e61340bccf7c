//! XML and SOAP bodies, checked with quick-xml's streaming reader (nothing is built, nothing is
//! expanded): well-formed, UTF-8, one root, bounded depth and attribute count, and
//! - no DOCTYPE at all: it is where entity declarations live, so refusing it refuses billion
//!   laughs (entity expansion) and XXE (external entities) without looking further; SOAP 1.1
//!   and 1.2 forbid a DTD in an envelope anyway;
//! - no processing instructions other than the XML declaration unless allowed: they are
//!   instructions to some other processor, which a gateway has no business passing on;
//! - no entity references other than the five predefined ones and character references: without
//!   a DOCTYPE nothing else is defined, so anything else is not well-formed.

use quick_xml::events::Event;
use quick_xml::{Reader, XmlVersion};

use crate::problem::{Code, Refusal};

/// XML limits (`[routes.validate.xml]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct XmlSettings {
    /// `max_depth`: element nesting. Default 64.
    pub max_depth: usize,
    /// `max_attributes`: per element. Default 64 (the duplicate-attribute check is quadratic).
    pub max_attributes: usize,
    /// `max_bytes`: body size, if stricter than the route's `max_body`. Default none.
    pub max_bytes: Option<usize>,
    /// `allow_processing_instructions`. Default false.
    pub allow_processing_instructions: bool,
}

impl Default for XmlSettings {
    fn default() -> Self {
        XmlSettings {
            max_depth: 64,
            max_attributes: 64,
            max_bytes: None,
            allow_processing_instructions: false,
        }
    }
}

fn bad(detail: impl Into<std::borrow::Cow<'static, str>>) -> Refusal {
    Refusal::new(Code::InvalidRequest, detail)
}

/// Check one XML document. Errors say what and at which byte, never quote the document.
pub(crate) fn check(body: &[u8], limits: &XmlSettings) -> Result<(), Refusal> {
    if let Some(max) = limits.max_bytes {
        if body.len() > max {
            return Err(Refusal::new(
                Code::PayloadTooLarge,
                format!("XML body larger than {max} bytes"),
            ));
        }
    }
    let body = body.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(body);
    let text = std::str::from_utf8(body).map_err(|e| {
        bad(format!(
            "XML body is not UTF-8 (byte {}); only UTF-8 is accepted",
            e.valid_up_to()
        ))
    })?;
    let mut reader = Reader::from_str(text);
    let config = reader.config_mut();
    config.check_end_names = true;
    config.check_comments = true;
    config.allow_dangling_amp = false;
    config.allow_unmatched_ends = false;

    let mut depth = 0usize;
    let mut roots = 0usize;
    let mut first = true;
    loop {
        let at = reader.buffer_position();
        let event = reader
            .read_event()
            .map_err(|_| bad(format!("malformed XML near byte {at}")))?;
        let was_first = std::mem::replace(&mut first, false);
        match event {
            Event::Decl(d) => {
                if !was_first {
                    return Err(bad("XML declaration not at the start"));
                }
                if let Some(enc) = d.encoding() {
                    let enc = enc.map_err(|_| bad("malformed XML declaration"))?;
                    if !enc.eq_ignore_ascii_case(b"utf-8") && !enc.eq_ignore_ascii_case(b"utf8") {
                        // The bytes are UTF-8 but an upstream would decode them as declared:
                        // an encoding the check does not read in (415, like a charset).
                        return Err(Refusal::new(
                            Code::UnsupportedMediaType,
                            "XML declares an encoding other than UTF-8",
                        ));
                    }
                }
            }
            Event::DocType(_) => {
                return Err(bad("DOCTYPE is not allowed in XML bodies"));
            }
            Event::PI(_) if !limits.allow_processing_instructions => {
                return Err(bad("XML processing instructions are not allowed"));
            }
            Event::PI(_) | Event::Comment(_) => {}
            Event::Start(_) | Event::Empty(_) if depth == 0 && roots > 0 => {
                return Err(bad("XML has more than one root element"));
            }
            Event::Start(e) => {
                depth += 1;
                roots += usize::from(depth == 1);
                check_element(&e, depth, limits, at)?;
            }
            Event::Empty(e) => {
                roots += usize::from(depth == 0);
                check_element(&e, depth + 1, limits, at)?;
            }
            Event::End(_) => depth = depth.saturating_sub(1),
            Event::Text(t) => {
                if depth == 0 && !t.iter().all(u8::is_ascii_whitespace) {
                    return Err(bad("text outside the XML root element"));
                }
            }
            Event::CData(_) => {
                if depth == 0 {
                    return Err(bad("CDATA outside the XML root element"));
                }
            }
            Event::GeneralRef(r) => {
                if depth == 0 {
                    return Err(bad("entity reference outside the XML root element"));
                }
                let ok = if r.is_char_ref() {
                    matches!(r.resolve_char_ref(), Ok(Some(_)))
                } else {
                    matches!(&*r, b"lt" | b"gt" | b"amp" | b"apos" | b"quot")
                };
                if !ok {
                    return Err(bad(format!(
                        "undefined XML entity reference near byte {at}"
                    )));
                }
            }
            Event::Eof => {
                if depth != 0 {
                    return Err(bad("XML ends inside an element"));
                }
                if roots == 0 {
                    return Err(bad("XML has no root element"));
                }
                return Ok(());
            }
        }
    }
}

fn check_element(
    e: &quick_xml::events::BytesStart<'_>,
    depth: usize,
    limits: &XmlSettings,
    at: u64,
) -> Result<(), Refusal> {
    if depth > limits.max_depth {
        return Err(bad(format!(
            "XML nested deeper than {} elements",
            limits.max_depth
        )));
    }
    // Counted before the (quadratic) duplicate check sees them all.
    for (n, attr) in e.attributes().with_checks(true).enumerate() {
        if n >= limits.max_attributes {
            return Err(bad(format!(
                "XML element with more than {} attributes",
                limits.max_attributes
            )));
        }
        let attr = attr.map_err(|_| bad(format!("malformed XML attribute near byte {at}")))?;
        // XML 1.0 §3.1: no `<` in attribute values (quick-xml does not check this itself).
        if attr.value.contains(&b'<') {
            return Err(bad(format!("malformed XML attribute near byte {at}")));
        }
        // Resolves only predefined and character references: an undefined entity fails here.
        attr.normalized_value(XmlVersion::Implicit1_0)
            .map_err(|_| bad(format!("undefined XML entity reference near byte {at}")))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests;
