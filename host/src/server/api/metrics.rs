//! Routes of the metrics API: the latest value of each metric of a run, and the history of one
//! metric, downsampled on the server for charts.
//!
//! JSON numbers cannot express NaN and the infinities, so values are numbers or one of the
//! strings `NaN`, `Infinity` and `-Infinity`.

use crate::server::error::{ApiError, ApiResult, ErrorBody};
use crate::server::extract::{ApiPath, ApiQuery};
use crate::server::routes::ApiRouter;
use crate::server::routes::documented;
use crate::server::state::AppState;
use crate::store::{MIN_SERIES_POINTS, MetricPoint};
use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use std::ops::RangeInclusive;
use utoipa::{IntoParams, ToSchema};

/// Points a history returns when the request names no `max_points`: enough for a chart as wide
/// as a large screen.
const DEFAULT_MAX_POINTS: usize = 1_000;

/// Largest `max_points` accepted, so one response stays a few megabytes.
const MAX_MAX_POINTS: usize = 100_000;

/// Returns the metrics routes with their OpenAPI descriptions.
pub fn router() -> ApiRouter<AppState> {
    ApiRouter::new()
        .routes(documented!(latest_metrics))
        .routes(documented!(metric_history))
}

/// The latest value of one metric.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct LatestMetricValue {
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
}

/// Body of `GET /api/v1/runs/{run_id}/metrics`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct LatestMetrics {
    /// The latest value of every metric of the run and its steps, by key.
    pub items: Vec<LatestMetricValue>,
}

/// One point of a metric history.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct HistoryPoint {
    /// Training step or iteration.
    pub step: i64,
    /// The value.
    #[serde(serialize_with = "super::value::serialize_value")]
    #[schema(schema_with = super::value::value_schema)]
    pub value: f64,
    /// Time of measurement, in milliseconds since the Unix epoch.
    pub timestamp: i64,
    /// The step run that measured it; `null` for a run-level value.
    pub step_run_id: Option<String>,
}

/// Body of `GET /api/v1/runs/{run_id}/metrics/{key}/history`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct MetricHistory {
    /// Metric name.
    pub key: String,
    /// Points in the series, or within `start_step` to `end_step` when they are given.
    pub total_points: u64,
    /// Points ordered by step, then timestamp, then insertion: all of them, or a downsampled
    /// subset when `downsampled` is true.
    pub points: Vec<HistoryPoint>,
    /// Whether the series had more than `max_points` points and `points` keeps, for buckets
    /// of equal point count in step order, each bucket's minimum and maximum plus the first
    /// and last point.
    pub downsampled: bool,
}

/// Path of a run.
#[derive(Debug, Deserialize)]
struct RunPath {
    run_id: String,
}

/// Path of one metric of a run.
#[derive(Debug, Deserialize)]
struct MetricPath {
    run_id: String,
    key: String,
}

/// Query of a metric history.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct HistoryQuery {
    /// Maximum number of points to return, 4 to 100000; 1000 when omitted. A longer series is
    /// downsampled.
    #[param(minimum = 4, maximum = 100000)]
    max_points: Option<usize>,
    /// Only the values this step run logged.
    step_run_id: Option<String>,
    /// Only points at this step or later, such as the left edge of a zoomed chart.
    start_step: Option<i64>,
    /// Only points at this step or earlier.
    end_step: Option<i64>,
}

/// `GET /api/v1/runs/{run_id}/metrics`: the latest value of each metric of a run.
#[utoipa::path(
    get,
    path = "/api/v1/runs/{run_id}/metrics",
    tag = "metrics",
    params(("run_id" = String, Path, description = "Id of the run")),
    responses(
        (status = 200, description = "The latest value of every metric, by key",
            body = LatestMetrics),
        (status = 401, description = "No valid bearer token", body = ErrorBody),
        (status = 404, description = "No run has this id", body = ErrorBody),
    )
)]
async fn latest_metrics(
    State(state): State<AppState>,
    ApiPath(path): ApiPath<RunPath>,
) -> ApiResult<Json<LatestMetrics>> {
    let store = state.store();
    store.require_run(&path.run_id).await?;
    let items = store
        .latest_metrics(&path.run_id)
        .await?
        .into_iter()
        .map(|point| LatestMetricValue {
            key: point.key,
            value: point.value,
            step: point.step,
            timestamp: point.timestamp_ms,
        })
        .collect();
    Ok(Json(LatestMetrics { items }))
}

