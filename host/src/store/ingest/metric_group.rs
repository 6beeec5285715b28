//! Metric writes of many requests, and of many runs, committed in one transaction.

use super::super::entity::run::{self, RunStatus};
use super::super::entity::{latest_metric, metric, step_run};
use super::super::mlflow::{LifecycleStage, entity::run_state};
use super::super::{NewMetric, Store, StoreError, batch, metrics};
use sea_orm::sea_query::{Expr, LockType, OnConflict, Query};
use sea_orm::{ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter};
use sea_orm::{DatabaseTransaction, ExprTrait, QuerySelect};
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// Metric values of one run from one request, for [`Store::log_metric_group`].
#[derive(Debug, Clone, PartialEq)]
pub struct MetricWrite {
    /// The run.
    pub run_id: String,
    /// The values, with the rules of [`Store::log_metrics`].
    pub values: Vec<NewMetric>,
    /// The runs that accept the values.
    pub accepts: RunsAccepting,
}

/// The runs a metric write may go to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunsAccepting {
    /// Runs that have not ended, as the native API requires.
    Open,
    /// Runs of any status that are not in MLflow's trash, as MLflow's protocol allows.
    NotDeleted,
}

/// The state of a run that the group's checks read.
#[derive(Debug, Clone, Copy)]
pub(super) struct RunState {
    pub(super) status: RunStatus,
    /// Whether the run is in MLflow's trash.
    pub(super) deleted: bool,
}

impl Store {
    /// Records the metric values of many requests in one transaction and returns the outcome
    /// of each request, in order.
    ///
    /// A request fails alone, with [`StoreError::RunNotFound`], [`StoreError::RunEnded`],
    /// [`StoreError::RunDeleted`] or [`StoreError::StepRunNotInRun`], and the others are
    /// recorded. The valid requests' rows
    /// go in multi-row `INSERT`s across runs, and their latest values in one upsert per chunk,
    /// with the rules of [`Store::log_metrics`]. An `Err` means the transaction failed and
    /// none of the requests was recorded.
    pub async fn log_metric_group(
        &self,
        writes: &[MetricWrite],
    ) -> Result<Vec<Result<(), StoreError>>, StoreError> {
        let transaction = batch::begin_write(&self.db).await?;
        let states = run_states(&transaction, writes).await?;
        let owners = step_run_owners(&transaction, writes).await?;
        let (outcomes, accepted) = check_writes(writes, &states, &owners);

        insert_rows(&transaction, &accepted).await?;
        upsert_latest(&transaction, &accepted).await?;
        transaction.commit().await?;
        Ok(outcomes)
    }
}

/// Reads the status of every run the writes name, and whether it is in MLflow's trash, in one
/// query per chunk. The run rows are locked on backends with row locks, so a concurrent finish
/// waits for this transaction.
async fn run_states(
    db: &DatabaseTransaction,
    writes: &[MetricWrite],
) -> Result<HashMap<String, RunState>, StoreError> {
    let run_ids: BTreeSet<&str> = writes.iter().map(|write| write.run_id.as_str()).collect();
    let run_ids: Vec<&str> = run_ids.into_iter().collect();
    let mut states = HashMap::new();
    for chunk in run_ids.chunks(batch::rows_per_statement(1)) {
        let found = run::Entity::find()
            .select_only()
            .column(run::Column::Id)
            .column(run::Column::Status)
            .expr_as(Expr::exists(in_trash()), "deleted")
            .filter(run::Column::Id.is_in(chunk.iter().copied()))
            .lock(LockType::Share)
            .into_tuple::<(String, RunStatus, bool)>()
            .all(db)
            .await?;
        let found = found
            .into_iter()
            .map(|(id, status, deleted)| (id, RunState { status, deleted }));
        states.extend(found);
    }
    Ok(states)
}

/// `SELECT 1 FROM mlflow_runs WHERE run_id = runs.id AND lifecycle_stage = 'deleted'`.
fn in_trash() -> sea_orm::sea_query::SelectStatement {
    Query::select()
        .expr(Expr::value(1))
        .from(run_state::Entity)
        .and_where(
            Expr::col((run_state::Entity, run_state::Column::RunId))
                .equals((run::Entity, run::Column::Id)),
        )
        .and_where(
            Expr::col((run_state::Entity, run_state::Column::LifecycleStage))
                .eq(LifecycleStage::Deleted.as_str()),
        )
        .to_owned()
}

/// Reads the run of every step run the writes name.
async fn step_run_owners(
    db: &DatabaseTransaction,
    writes: &[MetricWrite],
) -> Result<HashMap<String, String>, StoreError> {
    let named: BTreeSet<&str> = writes
        .iter()
        .flat_map(|write| metrics::named_step_runs(&write.values))
        .collect();
    let named: Vec<&str> = named.into_iter().collect();
    let mut owners = HashMap::new();
    for chunk in named.chunks(batch::rows_per_statement(1)) {
        let found = step_run::Entity::find()
            .select_only()
            .column(step_run::Column::Id)
            .column(step_run::Column::RunId)
            .filter(step_run::Column::Id.is_in(chunk.iter().copied()))
            .into_tuple::<(String, String)>()
            .all(db)
            .await?;
        owners.extend(found);
    }
    Ok(owners)
}

/// Checks each write with [`check_write`] and returns the outcomes, in order, with the writes
/// they accept.
pub(super) fn check_writes<'a>(
    writes: &'a [MetricWrite],
    states: &HashMap<String, RunState>,
    owners: &HashMap<String, String>,
) -> (Vec<Result<(), StoreError>>, Vec<&'a MetricWrite>) {
    let outcomes: Vec<Result<(), StoreError>> = writes
        .iter()
        .map(|write| check_write(write, states, owners))
        .collect();
    let accepted = writes
        .iter()
        .zip(&outcomes)
        .filter(|(_, outcome)| outcome.is_ok())
        .map(|(write, _)| write)
        .collect();
    (outcomes, accepted)
}

