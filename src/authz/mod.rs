//! Authorization. A [`Permit`] can only be built here, and the translate/proxy stages take one:
//! no request reaches an upstream without passing this stage.

pub mod policy;

use std::sync::Arc;

use crate::authn::Caller;
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

/// Decide. Default deny: a route that accepts credentials needs a policy that allows the caller.
pub fn authorize(route: &Arc<Route>, caller: Caller) -> Result<Permit, Refusal> {
    match caller {
        // The route was configured to accept no credentials: an explicit pass-through.
        Caller::Anonymous => Ok(Permit {
            caller,
            route: route.clone(),
            _proof: (),
        }),
        Caller::Authenticated(_) => Err(Refusal::new(
            Code::Forbidden,
            "no policy allows this caller on this route",
        )),
    }
}
