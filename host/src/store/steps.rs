//! Step runs: creation, status changes, cache lookups and their inputs and outputs.

use super::entity::run_artifact::{self, Direction};
use super::entity::step_run::{self, StepStatus};
use super::{Store, StoreError, batch, new_id, now_ms, runs};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect,
};
use std::collections::BTreeSet;

/// Fields of a new step run, for [`Store::create_step_run`].
#[derive(Debug, Clone)]
pub struct NewStepRun {
    /// The run the step belongs to.
    pub run_id: String,
    /// Step name from the pipeline definition.
    pub name: String,
    /// Plugin name, version and digest; `None` for steps without a plugin.
    pub plugin: Option<PluginRef>,
    /// Executor kind, such as `wasm` or `external`.
    pub executor: String,
    /// Initial status, usually `pending`.
    pub status: StepStatus,
    /// Resolved params.
    pub params: serde_json::Value,
    /// Cache key, if the step may be cached.
    pub cache_key: Option<String>,
    /// Step run whose outputs this one reuses, for a cache hit.
    pub cached_from: Option<String>,
}

/// A plugin by name, version and digest.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PluginRef {
    /// Name from `plugin.toml`.
    pub name: String,
    /// Version from `plugin.toml`.
    pub version: String,
    /// Lowercase hex SHA-256 of the component.
    pub digest: String,
}

/// A status change of a step run, for [`Store::update_step_run`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepRunUpdate {
    /// The new status.
    pub status: StepStatus,
    /// The number of attempts started so far; unchanged when `None`.
    pub attempts: Option<i32>,
    /// The error; replaces the stored one, so `None` clears it.
    pub error: Option<String>,
}

impl Store {
    /// Records a new step run and returns it. A step created as `cached` or with another final
    /// status gets its start and end time set to now.
    pub async fn create_step_run(&self, new: NewStepRun) -> Result<step_run::Model, StoreError> {
        runs::require_run(&self.db, &new.run_id).await?;
        Ok(step_run::Entity::insert(step_run_row(new_id(), new))
            .exec_with_returning(&self.db)
            .await?)
    }

    /// Records new step runs in one transaction, as [`Store::create_step_run`] would record
    /// each, and returns their ids in the order given. Rows go in multi-row `INSERT`s sized to
    /// the backends' parameter limits.
    pub async fn create_step_runs(&self, new: Vec<NewStepRun>) -> Result<Vec<String>, StoreError> {
        if new.is_empty() {
            return Ok(Vec::new());
        }
        let transaction = batch::begin_write(&self.db).await?;
        let run_ids: BTreeSet<&str> = new.iter().map(|step| step.run_id.as_str()).collect();
        for run_id in run_ids {
            runs::require_run(&transaction, run_id).await?;
        }

        let ids: Vec<String> = new.iter().map(|_| new_id()).collect();
        let rows: Vec<step_run::ActiveModel> = ids
            .iter()
            .zip(new)
            .map(|(id, step)| step_run_row(id.clone(), step))
            .collect();
        for chunk in rows.chunks(batch::rows_per_statement(16)) {
            step_run::Entity::insert_many(chunk.iter().cloned())
                .exec_without_returning(&transaction)
                .await?;
        }
        transaction.commit().await?;
        Ok(ids)
    }

    /// Changes the status, attempts and error of a step run and returns it.
    ///
    /// Entering `running` sets `started_at` if it is unset and clears `ended_at`, so a step
    /// can be retried. A final status sets `ended_at`.
    pub async fn update_step_run(
        &self,
        step_run_id: &str,
        update: StepRunUpdate,
    ) -> Result<step_run::Model, StoreError> {
        let transaction = batch::begin_write(&self.db).await?;
        let current = require_step_run(&transaction, step_run_id).await?;

        let now = now_ms();
        let mut row: step_run::ActiveModel = current.clone().into();
        row.status = Set(update.status);
        row.error = Set(update.error);
        if let Some(attempts) = update.attempts {
            row.attempts = Set(attempts);
        }
        if update.status == StepStatus::Running {
            row.started_at = Set(Some(current.started_at.unwrap_or(now)));
            row.ended_at = Set(None);
        }
        if update.status.is_final() {
            row.ended_at = Set(Some(now));
        }
        let updated = step_run::Entity::update(row).exec(&transaction).await?;
        transaction.commit().await?;
        Ok(updated)
    }

    /// Sets the cache key of a step run and the step run it reused outputs from, replacing
    /// both. `cached_from` must name an existing step run.
    pub async fn set_step_cache(
        &self,
        step_run_id: &str,
        cache_key: Option<&str>,
        cached_from: Option<&str>,
    ) -> Result<(), StoreError> {
        let transaction = batch::begin_write(&self.db).await?;
        let current = require_step_run(&transaction, step_run_id).await?;
        if let Some(source) = cached_from {
            require_step_run(&transaction, source).await?;
        }

        let mut row: step_run::ActiveModel = current.into();
        row.cache_key = Set(cache_key.map(str::to_owned));
        row.cached_from = Set(cached_from.map(str::to_owned));
        step_run::Entity::update(row).exec(&transaction).await?;
        transaction.commit().await?;
        Ok(())
    }

