//! `GET /admin/v1/openapi.json`: the OpenAPI 3.1 description of the admin listener, kept in
//! `docs/openapi.json` (the reference) and compiled in, so the document served is the one in the
//! repository. `tests/gateway/openapi.rs` validates it and runs schemathesis against a live
//! listener.

use bytes::Bytes;
use http::header::{HeaderValue, CACHE_CONTROL, CONTENT_TYPE};
use http::Response;

use crate::body::{full, ProxyBody};

/// Where it is served.
pub const PATH: &str = "/admin/v1/openapi.json";

const DOCUMENT: &str = include_str!("../../docs/openapi.json");

/// The document.
pub(super) fn serve() -> Response<ProxyBody> {
    let mut r = Response::new(full(Bytes::from_static(DOCUMENT.as_bytes())));
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r.headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    r
}

/// The methods each admin path answers (`None`: not an admin path, 404). Decided before the
/// guard's content-type rule, so that a method a path never answers is 405 with `Allow` (the
/// precise answer, and it changes nothing) rather than 415.
pub(super) fn allowed_methods(path: &str) -> Option<&'static str> {
    match path {
        "/admin/v1/revocations" => Some("GET, POST, DELETE"),
        "/admin/v1/reload" => Some("POST"),
        "/admin/v1/config" => Some("GET"),
        "/admin/v1/migration" | "/admin/v1/inventory" | "/admin/v1/policy/suggest" => Some("GET"),
        PATH | "/healthz" | "/readyz" | "/metrics" | "/" | "/index.html" | "/dashboard.css"
        | "/dashboard.js" => Some("GET, HEAD"),
        _ => None,
    }
}

/// Whether `method` is one of `allow` (`"GET, POST"`).
pub(super) fn allows(allow: &str, method: &http::Method) -> bool {
    allow.split(", ").any(|m| m == method.as_str())
}
