//! Ingestion of runs executed elsewhere, such as a GPU job, a notebook or CI.
//!
//! The client creates an external run and logs its params, tags and metric values. It declares
//! steps with their input and output artifacts, reports its environment, and finishes the run.
//! The records are the same as a pipeline run's, so `runledger runs show` and
//! `runledger lineage` show both alike.
//!
//! Every write to a run that has ended fails with 409. Metric values go through the server's
//! group-commit writer and are acknowledged once committed.

mod body;
mod steps;

use self::body::{MetricBody, RunRecord, check_path_id, check_time, key_values, new_metrics};
use crate::engine::environment::RUNLEDGER_VERSION;
use crate::server::auth::Caller;
use crate::server::error::{ApiError, ApiResult, ErrorBody, FieldProblem};
use crate::server::extract::{ApiJson, ApiPath};
use crate::server::idempotency::IdempotencyKeyHeader;
use crate::server::names::validate_key;
use crate::server::routes::ApiRouter;
use crate::server::routes::documented;
use crate::server::state::AppState;
use crate::store::{
    DEFAULT_PROJECT, EnvironmentSnapshot, GitState, NewExternalRun, RunBatch, RunFinish, RunStatus,
    RunsAccepting, StoreError,
};
use axum::extract::State;
use axum::http::StatusCode;
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use utoipa::ToSchema;

/// Builds the router of the ingest routes, with their OpenAPI descriptions.
pub fn router() -> ApiRouter<AppState> {
    ApiRouter::new()
        .routes(documented!(create_external_run))
        .routes(documented!(log_metrics))
        .routes(documented!(log_params))
        .routes(documented!(set_tags))
        .routes(documented!(delete_tag))
        .routes(documented!(log_batch))
        .routes(documented!(put_environment))
        .routes(documented!(finish_run))
        .routes(documented!(steps::create_step))
        .routes(documented!(steps::change_step))
        .routes(documented!(steps::link_run_artifact))
}

/// Body of `POST /api/v1/external-runs`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct NewRunBody {
    /// Display name: 1 to 250 bytes without control characters.
    name: String,
    /// Project, created on first use, or `default` when omitted.
    #[serde(default)]
    project: Option<String>,
    /// Params, immutable once logged. Strings are kept as they are, other values as their
    /// JSON text.
    #[serde(default)]
    params: BTreeMap<String, Value>,
    /// Tags, stored like params.
    #[serde(default)]
    tags: BTreeMap<String, Value>,
    /// Start time in milliseconds since the Unix epoch, or the time of the request when omitted.
    #[serde(default)]
    started_at: Option<i64>,
}

/// A new external run with its params and tags.
#[derive(Debug, Serialize, ToSchema)]
struct CreatedRun {
    /// The run.
    #[serde(flatten)]
    run: RunRecord,
    /// Params by key, as stored.
    params: BTreeMap<String, String>,
    /// Tags by key, as stored.
    tags: BTreeMap<String, String>,
}

/// `POST /api/v1/external-runs`: records a run that executes elsewhere.
#[utoipa::path(
    post,
    path = "/api/v1/external-runs",
    tag = "ingestion",
    description = "Records a run that executes outside runledger, with status `running`, \
        source `external` and the caller as its user. Report its params, metrics, steps, \
        artifacts and environment with the routes under `/api/v1/runs/{run_id}`, and end it \
        with `POST /api/v1/runs/{run_id}/finish`.",
    params(IdempotencyKeyHeader),
    request_body = NewRunBody,
    responses(
        (status = 201, description = "The run was created", body = CreatedRun),
        (status = 400, description = "A field is missing or not valid", body = ErrorBody),
    )
)]
async fn create_external_run(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiJson(body): ApiJson<NewRunBody>,
) -> ApiResult<(StatusCode, Json<CreatedRun>)> {
    validate_key("name", &body.name)?;
    let project = body.project.unwrap_or_else(|| DEFAULT_PROJECT.to_owned());
    validate_key("project", &project)?;
    check_time("started_at", body.started_at)?;
    let params = key_values("params", body.params)?;
    let tags = key_values("tags", body.tags)?;

    let new = NewExternalRun {
        project,
        name: body.name,
        user_name: caller.name,
        started_at: body.started_at,
        params: params.clone(),
        tags: tags.clone(),
    };
    let record = state.store().create_external_run(new).await?;
    let created = CreatedRun {
        run: record.into(),
        params: params.into_iter().collect(),
        tags: tags.into_iter().collect(),
    };
    Ok((StatusCode::CREATED, Json(created)))
}

