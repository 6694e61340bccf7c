use std::io::Write;
use std::time::{Duration, Instant};

use http::Request;

use super::*;

fn parts(method: &str, uri: &str, content_type: Option<&str>) -> Parts {
    let mut b = Request::builder().method(method).uri(uri);
    if let Some(ct) = content_type {
        b = b.header("content-type", ct);
    }
    b.body(()).unwrap().into_parts().0
}

fn schema_file(schema: &serde_json::Value) -> tempfile::NamedTempFile {
    let mut f = tempfile::NamedTempFile::new().unwrap();
    f.write_all(schema.to_string().as_bytes()).unwrap();
    f
}

fn payment_schema() -> serde_json::Value {
    serde_json::json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "required": ["items"],
        "additionalProperties": false,
        "properties": {
            "items": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["amount"],
                    "properties": {
                        "amount": {"type": "integer", "minimum": 1},
                        "card": {"type": "string", "pattern": "^[0-9]{16}$"}
                    }
                }
            }
        }
    })
}

fn validator(schema: &serde_json::Value) -> (Validator, tempfile::NamedTempFile) {
    let f = schema_file(schema);
    let v = Validator::new(&ValidateSettings {
        json_schema: Some(f.path().to_owned()),
        ..ValidateSettings::default()
    })
    .unwrap();
    (v, f)
}

