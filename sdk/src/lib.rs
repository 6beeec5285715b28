//! Rust SDK for writing runledger plugins as WebAssembly components.
//!
//! A step executor is a type that implements [`Executor`], exported with [`export_executor!`]
//! and built for `wasm32-wasip2` as a `cdylib`:
//!
//! ```no_run
//! use runledger_sdk::{Executor, StepContext, export_executor};
//! use std::io::Write;
//!
//! #[derive(serde::Deserialize)]
//! struct Params {
//!     name: String,
//! }
//!
//! struct Greet;
//!
//! impl Executor for Greet {
//!     fn execute(context: StepContext) -> runledger_sdk::Result<()> {
//!         let params: Params = context.params()?;
//!         let mut output = context.create_output("greeting", "text/plain")?;
//!         write!(output, "hello, {}", params.name)?;
//!         output.finish()?;
//!         runledger_sdk::log::info("greeted");
//!         Ok(())
//!     }
//! }
//!
//! export_executor!(Greet);
//! ```
//!
//! A metric validator implements [`Validator`] and is exported with [`export_validator!`]; a
//! promotion policy implements [`Policy`] and is exported with [`export_policy!`]. One crate
//! exports one of the three.
//!
//! The raw WIT bindings live in hidden modules; everything a plugin needs is re-exported here
//! as small Rust types: [`StepContext`] for the call, [`Input`] and [`Output`] for artifacts
//! (`std::io::Read` and `std::io::Write`), [`log`] and [`metrics`] for records, [`RunSummary`],
//! [`Check`], [`PromotionRequest`] and [`Decision`] for validators and policies, and
//! [`run_data`] for a validator's reads of recorded runs.
#![deny(missing_docs)]

mod artifact;
mod context;
mod error;
mod governance;
pub mod log;
pub mod metrics;
pub mod run_data;

// wit-bindgen generates one world per `generate!`, so each world gets a hidden module of its
// own. The validator and policy modules reuse the `types`, `logging` and `governance-types`
// bindings of the modules above them, so every world shares one `Error` type and one `log`
// function. Each module embeds only its world's imports. The export macro a plugin invokes adds
// the exports of the one world it implements, and imports the plugin never calls are dropped
// when the component is built.
#[doc(hidden)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "../wit",
        world: "step-executor",
        pub_export_macro: true,
        export_macro_name: "__export_step_executor_world",
        default_bindings_module: "runledger_sdk::bindings",
    });
}

#[doc(hidden)]
pub mod validator_bindings {
    wit_bindgen::generate!({
        path: "../wit",
        world: "metric-validator",
        with: {
            "runledger:plugin/types@0.1.0": crate::bindings::runledger::plugin::types,
            "runledger:plugin/logging@0.1.0": crate::bindings::runledger::plugin::logging,
        },
        pub_export_macro: true,
        export_macro_name: "__export_metric_validator_world",
        default_bindings_module: "runledger_sdk::validator_bindings",
    });
}

#[doc(hidden)]
pub mod policy_bindings {
    wit_bindgen::generate!({
        path: "../wit",
        world: "policy",
        with: {
            "runledger:plugin/types@0.1.0": crate::bindings::runledger::plugin::types,
            "runledger:plugin/logging@0.1.0": crate::bindings::runledger::plugin::logging,
            "runledger:plugin/governance-types@0.1.0":
                crate::validator_bindings::runledger::plugin::governance_types,
        },
        pub_export_macro: true,
        export_macro_name: "__export_policy_world",
        default_bindings_module: "runledger_sdk::policy_bindings",
    });
}

pub use artifact::{ArtifactRef, Input, Output};
pub use context::StepContext;
pub use error::{Error, Result};
pub use governance::{
    Approval, Check, DatasetRef, Decision, LineageSummary, Metric, PromotionRequest, RecordedCheck,
    RunSummary, Severity, StepSummary,
};

/// A pipeline step implemented as a WebAssembly component.
///
/// ```no_run
/// use runledger_sdk::{Executor, StepContext};
///
/// struct Noop;
///
/// impl Executor for Noop {
///     fn execute(_context: StepContext) -> runledger_sdk::Result<()> {
///         Ok(())
///     }
/// }
/// ```
pub trait Executor {
    /// Runs the step. Outputs are the artifacts finished through
    /// [`StepContext::create_output`] before this returns.
    fn execute(context: StepContext) -> Result<()>;
}