/// `GET /api/v1/runs/{run_id}/metrics/{key}/history`: the values of one metric, downsampled
/// to at most `max_points` points, optionally only those from `start_step` to `end_step`.
/// Percent-encode a `/` in the key as `%2F`.
#[utoipa::path(
    get,
    path = "/api/v1/runs/{run_id}/metrics/{key}/history",
    tag = "metrics",
    params(
        ("run_id" = String, Path, description = "Id of the run"),
        ("key" = String, Path, description = "Metric name, percent-encoded"),
        HistoryQuery,
    ),
    responses(
        (status = 200, description = "The series, downsampled when longer than max_points; \
            an unknown key has no points", body = MetricHistory),
        (status = 400, description = "max_points is out of range, start_step is after \
            end_step, or the step run belongs to another run", body = ErrorBody),
        (status = 401, description = "No valid bearer token", body = ErrorBody),
        (status = 404, description = "No run or step run has this id", body = ErrorBody),
    )
)]
async fn metric_history(
    State(state): State<AppState>,
    ApiPath(path): ApiPath<MetricPath>,
    ApiQuery(query): ApiQuery<HistoryQuery>,
) -> ApiResult<Json<MetricHistory>> {
    let max_points = query.max_points.unwrap_or(DEFAULT_MAX_POINTS);
    if !(MIN_SERIES_POINTS..=MAX_MAX_POINTS).contains(&max_points) {
        return Err(ApiError::invalid_field(
            "query.max_points",
            format!(
                "{max_points} is out of range; ask for {MIN_SERIES_POINTS} to {MAX_MAX_POINTS} \
                 points, since a downsampled series keeps its first and last point and the \
                 minimum and maximum of at least one bucket"
            ),
        ));
    }

    let steps = step_range(query.start_step, query.end_step)?;

    let series = state
        .store()
        .metric_series(
            &path.run_id,
            &path.key,
            query.step_run_id.as_deref(),
            steps,
            max_points,
        )
        .await?;
    Ok(Json(MetricHistory {
        key: path.key,
        total_points: series.total_points,
        points: series.points.into_iter().map(history_point).collect(),
        downsampled: series.downsampled,
    }))
}

/// Returns the steps from `start_step` to `end_step`, open-ended where one is missing.
fn step_range(start: Option<i64>, end: Option<i64>) -> ApiResult<RangeInclusive<i64>> {
    let start = start.unwrap_or(i64::MIN);
    let end = end.unwrap_or(i64::MAX);
    if start > end {
        return Err(ApiError::invalid_field(
            "query.start_step",
            format!(
                "start_step {start} is after end_step {end}; give a start_step at or before \
                 end_step"
            ),
        ));
    }
    Ok(start..=end)
}

fn history_point(point: MetricPoint) -> HistoryPoint {
    HistoryPoint {
        step: point.step,
        value: point.value,
        timestamp: point.timestamp_ms,
        step_run_id: point.step_run_id,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn step_range_rejects_start_after_end() {
        assert_eq!(step_range(Some(3), Some(5)).unwrap(), 3..=5);
        assert_eq!(step_range(None, None).unwrap(), i64::MIN..=i64::MAX);
        assert!(step_range(Some(6), Some(5)).is_err());
    }

    #[test]
    fn special_values_become_strings() {
        let points: Vec<HistoryPoint> = [1.5, f64::NAN, f64::INFINITY, f64::NEG_INFINITY]
            .into_iter()
            .map(|value| HistoryPoint {
                step: 0,
                value,
                timestamp: 0,
                step_run_id: None,
            })
            .collect();

        let json = serde_json::to_value(&points).unwrap();

        let values: Vec<&serde_json::Value> = json
            .as_array()
            .unwrap()
            .iter()
            .map(|point| &point["value"])
            .collect();
        assert_eq!(values[0], &serde_json::json!(1.5));
        assert_eq!(values[1], "NaN");
        assert_eq!(values[2], "Infinity");
        assert_eq!(values[3], "-Infinity");
    }
}
