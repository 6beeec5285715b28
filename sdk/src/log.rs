//! Structured logging into the step's log.
//!
//! Lines go to the host, which stores them with the step run. The host limits how much a step
//! may log (100,000 lines or 16 MiB per call by default): past that limit a logging call traps,
//! which ends the step with an error naming the limit.
//!
//! ```no_run
//! runledger_sdk::log::info("loaded table");
//! runledger_sdk::log::log(
//!     runledger_sdk::log::Level::Warn,
//!     "dropped rows",
//!     &[("count", "3"), ("reason", "missing target")],
//! );
//! ```

use crate::bindings::runledger::plugin::logging;

pub use logging::Level;

/// Appends a line with key-value fields at the given level.
///
/// ```no_run
/// use runledger_sdk::log::{Level, log};
/// log(Level::Info, "epoch done", &[("epoch", "3")]);
/// ```
pub fn log(level: Level, message: &str, fields: &[(&str, &str)]) {
    let fields: Vec<(String, String)> = fields
        .iter()
        .map(|(key, value)| ((*key).to_owned(), (*value).to_owned()))
        .collect();
    logging::log(level, message, &fields);
}

/// Appends a trace line.
///
/// ```no_run
/// runledger_sdk::log::trace("entering the inner loop");
/// ```
pub fn trace(message: impl AsRef<str>) {
    log(Level::Trace, message.as_ref(), &[]);
}

/// Appends a debug line.
///
/// ```no_run
/// runledger_sdk::log::debug("parsed header");
/// ```
pub fn debug(message: impl AsRef<str>) {
    log(Level::Debug, message.as_ref(), &[]);
}

/// Appends an info line.
///
/// ```no_run
/// runledger_sdk::log::info(format!("read {} rows", 1599));
/// ```
pub fn info(message: impl AsRef<str>) {
    log(Level::Info, message.as_ref(), &[]);
}

/// Appends a warning line.
///
/// ```no_run
/// runledger_sdk::log::warn("column `id` ignored");
/// ```
pub fn warn(message: impl AsRef<str>) {
    log(Level::Warn, message.as_ref(), &[]);
}

/// Appends an error line.
///
/// ```no_run
/// runledger_sdk::log::error("loss is NaN");
/// ```
pub fn error(message: impl AsRef<str>) {
    log(Level::Error, message.as_ref(), &[]);
}
