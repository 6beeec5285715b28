//! Host implementations of the WIT interfaces, one file per interface, plus the audited WASI
//! functions that record attempts to reach withheld capabilities.

pub mod artifacts;
pub(crate) mod clocks;
mod governance_types;
mod logging;
mod metrics;
mod run_data;
mod types;
pub(crate) mod wasi_audit;
