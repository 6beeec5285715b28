//! Writes of runs that execute elsewhere and report over the API: creating the run, params,
//! tags, metric values, the environment and the final status. Step runs and artifacts of such
//! runs are in [`steps`], and grouped metric writes of many runs in [`metric_group`] and, on a
//! SQLite file, [`sqlite_committer`].
//!
//! Every write checks, in its own transaction, that the run has not ended. On PostgreSQL it
//! also locks the run's row. A concurrent finish then waits until the write commits, and a
//! write that comes after the finish reads the final status. SQLite's write lock does the same.

mod metric_group;
mod sqlite_committer;
mod steps;

pub use metric_group::{MetricWrite, RunsAccepting};
pub use sqlite_committer::SqliteCommitter;
pub use steps::{ClientArtifact, ClientStepChange, NewClientStep};

use super::entity::run::{self, RunSource, RunStatus};
use super::entity::step_run::{self, StepStatus};
use super::entity::{environment, project};
use super::environments::EnvironmentSnapshot;
use super::{NewMetric, Store, StoreError, batch, metrics, new_id, now_ms, params, projects};
use sea_orm::sea_query::{Expr, LockType, OnConflict};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QuerySelect,
};

/// Fields of a run that executes elsewhere, for [`Store::create_external_run`].
#[derive(Debug, Clone)]
pub struct NewExternalRun {
    /// Project name, created on first use.
    pub project: String,
    /// Display name.
    pub name: String,
    /// User or API token name that reported the run.
    pub user_name: String,
    /// Time the run started, in milliseconds since the Unix epoch, or now when `None`.
    pub started_at: Option<i64>,
    /// Params, immutable once recorded.
    pub params: Vec<(String, String)>,
    /// Tags.
    pub tags: Vec<(String, String)>,
}

/// A run together with the name of its project.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExternalRunRecord {
    /// The run.
    pub run: run::Model,
    /// Name of its project.
    pub project: String,
}

/// Metric values, params and tags of one run, for [`Store::log_run_batch`].
#[derive(Debug, Clone, Default)]
pub struct RunBatch {
    /// Metric values, with the rules of [`Store::log_metrics`].
    pub metrics: Vec<NewMetric>,
    /// Params, with the rules of [`Store::log_params`].
    pub params: Vec<(String, String)>,
    /// Tags, with the rules of [`Store::set_tags`].
    pub tags: Vec<(String, String)>,
}

/// The end of a run that executes elsewhere, for [`Store::finish_external_run`].
#[derive(Debug, Clone)]
pub struct RunFinish {
    /// The final status: succeeded, failed or cancelled.
    pub status: RunStatus,
    /// Reason the run failed or was cancelled.
    pub error: Option<String>,
    /// Time the run ended, in milliseconds since the Unix epoch, or now when `None`.
    pub ended_at: Option<i64>,
}

/// Kind of run a write accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Accepts {
    /// Any run that has not ended, pipeline runs included.
    OpenRun,
    /// Only runs with source `external` that have not ended.
    OpenExternalRun,
}

impl Store {
    /// Records a run that executes elsewhere, with status `running` and source `external`,
    /// together with its params and tags, in one transaction.
    pub async fn create_external_run(
        &self,
        new: NewExternalRun,
    ) -> Result<ExternalRunRecord, StoreError> {
        let transaction = batch::begin_write(&self.db).await?;
        let project = projects::ensure_project(&transaction, &new.project).await?;
        let now = now_ms();
        let row = run::ActiveModel {
            id: Set(new_id()),
            project_id: Set(project.id),
            pipeline_id: Set(None),
            name: Set(new.name),
            status: Set(RunStatus::Running),
            source: Set(RunSource::External),
            user_name: Set(new.user_name),
            seed: Set(None),
            created_at: Set(now),
            started_at: Set(Some(new.started_at.unwrap_or(now))),
            ended_at: Set(None),
            error: Set(None),
            owner_pid: Set(None),
            owner_hostname: Set(None),
        };
        let run = run::Entity::insert(row)
            .exec_with_returning(&transaction)
            .await?;

        let batch = RunBatch {
            params: new.params,
            tags: new.tags,
            metrics: Vec::new(),
        };
        write_batch(&transaction, &run.id, &batch).await?;
        transaction.commit().await?;
        tracing::info!(run_id = %run.id, project = %project.name, "external run created");
        Ok(ExternalRunRecord {
            run,
            project: project.name,
        })
    }

    /// Records metric values, params and tags of a run that has not ended, in one transaction.
    ///
    /// Either all of `batch` is recorded or, on any error, none of it. A run that has ended
    /// fails with [`StoreError::RunEnded`], and a changed param with
    /// [`StoreError::ParamConflict`].
    pub async fn log_run_batch(&self, run_id: &str, batch: &RunBatch) -> Result<(), StoreError> {
        let transaction = batch::begin_write(&self.db).await?;
        lock_open_run(&transaction, run_id, Accepts::OpenRun, LockType::Share).await?;
        write_batch(&transaction, run_id, batch).await?;
        transaction.commit().await?;
        Ok(())
    }