/// Body of `POST /api/v1/runs/{run_id}/metrics`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct MetricsBody {
    /// The values to log.
    metrics: Vec<MetricBody>,
}

/// Number of metric values committed.
#[derive(Debug, Serialize, ToSchema)]
struct MetricsAccepted {
    /// Values committed by this request.
    accepted: usize,
}

/// `POST /api/v1/runs/{run_id}/metrics`: logs metric values of a run.
#[utoipa::path(
    post,
    path = "/api/v1/runs/{run_id}/metrics",
    tag = "ingestion",
    description = "Logs metric values of a run that has not ended. The response comes once the \
        values are committed; concurrent requests share transactions.",
    params(("run_id" = String, Path, description = "Run id"), IdempotencyKeyHeader),
    request_body = MetricsBody,
    responses(
        (status = 200, description = "The values are committed", body = MetricsAccepted),
        (status = 400, description = "A value is not valid, or a step run is not of this run",
            body = ErrorBody),
        (status = 404, description = "No run has this id", body = ErrorBody),
        (status = 409, description = "The run has ended", body = ErrorBody),
    )
)]
async fn log_metrics(
    State(state): State<AppState>,
    ApiPath(run_id): ApiPath<String>,
    ApiJson(body): ApiJson<MetricsBody>,
) -> ApiResult<Json<MetricsAccepted>> {
    check_path_id("path.run_id", &run_id)?;
    let metrics = new_metrics(body.metrics)?;
    let accepted = metrics.len();
    let accepts = RunsAccepting::Open;
    state.writer().log_metrics(run_id, metrics, accepts).await?;
    state.telemetry().add_ingested_metrics(accepted as u64);
    Ok(Json(MetricsAccepted { accepted }))
}

/// Body of `POST /api/v1/runs/{run_id}/params`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct ParamsBody {
    /// Params by key. Strings are kept as they are, other values as their JSON text.
    params: BTreeMap<String, Value>,
}

/// Params as stored.
#[derive(Debug, Serialize, ToSchema)]
struct LoggedParams {
    /// The params of this request, by key, as stored.
    params: BTreeMap<String, String>,
}

/// `POST /api/v1/runs/{run_id}/params`: logs params of a run.
#[utoipa::path(
    post,
    path = "/api/v1/runs/{run_id}/params",
    tag = "ingestion",
    description = "Logs params of a run that has not ended. Params are immutable: logging a \
        param again with its value changes nothing, and another value fails with 409 naming \
        both values, recording none of the request.",
    params(("run_id" = String, Path, description = "Run id"), IdempotencyKeyHeader),
    request_body = ParamsBody,
    responses(
        (status = 200, description = "The params are recorded", body = LoggedParams),
        (status = 400, description = "A key or value is not valid", body = ErrorBody),
        (status = 404, description = "No run has this id", body = ErrorBody),
        (status = 409, description = "A param has another value, or the run has ended",
            body = ErrorBody),
    )
)]
async fn log_params(
    State(state): State<AppState>,
    ApiPath(run_id): ApiPath<String>,
    ApiJson(body): ApiJson<ParamsBody>,
) -> ApiResult<Json<LoggedParams>> {
    check_path_id("path.run_id", &run_id)?;
    let params = key_values("params", body.params)?;
    let batch = RunBatch {
        params: params.clone(),
        ..RunBatch::default()
    };
    state
        .store()
        .log_run_batch(&run_id, &batch)
        .await
        .map_err(name_changed_param)?;
    let params = params.into_iter().collect();
    Ok(Json(LoggedParams { params }))
}

