//! Everything recorded about one run, read in one consistent snapshot.

use super::artifact_records::{self, LinkedArtifact};
use super::entity::run_artifact::Direction;
use super::entity::{pipeline, project, run, step_run};
use super::environments::{self, EnvironmentSnapshot};
use super::metrics::{self, MetricPoint};
use super::{Store, StoreError, batch, params, runs};
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Everything recorded about a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunDetail {
    /// The run.
    pub run: run::Model,
    /// Its project.
    pub project: project::Model,
    /// Its pipeline definition; `None` for external runs.
    pub pipeline: Option<pipeline::Model>,
    /// Params by key.
    pub params: BTreeMap<String, String>,
    /// Tags by key.
    pub tags: BTreeMap<String, String>,
    /// Step runs in creation order, each with its resolved params, inputs and outputs.
    pub steps: Vec<StepRunDetail>,
    /// Latest value of every metric, by key.
    pub latest_metrics: Vec<MetricPoint>,
    /// Every artifact linked to the run or to one of its step runs, in link order.
    pub artifacts: Vec<LinkedArtifact>,
    /// The environment snapshot, if one was stored.
    pub environment: Option<EnvironmentSnapshot>,
}

/// A step run with the artifacts it consumed and produced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepRunDetail {
    /// The step run, resolved params included.
    pub step_run: step_run::Model,
    /// Artifacts it consumed.
    pub inputs: Vec<LinkedArtifact>,
    /// Artifacts it produced.
    pub outputs: Vec<LinkedArtifact>,
}

impl Store {
    /// Returns everything recorded about a run, or [`StoreError::RunNotFound`].
    pub async fn get_run_detail(&self, run_id: &str) -> Result<RunDetail, StoreError> {
        let transaction = batch::begin_read(&self.db).await?;
        let detail = read_detail(&transaction, run_id).await;
        transaction.commit().await?;
        detail
    }
}

async fn read_detail(db: &impl ConnectionTrait, run_id: &str) -> Result<RunDetail, StoreError> {
    let run = runs::require_run(db, run_id).await?;
    let project = project::Entity::find_by_id(run.project_id)
        .one(db)
        .await?
        .ok_or_else(|| StoreError::RunNotFound(run_id.to_owned()))?;
    let pipeline = match run.pipeline_id {
        Some(id) => pipeline::Entity::find_by_id(id).one(db).await?,
        None => None,
    };

    let params = params::get_params(db, run_id).await?;
    let tags = params::get_tags(db, run_id).await?;
    let artifacts = artifact_records::run_artifacts(db, run_id).await?;
    let steps = step_details(db, run_id, &artifacts).await?;

    Ok(RunDetail {
        latest_metrics: metrics::latest_metrics(db, run_id).await?,
        environment: environments::get_environment(db, run_id).await?,
        run,
        project,
        pipeline,
        params,
        tags,
        steps,
        artifacts,
    })
}

/// Reads the step runs of a run and sorts `artifacts` into their inputs and outputs.
async fn step_details(
    db: &impl ConnectionTrait,
    run_id: &str,
    artifacts: &[LinkedArtifact],
) -> Result<Vec<StepRunDetail>, StoreError> {
    let step_runs = step_run::Entity::find()
        .filter(step_run::Column::RunId.eq(run_id))
        .order_by_asc(step_run::Column::CreatedAt)
        .order_by_asc(step_run::Column::Id)
        .all(db)
        .await?;

    let linked_to = |step_run_id: &str, direction: Direction| {
        artifacts
            .iter()
            .filter(|a| a.link.step_run_id.as_deref() == Some(step_run_id))
            .filter(|a| a.link.direction == direction)
            .cloned()
            .collect::<Vec<_>>()
    };
    let details = step_runs
        .into_iter()
        .map(|step_run| StepRunDetail {
            inputs: linked_to(&step_run.id, Direction::Input),
            outputs: linked_to(&step_run.id, Direction::Output),
            step_run,
        })
        .collect();
    Ok(details)
}
