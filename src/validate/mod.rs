//! Request validation (`docs/configuration.md` `[routes.validate]`, `docs/http.md` `unsupported-media-type`,
//! `schema-violation`, `invalid-request`).
//!
//! In the request path after authorization, per route that has a [`Validator`]:
//! 1. [`Validator::check_head`]: query length, then `Content-Type` against `content_types`
//!    (a body without a `Content-Type` → 415).
//! 2. [`Validator::needs_body`]: whether the body must be read first (JSON and XML bodies are
//!    checked). If so, the pipeline buffers it (within the route's `max_body`) and calls
//! 3. [`Validator::check_body`]: JSON (depth scan, strict parse, schema) or XML (see [`xml`]).
//!
//! Everything expensive (reading and compiling the schema) happens once, in [`Validator::new`].

mod json;
mod media;
pub mod xml;

use std::path::{Path, PathBuf};

use http::request::Parts;

use crate::problem::{Code, Refusal};

pub use xml::XmlSettings;

use media::{BodyKind, Pattern};

/// Default `max_json_depth`.
pub const DEFAULT_MAX_JSON_DEPTH: usize = 64;
/// Highest `max_json_depth` accepted: serde_json's own recursion limit is 128.
pub const MAX_JSON_DEPTH_LIMIT: usize = 120;
/// Default `max_query_bytes`.
pub const DEFAULT_MAX_QUERY_BYTES: usize = 8192;

/// A route's `[routes.validate]`, with paths already resolved against the config directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidateSettings {
    /// `content_types`: allowed request media types (`type/subtype`, `type/*`, `*/*`). Empty:
    /// any, except that a route with a `json_schema` then defaults to `application/json`.
    pub content_types: Vec<String>,
    /// `json_schema`: a JSON Schema file (draft detected from `$schema`, default 2020-12).
    pub json_schema: Option<PathBuf>,
    /// `max_json_depth`: nesting of arrays and objects. Default 64, at most 120.
    pub max_json_depth: usize,
    /// `max_query_bytes`: length of the query string (after `?`, still encoded). Default 8192.
    pub max_query_bytes: usize,
    /// `[routes.validate.xml]`.
    pub xml: XmlSettings,
}

impl Default for ValidateSettings {
    fn default() -> Self {
        ValidateSettings {
            content_types: Vec::new(),
            json_schema: None,
            max_json_depth: DEFAULT_MAX_JSON_DEPTH,
            max_query_bytes: DEFAULT_MAX_QUERY_BYTES,
            xml: XmlSettings::default(),
        }
    }
}

/// A route's compiled validation. Build once at load; share with `Arc`.
#[derive(Debug)]
pub struct Validator {
    content_types: Vec<Pattern>,
    schema: Option<jsonschema::Validator>,
    max_json_depth: usize,
    max_query_bytes: usize,
    xml: XmlSettings,
}

impl Validator {
    /// Read and compile everything. Errors are one line, prefixed with the config key
    /// (`json_schema: bad schema file schemas/x.json: …`).
    pub fn new(settings: &ValidateSettings) -> Result<Self, String> {
        let mut content_types = settings
            .content_types
            .iter()
            .map(|s| Pattern::parse(s).map_err(|e| format!("content_types: {e}")))
            .collect::<Result<Vec<_>, _>>()?;
        let schema = settings
            .json_schema
            .as_deref()
            .map(|p| load_schema(p).map_err(|e| format!("json_schema: {e}")))
            .transpose()?;
        if schema.is_some() && content_types.is_empty() {
            // Otherwise a body labelled text/plain would skip the schema and reach the upstream.
            content_types.push(Pattern::parse("application/json")?);
        }
        if settings.max_json_depth == 0 || settings.max_json_depth > MAX_JSON_DEPTH_LIMIT {
            return Err(format!(
                "max_json_depth: must be between 1 and {MAX_JSON_DEPTH_LIMIT}"
            ));
        }
        if settings.xml.max_depth == 0 {
            return Err("xml.max_depth: must be at least 1".into());
        }
        Ok(Validator {
            content_types,
            schema,
            max_json_depth: settings.max_json_depth,
            max_query_bytes: settings.max_query_bytes,
            xml: settings.xml.clone(),
        })
    }