/// Maps a store error to the API's, naming the field `params.KEY` of a param that would change.
fn name_changed_param(error: StoreError) -> ApiError {
    let field = match &error {
        StoreError::ParamConflict { key, .. } => Some(format!("params.{key}")),
        _ => None,
    };
    let api_error = ApiError::from(error);
    match field {
        Some(field) => api_error.with_field(FieldProblem {
            field,
            problem: String::new(),
        }),
        None => api_error,
    }
}

/// Body of `POST /api/v1/runs/{run_id}/tags`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct TagsBody {
    /// Tags by key. Strings are kept as they are, other values as their JSON text.
    tags: BTreeMap<String, Value>,
}

/// Tags as stored.
#[derive(Debug, Serialize, ToSchema)]
struct SetTags {
    /// The tags of this request, by key, as stored.
    tags: BTreeMap<String, String>,
}

/// `POST /api/v1/runs/{run_id}/tags`: sets tags of a run.
#[utoipa::path(
    post,
    path = "/api/v1/runs/{run_id}/tags",
    tag = "ingestion",
    description = "Sets tags of a run that has not ended, replacing the values of keys it has.",
    params(("run_id" = String, Path, description = "Run id"), IdempotencyKeyHeader),
    request_body = TagsBody,
    responses(
        (status = 200, description = "The tags are set", body = SetTags),
        (status = 400, description = "A key or value is not valid", body = ErrorBody),
        (status = 404, description = "No run has this id", body = ErrorBody),
        (status = 409, description = "The run has ended", body = ErrorBody),
    )
)]
async fn set_tags(
    State(state): State<AppState>,
    ApiPath(run_id): ApiPath<String>,
    ApiJson(body): ApiJson<TagsBody>,
) -> ApiResult<Json<SetTags>> {
    check_path_id("path.run_id", &run_id)?;
    let tags = key_values("tags", body.tags)?;
    let batch = RunBatch {
        tags: tags.clone(),
        ..RunBatch::default()
    };
    state.store().log_run_batch(&run_id, &batch).await?;
    let tags = tags.into_iter().collect();
    Ok(Json(SetTags { tags }))
}

/// `DELETE /api/v1/runs/{run_id}/tags/{key}`: deletes a tag of a run.
#[utoipa::path(
    delete,
    path = "/api/v1/runs/{run_id}/tags/{key}",
    tag = "ingestion",
    description = "Deletes a tag of a run that has not ended. Deleting a tag the run does not \
        have succeeds too. Encode a `/` in the key as `%2F`.",
    params(
        ("run_id" = String, Path, description = "Run id"),
        ("key" = String, Path, description = "Tag key"),
        IdempotencyKeyHeader,
    ),
    responses(
        (status = 204, description = "The run no longer has the tag"),
        (status = 404, description = "No run has this id", body = ErrorBody),
        (status = 409, description = "The run has ended", body = ErrorBody),
    )
)]
async fn delete_tag(
    State(state): State<AppState>,
    ApiPath((run_id, key)): ApiPath<(String, String)>,
) -> ApiResult<StatusCode> {
    check_path_id("path.run_id", &run_id)?;
    state.store().delete_run_tag(&run_id, &key).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Body of `POST /api/v1/runs/{run_id}/batch`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct BatchBody {
    /// Metric values, as in `POST /api/v1/runs/{run_id}/metrics`.
    #[serde(default)]
    metrics: Vec<MetricBody>,
    /// Params, as in `POST /api/v1/runs/{run_id}/params`.
    #[serde(default)]
    params: BTreeMap<String, Value>,
    /// Tags, as in `POST /api/v1/runs/{run_id}/tags`.
    #[serde(default)]
    tags: BTreeMap<String, Value>,
}

/// Number of values of each kind that a batch recorded.
#[derive(Debug, Serialize, ToSchema)]
struct BatchLogged {
    /// Metric values committed.
    metrics: usize,
    /// Params recorded or confirmed.
    params: usize,
    /// Tags set.
    tags: usize,
}

/// `POST /api/v1/runs/{run_id}/batch`: logs metric values, params and tags in one transaction.
#[utoipa::path(
    post,
    path = "/api/v1/runs/{run_id}/batch",
    tag = "ingestion",
    description = "Logs metric values, params and tags of a run that has not ended in one \
        transaction: either all of them are recorded or, on any error, none.",
    params(("run_id" = String, Path, description = "Run id"), IdempotencyKeyHeader),
    request_body = BatchBody,
    responses(
        (status = 200, description = "Everything is recorded", body = BatchLogged),
        (status = 400, description = "A value is not valid", body = ErrorBody),
        (status = 404, description = "No run has this id", body = ErrorBody),
        (status = 409, description = "A param has another value, or the run has ended",
            body = ErrorBody),
    )
)]
async fn log_batch(
    State(state): State<AppState>,
    ApiPath(run_id): ApiPath<String>,
    ApiJson(body): ApiJson<BatchBody>,
) -> ApiResult<Json<BatchLogged>> {
    check_path_id("path.run_id", &run_id)?;
    let batch = RunBatch {
        metrics: new_metrics(body.metrics)?,
        params: key_values("params", body.params)?,
        tags: key_values("tags", body.tags)?,
    };
    state
        .store()
        .log_run_batch(&run_id, &batch)
        .await
        .map_err(name_changed_param)?;
    state
        .telemetry()
        .add_ingested_metrics(batch.metrics.len() as u64);
    Ok(Json(BatchLogged {
        metrics: batch.metrics.len(),
        params: batch.params.len(),
        tags: batch.tags.len(),
    }))
}

