//! Problems found in the files the gateway reads, reported together as `file: key: message`:
//! one collector shared by the config checks, the migration plan parser, the API-key store and
//! the adapters. Base layer: it knows nothing of what is being checked.

use std::fmt;

use serde::de::DeserializeOwned;
use serde_json::Value;

/// One problem in a file the gateway reads (config, migration plan, API-key store, adapter).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub file: String,
    /// Dotted key (`signature.header`), `line N` for a syntax error, empty for the whole file.
    pub key: String,
    pub message: String,
}

impl Problem {
    /// A problem at `key` of `file`.
    pub fn new(file: &str, key: impl Into<String>, message: impl Into<String>) -> Self {
        Problem {
            file: file.to_owned(),
            key: key.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.key.is_empty() {
            // A problem of the whole file (unreadable, a bad file name).
            write!(f, "{}: {}", self.file, self.message)
        } else {
            write!(f, "{}: {}: {}", self.file, self.key, self.message)
        }
    }
}

/// Every problem found while loading a file (or a config and the files it names).
#[derive(Debug, Clone)]
pub struct Invalid(pub Vec<Problem>);

impl fmt::Display for Invalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{p}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Invalid {}

/// Collects every problem (errors) and warning found in one file, so all are reported at once.
#[derive(Debug)]
pub struct Collector<'a> {
    /// The file the keys belong to.
    pub file: &'a str,
    /// Errors: any one makes the file unusable.
    pub problems: Vec<Problem>,
    /// Allowed but unwise; printed by `check`, logged by `serve`.
    pub warnings: Vec<String>,
}

impl<'a> Collector<'a> {
    /// An empty collector for `file`.
    pub fn new(file: &'a str) -> Self {
        Collector {
            file,
            problems: Vec::new(),
            warnings: Vec::new(),
        }
    }

    /// An error at `key`.
    pub fn push(&mut self, key: impl Into<String>, message: impl Into<String>) {
        self.problems.push(Problem::new(self.file, key, message));
    }

    /// A warning (no key: the message says where).
    pub fn warn(&mut self, message: impl Into<String>) {
        self.warnings.push(message.into());
    }

    /// Whether no error was collected.
    pub fn is_ok(&self) -> bool {
        self.problems.is_empty()
    }

    /// Deserialize one section, reporting the exact failing key path.
    pub fn section<T: DeserializeOwned>(&mut self, prefix: &str, v: &Value) -> Option<T> {
        match serde_path_to_error::deserialize::<_, T>(v) {
            Ok(t) => Some(t),
            Err(e) => {
                let inner = e.path().to_string();
                let key = if inner == "." || inner.is_empty() {
                    prefix.to_string()
                } else {
                    format!("{prefix}.{inner}")
                };
                self.push(key, e.into_inner().to_string());
                None
            }
        }
    }
}
