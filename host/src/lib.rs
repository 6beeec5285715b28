//! runledger runs machine-learning pipelines whose steps are sandboxed WebAssembly components and
//! records every run: params, metric series, content-addressed artifacts, environment, per-step
//! records and lineage.
//!
//! Modules depend on each other top to bottom: `cli` parses commands and calls `engine`, which
//! schedules steps on the plugin `runtime` and records them in the `store`. `store` knows nothing
//! above it, and `runtime` knows nothing of SQL: it reads and writes artifacts through the
//! [`runtime::ArtifactIo`] trait its caller supplies.

pub mod cli;
pub mod config;
pub mod engine;
pub mod gates;
pub mod runtime;
pub mod server;
pub mod store;