/// Body of `PUT /api/v1/runs/{run_id}/environment`: what the client executed with.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct EnvironmentBody {
    /// Python version, such as `3.11.7`.
    #[serde(default)]
    python: Option<String>,
    /// Installed packages, such as the lines of `pip freeze`.
    #[serde(default)]
    packages: Vec<String>,
    /// Platform description, such as Python's `platform.platform()`.
    #[serde(default)]
    platform: Option<String>,
    /// Operating system, such as `linux`.
    #[serde(default)]
    os: Option<String>,
    /// CPU architecture, such as `x86_64`.
    #[serde(default)]
    arch: Option<String>,
    /// State of the client's git repository.
    #[serde(default)]
    git: Option<GitBody>,
    /// Anything else worth keeping, such as GPU models or driver versions.
    #[serde(default)]
    extra: BTreeMap<String, Value>,
}

/// State of a git repository.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct GitBody {
    /// Full hash of the checked-out commit.
    commit: String,
    /// Whether tracked files had uncommitted changes.
    dirty: bool,
}

/// `PUT /api/v1/runs/{run_id}/environment`: records the client's environment.
#[utoipa::path(
    put,
    path = "/api/v1/runs/{run_id}/environment",
    tag = "ingestion",
    description = "Records the environment an external run executes in as its environment \
        snapshot, replacing an earlier one. `python` and `platform` are kept as snapshot \
        fields of those names, and `extra` as a field `extra`.",
    params(("run_id" = String, Path, description = "Run id of an external run"),
        IdempotencyKeyHeader),
    request_body = EnvironmentBody,
    responses(
        (status = 200, description = "The snapshot as stored", body = Value),
        (status = 404, description = "No run has this id", body = ErrorBody),
        (status = 409, description = "The run has ended, or runledger executes it",
            body = ErrorBody),
    )
)]
async fn put_environment(
    State(state): State<AppState>,
    ApiPath(run_id): ApiPath<String>,
    ApiJson(body): ApiJson<EnvironmentBody>,
) -> ApiResult<Json<Value>> {
    check_path_id("path.run_id", &run_id)?;
    let snapshot = environment_snapshot(body);
    state
        .store()
        .put_client_environment(&run_id, &snapshot)
        .await?;
    let stored = serde_json::to_value(&snapshot).map_err(ApiError::internal)?;
    Ok(Json(stored))
}

