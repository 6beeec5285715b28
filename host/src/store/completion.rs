//! The writes of a step's lifecycle: starting an attempt, recording an attempt that will be
//! retried, and completing the step with everything it left.
//!
//! Each is one statement or one transaction. The pipeline engine makes them for every step, and
//! on SQLite every statement is a round trip to the connection's worker thread, so these calls
//! check that rows exist through the row counts of their updates instead of reading first.

use super::artifact_records::{self, NewArtifact, NewStepLink, check_digest};
use super::entity::step_run::{self, StepStatus};
use super::{NewEdge, NewLogLine, NewMetric, Store, StoreError, batch};
use super::{lineage, logs, metrics, now_ms, runs, steps};
use sea_orm::sea_query::{Expr, Func};
use sea_orm::{ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, SqlErr};

/// The final state of a step run and everything it left, for [`Store::complete_step`].
#[derive(Debug, Clone, PartialEq)]
pub struct StepCompletion {
    /// The run the step belongs to.
    pub run_id: String,
    /// The step run.
    pub step_run_id: String,
    /// The final status.
    pub status: StepStatus,
    /// The number of attempts started.
    pub attempts: i32,
    /// The error message. It replaces the stored one, so `None` clears it.
    pub error: Option<String>,
    /// The cache key. It replaces the stored one when set, and `None` leaves that unchanged.
    pub cache_key: Option<String>,
    /// The existing step run whose outputs this one reused. It replaces the stored one, so
    /// `None` clears it.
    pub cached_from: Option<String>,
    /// Log lines, appended after the lines the step run already has.
    pub logs: Vec<NewLogLine>,
    /// Metric values, with the rules of [`Store::log_metrics`].
    pub metrics: Vec<NewMetric>,
    /// Artifact metadata, with the rules of [`Store::record_artifact`].
    pub artifacts: Vec<NewArtifact>,
    /// Inputs and outputs of the step run, with the rules of [`Store::link_artifact`]. Their
    /// metadata must be recorded already or be among `artifacts`.
    pub links: Vec<NewStepLink>,
    /// Lineage edges, with the rules of [`Store::add_edges`].
    pub edges: Vec<NewEdge>,
}

impl StepCompletion {
    /// Creates a completion that changes only the step run's status, attempts and end time,
    /// and clears its error and `cached_from`.
    pub fn new(run_id: &str, step_run_id: &str, status: StepStatus, attempts: i32) -> Self {
        Self {
            run_id: run_id.to_owned(),
            step_run_id: step_run_id.to_owned(),
            status,
            attempts,
            error: None,
            cache_key: None,
            cached_from: None,
            logs: Vec::new(),
            metrics: Vec::new(),
            artifacts: Vec::new(),
            links: Vec::new(),
            edges: Vec::new(),
        }
    }
}

impl Store {
    /// Marks a step run as running attempt number `attempt`, in one statement.
    ///
    /// Sets the cache key, replacing the stored one so that `None` clears it, and clears
    /// `cached_from`, the end time and the error. `started_at` is set on the first attempt and
    /// kept on retries.
    pub async fn start_step_attempt(
        &self,
        step_run_id: &str,
        attempt: i32,
        cache_key: Option<&str>,
    ) -> Result<(), StoreError> {
        let first_start = Func::coalesce([
            Expr::col(step_run::Column::StartedAt),
            Expr::value(now_ms()),
        ]);
        let updated = step_run::Entity::update_many()
            .col_expr(step_run::Column::Status, Expr::value(StepStatus::Running))
            .col_expr(step_run::Column::Attempts, Expr::value(attempt))
            .col_expr(step_run::Column::CacheKey, Expr::value(cache_key))
            .col_expr(step_run::Column::CachedFrom, Expr::value(None::<String>))
            .col_expr(step_run::Column::StartedAt, first_start.into())
            .col_expr(step_run::Column::EndedAt, Expr::value(None::<i64>))
            .col_expr(step_run::Column::Error, Expr::value(None::<String>))
            .filter(step_run::Column::Id.eq(step_run_id))
            .exec(&self.db)
            .await?;
        if updated.rows_affected == 0 {
            return Err(StoreError::StepRunNotFound(step_run_id.to_owned()));
        }
        Ok(())
    }

    /// Records the log lines and metric values of an attempt that will be retried, in one
    /// transaction, with the rules of [`Store::append_step_logs`] and [`Store::log_metrics`].
    pub async fn record_step_attempt(
        &self,
        run_id: &str,
        step_run_id: &str,
        logs: &[NewLogLine],
        metrics: &[NewMetric],
    ) -> Result<(), StoreError> {
        if logs.is_empty() && metrics.is_empty() {
            return Ok(());
        }
        let transaction = batch::begin_write(&self.db).await?;

        // The row lock keeps concurrent writers to the step run's logs out, as in
        // `append_step_logs`, and the row shows whether the step run belongs to the run.
        let step_run = steps::lock_step_run(&transaction, step_run_id).await?;
        if step_run.run_id != run_id {
            return Err(not_in_run(&transaction, run_id, step_run_id).await);
        }
        logs::insert_numbered(&transaction, step_run_id, logs).await?;
        record_metrics(&transaction, run_id, step_run_id, metrics).await?;
        transaction.commit().await?;
        Ok(())
    }

