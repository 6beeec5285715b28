//! Uses of artifacts: the runs and step runs that consumed or produced each one, with the step
//! names that listings show.

use super::entity::run_artifact;
use super::entity::{artifact, step_run};
use super::{Store, StoreError, batch, runs, steps};
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect};
use std::collections::{BTreeSet, HashMap};

/// A link of an artifact to a run or step run, with the artifact's metadata and the step name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArtifactUse {
    /// The link: run, step run, name and direction.
    pub link: run_artifact::Model,
    /// Size of the content in bytes.
    pub size: i64,
    /// Media type.
    pub media_type: String,
    /// Name of the step run, for step-level links.
    pub step_name: Option<String>,
}

impl Store {
    /// Lists the links of an artifact to runs and step runs, oldest first.
    pub async fn artifact_uses(&self, digest: &str) -> Result<Vec<ArtifactUse>, StoreError> {
        let rows = run_artifact::Entity::find()
            .find_also_related(artifact::Entity)
            .filter(run_artifact::Column::Digest.eq(digest))
            .order_by_asc(run_artifact::Column::Id)
            .all(&self.db)
            .await?;
        with_step_names(&self.db, rows).await
    }

    /// Lists the artifacts a run and its step runs consumed or produced, or only those of one
    /// step run when `step_run_id` is set, in link order.
    ///
    /// Fails with [`StoreError::RunNotFound`], [`StoreError::StepRunNotFound`] or
    /// [`StoreError::StepRunNotInRun`] when the ids do not name a run and one of its step runs.
    pub async fn run_artifact_uses(
        &self,
        run_id: &str,
        step_run_id: Option<&str>,
    ) -> Result<Vec<ArtifactUse>, StoreError> {
        runs::require_run(&self.db, run_id).await?;
        let mut query = run_artifact::Entity::find()
            .find_also_related(artifact::Entity)
            .filter(run_artifact::Column::RunId.eq(run_id));
        if let Some(step_run_id) = step_run_id {
            let step = steps::require_step_run(&self.db, step_run_id).await?;
            if step.run_id != run_id {
                return Err(StoreError::StepRunNotInRun {
                    step_run_id: step_run_id.to_owned(),
                    run_id: run_id.to_owned(),
                });
            }
            query = query.filter(run_artifact::Column::StepRunId.eq(step_run_id));
        }
        let rows = query
            .order_by_asc(run_artifact::Column::Id)
            .all(&self.db)
            .await?;
        with_step_names(&self.db, rows).await
    }
}

/// Adds the metadata and step names to links, reading the names in one query per chunk.
async fn with_step_names(
    db: &impl ConnectionTrait,
    rows: Vec<(run_artifact::Model, Option<artifact::Model>)>,
) -> Result<Vec<ArtifactUse>, StoreError> {
    let step_ids: BTreeSet<&str> = rows
        .iter()
        .filter_map(|(link, _)| link.step_run_id.as_deref())
        .collect();
    let step_ids: Vec<&str> = step_ids.into_iter().collect();
    let mut names: HashMap<String, String> = HashMap::new();
    for chunk in step_ids.chunks(batch::rows_per_statement(1) - 1) {
        let found = step_run::Entity::find()
            .select_only()
            .column(step_run::Column::Id)
            .column(step_run::Column::Name)
            .filter(step_run::Column::Id.is_in(chunk.iter().copied()))
            .into_tuple::<(String, String)>()
            .all(db)
            .await?;
        names.extend(found);
    }

    // The foreign key on `digest` guarantees the metadata exists.
    let uses = rows
        .into_iter()
        .filter_map(|(link, artifact)| {
            let artifact = artifact?;
            let step_name = link
                .step_run_id
                .as_ref()
                .and_then(|id| names.get(id).cloned());
            Some(ArtifactUse {
                link,
                size: artifact.size,
                media_type: artifact.media_type,
                step_name,
            })
        })
        .collect();
    Ok(uses)
}
