//! Secrets named in the config by where they live (a file or an environment variable), never by value.

use std::path::PathBuf;

/// Where a secret lives. Config never holds secret values, only this; [`SecretSource::read`] is
/// called when the gateway starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretSource {
    File(PathBuf),
    Env(String),
}

impl SecretSource {
    /// The secret, with one trailing newline (as editors and `echo` leave it) removed.
    pub fn read(&self) -> Result<String, String> {
        let text = match self {
            SecretSource::File(p) => std::fs::read_to_string(p)
                .map_err(|e| format!("cannot read secret file {}: {e}", p.display()))?,
            SecretSource::Env(v) => std::env::var(v)
                .map_err(|_| format!("environment variable {v} is not set or not UTF-8"))?,
        };
        let trimmed = text
            .strip_suffix("\r\n")
            .or_else(|| text.strip_suffix('\n'))
            .unwrap_or(&text);
        if trimmed.is_empty() {
            return Err(format!("{} is empty", self.describe()));
        }
        Ok(trimmed.to_owned())
    }

    /// For messages: the file or variable name, never the value.
    pub fn describe(&self) -> String {
        match self {
            SecretSource::File(p) => format!("secret file {}", p.display()),
            SecretSource::Env(v) => format!("environment variable {v}"),
        }
    }
}
