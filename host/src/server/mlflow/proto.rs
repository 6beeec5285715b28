//! The JSON form of MLflow's messages, built from runledger's records.
//!
//! Experiment ids are project ids as decimal text, except that the project `default` is
//! experiment `0`, named `Default`, as on an MLflow server. Run statuses map both ways:
//! RUNNING is running, SCHEDULED queued, FINISHED succeeded, FAILED failed, and KILLED
//! cancelled or interrupted.

use super::error::MlflowError;
use crate::store::entity::project;
use crate::store::mlflow::Experiment;
use crate::store::mlflow::entity::dataset_input;
use crate::store::{DEFAULT_PROJECT, MetricPoint, RunStatus};
use serde_json::{Value, json};
use std::collections::BTreeMap;

/// Id of the experiment that runs go to when the client names none.
pub(super) const DEFAULT_EXPERIMENT_ID: &str = "0";

/// Name under which the project `default` appears as an experiment.
pub(super) const DEFAULT_EXPERIMENT_NAME: &str = "Default";

/// Returns the experiment id of a project.
pub(super) fn experiment_id(project: &project::Model) -> String {
    if project.name == DEFAULT_PROJECT {
        DEFAULT_EXPERIMENT_ID.to_owned()
    } else {
        project.id.to_string()
    }
}

/// Returns the experiment name of a project.
pub(super) fn experiment_name(project: &project::Model) -> String {
    if project.name == DEFAULT_PROJECT {
        DEFAULT_EXPERIMENT_NAME.to_owned()
    } else {
        project.name.clone()
    }
}

/// Returns the project name an experiment name stands for.
pub(super) fn project_name(experiment_name: &str) -> &str {
    if experiment_name == DEFAULT_EXPERIMENT_NAME {
        DEFAULT_PROJECT
    } else {
        experiment_name
    }
}

/// Returns the artifact location of an experiment: the one given at creation, or the
/// artifact proxy's `mlflow-artifacts:/<experiment_id>`.
pub(super) fn artifact_location(experiment: &Experiment) -> String {
    match &experiment.artifact_location {
        Some(location) => location.clone(),
        None => format!("mlflow-artifacts:/{}", experiment_id(&experiment.project)),
    }
}

/// Builds MLflow's `Experiment` message.
pub(super) fn experiment_json(experiment: &Experiment) -> Value {
    json!({
        "experiment_id": experiment_id(&experiment.project),
        "name": experiment_name(&experiment.project),
        "artifact_location": artifact_location(experiment),
        "lifecycle_stage": experiment.lifecycle_stage.as_str(),
        "creation_time": experiment.project.created_at,
        "last_update_time": experiment.last_update_time,
        "tags": key_values(&experiment.tags),
    })
}

/// Builds a list of `{"key", "value"}` objects.
pub(super) fn key_values(entries: &BTreeMap<String, String>) -> Vec<Value> {
    entries
        .iter()
        .map(|(key, value)| json!({ "key": key, "value": value }))
        .collect()
}

/// Writes a double as MLflow does: a number, or `"NaN"`, `"Infinity"` or `"-Infinity"`.
pub(super) fn double(value: f64) -> Value {
    if value.is_nan() {
        json!("NaN")
    } else if value == f64::INFINITY {
        json!("Infinity")
    } else if value == f64::NEG_INFINITY {
        json!("-Infinity")
    } else {
        json!(value)
    }
}

/// Builds MLflow's `Metric` message.
pub(super) fn metric_json(point: &MetricPoint) -> Value {
    json!({
        "key": point.key,
        "value": double(point.value),
        "timestamp": point.timestamp_ms,
        "step": point.step,
    })
}

/// Builds MLflow's `DatasetInput` message.
pub(super) fn dataset_input_json(input: &dataset_input::Model) -> Value {
    let tags: BTreeMap<String, String> =
        serde_json::from_value(input.tags_json.clone()).unwrap_or_default();
    let mut dataset = json!({
        "name": input.name,
        "digest": input.digest,
        "source_type": input.source_type,
        "source": input.source,
    });
    if let Some(schema) = &input.schema {
        dataset["schema"] = json!(schema);
    }
    if let Some(profile) = &input.profile {
        dataset["profile"] = json!(profile);
    }
    json!({ "tags": key_values(&tags), "dataset": dataset })
}

/// Returns the MLflow status name of a run status.
pub(super) fn status_name(status: RunStatus) -> &'static str {
    match status {
        RunStatus::Queued => "SCHEDULED",
        RunStatus::Running => "RUNNING",
        RunStatus::Succeeded => "FINISHED",
        RunStatus::Failed => "FAILED",
        RunStatus::Cancelled | RunStatus::Interrupted => "KILLED",
    }
}

/// Returns the run statuses an MLflow status name stands for.
pub(super) fn parse_status(name: &str) -> Result<&'static [RunStatus], MlflowError> {
    match name {
        "RUNNING" => Ok(&[RunStatus::Running]),
        "SCHEDULED" => Ok(&[RunStatus::Queued]),
        "FINISHED" => Ok(&[RunStatus::Succeeded]),
        "FAILED" => Ok(&[RunStatus::Failed]),
        "KILLED" => Ok(&[RunStatus::Cancelled, RunStatus::Interrupted]),
        other => Err(MlflowError::invalid(format!(
            "invalid run status `{other}`: expected RUNNING, SCHEDULED, FINISHED, FAILED or \
             KILLED"
        ))),
    }
}
