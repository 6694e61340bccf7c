//! Webhook secrets as configured, and the HMAC keys they stand for.

use base64::Engine as _;

use super::MAX_SECRETS;
use crate::adapters::{SecretEncoding, WebhookAdapter};

/// A webhook secret: redacted in `Debug`, wiped on drop.
pub struct WebhookSecret(Vec<u8>);

impl WebhookSecret {
    /// Wrap secret bytes as read from the secrets file.
    pub fn new(bytes: impl Into<Vec<u8>>) -> Self {
        WebhookSecret(bytes.into())
    }

    /// A secrets file: one secret per line (several while rotating, the newest first by
    /// convention); surrounding whitespace and blank lines are ignored.
    pub fn from_lines(text: &str) -> Vec<WebhookSecret> {
        text.lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(WebhookSecret::new)
            .collect()
    }
}

impl std::fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WebhookSecret(<redacted>)")
    }
}

impl Drop for WebhookSecret {
    fn drop(&mut self) {
        self.0.iter_mut().for_each(|b| *b = 0);
        std::hint::black_box(&self.0);
    }
}

/// A credential's secrets could not be used with its adapter. Never contains a secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WebhookConfigError {
    #[error("no webhook secrets")]
    NoSecrets,
    #[error("at most {MAX_SECRETS} webhook secrets")]
    TooManySecrets,
    #[error("webhook secret #{index}: {reason}")]
    BadSecret { index: usize, reason: &'static str },
    #[error("tolerance must be between 1s and 1h")]
    BadTolerance,
}

/// The HMAC key a configured secret stands for, per the adapter's secret format.
pub(super) fn decode_secret(
    adapter: &WebhookAdapter,
    s: &WebhookSecret,
) -> Result<WebhookSecret, &'static str> {
    let key = match adapter.secret_encoding {
        SecretEncoding::Raw => WebhookSecret(s.0.clone()),
        SecretEncoding::Base64 => {
            let text = match &adapter.secret_prefix {
                Some(p) => s.0.strip_prefix(p.as_bytes()).unwrap_or(&s.0),
                None => &s.0,
            };
            let key = base64::engine::general_purpose::STANDARD
                .decode(text)
                .map_err(|_| "not valid base64 (after its prefix)")?;
            WebhookSecret(key)
        }
    };
    if key.0.is_empty() {
        return Err("empty");
    }
    Ok(key)
}

impl WebhookSecret {
    /// The key bytes.
    pub(super) fn bytes(&self) -> &[u8] {
        &self.0
    }
}
