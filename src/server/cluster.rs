//! Wiring for `[routes.limits] scope = "cluster"`: the state store's Redis leases become the
//! limiter's lease function (the limiter knows nothing of Redis; see `limits::cluster`).

use std::sync::Arc;

use crate::limits::cluster::{ClusterSettings, LeaseFn};
use crate::metrics::Metrics;

/// The lease function over the state backend, when it is shared (Redis).
pub(crate) fn lease_fn(state: &Arc<dyn crate::state::StateStore>) -> Option<LeaseFn> {
    state.leases().map(crate::limits::cluster::lease_fn)
}

/// A route's cluster settings, when its limits are cluster-scoped.
pub(super) fn route_settings(
    route: &str,
    l: &crate::limits::settings::LimitsConfig,
    lease: Option<&LeaseFn>,
    metrics: &Metrics,
) -> anyhow::Result<Option<(String, ClusterSettings)>> {
    if !l.cluster {
        return Ok(None);
    }
    let lease = lease
        .ok_or_else(|| anyhow::anyhow!("scope = \"cluster\" needs [state] backend = \"redis\""))?;
    Ok(Some((
        route.to_string(),
        ClusterSettings {
            lease: lease.clone(),
            expected_replicas: l.expected_replicas,
            fallback_gauge: Some(metrics.rate_limit_fallback.with(&[route])),
        },
    )))
}

/// With a shared state backend, the failed-authentication throttle counts across replicas.
pub(crate) fn share_failures(
    limiter: Option<Arc<crate::limits::SourceLimiter>>,
    lease: Option<LeaseFn>,
) -> anyhow::Result<Option<Arc<crate::limits::SourceLimiter>>> {
    match (limiter, lease) {
        (Some(l), Some(lease)) => {
            let l = Arc::try_unwrap(l)
                .map_err(|_| anyhow::anyhow!("internal: the failure throttle is already shared"))?;
            Ok(Some(Arc::new(l.shared(lease).map_err(anyhow::Error::msg)?)))
        }
        (l, _) => Ok(l),
    }
}
