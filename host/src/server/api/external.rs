//! External steps over the API: a client reports the outputs of a pipeline step that ran
//! outside the sandbox, and viewers list the external steps of a run.
//!
//! A report carries the step's own token (`Authorization: Bearer STEP_TOKEN`), which
//! `runledger run` prints when the step starts waiting. The access-control middleware lets
//! `/api/v1/external-steps/...` through, and the handler checks the token.

use crate::engine::{
    ExternalReport, ExternalStepError, ReportStatus, ReportedMetric, ReportedOutput, report_path,
};
use crate::server::auth::bearer_token;
use crate::server::error::{ApiError, ApiResult, ErrorBody, ErrorCode, FieldProblem};
use crate::server::extract::{ApiJson, ApiPath};
use crate::server::routes::ApiRouter;
use crate::server::routes::documented;
use crate::server::state::AppState;
use crate::store::ExternalStepRecord;
use axum::Json;
use axum::extract::State;
use axum::http::HeaderMap;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Returns the routes of external steps.
pub fn router() -> ApiRouter<AppState> {
    ApiRouter::new()
        .routes(documented!(report_step))
        .routes(documented!(list_external_steps))
}

/// The outcome of a reported step's work.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ReportedStatus {
    /// Finished with every declared output.
    Succeeded,
    /// Failed; the step fails and its dependents are skipped.
    Failed,
}

/// Body of `POST /api/v1/external-steps/{step_run_id}/report`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReportRequest {
    /// The outcome of the work.
    pub status: ReportedStatus,
    /// The reason the work failed; only with status `failed`.
    #[serde(default)]
    pub error: Option<String>,
    /// The outputs: with status `succeeded`, exactly the names the step declares; with
    /// `failed`, none.
    pub outputs: Vec<OutputReport>,
    /// Metric values the work measured, recorded on the step run.
    #[serde(default)]
    pub metrics: Vec<MetricReport>,
    /// Log lines of the work, recorded at level `info`.
    #[serde(default)]
    pub logs: Vec<String>,
}

/// One reported output.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OutputReport {
    /// An output name the step declares.
    pub name: String,
    /// SHA-256 of the artifact, uploaded beforehand with `PUT /api/v1/artifacts/{digest}`.
    pub digest: String,
    /// Media type to record; `application/octet-stream` when omitted.
    #[serde(default)]
    pub media_type: Option<String>,
}

/// One reported metric value.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MetricReport {
    /// Metric name.
    pub key: String,
    /// The value.
    pub value: f64,
    /// Training step or iteration; 0 when omitted.
    #[serde(default)]
    pub step: Option<i64>,
}

/// Response to an accepted report.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReportResponse {
    /// The step run.
    pub step_run_id: String,
    /// The step's final status: `succeeded` or `failed`.
    pub status: String,
}

impl From<ReportRequest> for ExternalReport {
    fn from(request: ReportRequest) -> Self {
        Self {
            status: match request.status {
                ReportedStatus::Succeeded => ReportStatus::Succeeded,
                ReportedStatus::Failed => ReportStatus::Failed,
            },
            error: request.error,
            outputs: request
                .outputs
                .into_iter()
                .map(|output| ReportedOutput {
                    name: output.name,
                    digest: output.digest,
                    media_type: output.media_type,
                })
                .collect(),
            metrics: request
                .metrics
                .into_iter()
                .map(|metric| ReportedMetric {
                    key: metric.key,
                    value: metric.value,
                    step: metric.step,
                })
                .collect(),
            logs: request.logs,
        }
    }
}

/// `POST /api/v1/external-steps/{step_run_id}/report`: completes a waiting external step.
#[utoipa::path(
    post,
    path = "/api/v1/external-steps/{step_run_id}/report",
    tag = "runs",
    description = "Reports the outcome of an external step that waits for it. Send the step's \
        own token, which `runledger run` prints when the step starts waiting, as \
        `Authorization: Bearer STEP_TOKEN`; API tokens do not authorise reports. Upload each \
        output with `PUT /api/v1/artifacts/{digest}` first. The run then continues with the \
        reported outputs, in whichever process executes it.",
    security(()),
    params(("step_run_id" = String, Path, description = "Id of the external step run")),
    request_body = ReportRequest,
    responses(
        (status = 200, description = "The step is completed", body = ReportResponse),
        (status = 400, description = "The report does not fit the step, or names an \
            artifact that is not stored", body = ErrorBody),
        (status = 401, description = "The step token is missing or wrong", body = ErrorBody),
        (status = 404, description = "No external step has this id", body = ErrorBody),
        (status = 409, description = "The step does not wait for a report: not yet, or no \
            longer", body = ErrorBody),
    )
)]
async fn report_step(
    State(state): State<AppState>,
    ApiPath(step_run_id): ApiPath<String>,
    headers: HeaderMap,
    ApiJson(request): ApiJson<ReportRequest>,
) -> ApiResult<Json<ReportResponse>> {
    let Some(token) = bearer_token(&headers) else {
        tracing::warn!(step_run_id = %step_run_id, "external step report rejected: no step token");
        return Err(ApiError::new(
            ErrorCode::Unauthenticated,
            "a report needs the step's token: send `Authorization: Bearer STEP_TOKEN` with the \
             token printed when the run was created",
        ));
    };

    let metric_count = request.metrics.len() as u64;
    let status = state
        .engine()
        .report_external_step(&step_run_id, token, request.into())
        .await
        .map_err(report_error)?;

    state.telemetry().add_ingested_metrics(metric_count);
    Ok(Json(ReportResponse {
        step_run_id,
        status: status.to_string(),
    }))
}

