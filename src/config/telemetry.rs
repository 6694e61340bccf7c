//! `[telemetry]`: OpenTelemetry traces (see `docs/observability.md`).

use serde::Deserialize;
use serde_json::Value;

use super::validate::Collector;
use crate::telemetry::Settings;

/// `[telemetry]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTelemetry {
    otlp_endpoint: Option<String>,
    sample_ratio: Option<f64>,
    trust_incoming_traceparent: Option<bool>,
}

/// The section, checked; absent: tracing off.
pub(super) fn telemetry(c: &mut Collector<'_>, v: Option<&Value>) -> Settings {
    let raw = match v {
        None => RawTelemetry::default(),
        Some(v) => c
            .section::<RawTelemetry>("telemetry", v)
            .unwrap_or_default(),
    };
    let defaults = Settings::default();
    let sample_ratio = match raw.sample_ratio {
        None => defaults.sample_ratio,
        Some(r) if r.is_finite() && (0.0..=1.0).contains(&r) => r,
        Some(r) => {
            c.push(
                "telemetry.sample_ratio",
                format!("{r} is not a share between 0.0 and 1.0"),
            );
            defaults.sample_ratio
        }
    };
    let otlp_endpoint = raw
        .otlp_endpoint
        .as_deref()
        .and_then(|e| match endpoint(e) {
            Ok(_) if !crate::telemetry::OTEL => {
                c.push("telemetry.otlp_endpoint", crate::telemetry::NO_OTEL);
                None
            }
            Ok(u) => Some(u),
            Err(why) => {
                c.push("telemetry.otlp_endpoint", why);
                None
            }
        });
    Settings {
        otlp_endpoint,
        sample_ratio,
        trust_incoming_traceparent: raw
            .trust_incoming_traceparent
            .unwrap_or(defaults.trust_incoming_traceparent),
    }
}

/// An `http`/`https` URL of an OTLP/HTTP collector. Without a path (`http://host:4318`) the
/// standard traces path `/v1/traces` is appended, as OpenTelemetry SDKs do for
/// `OTEL_EXPORTER_OTLP_ENDPOINT`; a URL with a path is used as written.
pub fn endpoint(s: &str) -> Result<http::Uri, String> {
    // Checked first, and the URL not echoed: it would print the credentials.
    if s.contains('@') {
        return Err(
            "credentials in the URL would be logged; use a collector that does not need them (or a local agent)".into(),
        );
    }
    let uri: http::Uri = s.parse().map_err(|e| format!("{s:?} is not a URL: {e}"))?;
    match uri.scheme_str() {
        Some("http" | "https") => {}
        _ => return Err(format!("{s:?}: use an http:// or https:// URL (OTLP/HTTP)")),
    }
    let Some(authority) = uri.authority() else {
        return Err(format!("{s:?} has no host"));
    };
    match uri.path_and_query().map(|p| p.as_str()) {
        None | Some("" | "/") => format!(
            "{}://{authority}/v1/traces",
            uri.scheme_str().unwrap_or("http")
        )
        .parse()
        .map_err(|e| format!("{s:?}: {e}")),
        Some(_) => Ok(uri),
    }
}

#[cfg(test)]
mod tests;
