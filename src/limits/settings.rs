//! `[routes.limits]` as checked from the config.

use std::time::Duration;

/// `[routes.limits]` beyond `max_body`.
#[derive(Debug, Clone)]
pub struct LimitsConfig {
    /// Per identity.
    pub rate: Option<Rate>,
    /// All callers of the route together.
    pub total_rate: Option<Rate>,
    /// Requests in flight to the upstream.
    pub concurrency: Option<usize>,
    /// `scope = "cluster"`: `rate` and `total_rate` are one budget for every replica (see
    /// `limits::cluster`); `concurrency` stays per replica.
    pub cluster: bool,
    /// `expected_replicas` (default [`DEFAULT_EXPECTED_REPLICAS`]): while Redis is unreachable a
    /// cluster-scoped route allows `rate ÷ expected_replicas` per replica.
    pub expected_replicas: u32,
}

/// `expected_replicas` unless configured: the shipped Kubernetes deployment runs three.
pub const DEFAULT_EXPECTED_REPLICAS: u32 = 3;

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            rate: None,
            total_rate: None,
            concurrency: None,
            cluster: false,
            expected_replicas: DEFAULT_EXPECTED_REPLICAS,
        }
    }
}

/// `count` requests per `per`, with bursts of up to `burst`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    pub count: u32,
    pub per: Duration,
    pub burst: u32,
}
