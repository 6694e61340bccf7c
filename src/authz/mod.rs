//! Authorization. A [`Permit`] can only be built here, and the translate/proxy stages take one:
//! no request reaches an upstream without passing this stage.

pub mod policy;

use std::sync::Arc;

use crate::authn::Caller;
use crate::config::Access;
use crate::problem::{Code, Refusal};
use crate::routing::Route;

/// Proof that the caller may use the route.
#[derive(Debug)]
pub struct Permit {
    caller: Caller,
    route: Arc<Route>,
    _proof: (),
}

impl Permit {
    /// Who was permitted.
    pub fn caller(&self) -> &Caller {
        &self.caller
    }
    /// On which route.
    pub fn route(&self) -> &Arc<Route> {
        &self.route
    }
}

/// Check one `allow` pattern: `"*"`, or a SPIFFE ID in which `*` stands for any run of
/// characters. The trust domain must be written out (no `*` before the first `/` of the path),
/// so a pattern can never match IDs of another trust domain.
pub fn check_pattern(p: &str) -> Result<(), String> {
    if p == "*" {
        return Ok(());
    }
    let rest = p.strip_prefix("spiffe://").ok_or_else(|| {
        format!("{p:?}: expected \"*\" or a SPIFFE ID pattern (spiffe://td/path/*)")
    })?;
    let (td, path) = rest.split_once('/').unwrap_or((rest, ""));
    if td.contains('*') {
        return Err(format!(
            "{p:?}: the trust domain must be written out, without *"
        ));
    }
    crate::spiffe::TrustDomain::parse(td).map_err(|e| format!("{p:?}: {e}"))?;
    if path.is_empty() && !p.ends_with('/') && !rest.contains('/') {
        return Ok(()); // the trust domain's own ID
    }
    let probe = format!("spiffe://{td}/{}", path.replace('*', "x"));
    crate::spiffe::SpiffeId::parse(probe.trim_end_matches('/'))
        .map(|_| ())
        .map_err(|e| format!("{p:?}: {e}"))
}

/// Whether `id` matches `pattern` (`*` = any run of characters, including `/`).
pub fn pattern_matches(pattern: &str, id: &str) -> bool {
    if pattern == "*" {
        return true;
    }
    let mut parts = pattern.split('*');
    let Some(first) = parts.next() else {
        return false;
    };
    let Some(mut rest) = id.strip_prefix(first) else {
        return false;
    };
    let pieces: Vec<&str> = parts.collect();
    let Some((last, middle)) = pieces.split_last() else {
        return rest.is_empty(); // no `*`: exact match
    };
    for m in middle {
        match rest.find(m) {
            Some(i) => rest = rest.get(i + m.len()..).unwrap_or(""),
            None => return false,
        }
    }
    rest.len() >= last.len() && rest.ends_with(last)
}

/// Decide. Default deny: a route that accepts credentials needs a rule that allows the caller.
pub fn authorize(route: &Arc<Route>, caller: Caller) -> Result<Permit, Refusal> {
    let allowed = match (&caller, &route.config.access) {
        // The route was configured to accept no credentials: an explicit pass-through.
        (Caller::Anonymous, _) => true,
        (Caller::Authenticated(c), Some(Access::Allow(patterns))) => {
            patterns.iter().any(|p| pattern_matches(p, &c.identity))
        }
        (Caller::Authenticated(_), _) => false,
    };
    if allowed {
        Ok(Permit {
            caller,
            route: route.clone(),
            _proof: (),
        })
    } else {
        Err(Refusal::new(
            Code::Forbidden,
            "no policy allows this caller on this route",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns() {
        let m = pattern_matches;
        assert!(m("*", "spiffe://a/b"));
        assert!(m(
            "spiffe://corp.example/ns/pay/*",
            "spiffe://corp.example/ns/pay/x"
        ));
        assert!(m(
            "spiffe://corp.example/ns/pay/*",
            "spiffe://corp.example/ns/pay/x/y"
        ));
        assert!(!m(
            "spiffe://corp.example/ns/pay/*",
            "spiffe://corp.example/ns/payments/x"
        ));
        assert!(!m(
            "spiffe://corp.example/*",
            "spiffe://corp.example.evil/x"
        ));
        assert!(!m("spiffe://corp.example/a", "spiffe://corp.example/a/b"));
        assert!(m("spiffe://corp.example/a", "spiffe://corp.example/a"));
        assert!(m(
            "spiffe://corp.example/*/api",
            "spiffe://corp.example/x/api"
        ));
        assert!(!m(
            "spiffe://corp.example/*/api",
            "spiffe://corp.example/x/api2"
        ));
        assert!(check_pattern("spiffe://*.example/x").is_err());
        assert!(check_pattern("corp.example/x").is_err());
        assert!(check_pattern("spiffe://corp.example/ns/*").is_ok());
        assert!(check_pattern("*").is_ok());
    }
}