/// Builds the snapshot of a client's environment. The runledger version is the server's,
/// which recorded the run.
fn environment_snapshot(body: EnvironmentBody) -> EnvironmentSnapshot {
    let mut extra = serde_json::Map::new();
    if let Some(python) = body.python {
        extra.insert("python".to_owned(), Value::String(python));
    }
    if let Some(platform) = body.platform {
        extra.insert("platform".to_owned(), Value::String(platform));
    }
    if !body.extra.is_empty() {
        extra.insert(
            "extra".to_owned(),
            Value::Object(body.extra.into_iter().collect()),
        );
    }
    EnvironmentSnapshot {
        git: body.git.map(|git| GitState {
            commit: git.commit,
            dirty: git.dirty,
        }),
        runledger_version: RUNLEDGER_VERSION.to_owned(),
        wasmtime_version: None,
        os: body.os.unwrap_or_default(),
        arch: body.arch.unwrap_or_default(),
        plugins: Vec::new(),
        packages: body.packages,
        extra,
    }
}

/// The final status of an external run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
enum FinalStatus {
    /// The work finished without error.
    Succeeded,
    /// The work failed.
    Failed,
    /// The work was stopped.
    Cancelled,
}

/// Body of `POST /api/v1/runs/{run_id}/finish`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct FinishBody {
    /// The final status.
    status: FinalStatus,
    /// Reason the run failed or was cancelled, not allowed with `succeeded`.
    #[serde(default)]
    error: Option<String>,
    /// End time in milliseconds since the Unix epoch, not before the start, or the time of the
    /// request when omitted.
    #[serde(default)]
    ended_at: Option<i64>,
}

/// `POST /api/v1/runs/{run_id}/finish`: ends an external run.
#[utoipa::path(
    post,
    path = "/api/v1/runs/{run_id}/finish",
    tag = "ingestion",
    description = "Ends an external run with a final status. Its step runs still pending or \
        running are cancelled. The run accepts no writes afterwards.",
    params(("run_id" = String, Path, description = "Run id of an external run"),
        IdempotencyKeyHeader),
    request_body = FinishBody,
    responses(
        (status = 200, description = "The ended run", body = RunRecord),
        (status = 400, description = "A field is not valid", body = ErrorBody),
        (status = 404, description = "No run has this id", body = ErrorBody),
        (status = 409, description = "The run has ended, or runledger executes it",
            body = ErrorBody),
    )
)]
async fn finish_run(
    State(state): State<AppState>,
    ApiPath(run_id): ApiPath<String>,
    ApiJson(body): ApiJson<FinishBody>,
) -> ApiResult<Json<RunRecord>> {
    check_path_id("path.run_id", &run_id)?;
    check_time("ended_at", body.ended_at)?;
    if body.status == FinalStatus::Succeeded && body.error.is_some() {
        return Err(ApiError::invalid_field(
            "error",
            "is set, but a succeeded run has no error; leave it out or finish as failed",
        ));
    }
    if let Some(ended_at) = body.ended_at {
        check_end_after_start(&state, &run_id, ended_at).await?;
    }

    let finish = RunFinish {
        status: match body.status {
            FinalStatus::Succeeded => RunStatus::Succeeded,
            FinalStatus::Failed => RunStatus::Failed,
            FinalStatus::Cancelled => RunStatus::Cancelled,
        },
        error: body.error,
        ended_at: body.ended_at,
    };
    let record = state.store().finish_external_run(&run_id, finish).await?;
    Ok(Json(record.into()))
}

/// Fails with a 400 when `ended_at` lies before the start of the run. The start of an external
/// run never changes, so reading it before the finish's transaction is safe.
async fn check_end_after_start(state: &AppState, run_id: &str, ended_at: i64) -> ApiResult<()> {
    let run = state.store().require_run(run_id).await?;
    match run.started_at {
        Some(started_at) if ended_at < started_at => Err(ApiError::invalid_field(
            "ended_at",
            format!("{ended_at} is before the run's start {started_at}; give a later time"),
        )),
        _ => Ok(()),
    }
}
