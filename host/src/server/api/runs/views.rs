//! Response bodies of the runs API and their conversion from the store's records.

use crate::gates::ValidationRecord;
use crate::server::api::value::MetricValue;
use crate::store::entity::run_artifact::Direction;
use crate::store::{LinkedArtifact, MetricPoint, RunDetail as StoredDetail, RunSource, RunStatus};
use crate::store::{RunSummary as StoredSummary, StepRunDetail, StepStatus};
use serde::Serialize;
use std::collections::BTreeMap;
use utoipa::ToSchema;

/// A submitted run, or a run asked to stop.
#[derive(Debug, Serialize, ToSchema)]
pub struct RunAccepted {
    /// The run id.
    pub run_id: String,
    /// Its status now.
    #[schema(value_type = String, example = "queued")]
    pub status: RunStatus,
    /// The external steps of a submitted run, each with the token its report needs. Tokens are
    /// shown only here, once; the list is empty for cancel requests and runs without such steps.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub external_steps: Vec<ExternalStepAccess>,
}

/// How a client reports an external step of a submitted run.
#[derive(Debug, Serialize, ToSchema)]
pub struct ExternalStepAccess {
    /// Step name.
    pub step: String,
    /// The step run.
    pub step_run_id: String,
    /// Path that receives the report, relative to the server's address.
    pub report_path: String,
    /// Token to send as `Authorization: Bearer TOKEN` with the report.
    pub token: String,
}

impl From<crate::engine::ExternalStepToken> for ExternalStepAccess {
    fn from(access: crate::engine::ExternalStepToken) -> Self {
        Self {
            report_path: access.report_path(),
            step: access.step,
            step_run_id: access.step_run_id,
            token: access.token.expose().to_owned(),
        }
    }
}

/// One page of runs.
#[derive(Debug, Serialize, ToSchema)]
pub struct RunList {
    /// The runs, in the requested order.
    pub items: Vec<RunSummary>,
    /// Token of the next page; `null` on the last page.
    pub next_page_token: Option<String>,
}

/// A run as listed.
#[derive(Debug, Serialize, ToSchema)]
pub struct RunSummary {
    /// Run id.
    pub id: String,
    /// Display name.
    pub name: String,
    /// Project name.
    pub project: String,
    /// Pipeline name; `null` for external runs.
    pub pipeline: Option<String>,
    /// One of queued, running, succeeded, failed, cancelled, interrupted.
    #[schema(value_type = String, example = "succeeded")]
    pub status: RunStatus,
    /// One of cli, api, schedule, external.
    #[schema(value_type = String, example = "api")]
    pub source: RunSource,
    /// User or token name that started the run.
    pub user: String,
    /// Creation time, in milliseconds since the Unix epoch.
    pub created_at: i64,
    /// Start time, in milliseconds since the Unix epoch.
    pub started_at: Option<i64>,
    /// End time, in milliseconds since the Unix epoch.
    pub ended_at: Option<i64>,
    /// Reason the run failed, was cancelled or was interrupted.
    pub error: Option<String>,
    /// Params by key.
    pub params: BTreeMap<String, String>,
    /// Tags by key.
    pub tags: BTreeMap<String, String>,
    /// Latest value of every metric, by key.
    pub metrics: BTreeMap<String, MetricValue>,
}

impl From<StoredSummary> for RunSummary {
    fn from(run: StoredSummary) -> Self {
        Self {
            id: run.id,
            name: run.name,
            project: run.project,
            pipeline: run.pipeline,
            status: run.status,
            source: run.source,
            user: run.user_name,
            created_at: run.created_at,
            started_at: run.started_at,
            ended_at: run.ended_at,
            error: run.error,
            params: run.params,
            tags: run.tags,
            metrics: run
                .metrics
                .into_iter()
                .map(|(key, value)| (key, MetricValue(value)))
                .collect(),
        }
    }
}

/// Everything recorded about a run.
#[derive(Debug, Serialize, ToSchema)]
pub struct RunDetail {
    /// Identity, status and times.
    pub run: RunInfo,
    /// Project name.
    pub project: String,
    /// The pipeline definition; `null` for external runs.
    pub pipeline: Option<PipelineRef>,
    /// Params by key.
    pub params: BTreeMap<String, String>,
    /// Tags by key.
    pub tags: BTreeMap<String, String>,
    /// Step runs in creation order.
    pub steps: Vec<StepDetail>,
    /// Latest value of every metric, by key order.
    pub metrics: Vec<LatestMetric>,
    /// Every artifact linked to the run or one of its steps, in link order.
    pub artifacts: Vec<ArtifactLink>,
    /// Code and environment of the run: runledger and wasmtime versions, OS, plugins, git
    /// state, and what an external client reported.
    #[schema(value_type = Option<Object>)]
    pub environment: Option<serde_json::Value>,
    /// Checks of metric validators on the run, oldest first: after its pipeline succeeded,
    /// when it became a model version, or on request. A pipeline's validators run shortly
    /// after the run's status turns `succeeded`.
    pub validations: Vec<ValidationRecord>,
}

/// Identity, status and times of a run.
#[derive(Debug, Serialize, ToSchema)]
pub struct RunInfo {
    /// Run id.
    pub id: String,
    /// Display name.
    pub name: String,
    /// One of queued, running, succeeded, failed, cancelled, interrupted.
    #[schema(value_type = String, example = "succeeded")]
    pub status: RunStatus,
    /// One of cli, api, schedule, external.
    #[schema(value_type = String, example = "api")]
    pub source: RunSource,
    /// User or token name that started the run.
    pub user: String,
    /// Seed of the run's deterministic randomness.
    pub seed: Option<i64>,
    /// Creation time, in milliseconds since the Unix epoch.
    pub created_at: i64,
    /// Start time, in milliseconds since the Unix epoch.
    pub started_at: Option<i64>,
    /// End time, in milliseconds since the Unix epoch.
    pub ended_at: Option<i64>,
    /// Reason the run failed, was cancelled or was interrupted.
    pub error: Option<String>,
}

