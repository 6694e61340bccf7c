//! `POST /admin/v1/reload` and `GET /admin/v1/config`: the admin side of a whole-config reload.
//! The reload itself (read, check, build, swap) belongs to the wiring that built the gateway
//! (`server`), which the admin listener cannot import (it sits beside it): it is reached through
//! [`ConfigControl`].

use std::future::Future;
use std::pin::Pin;

use http::StatusCode;
use serde_json::{json, Value};

use crate::body::ProxyBody;
use crate::problem::{Code, Refusal};

/// What started a reload (the `trigger` of the result, and of the log line).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// `POST /admin/v1/reload` (and `portcullis reload`).
    Api,
    /// SIGHUP.
    Signal,
    /// The polled watch of the config file and `plans_dir` saw a change.
    Watch,
}

impl Trigger {
    /// As written in results and logs.
    pub const fn as_str(self) -> &'static str {
        match self {
            Trigger::Api => "api",
            Trigger::Signal => "sighup",
            Trigger::Watch => "watch",
        }
    }
}

/// The result of one reload.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// The new configuration serves from now on.
    Applied {
        generation: u64,
        /// Changes that were read but only take effect after a restart (a changed listen
        /// address, …), one sentence each.
        restart_required: Vec<String>,
        /// The new configuration's warnings (plain HTTP, …), as `check` prints them.
        warnings: Vec<String>,
    },
    /// The new configuration was refused; the previous one keeps serving.
    Refused {
        /// The generation still serving.
        generation: u64,
        /// Every problem found, one per line (`file: key: message`).
        problems: Vec<String>,
    },
}

impl Outcome {
    /// `ok` or `error`, the `result` label of `portcullis_config_reload_total`.
    pub const fn result(&self) -> &'static str {
        match self {
            Outcome::Applied { .. } => "ok",
            Outcome::Refused { .. } => "error",
        }
    }

    /// The JSON the API answers (and `GET /admin/v1/config` shows as `last_reload`).
    pub fn to_json(&self) -> Value {
        match self {
            Outcome::Applied {
                generation,
                restart_required,
                warnings,
            } => json!({
                "result": "ok",
                "generation": generation,
                "restart_required": restart_required,
                "warnings": warnings,
            }),
            Outcome::Refused {
                generation,
                problems,
            } => json!({
                "result": "error",
                "generation": generation,
                "problems": problems,
            }),
        }
    }
}

/// A future the trait object can return.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Reloads the configuration and describes the one serving. Implemented by the server.
pub trait ConfigControl: Send + Sync + std::fmt::Debug {
    /// Read, check and (when valid) apply the configuration file. Reloads never overlap: a
    /// second one waits for the first.
    fn reload(&self, trigger: Trigger) -> BoxFuture<'_, Outcome>;
    /// `GET /admin/v1/config`: generation, when it was loaded, the last reload's result, and
    /// the configuration with every secret left out.
    fn describe(&self) -> Value;
}

/// `POST /admin/v1/reload`: 200 with the result, or 422 problem+json listing every problem.
pub async fn reload(control: &dyn ConfigControl) -> http::Response<ProxyBody> {
    let outcome = control.reload(Trigger::Api).await;
    match &outcome {
        Outcome::Applied { .. } => super::json_response(StatusCode::OK, &outcome.to_json()),
        Outcome::Refused {
            generation,
            problems,
        } => super::refused(
            Refusal::new(
                Code::InvalidConfig,
                format!(
                    "the new configuration has {} problem(s); generation {generation} keeps serving",
                    problems.len()
                ),
            )
            .with_member("problems", json!(problems))
            .with_member("generation", json!(generation)),
        ),
    }
}

/// `GET /admin/v1/config`.
pub fn config(control: &dyn ConfigControl) -> http::Response<ProxyBody> {
    super::json_response(StatusCode::OK, &control.describe())
}
