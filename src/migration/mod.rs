//! Migration plans (`docs/plans.md`): what each route's plan says ([`plan`]), which phase it is in
//! today and what that phase does to a request ([`phase`]), and how far each migration has come
//! ([`report`], from the usage and inventory kept by [`crate::state`]). The phase decided once per
//! request is the pipeline's ([`crate::pipeline::admission`]): it composes authn, authz and token.

pub mod grace;
pub mod insight;
pub mod lineage;
pub mod phase;
pub mod plan;
pub mod report;

pub use phase::{
    active_phase, retired, route_phase, treatment, Phase, PhaseAt, SunsetHeaders, Treatment,
};
pub use plan::{check_against_config, parse_plan, Plan, Plans, RouteUse, Settings};

#[cfg(test)]
mod tests;
