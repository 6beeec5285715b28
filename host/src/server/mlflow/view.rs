//! Assembly of MLflow's `Run` message from the records of one or many runs.

use super::proto::{dataset_input_json, experiment_id, key_values, metric_json, status_name};
use crate::store::entity::{project, run};
use crate::store::mlflow::LifecycleStage;
use crate::store::mlflow::entity::dataset_input;
use crate::store::{MetricPoint, RunStatus, RunSummary};
use serde_json::{Value, json};
use std::collections::BTreeMap;

/// The fields of MLflow's `RunInfo` message for one run.
#[derive(Debug, Clone)]
pub(super) struct RunHead {
    /// Run id.
    pub(super) id: String,
    /// Display name.
    pub(super) name: String,
    /// Experiment id.
    pub(super) experiment_id: String,
    /// User that started the run.
    pub(super) user: String,
    /// Status.
    pub(super) status: RunStatus,
    /// Start time, in milliseconds since the Unix epoch.
    pub(super) start_time: i64,
    /// End time, in milliseconds since the Unix epoch.
    pub(super) end_time: Option<i64>,
    /// Artifact root of the experiment, which the run's artifact URI extends.
    pub(super) experiment_artifacts: String,
    /// Active or deleted.
    pub(super) stage: LifecycleStage,
}

impl RunHead {
    /// Describes a run row of `project`.
    pub(super) fn of_run(
        run: &run::Model,
        project: &project::Model,
        experiment_artifacts: String,
        stage: LifecycleStage,
    ) -> Self {
        Self {
            id: run.id.clone(),
            name: run.name.clone(),
            experiment_id: experiment_id(project),
            user: run.user_name.clone(),
            status: run.status,
            start_time: run.started_at.unwrap_or(run.created_at),
            end_time: run.ended_at,
            experiment_artifacts,
            stage,
        }
    }

    /// Describes a run found by a search.
    pub(super) fn of_summary(
        summary: &RunSummary,
        experiment_id: String,
        experiment_artifacts: String,
        stage: LifecycleStage,
    ) -> Self {
        Self {
            id: summary.id.clone(),
            name: summary.name.clone(),
            experiment_id,
            user: summary.user_name.clone(),
            status: summary.status,
            start_time: summary.started_at.unwrap_or(summary.created_at),
            end_time: summary.ended_at,
            experiment_artifacts,
            stage,
        }
    }

    /// Returns the artifact URI of the run: `<experiment artifact location>/<run_id>/artifacts`.
    pub(super) fn artifact_uri(&self) -> String {
        format!(
            "{}/{}/artifacts",
            self.experiment_artifacts.trim_end_matches('/'),
            self.id
        )
    }

    /// Builds MLflow's `RunInfo` message.
    pub(super) fn info_json(&self) -> Value {
        let mut info = json!({
            "run_id": self.id,
            "run_uuid": self.id,
            "run_name": self.name,
            "experiment_id": self.experiment_id,
            "user_id": self.user,
            "status": status_name(self.status),
            "start_time": self.start_time,
            "artifact_uri": self.artifact_uri(),
            "lifecycle_stage": self.stage.as_str(),
        });
        if let Some(end_time) = self.end_time {
            info["end_time"] = json!(end_time);
        }
        info
    }
}

/// The data of a run: params, tags, latest metrics and dataset inputs.
#[derive(Debug, Clone, Default)]
pub(super) struct RunBody {
    /// Params by key.
    pub(super) params: BTreeMap<String, String>,
    /// Tags by key.
    pub(super) tags: BTreeMap<String, String>,
    /// Latest value of each metric.
    pub(super) metrics: Vec<MetricPoint>,
    /// Datasets logged as inputs.
    pub(super) inputs: Vec<dataset_input::Model>,
}

/// Builds MLflow's `Run` message.
pub(super) fn run_json(head: &RunHead, body: &RunBody) -> Value {
    let mut tags = body.tags.clone();
    tags.entry("mlflow.runName".to_owned())
        .or_insert_with(|| head.name.clone());
    let metrics: Vec<Value> = body.metrics.iter().map(metric_json).collect();
    let inputs: Vec<Value> = body.inputs.iter().map(dataset_input_json).collect();
    json!({
        "info": head.info_json(),
        "data": {
            "metrics": metrics,
            "params": key_values(&body.params),
            "tags": key_values(&tags),
        },
        "inputs": { "dataset_inputs": inputs },
    })
}