/// Exports a type implementing [`Executor`] as the component's `executor` interface.
///
/// Use it once per plugin crate, at the crate root:
///
/// ```no_run
/// # use runledger_sdk::{Executor, StepContext};
/// struct Noop;
/// impl Executor for Noop {
///     fn execute(_context: StepContext) -> runledger_sdk::Result<()> {
///         Ok(())
///     }
/// }
/// runledger_sdk::export_executor!(Noop);
/// ```
#[macro_export]
macro_rules! export_executor {
    ($executor:ty) => {
        #[doc(hidden)]
        pub struct __RunledgerExecutorExport;

        impl $crate::bindings::exports::runledger::plugin::executor::Guest
            for __RunledgerExecutorExport
        {
            fn execute(
                context: $crate::bindings::runledger::plugin::types::StepContext,
            ) -> ::core::result::Result<(), $crate::bindings::runledger::plugin::types::Error> {
                $crate::__run_executor::<$executor>(context)
            }
        }

        $crate::bindings::__export_step_executor_world!(
            __RunledgerExecutorExport with_types_in $crate::bindings
        );
    };
}

#[doc(hidden)]
pub fn __run_executor<E: Executor>(
    raw: bindings::runledger::plugin::types::StepContext,
) -> std::result::Result<(), bindings::runledger::plugin::types::Error> {
    E::execute(StepContext::from_raw(raw)).map_err(Error::into_raw)
}

/// A metric validator: judges a run and returns one [`Check`] per rule it applies.
///
/// ```no_run
/// use runledger_sdk::{Check, RunSummary, Severity, Validator};
///
/// struct HasRmse;
///
/// impl Validator for HasRmse {
///     fn validate(run: RunSummary, _config: serde_json::Value) -> runledger_sdk::Result<Vec<Check>> {
///         let check = match run.metric("test_rmse") {
///             Some(value) => Check::pass("has test_rmse", Severity::Blocking, format!("{value}")),
///             None => Check::fail("has test_rmse", Severity::Blocking, "no metric test_rmse"),
///         };
///         Ok(vec![check])
///     }
/// }
/// ```
pub trait Validator {
    /// Judges `run` with the validator's configuration, a JSON object that already passed the
    /// plugin's config schema.
    ///
    /// The host records an `Err` as a failed blocking check naming the validator. Return
    /// [`Error::invalid_params`] for a configuration that passed the schema but is unusable.
    fn validate(run: RunSummary, config: serde_json::Value) -> Result<Vec<Check>>;
}

/// A promotion policy: decides whether an alias of a registered model may move to a version.
///
/// ```no_run
/// use runledger_sdk::{Decision, Policy, PromotionRequest};
///
/// struct NoFailedRuns;
///
/// impl Policy for NoFailedRuns {
///     fn decide(request: PromotionRequest, _config: serde_json::Value) -> runledger_sdk::Result<Decision> {
///         if request.run.status == "succeeded" {
///             Ok(Decision::Allow)
///         } else {
///             Ok(Decision::Deny(format!("run {} did not succeed", request.run.run_id)))
///         }
///     }
/// }
/// ```
pub trait Policy {
    /// Decides `request` with the policy's configuration, a JSON object that already passed the
    /// plugin's config schema. The host denies the promotion when this returns an `Err`.
    fn decide(request: PromotionRequest, config: serde_json::Value) -> Result<Decision>;
}

/// Deserializes a validator's or policy's configuration into `T`.
///
/// Fails with [`Error::InvalidParams`] naming the field serde rejected.
///
/// ```
/// #[derive(Debug, serde::Deserialize)]
/// struct Config {
///     count: u32,
/// }
///
/// let config: Config = runledger_sdk::config(serde_json::json!({ "count": 2 }))?;
/// assert_eq!(config.count, 2);
/// let error = runledger_sdk::config::<Config>(serde_json::json!({ "count": "two" })).unwrap_err();
/// assert!(matches!(error, runledger_sdk::Error::InvalidParams(_)));
/// # Ok::<(), runledger_sdk::Error>(())
/// ```
pub fn config<T: serde::de::DeserializeOwned>(config: serde_json::Value) -> Result<T> {
    serde_json::from_value(config)
        .map_err(|error| Error::invalid_params(format!("configuration: {error}")))
}