#[test]
fn schema_violations_name_the_pointer_and_keyword_never_the_value() {
    let (v, _f) = validator(&payment_schema());
    let p = parts("POST", "/pay", Some("application/json"));
    v.check_head(&p, true).unwrap();
    assert!(v.needs_body(&p));
    v.check_body(
        &p,
        br#"{"items": [{"amount": 5}, {"amount": 7, "card": "4111111111111111"}]}"#,
    )
    .unwrap();

    let r = v
        .check_body(
            &p,
            br#"{"items": [{"amount": 5}, {"amount": 0, "card": "4111-1111-SECRET"}]}"#,
        )
        .unwrap_err();
    assert_eq!(r.code, Code::SchemaViolation);
    assert_eq!(r.detail, "/items/1/amount: minimum; /items/1/card: pattern");
    assert!(!r.detail.contains("SECRET"));

    let r = v.check_body(&p, br#"{"itemz": []}"#).unwrap_err();
    assert_eq!(r.detail, "(root): additionalProperties; (root): required");
    let resp = r.into_response("rid");
    assert_eq!(resp.status(), http::StatusCode::UNPROCESSABLE_ENTITY);
}

#[test]
fn deep_json_is_refused_before_parsing() {
    let (v, _f) = validator(&payment_schema());
    let p = parts("POST", "/pay", Some("application/json"));
    let deep = "[".repeat(100_000);
    let t = Instant::now();
    let r = v.check_body(&p, deep.as_bytes()).unwrap_err();
    assert!(t.elapsed() < Duration::from_millis(10));
    assert_eq!(r.code, Code::InvalidRequest);
    // Also on a route without a schema.
    let plain = Validator::new(&ValidateSettings::default()).unwrap();
    let r = plain.check_body(&p, deep.as_bytes()).unwrap_err();
    assert_eq!(r.detail, "JSON nested deeper than 64 levels");
    let r = plain.check_body(&p, b"{\"a\": 1,}").unwrap_err();
    assert_eq!(r.code, Code::InvalidRequest);
}

#[test]
fn content_types_match_without_parameters_or_case() {
    let v = Validator::new(&ValidateSettings {
        content_types: vec!["application/json".into(), "application/soap+xml".into()],
        ..ValidateSettings::default()
    })
    .unwrap();
    for ct in [
        "application/json",
        "Application/JSON; charset=utf-8",
        "application/soap+xml;charset=UTF-8;action=\"urn:x\"",
    ] {
        v.check_head(&parts("POST", "/", Some(ct)), true)
            .unwrap_or_else(|r| panic!("{ct}: {}", r.detail));
    }
    for ct in [
        "text/plain",
        "application/jsonx",
        "application",
        "application/json/x",
    ] {
        let r = v
            .check_head(&parts("POST", "/", Some(ct)), true)
            .unwrap_err();
        assert_eq!(r.code, Code::UnsupportedMediaType, "{ct}");
    }
    // A body without a Content-Type is refused; no body needs none.
    let r = v.check_head(&parts("POST", "/", None), true).unwrap_err();
    assert_eq!(r.code, Code::UnsupportedMediaType);
    v.check_head(&parts("GET", "/", None), false).unwrap();
    // Two Content-Type fields are ambiguous.
    let mut p = parts("POST", "/", Some("application/json"));
    p.headers
        .append("content-type", "text/plain".parse().unwrap());
    assert_eq!(
        v.check_head(&p, true).unwrap_err().code,
        Code::InvalidRequest
    );
}

#[test]
fn encoded_bodies_are_refused_where_bodies_are_validated() {
    let v = Validator::new(&ValidateSettings::default()).unwrap();
    let mut p = parts("POST", "/", Some("application/json"));
    p.headers
        .insert("content-encoding", "gzip".parse().unwrap());
    assert_eq!(
        v.check_head(&p, true).unwrap_err().code,
        Code::UnsupportedMediaType
    );
    p.headers
        .insert("content-encoding", "identity".parse().unwrap());
    v.check_head(&p, true).unwrap();
    // Bodies that are not inspected may be encoded.
    let mut p = parts("POST", "/", Some("application/octet-stream"));
    p.headers
        .insert("content-encoding", "gzip".parse().unwrap());
    v.check_head(&p, true).unwrap();
}

#[test]
fn a_schema_route_defaults_to_json_only() {
    let (v, _f) = validator(&payment_schema());
    let r = v
        .check_head(&parts("POST", "/", Some("text/plain")), true)
        .unwrap_err();
    assert_eq!(r.code, Code::UnsupportedMediaType);
}

#[test]
fn query_length_is_limited() {
    let v = Validator::new(&ValidateSettings {
        max_query_bytes: 16,
        ..ValidateSettings::default()
    })
    .unwrap();
    v.check_head(&parts("GET", "/?a=0123456789abcd", None), false)
        .unwrap();
    let r = v
        .check_head(&parts("GET", "/?a=0123456789abcde", None), false)
        .unwrap_err();
    assert_eq!(r.code, Code::InvalidRequest);
    assert_eq!(r.detail, "query string longer than 16 bytes");
}

#[test]
fn xml_bodies_are_routed_to_the_xml_checks() {
    let v = Validator::new(&ValidateSettings::default()).unwrap();
    for ct in [
        "application/xml",
        "text/xml; charset=utf-8",
        "application/soap+xml",
        "application/atom+xml",
    ] {
        let p = parts("POST", "/", Some(ct));
        assert!(v.needs_body(&p), "{ct}");
        v.check_body(&p, b"<a/>").unwrap();
        let r = v
            .check_body(&p, b"<!DOCTYPE a [<!ENTITY x \"y\">]><a>&x;</a>")
            .unwrap_err();
        assert_eq!(r.code, Code::InvalidRequest);
    }
    let p = parts("POST", "/", Some("application/octet-stream"));
    assert!(!v.needs_body(&p));
}

#[test]
fn loader_reports_problems_clearly() {
    let missing = Validator::new(&ValidateSettings {
        json_schema: Some("/nonexistent/schema.json".into()),
        ..ValidateSettings::default()
    })
    .unwrap_err();
    assert!(
        missing.starts_with("json_schema: bad schema file /nonexistent/schema.json: "),
        "{missing}"
    );

    let mut f = tempfile::NamedTempFile::new().unwrap();
    f.write_all(b"{not json").unwrap();
    let e = Validator::new(&ValidateSettings {
        json_schema: Some(f.path().to_owned()),
        ..ValidateSettings::default()
    })
    .unwrap_err();
    assert!(
        e.contains("bad schema file") && e.contains("not JSON"),
        "{e}"
    );

    let f = schema_file(&serde_json::json!({"type": "nonsense"}));
    let e = Validator::new(&ValidateSettings {
        json_schema: Some(f.path().to_owned()),
        ..ValidateSettings::default()
    })
    .unwrap_err();
    assert!(e.starts_with("json_schema: bad schema file"), "{e}");

    // External references are never fetched.
    let f = schema_file(&serde_json::json!({"$ref": "http://127.0.0.1:1/evil.json"}));
    let e = Validator::new(&ValidateSettings {
        json_schema: Some(f.path().to_owned()),
        ..ValidateSettings::default()
    })
    .unwrap_err();
    assert!(e.starts_with("json_schema: bad schema file"), "{e}");

    for (s, key) in [
        (
            ValidateSettings {
                content_types: vec!["json".into()],
                ..ValidateSettings::default()
            },
            "content_types:",
        ),
        (
            ValidateSettings {
                max_json_depth: 1000,
                ..ValidateSettings::default()
            },
            "max_json_depth:",
        ),
    ] {
        assert!(Validator::new(&s).unwrap_err().starts_with(key));
    }
}

#[test]
fn has_body_by_the_body_not_the_method() {
    let mut p = parts("POST", "/", None);
    assert!(
        !has_body(&p, true),
        "HTTP/1.1 without framing headers has no body"
    );
    p.headers.insert("content-length", "0".parse().unwrap());
    assert!(!has_body(&p, true));
    p.headers.insert("content-length", "12".parse().unwrap());
    assert!(has_body(&p, false));
    assert!(has_body(&p, true), "a declared length counts even so");
    let mut p = parts("POST", "/", None);
    p.headers
        .insert("transfer-encoding", "chunked".parse().unwrap());
    assert!(has_body(&p, false));
    for method in ["GET", "DELETE", "OPTIONS", "HEAD", "POST"] {
        let mut p = parts(method, "/", None);
        p.version = http::Version::HTTP_2;
        assert!(has_body(&p, false), "h2 {method} with DATA frames");
        assert!(!has_body(&p, true), "h2 {method} ended with its HEADERS");
    }
}