    /// Completes a step run in one transaction: sets its final status, attempts, error, cache
    /// fields and end time, and records the log lines, metrics, artifact metadata, links and
    /// lineage edges of `completion`.
    ///
    /// Either all of it is committed or, on any error, none of it. A status that is not final
    /// fails with [`StoreError::StepStatusNotFinal`]. Rows go in multi-row statements sized to
    /// the backends' parameter limits.
    pub async fn complete_step(&self, completion: &StepCompletion) -> Result<(), StoreError> {
        check_completion(completion)?;
        let transaction = batch::begin_write(&self.db).await?;
        write_completion(&transaction, completion).await?;
        transaction.commit().await?;
        Ok(())
    }
}

/// Writes a checked completion inside the caller's write transaction, as
/// [`Store::complete_step`] does.
pub(super) async fn write_completion(
    db: &impl ConnectionTrait,
    completion: &StepCompletion,
) -> Result<(), StoreError> {
    // The update comes first. On PostgreSQL its row lock makes other completions and log
    // appends of this step run wait for the commit, so the log numbers and link checks
    // below cannot race with them. SQLite's write lock makes every other writer wait.
    finish_step_run(db, completion).await?;
    record_artifacts(db, completion).await?;
    logs::insert_numbered(db, &completion.step_run_id, &completion.logs).await?;
    let (run_id, step_run_id) = (&completion.run_id, &completion.step_run_id);
    record_metrics(db, run_id, step_run_id, &completion.metrics).await?;
    lineage::record_edges(db, &completion.edges, Some(run_id)).await
}

/// Checks what needs no database: the status and the digests.
pub(super) fn check_completion(completion: &StepCompletion) -> Result<(), StoreError> {
    if !completion.status.is_final() {
        return Err(StoreError::StepStatusNotFinal {
            step_run_id: completion.step_run_id.clone(),
            status: completion.status,
        });
    }
    for artifact in &completion.artifacts {
        check_digest(&artifact.digest)?;
    }
    for link in &completion.links {
        check_digest(&link.digest)?;
    }
    lineage::check_edges(&completion.edges)
}

/// Sets the final fields of the step run. The row count of the update shows whether the step
/// run exists and belongs to the run, so no read precedes it.
async fn finish_step_run(
    db: &impl ConnectionTrait,
    completion: &StepCompletion,
) -> Result<(), StoreError> {
    let mut update = step_run::Entity::update_many()
        .col_expr(step_run::Column::Status, Expr::value(completion.status))
        .col_expr(step_run::Column::Attempts, Expr::value(completion.attempts))
        .col_expr(
            step_run::Column::Error,
            Expr::value(completion.error.clone()),
        )
        .col_expr(
            step_run::Column::CachedFrom,
            Expr::value(completion.cached_from.clone()),
        )
        .col_expr(step_run::Column::EndedAt, Expr::value(now_ms()));
    if let Some(key) = &completion.cache_key {
        update = update.col_expr(step_run::Column::CacheKey, Expr::value(key.clone()));
    }

    let updated = update
        .filter(step_run::Column::Id.eq(&completion.step_run_id))
        .filter(step_run::Column::RunId.eq(&completion.run_id))
        .exec(db)
        .await
        .map_err(|error| dangling_source(error, completion))?;
    if updated.rows_affected == 0 {
        return Err(not_in_run(db, &completion.run_id, &completion.step_run_id).await);
    }
    Ok(())
}

/// Turns the foreign key error of a `cached_from` that names no step run into
/// [`StoreError::StepRunNotFound`]. The update changes no other column with a foreign key.
fn dangling_source(error: DbErr, completion: &StepCompletion) -> StoreError {
    let foreign_key = matches!(
        error.sql_err(),
        Some(SqlErr::ForeignKeyConstraintViolation(_))
    );
    match &completion.cached_from {
        Some(source) if foreign_key => StoreError::StepRunNotFound(source.clone()),
        _ => StoreError::Database(error),
    }
}

/// Explains why no step run `step_run_id` of run `run_id` was found: the run or the step run
/// is missing, or the step run belongs to another run.
async fn not_in_run(db: &impl ConnectionTrait, run_id: &str, step_run_id: &str) -> StoreError {
    if let Err(error) = runs::require_run(db, run_id).await {
        return error;
    }
    match steps::require_step_run(db, step_run_id).await {
        Err(error) => error,
        Ok(_) => StoreError::StepRunNotInRun {
            step_run_id: step_run_id.to_owned(),
            run_id: run_id.to_owned(),
        },
    }
}

/// Records the artifact metadata, checks it and every linked digest in one read, and links
/// the step run's inputs and outputs.
async fn record_artifacts(
    db: &impl ConnectionTrait,
    completion: &StepCompletion,
) -> Result<(), StoreError> {
    artifact_records::insert_artifacts(db, &completion.artifacts).await?;
    let linked = completion.links.iter().map(|link| link.digest.as_str());
    artifact_records::check_recorded(db, &completion.artifacts, linked).await?;
    artifact_records::insert_step_links(
        db,
        &completion.run_id,
        &completion.step_run_id,
        &completion.links,
    )
    .await
}

/// Records metric values of `run_id`, checking only the step runs they name other than
/// `step_run_id`, which the caller has checked.
async fn record_metrics(
    db: &impl ConnectionTrait,
    run_id: &str,
    step_run_id: &str,
    values: &[NewMetric],
) -> Result<(), StoreError> {
    let mut named = metrics::named_step_runs(values);
    named.remove(step_run_id);
    metrics::check_step_runs(db, run_id, named).await?;
    metrics::insert_metrics(db, run_id, values).await
}