/// Maps a rejected report to the API's error, logging authentication failures with the step
/// run, never the token.
fn report_error(error: ExternalStepError) -> ApiError {
    match error {
        ExternalStepError::NotFound(_) => ApiError::not_found(error.to_string()),
        ExternalStepError::InvalidToken(ref step_run_id) => {
            tracing::warn!(step_run_id = %step_run_id, "external step report rejected: wrong step token");
            ApiError::new(ErrorCode::Unauthenticated, error.to_string())
        }
        ExternalStepError::NotWaiting { .. } => ApiError::conflict(error.to_string()),
        ExternalStepError::InvalidReport(ref problems) => {
            let mut api = ApiError::invalid(error.to_string());
            api.details = problems
                .iter()
                .map(|problem| FieldProblem {
                    field: problem.field.clone(),
                    problem: problem.problem.clone(),
                })
                .collect();
            api
        }
        ExternalStepError::Store(store) => store.into(),
        ExternalStepError::Artifacts(artifacts) => artifacts.into(),
    }
}

/// The external steps of a run.
#[derive(Debug, Serialize, ToSchema)]
pub struct ExternalStepList {
    /// The steps in definition order; a run has few, so the list is not paged.
    pub items: Vec<ExternalStepView>,
}

/// An external step as viewers see it, without its token.
#[derive(Debug, Serialize, ToSchema)]
pub struct ExternalStepView {
    /// Step name.
    pub name: String,
    /// Id of the step run, which the report's URL names.
    pub step_run_id: String,
    /// Status of the step run, such as `pending`, `running` or `succeeded`.
    pub status: String,
    /// State of the wait for the report: `pending` (inputs not ready), `waiting`, `reported`,
    /// `timed_out` or `cancelled`.
    pub wait_state: String,
    /// Output names the report must contain.
    pub outputs: Vec<String>,
    /// The step's inputs; empty until the wait starts.
    pub inputs: Vec<ExternalInputView>,
    /// The step's params from the definition, for the client.
    #[schema(value_type = Object)]
    pub params: serde_json::Value,
    /// Time the wait started, in milliseconds since the Unix epoch.
    pub waiting_since: Option<i64>,
    /// Time the wait ended, in milliseconds since the Unix epoch.
    pub ended_at: Option<i64>,
    /// Path that receives the report.
    pub report_path: String,
}

/// An input of an external step.
#[derive(Debug, Serialize, ToSchema)]
pub struct ExternalInputView {
    /// Input name from the definition.
    pub name: String,
    /// SHA-256 of the artifact, readable at `GET /api/v1/artifacts/{digest}`.
    pub digest: String,
    /// Size in bytes.
    pub size: u64,
    /// Media type.
    pub media_type: String,
}

impl ExternalStepView {
    fn new(record: ExternalStepRecord) -> ApiResult<Self> {
        let ExternalStepRecord { external, step_run } = record;
        let inputs = external
            .recorded_inputs()?
            .into_iter()
            .map(|input| ExternalInputView {
                name: input.name,
                digest: input.digest,
                size: input.size,
                media_type: input.media_type,
            })
            .collect();
        Ok(Self {
            name: step_run.name,
            report_path: report_path(&step_run.id),
            step_run_id: step_run.id,
            status: step_run.status.to_string(),
            wait_state: external.state.to_string(),
            outputs: external.declared_outputs()?,
            inputs,
            params: step_run.params_json,
            waiting_since: external.waiting_since,
            ended_at: external.ended_at,
        })
    }
}

/// `GET /api/v1/runs/{run_id}/external-steps`: the external steps of a run.
#[utoipa::path(
    get,
    path = "/api/v1/runs/{run_id}/external-steps",
    tag = "runs",
    description = "Lists the external steps of a run with their state, inputs and expected \
        outputs. Step tokens are never listed: they are shown once, when the run is created.",
    params(("run_id" = String, Path, description = "Run id")),
    responses(
        (status = 200, description = "The run's external steps", body = ExternalStepList),
        (status = 404, description = "No run has this id", body = ErrorBody),
    )
)]
async fn list_external_steps(
    State(state): State<AppState>,
    ApiPath(run_id): ApiPath<String>,
) -> ApiResult<Json<ExternalStepList>> {
    let records = state.store().list_external_steps(&run_id).await?;
    let items = records
        .into_iter()
        .map(ExternalStepView::new)
        .collect::<ApiResult<Vec<_>>>()?;
    Ok(Json(ExternalStepList { items }))
}
