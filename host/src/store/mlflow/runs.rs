//! Runs seen as MLflow runs: lifecycle, updates in any direction, and writes that MLflow
//! accepts on runs that have ended.

use super::LifecycleStage;
use super::entity::run_state;
use crate::store::entity::run::{self, RunStatus};
use crate::store::entity::{latest_metric, metric, run_artifact};
use crate::store::lineage::{self, NewEdge, Node};
use crate::store::{
    LinkedArtifact, MetricPoint, RunBatch, Store, StoreError, batch, metrics, now_ms, params, runs,
};
use sea_orm::sea_query::OnConflict;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect,
};
use std::collections::HashMap;

impl Store {
    /// Returns the lifecycle stage of each of `run_ids` that is deleted; the others are active.
    pub async fn mlflow_deleted_runs(
        &self,
        run_ids: &[String],
    ) -> Result<HashMap<String, LifecycleStage>, StoreError> {
        let mut stages = HashMap::new();
        for chunk in run_ids.chunks(batch::rows_per_statement(1)) {
            let rows = run_state::Entity::find()
                .filter(run_state::Column::RunId.is_in(chunk.iter().map(String::as_str)))
                .all(&self.db)
                .await?;
            for row in rows {
                stages.insert(row.run_id, LifecycleStage::parse(&row.lifecycle_stage));
            }
        }
        Ok(stages)
    }

    /// Moves a run to the trash or out of it.
    pub async fn mlflow_set_run_stage(
        &self,
        run_id: &str,
        stage: LifecycleStage,
    ) -> Result<(), StoreError> {
        let transaction = batch::begin_write(&self.db).await?;
        runs::require_run(&transaction, run_id).await?;
        match stage {
            LifecycleStage::Deleted => {
                mark_deleted(&transaction, &[run_id.to_owned()], now_ms()).await?;
            }
            LifecycleStage::Active => {
                run_state::Entity::delete_by_id(run_id)
                    .exec(&transaction)
                    .await?;
            }
        }
        transaction.commit().await?;
        tracing::info!(run_id, stage = stage.as_str(), "mlflow run stage changed");
        Ok(())
    }

    /// Changes the status, end time or name of a run and returns it.
    ///
    /// Unlike [`Store::set_run_status`], any status may follow any other, because MLflow
    /// clients resume ended runs. A final status sets `ended_at` to `end_time`, or now; a
    /// status that is not final clears it. `end_time` alone changes only `ended_at`.
    pub async fn mlflow_update_run(
        &self,
        run_id: &str,
        status: Option<RunStatus>,
        end_time: Option<i64>,
        name: Option<String>,
    ) -> Result<run::Model, StoreError> {
        let transaction = batch::begin_write(&self.db).await?;
        let current = runs::require_run(&transaction, run_id).await?;
        let mut row: run::ActiveModel = current.clone().into();
        if let Some(status) = status {
            row.status = Set(status);
            if status.is_final() {
                row.ended_at = Set(Some(end_time.unwrap_or_else(now_ms)));
            } else {
                row.ended_at = Set(None);
            }
        } else if let Some(end_time) = end_time {
            row.ended_at = Set(Some(end_time));
        }
        if let Some(name) = name {
            params::upsert_tags(
                &transaction,
                run_id,
                &[("mlflow.runName".to_owned(), name.clone())],
            )
            .await?;
            row.name = Set(name);
        }
        let updated = run::Entity::update(row).exec(&transaction).await?;
        transaction.commit().await?;
        Ok(updated)
    }

    /// Records metric values, params and tags of a run whatever its status, in one
    /// transaction, with the rules of [`Store::log_run_batch`] otherwise. A run in the trash
    /// fails with [`StoreError::RunDeleted`].
    pub async fn mlflow_log_batch(&self, run_id: &str, batch: &RunBatch) -> Result<(), StoreError> {
        let distinct: Vec<(String, String)> = params::distinct_params(run_id, &batch.params)?
            .into_iter()
            .collect();
        let transaction = batch::begin_write(&self.db).await?;
        runs::require_run(&transaction, run_id).await?;
        require_not_deleted(&transaction, run_id).await?;
        for chunk in distinct.chunks(batch::rows_per_statement(3)) {
            params::insert_params(&transaction, run_id, chunk).await?;
        }
        params::upsert_tags(&transaction, run_id, &batch.tags).await?;
        metrics::insert_metrics(&transaction, run_id, &batch.metrics).await?;
        transaction.commit().await?;
        Ok(())
    }

    /// Returns up to `limit` values of metric `key` of a run after skipping `offset`, in the
    /// order of [`Store::metric_history`]: by step, then timestamp, then insertion.
    pub async fn mlflow_metric_history_page(
        &self,
        run_id: &str,
        key: &str,
        offset: u64,
        limit: u64,
    ) -> Result<Vec<MetricPoint>, StoreError> {
        let rows = metric::Entity::find()
            .filter(metric::Column::RunId.eq(run_id))
            .filter(metric::Column::Key.eq(key))
            .order_by_asc(metric::Column::Step)
            .order_by_asc(metric::Column::TimestampMs)
            .order_by_asc(metric::Column::Id)
            .offset(offset)
            .limit(limit)
            .all(&self.db)
            .await?;
        Ok(rows.into_iter().map(MetricPoint::from).collect())
    }