    /// Deletes a tag of a run that has not ended. Deleting a tag the run does not have is not
    /// an error.
    pub async fn delete_run_tag(&self, run_id: &str, key: &str) -> Result<(), StoreError> {
        let transaction = batch::begin_write(&self.db).await?;
        lock_open_run(&transaction, run_id, Accepts::OpenRun, LockType::Share).await?;
        super::entity::run_tag::Entity::delete_many()
            .filter(super::entity::run_tag::Column::RunId.eq(run_id))
            .filter(super::entity::run_tag::Column::Key.eq(key))
            .exec(&transaction)
            .await?;
        transaction.commit().await?;
        Ok(())
    }

    /// Stores the environment a client reported for an external run that has not ended,
    /// replacing an earlier one.
    pub async fn put_client_environment(
        &self,
        run_id: &str,
        snapshot: &EnvironmentSnapshot,
    ) -> Result<(), StoreError> {
        let json = serde_json::to_value(snapshot).map_err(|source| StoreError::InvalidJson {
            document: format!("environment snapshot of run {run_id}"),
            source,
        })?;
        let transaction = batch::begin_write(&self.db).await?;
        let accepts = Accepts::OpenExternalRun;
        lock_open_run(&transaction, run_id, accepts, LockType::Share).await?;
        let row = environment::ActiveModel {
            run_id: Set(run_id.to_owned()),
            snapshot_json: Set(json),
        };
        let upsert = OnConflict::column(environment::Column::RunId)
            .update_column(environment::Column::SnapshotJson)
            .to_owned();
        environment::Entity::insert(row)
            .on_conflict(upsert)
            .exec_without_returning(&transaction)
            .await?;
        transaction.commit().await?;
        Ok(())
    }

    /// Ends an external run with a final status and returns it.
    ///
    /// Step runs still pending or running are cancelled with the run. A run that has ended
    /// fails with [`StoreError::RunEnded`], and a run that runledger executes with
    /// [`StoreError::RunNotExternal`].
    pub async fn finish_external_run(
        &self,
        run_id: &str,
        finish: RunFinish,
    ) -> Result<ExternalRunRecord, StoreError> {
        let transaction = batch::begin_write(&self.db).await?;
        let accepts = Accepts::OpenExternalRun;
        let current = lock_open_run(&transaction, run_id, accepts, LockType::Update).await?;

        let now = now_ms();
        let mut row: run::ActiveModel = current.clone().into();
        row.status = Set(finish.status);
        row.error = Set(finish.error);
        row.ended_at = Set(Some(finish.ended_at.unwrap_or(now)));
        let run = run::Entity::update(row).exec(&transaction).await?;
        cancel_unfinished_steps(&transaction, run_id, finish.status, now).await?;
        let project = project::Entity::find_by_id(run.project_id)
            .one(&transaction)
            .await?
            .map(|project| project.name)
            .unwrap_or_default();
        transaction.commit().await?;

        tracing::info!(run_id, status = %run.status, "external run finished");
        Ok(ExternalRunRecord { run, project })
    }
}

/// Returns the run with this id, with its row locked until the transaction ends on backends
/// with row locks, after checking that it has not ended and that `accepts` allows it.
async fn lock_open_run(
    db: &impl ConnectionTrait,
    run_id: &str,
    accepts: Accepts,
    lock: LockType,
) -> Result<run::Model, StoreError> {
    let run = run::Entity::find_by_id(run_id)
        .lock(lock)
        .one(db)
        .await?
        .ok_or_else(|| StoreError::RunNotFound(run_id.to_owned()))?;
    if run.status.is_final() {
        return Err(StoreError::RunEnded {
            run_id: run_id.to_owned(),
            status: run.status,
        });
    }
    if accepts == Accepts::OpenExternalRun && run.source != RunSource::External {
        return Err(StoreError::RunNotExternal {
            run_id: run_id.to_owned(),
            origin: run.source,
        });
    }
    Ok(run)
}

/// Writes params, tags and metric values of a run the caller has checked.
async fn write_batch(
    db: &impl ConnectionTrait,
    run_id: &str,
    batch: &RunBatch,
) -> Result<(), StoreError> {
    let distinct: Vec<(String, String)> = params::distinct_params(run_id, &batch.params)?
        .into_iter()
        .collect();
    for chunk in distinct.chunks(batch::rows_per_statement(3)) {
        params::insert_params(db, run_id, chunk).await?;
    }
    params::upsert_tags(db, run_id, &batch.tags).await?;
    let named = metrics::named_step_runs(&batch.metrics);
    metrics::check_step_runs(db, run_id, named).await?;
    metrics::insert_metrics(db, run_id, &batch.metrics).await
}

/// Cancels the step runs of a run that are still pending or running when it ends.
async fn cancel_unfinished_steps(
    db: &impl ConnectionTrait,
    run_id: &str,
    run_status: RunStatus,
    now: i64,
) -> Result<(), StoreError> {
    let message = format!("the run ended as {run_status} before this step reported its end");
    step_run::Entity::update_many()
        .col_expr(step_run::Column::Status, Expr::value(StepStatus::Cancelled))
        .col_expr(step_run::Column::EndedAt, Expr::value(now))
        .col_expr(step_run::Column::Error, Expr::value(message))
        .filter(step_run::Column::RunId.eq(run_id))
        .filter(step_run::Column::Status.is_in([StepStatus::Pending, StepStatus::Running]))
        .exec(db)
        .await?;
    Ok(())
}
