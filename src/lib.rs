//! portcullis: an authentication gateway that lets enterprises retire static credentials without
//! breaking the legacy systems that depend on them. See `README.md` and `docs/`.
//!
//! The request flows through the stages documented in [`pipeline`]; each concern has a module.

pub mod adapters;
pub mod admin;
pub mod audit;
pub mod authn;
pub mod authz;
pub mod body;
pub mod cli;
pub mod clock;
pub mod config;
pub mod conn;
pub mod demo;
pub mod devcert;
pub mod diag;
pub mod exchange;
pub mod fast_eq;
pub mod identity;
pub mod limits;
pub mod low_s;
pub mod metrics;
pub mod migration;
pub mod path_template;
pub mod pipeline;
pub mod prehash;
pub mod problem;
pub mod proxy;
pub mod reload;
pub mod routing;
pub mod sdnotify;
pub mod secret;
pub mod server;
pub mod spiffe;
pub mod spire;
pub mod state;
pub mod telemetry;
pub mod time;
pub mod token;
pub mod transport;
pub mod units;
pub mod validate;
