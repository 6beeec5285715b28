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
//! The raw WIT bindings live in a hidden module; everything a plugin needs is re-exported here
//! as small Rust types: [`StepContext`] for the call, [`Input`] and [`Output`] for artifacts
//! (`std::io::Read` and `std::io::Write`), [`log`] and [`metrics`] for records.
#![deny(missing_docs)]

mod artifact;
mod context;
mod error;
pub mod log;
pub mod metrics;

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

pub use artifact::{ArtifactRef, Input, Output};
pub use context::StepContext;
pub use error::{Error, Result};

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
