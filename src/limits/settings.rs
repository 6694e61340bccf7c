//! `[routes.limits]` as checked from the config.

use std::time::Duration;

/// `[routes.limits]` beyond `max_body`.
#[derive(Debug, Clone, Default)]
pub struct LimitsConfig {
    /// Per identity.
    pub rate: Option<Rate>,
    /// All callers of the route together.
    pub total_rate: Option<Rate>,
    /// Requests in flight to the upstream.
    pub concurrency: Option<usize>,
}

/// `count` requests per `per`, with bursts of up to `burst`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    pub count: u32,
    pub per: Duration,
    pub burst: u32,
}
