//! Read routes of one step run: its log lines and the latest value of each metric it logged.
//! The step run's status, params and artifacts are part of `GET /api/v1/runs/{run_id}`.

use super::runs::check_run_id;
use crate::server::error::{ApiError, ApiResult, ErrorBody};
use crate::server::extract::{ApiPath, ApiQuery};
use crate::server::routes::ApiRouter;
use crate::server::routes::documented;
use crate::server::state::AppState;
use crate::store::MetricPoint;
use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use utoipa::{IntoParams, ToSchema};

/// Log lines a request returns when it names no `limit`.
const DEFAULT_LOG_LIMIT: u64 = 1_000;

/// Largest `limit` accepted, so one response stays a few megabytes.
const MAX_LOG_LIMIT: u64 = 10_000;

/// Returns the step run routes with their OpenAPI descriptions.
pub fn router() -> ApiRouter<AppState> {
    ApiRouter::new()
        .routes(documented!(step_logs))
        .routes(documented!(step_metrics))
}

/// Path of one step run of a run.
#[derive(Debug, Deserialize)]
struct StepPath {
    run_id: String,
    step_run_id: String,
}

/// Query of `GET /api/v1/runs/{run_id}/steps/{step_run_id}/logs`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct LogsQuery {
    /// Only lines after this sequence number: the `next_after_seq` of the previous page.
    after_seq: Option<i64>,
    /// Maximum number of lines, 1 to 10000; 1000 when omitted.
    #[param(minimum = 1, maximum = 10000)]
    limit: Option<u64>,
}

/// One log line of a step run.
#[derive(Debug, Serialize, ToSchema)]
pub struct LogLine {
    /// Position of the line within the step run, from 0.
    pub seq: i64,
    /// Level: `trace`, `debug`, `info`, `warn` or `error`.
    pub level: String,
    /// The message.
    pub message: String,
    /// Structured fields of the line.
    #[schema(value_type = Option<Object>)]
    pub fields: Option<serde_json::Value>,
    /// Time the line was emitted, in milliseconds since the Unix epoch.
    pub timestamp: i64,
}

/// Body of `GET /api/v1/runs/{run_id}/steps/{step_run_id}/logs`.
#[derive(Debug, Serialize, ToSchema)]
pub struct StepLogs {
    /// Lines in order.
    pub items: Vec<LogLine>,
    /// `after_seq` of the next page; `null` when this page contains the last line so far.
    pub next_after_seq: Option<i64>,
}

/// `GET /api/v1/runs/{run_id}/steps/{step_run_id}/logs`: the log lines of a step run, in order.
#[utoipa::path(
    get,
    path = "/api/v1/runs/{run_id}/steps/{step_run_id}/logs",
    tag = "runs",
    params(
        ("run_id" = String, Path, description = "Run id, a UUID"),
        ("step_run_id" = String, Path, description = "Step run id, a UUID"),
        LogsQuery,
    ),
    responses(
        (status = 200, description = "One page of log lines", body = StepLogs),
        (status = 400, description = "An id is not a UUID, or limit is out of range",
            body = ErrorBody),
        (status = 401, description = "No valid bearer token", body = ErrorBody),
        (status = 404, description = "No step run of this run has this id", body = ErrorBody),
    )
)]
async fn step_logs(
    State(state): State<AppState>,
    ApiPath(path): ApiPath<StepPath>,
    ApiQuery(query): ApiQuery<LogsQuery>,
) -> ApiResult<Json<StepLogs>> {
    let limit = query.limit.unwrap_or(DEFAULT_LOG_LIMIT);
    if !(1..=MAX_LOG_LIMIT).contains(&limit) {
        return Err(ApiError::invalid_field(
            "query.limit",
            format!("{limit} is out of range; ask for 1 to {MAX_LOG_LIMIT} lines per page"),
        ));
    }
    require_step_of_run(&state, &path).await?;

    let rows = state
        .store()
        .list_step_logs(&path.step_run_id, query.after_seq, Some(limit))
        .await?;
    let full_page = rows.len() as u64 == limit;
    let next_after_seq = rows.last().filter(|_| full_page).map(|row| row.seq);
    let items = rows
        .into_iter()
        .map(|row| LogLine {
            seq: row.seq,
            level: row.level,
            message: row.message,
            fields: row.fields_json,
            timestamp: row.timestamp_ms,
        })
        .collect();
    Ok(Json(StepLogs {
        items,
        next_after_seq,
    }))
}

