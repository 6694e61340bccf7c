//! JSON bodies: a byte-level depth scan first (so a 100 000-deep document is refused before any
//! recursive parser sees it), then a parse that refuses duplicate object keys, then the route's
//! JSON Schema, compiled once at load.
//!
//! Duplicate keys are refused because parsers disagree on them (first wins, last wins, error):
//! the schema would check one value and the upstream act on the other.

use std::fmt::Write as _;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

use crate::problem::{Code, Refusal};

/// Most errors named in a 422 `detail`; one usually suffices to fix the request.
const MAX_REPORTED: usize = 3;
/// Longest pointer quoted in a `detail` (pointers contain the request's own property names).
const MAX_POINTER: usize = 120;

/// Refuse nesting deeper than `max` without parsing. Strings are skipped (brackets in them do
/// not count); anything malformed is left for the parser to report.
pub(crate) fn check_depth(body: &[u8], max: usize) -> Result<(), Refusal> {
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for &b in body {
        if in_string {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > max {
                    return Err(Refusal::new(
                        Code::InvalidRequest,
                        format!("JSON nested deeper than {max} levels"),
                    ));
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Ok(())
}

/// Parse, refusing malformed JSON and duplicate keys (400). The error says where, not what.
pub(crate) fn parse(body: &[u8]) -> Result<Value, Refusal> {
    let mut de = serde_json::Deserializer::from_slice(body);
    let parsed = Strict::deserialize(&mut de).and_then(|v| de.end().map(|()| v.0));
    parsed.map_err(|e| {
        let what = if e.to_string().starts_with(DUPLICATE) {
            "duplicate object key"
        } else {
            "malformed JSON"
        };
        Refusal::new(
            Code::InvalidRequest,
            format!("{what} at line {} column {}", e.line(), e.column()),
        )
    })
}

/// Validate against the compiled schema; 422 with the failing pointers and keywords only —
/// never the offending values, which may be secrets.
pub(crate) fn check_schema(schema: &jsonschema::Validator, doc: &Value) -> Result<(), Refusal> {
    // The common case first: `is_valid` stops at the first failure and builds no errors.
    if schema.is_valid(doc) {
        return Ok(());
    }
    let errors = schema.iter_errors(doc);
    let mut detail = String::new();
    for (n, e) in errors.enumerate() {
        if n == MAX_REPORTED {
            detail.push_str("; …");
            break;
        }
        if n > 0 {
            detail.push_str("; ");
        }
        let pointer = e.instance_path().as_str();
        // The empty pointer is the whole document; "/" would mean a property named "".
        let pointer = if pointer.is_empty() {
            "(root)"
        } else {
            pointer
        };
        let _ = write!(detail, "{}: {}", truncate(pointer), e.kind().keyword());
    }
    Err(Refusal::new(Code::SchemaViolation, detail))
}

fn truncate(s: &str) -> String {
    if s.len() <= MAX_POINTER {
        return s.to_owned();
    }
    let mut end = MAX_POINTER;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", s.get(..end).unwrap_or(""))
}

const DUPLICATE: &str = "duplicate key";

/// A `Value` whose objects have no repeated keys.
struct Strict(Value);

impl<'de> Deserialize<'de> for Strict {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(StrictVisitor).map(Strict)
    }
}

struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut v = Vec::new();
        while let Some(Strict(item)) = seq.next_element()? {
            v.push(item);
        }
        Ok(Value::Array(v))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut m = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if m.contains_key(&key) {
                // The key itself is not quoted back: it is the caller's data.
                return Err(de::Error::custom(DUPLICATE));
            }
            let Strict(value) = map.next_value()?;
            m.insert(key, value);
        }
        Ok(Value::Object(m))
    }
}

#[cfg(test)]
mod tests;
