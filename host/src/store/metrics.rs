//! Metric time series and the index of each run's latest values.

use super::downsample::rollup;
use super::entity::{latest_metric, metric, step_run};
use super::{Store, StoreError, batch, runs};
use sea_orm::sea_query::{Expr, OnConflict};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, ExprTrait, QueryFilter,
    QueryOrder, QuerySelect,
};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// A metric value to record with [`Store::log_metrics`].
#[derive(Debug, Clone, PartialEq)]
pub struct NewMetric {
    /// The step run that measured it; `None` for a run-level metric.
    pub step_run_id: Option<String>,
    /// Metric name.
    pub key: String,
    /// The value. NaN and the infinities are stored faithfully.
    pub value: f64,
    /// Training step or iteration.
    pub step: i64,
    /// Time of measurement, in milliseconds since the Unix epoch.
    pub timestamp_ms: i64,
}

/// A recorded metric value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricPoint {
    /// Metric name.
    pub key: String,
    /// The value, NaN included.
    pub value: f64,
    /// Training step or iteration.
    pub step: i64,
    /// Time of measurement, in milliseconds since the Unix epoch.
    pub timestamp_ms: i64,
    /// The step run that measured it, for history points; always `None` for latest values,
    /// which cover the whole run.
    pub step_run_id: Option<String>,
}

impl Store {
    /// Records metric values of a run and updates its latest values, in one transaction.
    ///
    /// Rows go in multi-row `INSERT`s sized to the backends' parameter limits. A value
    /// replaces the latest one of its key when its step is higher, or its step equal and its
    /// timestamp not older, whatever order the values arrive in. Step-level values update the
    /// run's latest values too.
    pub async fn log_metrics(&self, run_id: &str, values: &[NewMetric]) -> Result<(), StoreError> {
        if values.is_empty() {
            return Ok(());
        }
        let transaction = batch::begin_write(&self.db).await?;
        runs::require_run(&transaction, run_id).await?;
        check_step_runs(&transaction, run_id, named_step_runs(values)).await?;
        insert_metrics(&transaction, run_id, values).await?;
        transaction.commit().await?;
        Ok(())
    }

    /// Returns the values of one metric of a run, ordered by step, then timestamp, then
    /// insertion.
    pub async fn metric_history(
        &self,
        run_id: &str,
        key: &str,
    ) -> Result<Vec<MetricPoint>, StoreError> {
        let rows = metric::Entity::find()
            .filter(metric::Column::RunId.eq(run_id))
            .filter(metric::Column::Key.eq(key))
            .order_by_asc(metric::Column::Step)
            .order_by_asc(metric::Column::TimestampMs)
            .order_by_asc(metric::Column::Id)
            .all(&self.db)
            .await?;
        Ok(rows.into_iter().map(MetricPoint::from).collect())
    }

    /// Returns every metric value a step run logged, ordered by key, then step, then
    /// timestamp, then insertion.
    pub async fn step_metrics(&self, step_run_id: &str) -> Result<Vec<MetricPoint>, StoreError> {
        let rows = metric::Entity::find()
            .filter(metric::Column::StepRunId.eq(step_run_id))
            .order_by_asc(metric::Column::Key)
            .order_by_asc(metric::Column::Step)
            .order_by_asc(metric::Column::TimestampMs)
            .order_by_asc(metric::Column::Id)
            .all(&self.db)
            .await?;
        Ok(rows.into_iter().map(MetricPoint::from).collect())
    }

    /// Returns the latest value of every metric of a run, by key.
    pub async fn latest_metrics(&self, run_id: &str) -> Result<Vec<MetricPoint>, StoreError> {
        latest_metrics(&self.db, run_id).await
    }
}

pub(super) async fn latest_metrics(
    db: &impl ConnectionTrait,
    run_id: &str,
) -> Result<Vec<MetricPoint>, StoreError> {
    let rows = latest_metric::Entity::find()
        .filter(latest_metric::Column::RunId.eq(run_id))
        .order_by_asc(latest_metric::Column::Key)
        .all(db)
        .await?;
    Ok(rows.into_iter().map(MetricPoint::from).collect())
}

/// Inserts metric values of a run and updates its latest values and block summaries, in
/// multi-row statements sized to the backends' parameter limits. The caller checks that the run and the step runs
/// the values name exist.
pub(super) async fn insert_metrics(
    db: &impl ConnectionTrait,
    run_id: &str,
    values: &[NewMetric],
) -> Result<(), StoreError> {
    for chunk in values.chunks(batch::rows_per_statement(6)) {
        let rows = chunk.iter().map(|value| metric_row(run_id, value));
        metric::Entity::insert_many(rows)
            .exec_without_returning(db)
            .await?;
    }
    rollup::upsert_blocks(db, values.iter().map(|value| (run_id, value))).await?;
    let latest: Vec<_> = latest_per_key(values).into_values().collect();
    for chunk in latest.chunks(batch::rows_per_statement(5)) {
        upsert_latest(db, run_id, chunk).await?;
    }
    Ok(())
}

