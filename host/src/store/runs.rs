//! Runs: creation, status changes, listing and recovery of runs whose process died.

use super::entity::run::{self, RunSource, RunStatus};
use super::entity::step_run::StepStatus;
use super::entity::{pipeline, run_tag, step_run};
use super::{Store, StoreError, batch, new_id, now_ms, projects};
use sea_orm::sea_query::{Expr, Query};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, Condition, ConnectionTrait, EntityTrait, ExprTrait, JoinType,
    QueryFilter, QueryOrder, QuerySelect, RelationTrait,
};

/// Fields of a new run, for [`Store::create_run`].
#[derive(Debug, Clone)]
pub struct NewRun {
    /// Project name; created on first use. [`DEFAULT_PROJECT`](super::DEFAULT_PROJECT) when the
    /// caller has no project.
    pub project: String,
    /// Pipeline definition from [`Store::ensure_pipeline`]; `None` for external runs.
    pub pipeline_id: Option<i64>,
    /// Display name.
    pub name: String,
    /// Origin of the run: command line, API, schedule or external client.
    pub source: RunSource,
    /// User or API token name that started the run.
    pub user_name: String,
    /// Seed of the run's deterministic randomness, if any.
    pub seed: Option<i64>,
    /// The process that will execute the run, if one already does.
    pub owner: Option<RunOwner>,
}

/// The process executing a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunOwner {
    /// Process id.
    pub pid: u32,
    /// Host name of the machine the process runs on.
    pub hostname: String,
}

/// Filters of [`Store::list_runs`]. Every filter that is set must match.
#[derive(Debug, Clone, Default)]
pub struct RunFilter {
    /// Only runs of this project.
    pub project: Option<String>,
    /// Only runs of pipelines with this name.
    pub pipeline_name: Option<String>,
    /// Only runs with this status.
    pub status: Option<RunStatus>,
    /// Only runs that have all these tags, as key and value.
    pub tags: Vec<(String, String)>,
    /// At most this many runs, newest first; all when `None`.
    pub limit: Option<u64>,
}

impl Store {
    /// Records a new run with status `queued` and returns it.
    pub async fn create_run(&self, new: NewRun) -> Result<run::Model, StoreError> {
        let project = projects::ensure_project(&self.db, &new.project).await?;
        let (owner_pid, owner_hostname) = match new.owner {
            Some(owner) => (Some(i64::from(owner.pid)), Some(owner.hostname)),
            None => (None, None),
        };
        let row = run::ActiveModel {
            id: Set(new_id()),
            project_id: Set(project.id),
            pipeline_id: Set(new.pipeline_id),
            name: Set(new.name),
            status: Set(RunStatus::Queued),
            source: Set(new.source),
            user_name: Set(new.user_name),
            seed: Set(new.seed),
            created_at: Set(now_ms()),
            started_at: Set(None),
            ended_at: Set(None),
            error: Set(None),
            owner_pid: Set(owner_pid),
            owner_hostname: Set(owner_hostname),
        };
        let run = run::Entity::insert(row)
            .exec_with_returning(&self.db)
            .await?;
        tracing::debug!(run_id = %run.id, "run created");
        Ok(run)
    }

    /// Returns the run with this id, if any.
    pub async fn get_run(&self, run_id: &str) -> Result<Option<run::Model>, StoreError> {
        Ok(run::Entity::find_by_id(run_id).one(&self.db).await?)
    }

    /// Returns the run with this id or [`StoreError::RunNotFound`].
    pub async fn require_run(&self, run_id: &str) -> Result<run::Model, StoreError> {
        require_run(&self.db, run_id).await
    }

    /// Sets the status of a run and returns the updated run.
    ///
    /// Entering `running` sets `started_at` if it is unset; a final status sets `ended_at`.
    /// `error` replaces the stored error, so pass `None` on success. Setting the status a run
    /// already has changes nothing else. A run that has ended cannot change status again and
    /// returns [`StoreError::RunAlreadyEnded`].
    pub async fn set_run_status(
        &self,
        run_id: &str,
        status: RunStatus,
        error: Option<String>,
    ) -> Result<run::Model, StoreError> {
        let transaction = batch::begin_write(&self.db).await?;
        let current = require_run(&transaction, run_id).await?;
        if current.status == status {
            return Ok(current);
        }
        if current.status.is_final() {
            return Err(StoreError::RunAlreadyEnded {
                run_id: run_id.to_owned(),
                status: current.status,
            });
        }

        let now = now_ms();
        let mut row: run::ActiveModel = current.clone().into();
        row.status = Set(status);
        row.error = Set(error);
        if status == RunStatus::Running && current.started_at.is_none() {
            row.started_at = Set(Some(now));
        }
        if status.is_final() {
            row.ended_at = Set(Some(now));
        }
        let updated = run::Entity::update(row).exec(&transaction).await?;
        transaction.commit().await?;
        tracing::debug!(run_id, %status, "run status changed");
        Ok(updated)
    }