/// A metric of a step run: its latest value and how many points the step logged.
#[derive(Debug, Serialize, ToSchema)]
pub struct StepMetric {
    /// Metric name.
    pub key: String,
    /// The value with the highest step, and among those the latest timestamp.
    #[serde(serialize_with = "super::value::serialize_value")]
    #[schema(schema_with = super::value::value_schema)]
    pub value: f64,
    /// Step of the value.
    pub step: i64,
    /// Time of measurement, in milliseconds since the Unix epoch.
    pub timestamp: i64,
    /// Points of this metric that the step run logged.
    pub points: u64,
}

/// Body of `GET /api/v1/runs/{run_id}/steps/{step_run_id}/metrics`.
#[derive(Debug, Serialize, ToSchema)]
pub struct StepMetrics {
    /// Every metric the step run logged, by key.
    pub items: Vec<StepMetric>,
}

/// `GET /api/v1/runs/{run_id}/steps/{step_run_id}/metrics`: the latest value of each metric
/// a step run logged. The whole series of one is at
/// `/api/v1/runs/{run_id}/metrics/{key}/history?step_run_id=...`.
#[utoipa::path(
    get,
    path = "/api/v1/runs/{run_id}/steps/{step_run_id}/metrics",
    tag = "metrics",
    params(
        ("run_id" = String, Path, description = "Run id, a UUID"),
        ("step_run_id" = String, Path, description = "Step run id, a UUID"),
    ),
    responses(
        (status = 200, description = "The latest value of each metric, by key",
            body = StepMetrics),
        (status = 400, description = "An id is not a UUID", body = ErrorBody),
        (status = 401, description = "No valid bearer token", body = ErrorBody),
        (status = 404, description = "No step run of this run has this id", body = ErrorBody),
    )
)]
async fn step_metrics(
    State(state): State<AppState>,
    ApiPath(path): ApiPath<StepPath>,
) -> ApiResult<Json<StepMetrics>> {
    require_step_of_run(&state, &path).await?;
    // NOTE: this reads every point the step logged, because the store keeps latest values per
    // run and not per step run. A step with millions of points makes the request take seconds.
    let points = state.store().step_metrics(&path.step_run_id).await?;
    Ok(Json(StepMetrics {
        items: latest_by_key(points),
    }))
}

/// Reduces points ordered by key, step and time to the last point of each key.
fn latest_by_key(points: Vec<MetricPoint>) -> Vec<StepMetric> {
    let mut metrics: BTreeMap<String, StepMetric> = BTreeMap::new();
    for point in points {
        let entry = metrics.entry(point.key.clone()).or_insert(StepMetric {
            key: point.key,
            value: point.value,
            step: point.step,
            timestamp: point.timestamp_ms,
            points: 0,
        });
        entry.value = point.value;
        entry.step = point.step;
        entry.timestamp = point.timestamp_ms;
        entry.points += 1;
    }
    metrics.into_values().collect()
}

/// Checks both ids and that the step run belongs to the run.
async fn require_step_of_run(state: &AppState, path: &StepPath) -> ApiResult<()> {
    check_run_id(&path.run_id)?;
    if uuid::Uuid::parse_str(&path.step_run_id).is_err() {
        return Err(ApiError::invalid_field(
            "step_run_id",
            format!(
                "`{}` is not a step run id; step run ids are UUIDs, listed under `steps` of \
                 GET /api/v1/runs/{}",
                path.step_run_id.escape_debug(),
                path.run_id
            ),
        ));
    }
    state.store().require_run(&path.run_id).await?;
    let step = state.store().get_step_run(&path.step_run_id).await?;
    match step {
        Some(step) if step.run_id == path.run_id => Ok(()),
        _ => Err(ApiError::not_found(format!(
            "run {} has no step run `{}`; GET /api/v1/runs/{} lists its steps",
            path.run_id, path.step_run_id, path.run_id
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(key: &str, step: i64, value: f64) -> MetricPoint {
        MetricPoint {
            key: key.to_owned(),
            value,
            step,
            timestamp_ms: step * 10,
            step_run_id: None,
        }
    }

    #[test]
    fn latest_by_key_keeps_last_point_and_counts() {
        let points = vec![
            point("acc", 0, 0.5),
            point("acc", 1, 0.7),
            point("loss", 0, 2.0),
        ];

        let metrics = latest_by_key(points);

        assert_eq!(metrics.len(), 2);
        assert_eq!(metrics[0].key, "acc");
        assert_eq!(metrics[0].value, 0.7);
        assert_eq!(metrics[0].step, 1);
        assert_eq!(metrics[0].points, 2);
        assert_eq!(metrics[1].points, 1);
    }
}
