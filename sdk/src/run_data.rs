//! Read access to recorded runs, for metric validators that need more than the summary.
//!
//! Only validators may use these functions: a policy or step executor that calls them is
//! rejected by the host when it loads, because its world does not import `run-data`.
//!
//! ```no_run
//! let losses = runledger_sdk::run_data::metric_series("train_loss")?;
//! let diverged = losses.iter().any(|point| !point.value.is_finite());
//! # Ok::<(), runledger_sdk::Error>(())
//! ```

use crate::validator_bindings::runledger::plugin::run_data;
use crate::{Error, Metric, Result, RunSummary};

/// Returns every point of metric `key` of the run being validated, ordered by step and then by
/// time.
///
/// Fails with [`Error::NotFound`] when the run has no such metric, with
/// [`Error::LimitExceeded`] when the series has more than 1,000,000 points, and with
/// [`Error::Io`] when the host cannot read it.
///
/// ```no_run
/// let points = runledger_sdk::run_data::metric_series("test_rmse")?.len();
/// # Ok::<(), runledger_sdk::Error>(())
/// ```
pub fn metric_series(key: &str) -> Result<Vec<Metric>> {
    let points = run_data::metric_series(key).map_err(Error::from_raw)?;
    Ok(points.into_iter().map(Metric::from_raw).collect())
}

/// Returns the summary of the run behind the version that alias `alias` of registered model
/// `model` points at, or `None` when the model has no such alias.
///
/// Fails with [`Error::NotFound`] when no registered model has that name, and with
/// [`Error::Io`] when the host cannot read it.
///
/// ```no_run
/// if let Some(baseline) = runledger_sdk::run_data::alias_run("wine-quality", "production")? {
///     let rmse = baseline.metric("test_rmse");
/// }
/// # Ok::<(), runledger_sdk::Error>(())
/// ```
pub fn alias_run(model: &str, alias: &str) -> Result<Option<RunSummary>> {
    let run = run_data::alias_run(model, alias).map_err(Error::from_raw)?;
    Ok(run.map(RunSummary::from_raw))
}
