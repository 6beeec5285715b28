//! Metric logging for the current step.
//!
//! ```no_run
//! for epoch in 0..3 {
//!     runledger_sdk::metrics::log("train_loss", 1.0 / (epoch + 1) as f64, epoch)?;
//! }
//! # Ok::<(), runledger_sdk::Error>(())
//! ```

use crate::Error;
use crate::bindings::runledger::plugin::{metrics, types::Metric};

/// Records `value` for metric `key` at training step `step` (0 when there is none).
///
/// Fails with [`Error::InvalidParams`] for an empty or malformed key and with
/// [`Error::LimitExceeded`] once the step has logged the maximum number of points.
///
/// ```no_run
/// runledger_sdk::metrics::log("rmse", 0.64, 0)?;
/// # Ok::<(), runledger_sdk::Error>(())
/// ```
pub fn log(key: &str, value: f64, step: i64) -> crate::Result<()> {
    let point = Metric {
        key: key.to_owned(),
        value,
        step,
    };
    metrics::log_metric(&point).map_err(Error::from_raw)
}