/// The pipeline definition a run executed.
#[derive(Debug, Serialize, ToSchema)]
pub struct PipelineRef {
    /// Pipeline name.
    pub name: String,
    /// SHA-256 of the definition text.
    pub digest: String,
}

/// One step run.
#[derive(Debug, Serialize, ToSchema)]
pub struct StepDetail {
    /// Step run id.
    pub id: String,
    /// Step name.
    pub name: String,
    /// One of pending, running, succeeded, failed, skipped, cached, cancelled.
    #[schema(value_type = String, example = "succeeded")]
    pub status: StepStatus,
    /// Attempts started; 0 for cached and skipped steps.
    pub attempts: i32,
    /// Creation time, in milliseconds since the Unix epoch.
    pub created_at: i64,
    /// Start of the first attempt, in milliseconds since the Unix epoch.
    pub started_at: Option<i64>,
    /// End time, in milliseconds since the Unix epoch.
    pub ended_at: Option<i64>,
    /// The plugin that executed the step; `null` for steps without one.
    pub plugin: Option<PluginInfo>,
    /// Executor kind, such as `wasm` or `external`.
    pub executor: String,
    /// Resolved params.
    #[schema(value_type = Object)]
    pub params: serde_json::Value,
    /// The step run whose outputs a cache hit reused.
    pub cached_from: Option<String>,
    /// Artifacts the step consumed.
    pub inputs: Vec<ArtifactLink>,
    /// Artifacts the step produced.
    pub outputs: Vec<ArtifactLink>,
    /// Reason the step failed, was skipped or was cancelled.
    pub error: Option<String>,
}

/// A plugin by name, version and digest.
#[derive(Debug, Serialize, ToSchema)]
pub struct PluginInfo {
    /// Name from `plugin.toml`.
    pub name: String,
    /// Version from `plugin.toml`.
    pub version: Option<String>,
    /// SHA-256 of the component.
    pub digest: Option<String>,
}

/// An artifact consumed or produced under a name.
#[derive(Debug, Serialize, ToSchema)]
pub struct ArtifactLink {
    /// Input or output name.
    pub name: String,
    /// SHA-256 of the content.
    pub digest: String,
    /// `input` or `output`.
    #[schema(value_type = String, example = "output")]
    pub direction: Direction,
    /// The step run; `null` for inputs and outputs of the run itself.
    pub step_run_id: Option<String>,
    /// Size in bytes.
    pub size: i64,
    /// Media type.
    pub media_type: String,
    /// Time of linking, in milliseconds since the Unix epoch.
    pub linked_at: i64,
}

/// The latest value of a metric.
#[derive(Debug, Serialize, ToSchema)]
pub struct LatestMetric {
    /// Metric name.
    pub key: String,
    /// The value.
    pub value: MetricValue,
    /// Training step or iteration.
    pub step: i64,
    /// Time of measurement, in milliseconds since the Unix epoch.
    pub timestamp: i64,
}

impl From<StoredDetail> for RunDetail {
    fn from(detail: StoredDetail) -> Self {
        let run = detail.run;
        Self {
            run: RunInfo {
                id: run.id,
                name: run.name,
                status: run.status,
                source: run.source,
                user: run.user_name,
                seed: run.seed,
                created_at: run.created_at,
                started_at: run.started_at,
                ended_at: run.ended_at,
                error: run.error,
            },
            project: detail.project.name,
            pipeline: detail.pipeline.map(|pipeline| PipelineRef {
                name: pipeline.name,
                digest: pipeline.definition_digest,
            }),
            params: detail.params,
            tags: detail.tags,
            steps: detail.steps.into_iter().map(StepDetail::from).collect(),
            metrics: detail
                .latest_metrics
                .into_iter()
                .map(LatestMetric::from)
                .collect(),
            artifacts: detail
                .artifacts
                .into_iter()
                .map(ArtifactLink::from)
                .collect(),
            environment: detail
                .environment
                .and_then(|snapshot| serde_json::to_value(snapshot).ok()),
            validations: Vec::new(),
        }
    }
}

impl From<StepRunDetail> for StepDetail {
    fn from(detail: StepRunDetail) -> Self {
        let step = detail.step_run;
        let plugin = step.plugin_name.map(|name| PluginInfo {
            name,
            version: step.plugin_version,
            digest: step.plugin_digest,
        });
        Self {
            id: step.id,
            name: step.name,
            status: step.status,
            attempts: step.attempts,
            created_at: step.created_at,
            started_at: step.started_at,
            ended_at: step.ended_at,
            plugin,
            executor: step.executor,
            params: step.params_json,
            cached_from: step.cached_from,
            inputs: detail.inputs.into_iter().map(ArtifactLink::from).collect(),
            outputs: detail.outputs.into_iter().map(ArtifactLink::from).collect(),
            error: step.error,
        }
    }
}

impl From<LinkedArtifact> for ArtifactLink {
    fn from(artifact: LinkedArtifact) -> Self {
        let link = artifact.link;
        Self {
            name: link.name,
            digest: link.digest,
            direction: link.direction,
            step_run_id: link.step_run_id,
            size: artifact.size,
            media_type: artifact.media_type,
            linked_at: link.created_at,
        }
    }
}

impl From<MetricPoint> for LatestMetric {
    fn from(point: MetricPoint) -> Self {
        Self {
            key: point.key,
            value: MetricValue(point.value),
            step: point.step,
            timestamp: point.timestamp_ms,
        }
    }
}