/// Returns the ids of the step runs that `values` name.
pub(super) fn named_step_runs(values: &[NewMetric]) -> BTreeSet<&str> {
    values
        .iter()
        .filter_map(|value| value.step_run_id.as_deref())
        .collect()
}

/// Fails unless every step run in `named` belongs to `run_id`.
pub(super) async fn check_step_runs(
    db: &impl ConnectionTrait,
    run_id: &str,
    named: BTreeSet<&str>,
) -> Result<(), StoreError> {
    if named.is_empty() {
        return Ok(());
    }
    let found: BTreeSet<String> = step_run::Entity::find()
        .select_only()
        .column(step_run::Column::Id)
        .filter(step_run::Column::RunId.eq(run_id))
        .filter(step_run::Column::Id.is_in(named.iter().copied()))
        .into_tuple::<String>()
        .all(db)
        .await?
        .into_iter()
        .collect();
    match named.into_iter().find(|id| !found.contains(*id)) {
        Some(missing) => Err(StoreError::StepRunNotInRun {
            step_run_id: missing.to_owned(),
            run_id: run_id.to_owned(),
        }),
        None => Ok(()),
    }
}

pub(super) fn metric_row(run_id: &str, value: &NewMetric) -> metric::ActiveModel {
    metric::ActiveModel {
        run_id: Set(run_id.to_owned()),
        step_run_id: Set(value.step_run_id.clone()),
        key: Set(value.key.clone()),
        value: Set(encode(value.value)),
        step: Set(value.step),
        timestamp_ms: Set(value.timestamp_ms),
        ..Default::default()
    }
}

/// Picks the latest of `values` for each key, by the same rule as the upsert.
fn latest_per_key(values: &[NewMetric]) -> BTreeMap<&str, &NewMetric> {
    let mut latest: BTreeMap<&str, &NewMetric> = BTreeMap::new();
    for value in values {
        let replace = latest
            .get(value.key.as_str())
            .is_none_or(|held| (value.step, value.timestamp_ms) >= (held.step, held.timestamp_ms));
        if replace {
            latest.insert(&value.key, value);
        }
    }
    latest
}

/// Inserts or replaces latest values, keeping a stored value that is newer.
async fn upsert_latest(
    db: &impl ConnectionTrait,
    run_id: &str,
    values: &[&NewMetric],
) -> Result<(), StoreError> {
    let rows = values.iter().map(|value| latest_metric::ActiveModel {
        run_id: Set(run_id.to_owned()),
        key: Set(value.key.clone()),
        value: Set(encode(value.value)),
        step: Set(value.step),
        timestamp_ms: Set(value.timestamp_ms),
    });
    let upsert = OnConflict::columns([latest_metric::Column::RunId, latest_metric::Column::Key])
        .update_columns([
            latest_metric::Column::Value,
            latest_metric::Column::Step,
            latest_metric::Column::TimestampMs,
        ])
        .action_and_where(incoming_is_newer())
        .to_owned();
    latest_metric::Entity::insert_many(rows)
        .on_conflict(upsert)
        .exec_without_returning(db)
        .await?;
    Ok(())
}

/// `excluded.step > stored.step OR (excluded.step = stored.step AND excluded.timestamp_ms >=
/// stored.timestamp_ms)`, where `excluded` is the row being inserted.
pub(super) fn incoming_is_newer() -> Expr {
    let incoming = |column| Expr::col(("excluded", column));
    let stored = |column| Expr::col((latest_metric::Entity, column));
    let step = latest_metric::Column::Step;
    let timestamp = latest_metric::Column::TimestampMs;

    incoming(step).gt(stored(step)).or(incoming(step)
        .eq(stored(step))
        .and(incoming(timestamp).gte(stored(timestamp))))
}

/// Maps NaN to NULL, which is what SQLite stores for it anyway. Infinities pass unchanged.
pub(super) fn encode(value: f64) -> Option<f64> {
    (!value.is_nan()).then_some(value)
}

fn decode(value: Option<f64>) -> f64 {
    value.unwrap_or(f64::NAN)
}

impl From<metric::Model> for MetricPoint {
    fn from(row: metric::Model) -> Self {
        Self {
            key: row.key,
            value: decode(row.value),
            step: row.step,
            timestamp_ms: row.timestamp_ms,
            step_run_id: row.step_run_id,
        }
    }
}

impl From<latest_metric::Model> for MetricPoint {
    fn from(row: latest_metric::Model) -> Self {
        Self {
            key: row.key,
            value: decode(row.value),
            step: row.step,
            timestamp_ms: row.timestamp_ms,
            step_run_id: None,
        }
    }
}