    /// Returns the latest value of every metric of each of `run_ids`, by run.
    pub async fn mlflow_latest_metrics(
        &self,
        run_ids: &[String],
    ) -> Result<HashMap<String, Vec<MetricPoint>>, StoreError> {
        let mut latest: HashMap<String, Vec<MetricPoint>> = HashMap::new();
        for chunk in run_ids.chunks(batch::rows_per_statement(1)) {
            let rows = latest_metric::Entity::find()
                .filter(latest_metric::Column::RunId.is_in(chunk.iter().map(String::as_str)))
                .order_by_asc(latest_metric::Column::Key)
                .all(&self.db)
                .await?;
            for row in rows {
                let run_id = row.run_id.clone();
                latest
                    .entry(run_id)
                    .or_default()
                    .push(MetricPoint::from(row));
            }
        }
        Ok(latest)
    }

    /// Names an artifact as the run-level output `path` of a run, replacing the artifact an
    /// earlier upload stored under that path, and records the lineage edge from the run to the
    /// artifact. The artifact's metadata must be recorded.
    pub async fn mlflow_put_artifact(
        &self,
        run_id: &str,
        path: &str,
        digest: &str,
    ) -> Result<(), StoreError> {
        let transaction = batch::begin_write(&self.db).await?;
        runs::require_run(&transaction, run_id).await?;
        let existing = run_artifact::Entity::find()
            .filter(run_artifact::Column::RunId.eq(run_id))
            .filter(run_artifact::Column::StepRunId.is_null())
            .filter(run_artifact::Column::Name.eq(path))
            .filter(run_artifact::Column::Direction.eq(run_artifact::Direction::Output))
            .one(&transaction)
            .await?;
        match existing {
            Some(link) if link.digest == digest => {}
            Some(link) => {
                let mut row: run_artifact::ActiveModel = link.into();
                row.digest = Set(digest.to_owned());
                row.created_at = Set(now_ms());
                run_artifact::Entity::update(row).exec(&transaction).await?;
            }
            None => {
                let row = run_artifact::ActiveModel {
                    run_id: Set(run_id.to_owned()),
                    step_run_id: Set(None),
                    name: Set(path.to_owned()),
                    digest: Set(digest.to_owned()),
                    direction: Set(run_artifact::Direction::Output),
                    created_at: Set(now_ms()),
                    ..Default::default()
                };
                run_artifact::Entity::insert(row)
                    .exec_without_returning(&transaction)
                    .await?;
            }
        }

        let edge = NewEdge {
            run_id: run_id.to_owned(),
            source: Node::run(run_id),
            target: Node::artifact(digest),
        };
        lineage::record_edges(&transaction, &[edge], Some(run_id)).await?;
        transaction.commit().await?;
        Ok(())
    }

    /// Lists the run-level outputs of a run, which are its MLflow artifacts, by path.
    pub async fn mlflow_artifacts(&self, run_id: &str) -> Result<Vec<LinkedArtifact>, StoreError> {
        let mut linked = self.run_artifacts(run_id).await?;
        linked.retain(|item| {
            item.link.step_run_id.is_none()
                && item.link.direction == run_artifact::Direction::Output
        });
        linked.sort_by(|a, b| a.link.name.cmp(&b.link.name));
        Ok(linked)
    }
}

/// Moves runs to the trash at `now`, keeping the deletion time of runs already there.
pub(super) async fn mark_deleted(
    db: &impl ConnectionTrait,
    run_ids: &[String],
    now: i64,
) -> Result<(), StoreError> {
    for chunk in run_ids.chunks(batch::rows_per_statement(3)) {
        if chunk.is_empty() {
            continue;
        }
        let rows = chunk.iter().map(|run_id| run_state::ActiveModel {
            run_id: Set(run_id.clone()),
            lifecycle_stage: Set(LifecycleStage::Deleted.as_str().to_owned()),
            deleted_at: Set(Some(now)),
        });
        let keep = OnConflict::column(run_state::Column::RunId)
            .do_nothing()
            .to_owned();
        run_state::Entity::insert_many(rows)
            .on_conflict(keep)
            .exec_without_returning(db)
            .await?;
    }
    Ok(())
}

/// Fails with [`StoreError::RunDeleted`] when the run is in the trash.
async fn require_not_deleted(db: &impl ConnectionTrait, run_id: &str) -> Result<(), StoreError> {
    let state = run_state::Entity::find_by_id(run_id).one(db).await?;
    match state {
        Some(row) if LifecycleStage::parse(&row.lifecycle_stage) == LifecycleStage::Deleted => {
            Err(StoreError::RunDeleted(run_id.to_owned()))
        }
        _ => Ok(()),
    }
}
