//! The read access to recorded runs that validators get through the `run-data` interface.

use super::summary;
use crate::runtime::{RunData, RunDataError, RunSummary, SummaryMetric};
use crate::store::{Store, StoreError};
use tokio::runtime::Handle;

/// Most points [`StoreRunData::metric_series`] returns in one call, as the `run-data` interface
/// promises, so a validator cannot make the host hold an unbounded series in memory twice.
const MAX_SERIES_POINTS: usize = 1_000_000;

/// [`RunData`] over the store, for one run.
///
/// A plugin call runs on a blocking thread, so each read runs on the captured tokio runtime
/// with [`Handle::block_on`]. It must not be used from inside an async task.
pub(crate) struct StoreRunData {
    store: Store,
    handle: Handle,
    run_id: String,
}

impl StoreRunData {
    /// Creates the reader of run `run_id`, with reads running on the runtime of `handle`.
    pub(crate) fn new(store: Store, handle: Handle, run_id: &str) -> Self {
        Self {
            store,
            handle,
            run_id: run_id.to_owned(),
        }
    }

    async fn read_series(&self, key: &str) -> Result<Vec<SummaryMetric>, RunDataError> {
        let points = self
            .store
            .metric_history(&self.run_id, key)
            .await
            .map_err(io_error)?;
        if points.is_empty() {
            return Err(RunDataError::NotFound(format!(
                "run {} has no metric `{key}`",
                self.run_id
            )));
        }
        if points.len() > MAX_SERIES_POINTS {
            return Err(RunDataError::LimitExceeded(format!(
                "metric `{key}` of run {} has {} points, more than the {MAX_SERIES_POINTS} \
                 returned in one call",
                self.run_id,
                points.len()
            )));
        }
        Ok(points
            .into_iter()
            .map(|point| SummaryMetric {
                key: point.key,
                value: point.value,
                step: point.step,
            })
            .collect())
    }

    async fn read_alias_run(
        &self,
        model: &str,
        alias: &str,
    ) -> Result<Option<RunSummary>, RunDataError> {
        let found = self.store.get_model(model).await.map_err(io_error)?;
        if found.is_none() {
            return Err(RunDataError::NotFound(format!(
                "no registered model is named `{model}`"
            )));
        }
        let version = self
            .store
            .version_by_alias(model, alias)
            .await
            .map_err(io_error)?;
        let Some(run_id) = version.and_then(|version| version.run_id) else {
            return Ok(None);
        };
        let run = summary::run_summary(&self.store, &run_id).await;
        run.map(Some).map_err(io_error)
    }
}

impl RunData for StoreRunData {
    fn metric_series(&mut self, key: &str) -> Result<Vec<SummaryMetric>, RunDataError> {
        self.handle.clone().block_on(self.read_series(key))
    }

    fn alias_run(&mut self, model: &str, alias: &str) -> Result<Option<RunSummary>, RunDataError> {
        self.handle
            .clone()
            .block_on(self.read_alias_run(model, alias))
    }
}

fn io_error(error: StoreError) -> RunDataError {
    tracing::warn!(cause = %error, "run data read failed");
    RunDataError::Io(error.to_string())
}