    /// Records `owner` as the process executing the run.
    pub async fn set_run_owner(&self, run_id: &str, owner: &RunOwner) -> Result<(), StoreError> {
        let result = run::Entity::update_many()
            .col_expr(run::Column::OwnerPid, Expr::value(i64::from(owner.pid)))
            .col_expr(
                run::Column::OwnerHostname,
                Expr::value(owner.hostname.clone()),
            )
            .filter(run::COLUMN.id.eq(run_id))
            .exec(&self.db)
            .await?;
        if result.rows_affected == 0 {
            return Err(StoreError::RunNotFound(run_id.to_owned()));
        }
        Ok(())
    }

    /// Lists runs matching `filter`, newest first.
    pub async fn list_runs(&self, filter: &RunFilter) -> Result<Vec<run::Model>, StoreError> {
        let mut query = run::Entity::find();
        if let Some(project) = &filter.project {
            query = query
                .join(JoinType::InnerJoin, run::Relation::Project.def())
                .filter(super::entity::project::COLUMN.name.eq(project));
        }
        if let Some(pipeline_name) = &filter.pipeline_name {
            query = query
                .join(JoinType::InnerJoin, run::Relation::Pipeline.def())
                .filter(pipeline::COLUMN.name.eq(pipeline_name));
        }
        if let Some(status) = filter.status {
            query = query.filter(run::COLUMN.status.eq(status));
        }
        for (key, value) in &filter.tags {
            query = query.filter(run::Column::Id.in_subquery(tagged_runs(key, value)));
        }

        let query = query
            .order_by_desc(run::Column::CreatedAt)
            .order_by_desc(run::Column::Id)
            .limit(filter.limit);
        Ok(query.all(&self.db).await?)
    }

    /// Marks as `interrupted` every queued or running run owned by a process on `hostname` for
    /// which `is_alive(pid)` returns false, cancels their unfinished step runs, and returns the
    /// ids of the runs it marked.
    ///
    /// Call it at startup with a check of the operating system's process table. Runs without an
    /// owner, such as runs queued through the API and not yet claimed, are left alone.
    #[tracing::instrument(name = "runledger.store.mark_interrupted", skip(self, is_alive))]
    pub async fn mark_interrupted(
        &self,
        hostname: &str,
        is_alive: impl Fn(u32) -> bool,
    ) -> Result<Vec<String>, StoreError> {
        let candidates = run::Entity::find()
            .filter(run::COLUMN.owner_hostname.eq(hostname))
            .filter(
                run::COLUMN
                    .status
                    .is_in([RunStatus::Queued, RunStatus::Running]),
            )
            .all(&self.db)
            .await?;

        let mut marked = Vec::new();
        for run in candidates {
            let Some(pid) = run.owner_pid.and_then(|pid| u32::try_from(pid).ok()) else {
                continue;
            };
            if is_alive(pid) {
                continue;
            }
            if self.interrupt_run(&run.id, pid).await? {
                tracing::warn!(run_id = %run.id, pid, "marked run interrupted: its process is gone");
                marked.push(run.id);
            }
        }
        Ok(marked)
    }

    /// Marks one run interrupted unless it ended meanwhile. Returns whether it did.
    async fn interrupt_run(&self, run_id: &str, pid: u32) -> Result<bool, StoreError> {
        let now = now_ms();
        let message = format!("interrupted: the owning process {pid} exited before the run ended");
        let transaction = batch::begin_write(&self.db).await?;

        let updated = run::Entity::update_many()
            .col_expr(run::Column::Status, Expr::value(RunStatus::Interrupted))
            .col_expr(run::Column::EndedAt, Expr::value(now))
            .col_expr(run::Column::Error, Expr::value(message.clone()))
            .filter(run::COLUMN.id.eq(run_id))
            .filter(
                run::COLUMN
                    .status
                    .is_in([RunStatus::Queued, RunStatus::Running]),
            )
            .exec(&transaction)
            .await?;
        if updated.rows_affected == 0 {
            return Ok(false);
        }

        step_run::Entity::update_many()
            .col_expr(step_run::Column::Status, Expr::value(StepStatus::Cancelled))
            .col_expr(step_run::Column::EndedAt, Expr::value(now))
            .col_expr(step_run::Column::Error, Expr::value(message))
            .filter(step_run::COLUMN.run_id.eq(run_id))
            .filter(
                step_run::COLUMN
                    .status
                    .is_in([StepStatus::Pending, StepStatus::Running]),
            )
            .exec(&transaction)
            .await?;
        transaction.commit().await?;
        Ok(true)
    }
}

/// Returns the run with this id or [`StoreError::RunNotFound`].
pub(super) async fn require_run(
    db: &impl ConnectionTrait,
    run_id: &str,
) -> Result<run::Model, StoreError> {
    run::Entity::find_by_id(run_id)
        .one(db)
        .await?
        .ok_or_else(|| StoreError::RunNotFound(run_id.to_owned()))
}

/// `SELECT run_id FROM run_tags WHERE key = ? AND value = ?`.
fn tagged_runs(key: &str, value: &str) -> sea_orm::sea_query::SelectStatement {
    Query::select()
        .column(run_tag::Column::RunId)
        .from(run_tag::Entity)
        .cond_where(
            Condition::all()
                .add(Expr::col(run_tag::Column::Key).eq(key))
                .add(Expr::col(run_tag::Column::Value).eq(value)),
        )
        .to_owned()
}
