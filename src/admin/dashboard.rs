//! The ops dashboard at `/`: one static page, its stylesheet and its script, compiled into the
//! binary (no CDN, no external fonts: it must work on an air-gapped admin network). The script
//! polls the JSON endpoints of the ops API and redraws; it builds every node with `textContent`,
//! never `innerHTML` with data, because principal names come from callers.
//!
//! The CSP allows nothing but these same-origin files and the API (`connect-src 'self'`); no
//! inline script or style, no framing.

use bytes::Bytes;
use http::header::{
    HeaderValue, CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, REFERRER_POLICY,
    X_CONTENT_TYPE_OPTIONS, X_FRAME_OPTIONS,
};
use http::Response;

use crate::body::{full, ProxyBody};

/// The page's Content-Security-Policy.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
    connect-src 'self'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; \
    form-action 'none'";

const HTML: &str = include_str!("dashboard.html");
const CSS: &str = include_str!("dashboard.css");
const JS: &str = include_str!("dashboard.js");

/// The dashboard file at `path`, if it is one. Without the ops API there is nothing to show.
pub(super) fn serve(path: &str, has_ops: bool) -> Option<Response<ProxyBody>> {
    let (body, ctype) = match path {
        "/" | "/index.html" if has_ops => (HTML, "text/html; charset=utf-8"),
        "/dashboard.css" if has_ops => (CSS, "text/css; charset=utf-8"),
        "/dashboard.js" if has_ops => (JS, "text/javascript; charset=utf-8"),
        _ => return None,
    };
    let mut r = Response::new(full(Bytes::from_static(body.as_bytes())));
    let h = r.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static(ctype));
    h.insert(CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    h.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    Some(r)
}
