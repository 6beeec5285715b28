use crate::runtime::bindings::governance_types::RunSummary as WitRunSummary;
use crate::runtime::bindings::types::{Error, Metric};
use crate::runtime::bindings::validator::runledger::plugin::run_data;
use crate::runtime::governance::{RunDataError, convert};
use crate::runtime::state::CallState;

fn to_wit_error(error: RunDataError) -> Error {
    match error {
        RunDataError::NotFound(message) => Error::NotFound(message),
        RunDataError::LimitExceeded(message) => Error::LimitExceeded(message),
        RunDataError::Io(message) => Error::Io(message),
    }
}

/// Builds the error a component gets when the call has no run data, which only a component that
/// imports `run-data` outside the metric-validator world could see.
fn unavailable() -> Error {
    Error::Io("run data is available to metric validators only".into())
}

impl run_data::Host for CallState {
    fn metric_series(&mut self, key: String) -> wasmtime::Result<Result<Vec<Metric>, Error>> {
        let Some(data) = self.run_data.as_mut() else {
            return Ok(Err(unavailable()));
        };
        let points = match data.metric_series(&key) {
            Ok(points) => points,
            Err(error) => return Ok(Err(to_wit_error(error))),
        };
        if points.len() > convert::MAX_SERIES_POINTS {
            return Ok(Err(Error::LimitExceeded(format!(
                "metric `{key}` has {} points, more than the {} one call returns",
                points.len(),
                convert::MAX_SERIES_POINTS
            ))));
        }
        Ok(Ok(points.iter().map(convert::metric_to_wit).collect()))
    }

    fn alias_run(
        &mut self,
        model: String,
        alias: String,
    ) -> wasmtime::Result<Result<Option<WitRunSummary>, Error>> {
        let Some(data) = self.run_data.as_mut() else {
            return Ok(Err(unavailable()));
        };
        let run = data
            .alias_run(&model, &alias)
            .map_err(to_wit_error)
            .map(|run| run.as_ref().map(convert::run_to_wit));
        Ok(run)
    }
}
