//! Building blocks shared by the first-party machine-learning plugins (`csv-ingest`, `split`,
//! `standardize`, `linreg` and `regress-eval`): an RFC 4180 CSV reader and writer, tables of
//! named columns, deterministic float formatting, a seeded PRNG and whole-artifact I/O.
//!
//! This is a plain library, not a plugin. It builds as part of the plugins workspace:
//! `cd plugins && cargo build --release --target wasm32-wasip2`, and its tests run natively with
//! `cargo test --target x86_64-unknown-linux-gnu -p mlkit`.

pub mod artifact;
pub mod csv;
pub mod format;
pub mod rng;
pub mod table;

pub use csv::LineError;
pub use format::format_float;
pub use rng::SplitMix64;
pub use table::{Row, Table};