    /// Before reading the body. `has_body`: the request carries a body (HTTP/1: a non-zero
    /// `Content-Length` or any `Transfer-Encoding`; HTTP/2: the stream is not ended — hyper's
    /// `Body::is_end_stream()`). [`has_body`] computes it from the head alone where possible.
    pub fn check_head(&self, parts: &Parts, has_body: bool) -> Result<(), Refusal> {
        let query = parts.uri.query().map_or(0, str::len);
        if query > self.max_query_bytes {
            return Err(Refusal::new(
                Code::InvalidRequest,
                format!("query string longer than {} bytes", self.max_query_bytes),
            ));
        }
        if !has_body {
            return Ok(());
        }
        let (ty, sub) = media::request_type(parts)?.ok_or_else(|| {
            Refusal::new(
                Code::UnsupportedMediaType,
                "a request body needs a Content-Type",
            )
        })?;
        if !media::allowed(&self.content_types, &ty, &sub) {
            return Err(Refusal::new(
                Code::UnsupportedMediaType,
                "Content-Type not accepted on this route",
            ));
        }
        let kind = media::kind(&ty, &sub);
        if kind != BodyKind::Other {
            // The checks read UTF-8; a body the upstream decodes otherwise (UTF-7, UTF-16,
            // Latin-1) could hide from them what the upstream then reads. RFC 9110 §15.5.16: 415.
            media::check_charset(parts)?;
        }
        if kind != BodyKind::Other && encoded(parts) {
            // The checks read the bytes as sent; a compressed body would be checked as garbage
            // (or, by a lenient upstream, not at all). RFC 9110 §15.5.16: 415.
            return Err(Refusal::new(
                Code::UnsupportedMediaType,
                "Content-Encoding is not accepted on bodies this route validates",
            ));
        }
        Ok(())
    }

    /// Whether [`check_body`](Self::check_body) must see the body: JSON and XML bodies are
    /// checked. Call after `check_head` passed, only for requests with a body.
    pub fn needs_body(&self, parts: &Parts) -> bool {
        !matches!(body_kind(parts), BodyKind::Other)
    }

    /// Check a buffered body against the route's rules.
    pub fn check_body(&self, parts: &Parts, body: &[u8]) -> Result<(), Refusal> {
        match body_kind(parts) {
            BodyKind::Json => {
                media::check_bom(body)?;
                json::check_depth(body, self.max_json_depth)?;
                let doc = json::parse(body)?;
                match &self.schema {
                    Some(schema) => json::check_schema(schema, &doc),
                    None => Ok(()),
                }
            }
            BodyKind::Xml => {
                media::check_bom(body)?;
                xml::check(body, &self.xml)
            }
            BodyKind::Other => Ok(()),
        }
    }
}

/// Whether the request carries a body, decided by the body itself and never by the method (an
/// h2 `DELETE` or `GET` may send DATA frames without a `Content-Length`, and the upstream gets
/// them). `body_ended`: hyper's `Body::is_end_stream()` for the unread body (HTTP/1: no
/// `Content-Length`/`Transfer-Encoding`, or `Content-Length: 0`; HTTP/2: `END_STREAM` on the
/// HEADERS frame). A non-zero `Content-Length` or any `Transfer-Encoding` counts as a body too.
pub fn has_body(parts: &Parts, body_ended: bool) -> bool {
    if parts.headers.contains_key(http::header::TRANSFER_ENCODING) {
        return true;
    }
    if let Some(cl) = parts.headers.get(http::header::CONTENT_LENGTH) {
        if cl.as_bytes() != b"0" {
            return true;
        }
    }
    !body_ended
}

/// Any `Content-Encoding` other than `identity`.
fn encoded(parts: &Parts) -> bool {
    parts
        .headers
        .get_all(http::header::CONTENT_ENCODING)
        .iter()
        .any(|v| {
            v.to_str().map_or(true, |s| {
                s.split(',')
                    .any(|c| !c.trim().is_empty() && !c.trim().eq_ignore_ascii_case("identity"))
            })
        })
}

fn body_kind(parts: &Parts) -> BodyKind {
    match media::request_type(parts) {
        Ok(Some((ty, sub))) => media::kind(&ty, &sub),
        _ => BodyKind::Other,
    }
}

/// Read and compile a JSON Schema file. External `$ref`s are not fetched (no network, no file
/// access at request time): a schema that needs one fails here, at load.
pub fn load_schema(path: &Path) -> Result<jsonschema::Validator, String> {
    let shown = path.display();
    let text = std::fs::read(path).map_err(|e| format!("bad schema file {shown}: {e}"))?;
    let value: serde_json::Value = serde_json::from_slice(&text)
        .map_err(|e| format!("bad schema file {shown}: not JSON: {e}"))?;
    jsonschema::validator_for(&value).map_err(|e| format!("bad schema file {shown}: {e}"))
}

#[cfg(test)]
mod tests;
