//! Artifact metadata, and the names under which runs and step runs consumed or produced
//! artifacts. The bytes are in [`ArtifactStore`](super::ArtifactStore).

use super::entity::run_artifact::{self, Direction};
use super::entity::{artifact, step_run};
use super::{Store, StoreError, artifacts, batch, now_ms, runs, steps};
use sea_orm::sea_query::OnConflict;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder,
};
use serde::{Deserialize, Serialize};

/// An artifact linked to a run, with its metadata.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkedArtifact {
    /// The link: run, step run, name and direction.
    pub link: run_artifact::Model,
    /// Size of the content in bytes.
    pub size: i64,
    /// Media type.
    pub media_type: String,
}

impl Store {
    /// Records metadata of an artifact and returns the stored row.
    ///
    /// Recording a digest again returns the first row unchanged, media type included. A size
    /// that differs from the recorded one fails with [`StoreError::ArtifactSizeMismatch`].
    pub async fn record_artifact(
        &self,
        digest: &str,
        size: u64,
        media_type: &str,
    ) -> Result<artifact::Model, StoreError> {
        check_digest(digest)?;
        let size = i64::try_from(size).unwrap_or(i64::MAX);
        let row = artifact::ActiveModel {
            digest: Set(digest.to_owned()),
            size: Set(size),
            media_type: Set(media_type.to_owned()),
            created_at: Set(now_ms()),
        };
        artifact::Entity::insert(row)
            .on_conflict(
                OnConflict::column(artifact::Column::Digest)
                    .do_nothing()
                    .to_owned(),
            )
            .exec_without_returning(&self.db)
            .await?;

        let stored = require_artifact(&self.db, digest).await?;
        if stored.size != size {
            return Err(StoreError::ArtifactSizeMismatch {
                digest: digest.to_owned(),
                recorded: stored.size,
                rejected: size,
            });
        }
        Ok(stored)
    }

    /// Returns the metadata of an artifact, if recorded.
    pub async fn get_artifact(&self, digest: &str) -> Result<Option<artifact::Model>, StoreError> {
        Ok(artifact::Entity::find_by_id(digest).one(&self.db).await?)
    }

    /// Names an artifact as an input or output of a run, or of one of its step runs when
    /// `step_run_id` is set, and returns the link.
    ///
    /// The artifact's metadata must be recorded first. Linking the same digest under the same
    /// name again returns the existing link; another digest under a name already linked fails
    /// with [`StoreError::ArtifactLinkConflict`].
    pub async fn link_artifact(
        &self,
        run_id: &str,
        step_run_id: Option<&str>,
        name: &str,
        digest: &str,
        direction: Direction,
    ) -> Result<run_artifact::Model, StoreError> {
        check_digest(digest)?;
        let transaction = batch::begin_write(&self.db).await?;
        runs::require_run(&transaction, run_id).await?;
        if let Some(step_run_id) = step_run_id {
            check_step_run_of(&transaction, run_id, step_run_id).await?;
        }
        if artifact::Entity::find_by_id(digest)
            .one(&transaction)
            .await?
            .is_none()
        {
            return Err(StoreError::ArtifactNotRecorded(digest.to_owned()));
        }

        let existing = find_link(&transaction, run_id, step_run_id, name, direction).await?;
        let link = match existing {
            Some(link) if link.digest == digest => link,
            Some(link) => return Err(link_conflict(link, digest)),
            None => insert_link(&transaction, run_id, step_run_id, name, digest, direction).await?,
        };
        transaction.commit().await?;
        Ok(link)
    }

    /// Lists every artifact linked to a run or its step runs, with metadata, in link order.
    pub async fn run_artifacts(&self, run_id: &str) -> Result<Vec<LinkedArtifact>, StoreError> {
        run_artifacts(&self.db, run_id).await
    }
}

pub(super) async fn run_artifacts(
    db: &impl ConnectionTrait,
    run_id: &str,
) -> Result<Vec<LinkedArtifact>, StoreError> {
    let rows = run_artifact::Entity::find()
        .find_also_related(artifact::Entity)
        .filter(run_artifact::Column::RunId.eq(run_id))
        .order_by_asc(run_artifact::Column::Id)
        .all(db)
        .await?;

    // The foreign key on `digest` guarantees the metadata exists.
    let linked = rows
        .into_iter()
        .filter_map(|(link, artifact)| {
            artifact.map(|artifact| LinkedArtifact {
                link,
                size: artifact.size,
                media_type: artifact.media_type,
            })
        })
        .collect();
    Ok(linked)
}

/// Fails with [`StoreError::InvalidDigest`] unless `digest` is a lowercase hex SHA-256.
pub(super) fn check_digest(digest: &str) -> Result<(), StoreError> {
    artifacts::validate_digest(digest).map_err(|_| StoreError::InvalidDigest(digest.to_owned()))
}

async fn require_artifact(
    db: &impl ConnectionTrait,
    digest: &str,
) -> Result<artifact::Model, StoreError> {
    artifact::Entity::find_by_id(digest)
        .one(db)
        .await?
        .ok_or_else(|| StoreError::ArtifactNotRecorded(digest.to_owned()))
}

/// Fails unless `step_run_id` exists and belongs to `run_id`.
async fn check_step_run_of(
    db: &impl ConnectionTrait,
    run_id: &str,
    step_run_id: &str,
) -> Result<step_run::Model, StoreError> {
    let step_run = steps::require_step_run(db, step_run_id).await?;
    if step_run.run_id != run_id {
        return Err(StoreError::StepRunNotInRun {
            step_run_id: step_run_id.to_owned(),
            run_id: run_id.to_owned(),
        });
    }
    Ok(step_run)
}

async fn find_link(
    db: &impl ConnectionTrait,
    run_id: &str,
    step_run_id: Option<&str>,
    name: &str,
    direction: Direction,
) -> Result<Option<run_artifact::Model>, StoreError> {
    let step_filter = match step_run_id {
        Some(id) => run_artifact::Column::StepRunId.eq(id),
        None => run_artifact::Column::StepRunId.is_null(),
    };
    Ok(run_artifact::Entity::find()
        .filter(run_artifact::Column::RunId.eq(run_id))
        .filter(step_filter)
        .filter(run_artifact::Column::Name.eq(name))
        .filter(run_artifact::Column::Direction.eq(direction))
        .one(db)
        .await?)
}

async fn insert_link(
    db: &impl ConnectionTrait,
    run_id: &str,
    step_run_id: Option<&str>,
    name: &str,
    digest: &str,
    direction: Direction,
) -> Result<run_artifact::Model, StoreError> {
    let row = run_artifact::ActiveModel {
        run_id: Set(run_id.to_owned()),
        step_run_id: Set(step_run_id.map(str::to_owned)),
        name: Set(name.to_owned()),
        digest: Set(digest.to_owned()),
        direction: Set(direction),
        created_at: Set(now_ms()),
        ..Default::default()
    };
    Ok(run_artifact::Entity::insert(row)
        .exec_with_returning(db)
        .await?)
}

fn link_conflict(existing: run_artifact::Model, digest: &str) -> StoreError {
    let owner = match &existing.step_run_id {
        Some(step_run_id) => format!("step run {step_run_id} of run {}", existing.run_id),
        None => format!("run {}", existing.run_id),
    };
    StoreError::ArtifactLinkConflict {
        owner,
        direction: existing.direction,
        name: existing.name,
        existing: existing.digest,
        digest: digest.to_owned(),
    }
}
