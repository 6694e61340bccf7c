//! The one place where a refusal becomes an HTTP response: `application/problem+json` (RFC 9457)
//! with `type = urn:portcullis:<code>`. `detail` is written by the gateway, never copied from a
//! secret, and never says which half of a credential was wrong.

use std::borrow::Cow;

use bytes::Bytes;
use http::header::{
    HeaderName, HeaderValue, ALLOW, CONNECTION, CONTENT_TYPE, RETRY_AFTER, WWW_AUTHENTICATE,
};
use http::{Response, StatusCode};

use crate::body::{full, ProxyBody};

/// The codes of `docs/http.md`'s errors table (plus `not-found`, which only the admin API answers).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Code {
    NoRoute,
    Unauthenticated,
    InvalidCredential,
    LegacyCredentialRetired,
    Forbidden,
    MethodNotAllowed,
    PayloadTooLarge,
    /// The request body did not arrive within `[listen] body_timeout` / `body_min_rate`.
    RequestTimeout,
    UnsupportedMediaType,
    SchemaViolation,
    InvalidRequest,
    HeadersTooLarge,
    RateLimited,
    Overloaded,
    DirectoryUnavailable,
    UpstreamUnavailable,
    UpstreamTimeout,
    /// Admin API only: the named thing (a revocation, an admin path) does not exist.
    NotFound,
    /// Admin API only: a reload found problems in the new configuration (the old one serves on).
    InvalidConfig,
}

impl Code {
    /// The stable code string (also the audit `reason`).
    pub const fn as_str(self) -> &'static str {
        match self {
            Code::NoRoute => "no-route",
            Code::Unauthenticated => "unauthenticated",
            Code::InvalidCredential => "invalid-credential",
            Code::LegacyCredentialRetired => "legacy-credential-retired",
            Code::Forbidden => "forbidden",
            Code::MethodNotAllowed => "method-not-allowed",
            Code::PayloadTooLarge => "payload-too-large",
            Code::RequestTimeout => "request-timeout",
            Code::UnsupportedMediaType => "unsupported-media-type",
            Code::SchemaViolation => "schema-violation",
            Code::InvalidRequest => "invalid-request",
            Code::HeadersTooLarge => "headers-too-large",
            Code::RateLimited => "rate-limited",
            Code::Overloaded => "overloaded",
            Code::DirectoryUnavailable => "directory-unavailable",
            Code::UpstreamUnavailable => "upstream-unavailable",
            Code::UpstreamTimeout => "upstream-timeout",
            Code::NotFound => "not-found",
            Code::InvalidConfig => "invalid-config",
        }
    }

    /// HTTP status for the code.
    pub const fn status(self) -> StatusCode {
        match self {
            Code::NoRoute | Code::NotFound => StatusCode::NOT_FOUND,
            Code::Unauthenticated | Code::InvalidCredential | Code::LegacyCredentialRetired => {
                StatusCode::UNAUTHORIZED
            }
            Code::Forbidden => StatusCode::FORBIDDEN,
            Code::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Code::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Code::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            Code::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Code::SchemaViolation | Code::InvalidConfig => StatusCode::UNPROCESSABLE_ENTITY,
            Code::InvalidRequest => StatusCode::BAD_REQUEST,
            Code::HeadersTooLarge => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            Code::RateLimited => StatusCode::TOO_MANY_REQUESTS,
            Code::Overloaded | Code::DirectoryUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            Code::UpstreamUnavailable => StatusCode::BAD_GATEWAY,
            Code::UpstreamTimeout => StatusCode::GATEWAY_TIMEOUT,
        }
    }

    /// Short human title.
    pub const fn title(self) -> &'static str {
        match self {
            Code::NoRoute => "No route matches this request",
            Code::Unauthenticated => "Authentication required",
            Code::InvalidCredential => "Invalid credential",
            Code::LegacyCredentialRetired => "Legacy credential retired",
            Code::Forbidden => "Forbidden by policy",
            Code::MethodNotAllowed => "Method not allowed",
            Code::PayloadTooLarge => "Payload too large",
            Code::RequestTimeout => "Request body not received in time",
            Code::UnsupportedMediaType => "Unsupported media type",
            Code::SchemaViolation => "Request body does not match the schema",
            Code::InvalidRequest => "Invalid request",
            Code::HeadersTooLarge => "Request headers too large",
            Code::RateLimited => "Rate limit exceeded",
            Code::Overloaded => "Overloaded",
            Code::DirectoryUnavailable => "Directory unavailable",
            Code::UpstreamUnavailable => "Upstream unavailable",
            Code::UpstreamTimeout => "Upstream timed out",
            Code::NotFound => "Not found",
            Code::InvalidConfig => "The new configuration is invalid",
        }
    }
}

