//! Cost of body validation (target: a 4 KB JSON document against a schema ≤ 50 µs).

#![expect(
    clippy::unwrap_used,
    reason = "bench setup: a panic here is a failed benchmark, not a crashed gateway"
)]

use std::hint::black_box;
use std::io::Write;

use criterion::{criterion_group, criterion_main, Criterion};
use http::Request;
use portcullis::validate::{ValidateSettings, Validator};

fn schema() -> serde_json::Value {
    serde_json::json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "required": ["batch", "payments"],
        "additionalProperties": false,
        "properties": {
            "batch": {"type": "string", "pattern": "^[A-Z0-9-]{8,32}$"},
            "submitted": {"type": "string", "format": "date-time"},
            "payments": {
                "type": "array",
                "maxItems": 500,
                "items": {
                    "type": "object",
                    "required": ["id", "amount", "currency", "creditor"],
                    "additionalProperties": false,
                    "properties": {
                        "id": {"type": "integer", "minimum": 1},
                        "amount": {"type": "number", "exclusiveMinimum": 0},
                        "currency": {"enum": ["EUR", "USD", "GBP", "CHF"]},
                        "creditor": {
                            "type": "object",
                            "required": ["name", "iban"],
                            "properties": {
                                "name": {"type": "string", "maxLength": 70},
                                "iban": {"type": "string", "pattern": "^[A-Z]{2}[0-9]{2}[A-Z0-9]{11,30}$"}
                            }
                        },
                        "memo": {"type": "string", "maxLength": 140}
                    }
                }
            }
        }
    })
}

/// A valid document of about 4 KB.
fn document() -> Vec<u8> {
    let payments: Vec<_> = (1..=26)
        .map(|i| {
            serde_json::json!({
                "id": i,
                "amount": 100.25 + f64::from(i),
                "currency": "EUR",
                "creditor": {"name": format!("Creditor number {i}"), "iban": "DE89370400440532013000"},
                "memo": "invoice 2026-11 batch transfer"
            })
        })
        .collect();
    let doc = serde_json::json!({
        "batch": "BATCH-2026-11-0042",
        "submitted": "2026-11-02T10:00:00Z",
        "payments": payments
    });
    serde_json::to_vec(&doc).unwrap()
}

fn validate(c: &mut Criterion) {
    let mut f = tempfile::NamedTempFile::new().unwrap();
    f.write_all(schema().to_string().as_bytes()).unwrap();
    let v = Validator::new(&ValidateSettings {
        json_schema: Some(f.path().to_owned()),
        ..ValidateSettings::default()
    })
    .unwrap();
    let parts = Request::post("/pay")
        .header("content-type", "application/json")
        .body(())
        .unwrap()
        .into_parts()
        .0;
    let body = document();
    assert!((3900..=4300).contains(&body.len()), "{}", body.len());
    v.check_body(&parts, &body).unwrap();
    c.bench_function(&format!("check_body json+schema ({} B)", body.len()), |b| {
        b.iter(|| black_box(v.check_body(&parts, black_box(&body)).is_ok()))
    });

    c.bench_function("serde_json::from_slice::<Value> (4 KB)", |b| {
        b.iter(|| black_box(serde_json::from_slice::<serde_json::Value>(black_box(&body)).is_ok()))
    });
    let no_schema = Validator::new(&ValidateSettings::default()).unwrap();
    c.bench_function("check_body json without schema (4 KB)", |b| {
        b.iter(|| black_box(no_schema.check_body(&parts, black_box(&body)).is_ok()))
    });

    let compiled = jsonschema::validator_for(&schema()).unwrap();
    let doc: serde_json::Value = serde_json::from_slice(&body).unwrap();
    c.bench_function("schema only (parsed 4 KB)", |b| {
        b.iter(|| black_box(compiled.is_valid(black_box(&doc))))
    });

    let soap_parts = Request::post("/soap")
        .header("content-type", "application/soap+xml; charset=utf-8")
        .body(())
        .unwrap()
        .into_parts()
        .0;
    let items: String = (0..40)
        .map(|i| {
            format!(
                "<p:Item id=\"{i}\"><p:Amount>12.50</p:Amount><p:Memo>a &amp; b</p:Memo></p:Item>"
            )
        })
        .collect();
    let soap = format!(
        r#"<?xml version="1.0" encoding="UTF-8"?><env:Envelope xmlns:env="http://www.w3.org/2003/05/soap-envelope" xmlns:p="urn:p"><env:Body><p:Submit>{items}</p:Submit></env:Body></env:Envelope>"#
    );
    v.check_body(&soap_parts, soap.as_bytes()).unwrap();
    c.bench_function(&format!("check_body soap ({} B)", soap.len()), |b| {
        b.iter(|| {
            black_box(
                v.check_body(&soap_parts, black_box(soap.as_bytes()))
                    .is_ok(),
            )
        })
    });
}

criterion_group!(benches, validate);
criterion_main!(benches);
