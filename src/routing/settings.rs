//! How a route is matched, as checked from the config (the route's other settings are the
//! pipeline's `RouteConfig`).

/// A route's `host` matcher: exact (`api.corp.example`) or one-label wildcard (`*.corp.example`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum HostMatch {
    Exact(String),
    /// Suffix including the leading dot: `.corp.example`.
    Wildcard(String),
}

impl HostMatch {
    /// `host` is already lower-cased and without port.
    pub fn matches(&self, host: &str) -> bool {
        match self {
            HostMatch::Exact(h) => h == host,
            HostMatch::Wildcard(suffix) => host
                .strip_suffix(suffix.as_str())
                .is_some_and(|label| !label.is_empty() && !label.contains('.')),
        }
    }
}
