use crate::runtime::bindings::runledger::plugin::metrics;
use crate::runtime::bindings::runledger::plugin::types::{Error, Metric};
use crate::runtime::state::{CallState, MetricPoint};
use crate::runtime::violations::{Limit, Violation};

/// Longest metric key, as MLflow allows, so keys stay portable between the two.
const MAX_KEY_CHARS: usize = 250;

pub(crate) fn check_metric_key(key: &str) -> Result<(), String> {
    if key.is_empty() || key.chars().count() > MAX_KEY_CHARS {
        return Err(format!(
            "metric key `{key}` must have 1 to {MAX_KEY_CHARS} characters"
        ));
    }
    let allowed = |c: char| c.is_alphanumeric() || matches!(c, '_' | '-' | '.' | ' ' | '/');
    if let Some(bad) = key.chars().find(|c| !allowed(*c)) {
        return Err(format!(
            "metric key `{key}` contains `{bad}`: use letters, digits, `_`, `-`, `.`, ` ` or `/`"
        ));
    }
    Ok(())
}

impl metrics::Host for CallState {
    fn log_metric(&mut self, point: Metric) -> wasmtime::Result<Result<(), Error>> {
        if let Err(message) = check_metric_key(&point.key) {
            return Ok(Err(Error::InvalidParams(message)));
        }
        if self.metrics.len() >= self.limits.max_metric_points {
            let limit = Limit::MetricPoints {
                points: self.limits.max_metric_points,
            };
            self.violations.record(Violation::Limit(limit.clone()));
            return Ok(Err(Error::LimitExceeded(limit.to_string())));
        }
        self.metrics.push(MetricPoint {
            key: point.key,
            value: point.value,
            step: point.step,
            timestamp_ms: chrono::Utc::now().timestamp_millis(),
        });
        Ok(Ok(()))
    }
}