/// A refusal on its way to the caller.
#[derive(Debug, Clone)]
pub struct Refusal {
    pub code: Code,
    pub detail: Cow<'static, str>,
    /// Seconds, for 429/503.
    pub retry_after: Option<u64>,
    /// Close the connection after responding (framing errors: the stream can't be trusted).
    pub close: bool,
    /// `WWW-Authenticate` challenges, one per accepted scheme.
    pub challenges: Vec<HeaderValue>,
    /// `Allow`, for 405.
    pub allow: Option<HeaderValue>,
    /// Further headers a stage wants on the refusal (e.g. `RateLimit-Policy`/`RateLimit` on a
    /// 429). Appended last; they cannot replace the problem's own `Content-Type`. Boxed and
    /// optional so that the common refusal stays small (clippy `result_large_err`) and
    /// allocation-free; add with [`Refusal::with_header`], read with [`Refusal::extra_headers`].
    pub headers: Option<Box<Vec<(HeaderName, HeaderValue)>>>,
    /// Extension members of the problem document (RFC 9457 §3.2), e.g. the `problems` of a
    /// failed reload. Boxed and optional for the same reason as `headers`.
    pub members: Option<Box<serde_json::Map<String, serde_json::Value>>>,
    /// The audit line's `reason` when it should say more than the code (e.g. why an upstream
    /// was refused); the caller sees only the code.
    pub reason: Option<&'static str>,
}

impl Refusal {
    /// A refusal with a detail message.
    pub fn new(code: Code, detail: impl Into<Cow<'static, str>>) -> Self {
        Refusal {
            code,
            detail: detail.into(),
            retry_after: None,
            close: false,
            challenges: Vec::new(),
            allow: None,
            headers: None,
            members: None,
            reason: None,
        }
    }

    /// Set the audit line's `reason` (default: the code).
    pub fn audit_reason(mut self, reason: &'static str) -> Self {
        self.reason = Some(reason);
        self
    }

    /// Ask the connection to close after the response.
    pub fn closing(mut self) -> Self {
        self.close = true;
        self
    }

    /// Add `Retry-After`.
    pub fn retry_after(mut self, secs: u64) -> Self {
        self.retry_after = Some(secs);
        self
    }

    /// Add an extra response header.
    pub fn with_header(mut self, name: HeaderName, value: HeaderValue) -> Self {
        self.headers.get_or_insert_default().push((name, value));
        self
    }

    /// Add an extension member to the problem document (never one of the standard members).
    pub fn with_member(mut self, name: &str, value: serde_json::Value) -> Self {
        if !matches!(name, "type" | "title" | "status" | "detail" | "request_id") {
            self.members
                .get_or_insert_default()
                .insert(name.to_owned(), value);
        }
        self
    }

    /// The extra headers added with [`Refusal::with_header`].
    pub fn extra_headers(&self) -> &[(HeaderName, HeaderValue)] {
        self.headers.as_deref().map_or(&[], Vec::as_slice)
    }

    /// The problem+json document.
    pub fn to_json(&self, request_id: &str) -> String {
        let mut body = serde_json::json!({
            "type": format!("urn:portcullis:{}", self.code.as_str()),
            "title": self.code.title(),
            "status": self.code.status().as_u16(),
            "detail": self.detail,
            "request_id": request_id,
        });
        if let (Some(members), Some(doc)) = (&self.members, body.as_object_mut()) {
            doc.extend(members.iter().map(|(k, v)| (k.clone(), v.clone())));
        }
        body.to_string()
    }

    /// Render as problem+json.
    pub fn into_response(self, request_id: &str) -> Response<ProxyBody> {
        let status = self.code.status();
        let body = self.to_json(request_id);
        let mut resp = Response::new(full(Bytes::from(body)));
        *resp.status_mut() = status;
        let h = resp.headers_mut();
        h.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        h.insert(
            http::header::CACHE_CONTROL,
            HeaderValue::from_static("no-store"),
        );
        if let Some(secs) = self.retry_after {
            h.insert(RETRY_AFTER, HeaderValue::from(secs));
        }
        for c in self.challenges {
            h.append(WWW_AUTHENTICATE, c);
        }
        if let Some(allow) = self.allow {
            h.insert(ALLOW, allow);
        }
        if self.close {
            h.insert(CONNECTION, HeaderValue::from_static("close"));
        }
        for (name, value) in self.headers.map(|b| *b).unwrap_or_default() {
            if name != CONTENT_TYPE {
                h.append(name, value);
            }
        }
        resp
    }
}

#[cfg(test)]
mod tests;