    /// Returns the step run with this id, if any.
    pub async fn get_step_run(
        &self,
        step_run_id: &str,
    ) -> Result<Option<step_run::Model>, StoreError> {
        Ok(step_run::Entity::find_by_id(step_run_id)
            .one(&self.db)
            .await?)
    }

    /// Lists the step runs of a run in creation order.
    pub async fn list_step_runs(&self, run_id: &str) -> Result<Vec<step_run::Model>, StoreError> {
        Ok(step_run::Entity::find()
            .filter(step_run::Column::RunId.eq(run_id))
            .order_by_asc(step_run::Column::CreatedAt)
            .order_by_asc(step_run::Column::Id)
            .all(&self.db)
            .await?)
    }

    /// Returns the most recent step run with this cache key that succeeded or was itself a
    /// cache hit, across all runs. Its outputs are the ones a new step with the key can reuse.
    pub async fn find_cached_step_run(
        &self,
        cache_key: &str,
    ) -> Result<Option<step_run::Model>, StoreError> {
        Ok(step_run::Entity::find()
            .filter(step_run::Column::CacheKey.eq(cache_key))
            .filter(step_run::Column::Status.is_in([StepStatus::Succeeded, StepStatus::Cached]))
            .order_by_desc(step_run::Column::CreatedAt)
            .order_by_desc(step_run::Column::Id)
            .one(&self.db)
            .await?)
    }

    /// Lists the artifacts a step run produced, by name.
    pub async fn step_outputs(
        &self,
        step_run_id: &str,
    ) -> Result<Vec<run_artifact::Model>, StoreError> {
        step_artifacts(&self.db, step_run_id, Direction::Output).await
    }

    /// Lists the artifacts a step run consumed, by name.
    pub async fn step_inputs(
        &self,
        step_run_id: &str,
    ) -> Result<Vec<run_artifact::Model>, StoreError> {
        step_artifacts(&self.db, step_run_id, Direction::Input).await
    }
}

/// Builds the row of a new step run. A step created as `cached` or with another final status
/// gets its start and end time set to now.
fn step_run_row(id: String, new: NewStepRun) -> step_run::ActiveModel {
    let now = now_ms();
    let ended_at = new.status.is_final().then_some(now);
    let started_at = (new.status != StepStatus::Pending).then_some(now);
    let (plugin_name, plugin_version, plugin_digest) = match new.plugin {
        Some(plugin) => (Some(plugin.name), Some(plugin.version), Some(plugin.digest)),
        None => (None, None, None),
    };
    step_run::ActiveModel {
        id: Set(id),
        run_id: Set(new.run_id),
        name: Set(new.name),
        plugin_name: Set(plugin_name),
        plugin_version: Set(plugin_version),
        plugin_digest: Set(plugin_digest),
        executor: Set(new.executor),
        status: Set(new.status),
        attempts: Set(0),
        created_at: Set(now),
        started_at: Set(started_at),
        ended_at: Set(ended_at),
        params_json: Set(new.params),
        cache_key: Set(new.cache_key),
        cached_from: Set(new.cached_from),
        error: Set(None),
    }
}

/// Returns the step run with this id or [`StoreError::StepRunNotFound`].
pub(super) async fn require_step_run(
    db: &impl ConnectionTrait,
    step_run_id: &str,
) -> Result<step_run::Model, StoreError> {
    step_run::Entity::find_by_id(step_run_id)
        .one(db)
        .await?
        .ok_or_else(|| StoreError::StepRunNotFound(step_run_id.to_owned()))
}

async fn step_artifacts(
    db: &impl ConnectionTrait,
    step_run_id: &str,
    direction: Direction,
) -> Result<Vec<run_artifact::Model>, StoreError> {
    Ok(run_artifact::Entity::find()
        .filter(run_artifact::Column::StepRunId.eq(step_run_id))
        .filter(run_artifact::Column::Direction.eq(direction))
        .order_by_asc(run_artifact::Column::Name)
        .all(db)
        .await?)
}

/// Locks the step run's row until the transaction ends, on backends with row locks, and fails
/// if it does not exist.
pub(super) async fn lock_step_run(
    db: &impl ConnectionTrait,
    step_run_id: &str,
) -> Result<step_run::Model, StoreError> {
    step_run::Entity::find_by_id(step_run_id)
        .lock_exclusive()
        .one(db)
        .await?
        .ok_or_else(|| StoreError::StepRunNotFound(step_run_id.to_owned()))
}