/// Checks that the run of `write` exists and accepts it, and that every step run it names
/// belongs to that run.
fn check_write(
    write: &MetricWrite,
    states: &HashMap<String, RunState>,
    owners: &HashMap<String, String>,
) -> Result<(), StoreError> {
    let Some(state) = states.get(&write.run_id) else {
        return Err(StoreError::RunNotFound(write.run_id.clone()));
    };
    match write.accepts {
        RunsAccepting::Open if state.status.is_final() => {
            return Err(StoreError::RunEnded {
                run_id: write.run_id.clone(),
                status: state.status,
            });
        }
        RunsAccepting::NotDeleted if state.deleted => {
            return Err(StoreError::RunDeleted(write.run_id.clone()));
        }
        _ => {}
    }
    for step_run_id in metrics::named_step_runs(&write.values) {
        if owners.get(step_run_id) != Some(&write.run_id) {
            return Err(StoreError::StepRunNotInRun {
                step_run_id: step_run_id.to_owned(),
                run_id: write.run_id.clone(),
            });
        }
    }
    Ok(())
}

/// Rows per multi-row `INSERT` of metric values. Statements of one size have one SQL text, so
/// the driver reuses its prepared statement instead of parsing thousands of placeholders anew
/// for every group.
const ROWS_PER_INSERT: usize = 256;

/// Inserts the metric rows of every accepted write, across runs.
async fn insert_rows(db: &impl ConnectionTrait, writes: &[&MetricWrite]) -> Result<(), StoreError> {
    let values: Vec<(&str, &NewMetric)> = writes
        .iter()
        .flat_map(|write| {
            write
                .values
                .iter()
                .map(|value| (write.run_id.as_str(), value))
        })
        .collect();
    for chunk in values.chunks(ROWS_PER_INSERT) {
        let rows = chunk
            .iter()
            .map(|(run_id, value)| metrics::metric_row(run_id, value));
        metric::Entity::insert_many(rows)
            .exec_without_returning(db)
            .await?;
    }
    super::super::downsample::rollup::upsert_blocks(db, values.iter().copied()).await?;
    Ok(())
}

/// Inserts or replaces the latest value of every run and key the writes touch, keeping a
/// stored value that is newer.
async fn upsert_latest(
    db: &impl ConnectionTrait,
    writes: &[&MetricWrite],
) -> Result<(), StoreError> {
    let latest: Vec<((&str, &str), &NewMetric)> = latest_per_run_key(writes).into_iter().collect();
    for chunk in latest.chunks(batch::rows_per_statement(5)) {
        let rows = chunk
            .iter()
            .map(|((run_id, key), value)| latest_metric::ActiveModel {
                run_id: Set((*run_id).to_owned()),
                key: Set((*key).to_owned()),
                value: Set(metrics::encode(value.value)),
                step: Set(value.step),
                timestamp_ms: Set(value.timestamp_ms),
            });
        let upsert =
            OnConflict::columns([latest_metric::Column::RunId, latest_metric::Column::Key])
                .update_columns([
                    latest_metric::Column::Value,
                    latest_metric::Column::Step,
                    latest_metric::Column::TimestampMs,
                ])
                .action_and_where(metrics::incoming_is_newer())
                .to_owned();
        latest_metric::Entity::insert_many(rows)
            .on_conflict(upsert)
            .exec_without_returning(db)
            .await?;
    }
    Ok(())
}

/// Picks the latest value of each run and key: the highest step, then the highest timestamp,
/// and among equals the one given last, the order the upsert keeps too.
pub(super) fn latest_per_run_key<'a>(
    writes: &[&'a MetricWrite],
) -> BTreeMap<(&'a str, &'a str), &'a NewMetric> {
    let mut latest: BTreeMap<(&str, &str), &NewMetric> = BTreeMap::new();
    for write in writes {
        for value in &write.values {
            let slot = (write.run_id.as_str(), value.key.as_str());
            let replace = latest.get(&slot).is_none_or(|held| {
                (value.step, value.timestamp_ms) >= (held.step, held.timestamp_ms)
            });
            if replace {
                latest.insert(slot, value);
            }
        }
    }
    latest
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(key: &str, value: f64, step: i64, timestamp_ms: i64) -> NewMetric {
        NewMetric {
            step_run_id: None,
            key: key.to_owned(),
            value,
            step,
            timestamp_ms,
        }
    }

    #[test]
    fn latest_value_per_run_and_key() {
        let first = MetricWrite {
            run_id: "a".into(),
            values: vec![value("loss", 3.0, 2, 10), value("loss", 1.0, 1, 20)],
            accepts: RunsAccepting::Open,
        };
        let second = MetricWrite {
            run_id: "a".into(),
            values: vec![value("loss", 2.0, 2, 10)],
            accepts: RunsAccepting::Open,
        };
        let other_run = MetricWrite {
            run_id: "b".into(),
            values: vec![value("loss", 9.0, 0, 0)],
            accepts: RunsAccepting::Open,
        };
        let latest = latest_per_run_key(&[&first, &second, &other_run]);

        assert_eq!(latest.len(), 2);
        assert_eq!(
            latest[&("a", "loss")].value,
            2.0,
            "equal order keeps the later value"
        );
        assert_eq!(latest[&("b", "loss")].value, 9.0);
    }
}