/// Exports a type implementing [`Validator`] as the component's `validator` interface, making
/// the component a `metric-validator`.
///
/// Use it once per plugin crate, at the crate root:
///
/// ```no_run
/// # use runledger_sdk::{Check, RunSummary, Validator};
/// struct Empty;
/// impl Validator for Empty {
///     fn validate(_run: RunSummary, _config: serde_json::Value) -> runledger_sdk::Result<Vec<Check>> {
///         Ok(Vec::new())
///     }
/// }
/// runledger_sdk::export_validator!(Empty);
/// ```
#[macro_export]
macro_rules! export_validator {
    ($validator:ty) => {
        #[doc(hidden)]
        pub struct __RunledgerValidatorExport;

        impl $crate::validator_bindings::exports::runledger::plugin::validator::Guest
            for __RunledgerValidatorExport
        {
            fn validate(
                run: $crate::validator_bindings::runledger::plugin::governance_types::RunSummary,
                config_json: ::std::string::String,
            ) -> ::core::result::Result<
                ::std::vec::Vec<
                    $crate::validator_bindings::runledger::plugin::governance_types::Check,
                >,
                $crate::bindings::runledger::plugin::types::Error,
            > {
                $crate::__run_validator::<$validator>(run, config_json)
            }
        }

        $crate::validator_bindings::__export_metric_validator_world!(
            __RunledgerValidatorExport with_types_in $crate::validator_bindings
        );
    };
}

/// Exports a type implementing [`Policy`] as the component's `promotion-policy` interface,
/// making the component a `policy`.
///
/// Use it once per plugin crate, at the crate root:
///
/// ```no_run
/// # use runledger_sdk::{Decision, Policy, PromotionRequest};
/// struct AllowAll;
/// impl Policy for AllowAll {
///     fn decide(_request: PromotionRequest, _config: serde_json::Value) -> runledger_sdk::Result<Decision> {
///         Ok(Decision::Allow)
///     }
/// }
/// runledger_sdk::export_policy!(AllowAll);
/// ```
#[macro_export]
macro_rules! export_policy {
    ($policy:ty) => {
        #[doc(hidden)]
        pub struct __RunledgerPolicyExport;

        impl $crate::policy_bindings::exports::runledger::plugin::promotion_policy::Guest
            for __RunledgerPolicyExport
        {
            fn decide(
                request: $crate::policy_bindings::exports::runledger::plugin::promotion_policy::PromotionRequest,
                config_json: ::std::string::String,
            ) -> ::core::result::Result<
                $crate::policy_bindings::exports::runledger::plugin::promotion_policy::Decision,
                $crate::bindings::runledger::plugin::types::Error,
            > {
                $crate::__run_policy::<$policy>(request, config_json)
            }
        }

        $crate::policy_bindings::__export_policy_world!(
            __RunledgerPolicyExport with_types_in $crate::policy_bindings
        );
    };
}

fn parse_config_json(config_json: &str) -> Result<serde_json::Value> {
    serde_json::from_str(config_json)
        .map_err(|error| Error::invalid_params(format!("configuration is not valid JSON: {error}")))
}

#[doc(hidden)]
pub fn __run_validator<V: Validator>(
    run: validator_bindings::runledger::plugin::governance_types::RunSummary,
    config_json: String,
) -> std::result::Result<
    Vec<validator_bindings::runledger::plugin::governance_types::Check>,
    bindings::runledger::plugin::types::Error,
> {
    let checks = parse_config_json(&config_json)
        .and_then(|config| V::validate(RunSummary::from_raw(run), config))
        .map_err(Error::into_raw)?;
    Ok(checks.into_iter().map(Check::into_raw).collect())
}

#[doc(hidden)]
pub fn __run_policy<P: Policy>(
    request: policy_bindings::exports::runledger::plugin::promotion_policy::PromotionRequest,
    config_json: String,
) -> std::result::Result<
    policy_bindings::exports::runledger::plugin::promotion_policy::Decision,
    bindings::runledger::plugin::types::Error,
> {
    parse_config_json(&config_json)
        .and_then(|config| P::decide(PromotionRequest::from_raw(request), config))
        .map(Decision::into_raw)
        .map_err(Error::into_raw)
}
