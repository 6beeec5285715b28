//! Artifact metadata, and the names under which runs and step runs consumed or produced
//! artifacts. The bytes are in [`ArtifactStore`](super::ArtifactStore).

use super::entity::run_artifact::{self, Direction};
use super::entity::{artifact, step_run};
use super::{Store, StoreError, artifacts, batch, now_ms, runs, steps};
use sea_orm::sea_query::OnConflict;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect,
};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeSet, HashMap};

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

/// Metadata of an artifact to record, as [`Store::record_artifact`] does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewArtifact {
    /// Lowercase hex SHA-256 of the content.
    pub digest: String,
    /// Size of the content in bytes.
    pub size: u64,
    /// Media type.
    pub media_type: String,
}

/// A name under which a step run consumed or produced an artifact.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewStepLink {
    /// Name of the input or output.
    pub name: String,
    /// Digest of the artifact.
    pub digest: String,
    /// Whether the step run consumed or produced the artifact.
    pub direction: Direction,
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
        let size = stored_size(size);
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
            Some(link) => return Err(conflict_with(&link, digest)),
            None => insert_link(&transaction, run_id, step_run_id, name, digest, direction).await?,
        };
        transaction.commit().await?;
        Ok(link)
    }

    /// Lists every artifact linked to a run or its step runs, with metadata, in link order.
    pub async fn run_artifacts(&self, run_id: &str) -> Result<Vec<LinkedArtifact>, StoreError> {
        run_artifacts(&self.db, run_id).await
    }

    /// Lists the artifacts a step run produced, by name, with metadata, in one query.
    pub async fn step_output_artifacts(
        &self,
        step_run_id: &str,
    ) -> Result<Vec<LinkedArtifact>, StoreError> {
        let rows = run_artifact::Entity::find()
            .find_also_related(artifact::Entity)
            .filter(run_artifact::Column::StepRunId.eq(step_run_id))
            .filter(run_artifact::Column::Direction.eq(Direction::Output))
            .order_by_asc(run_artifact::Column::Name)
            .all(&self.db)
            .await?;
        Ok(with_metadata(rows))
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
    Ok(with_metadata(rows))
}

fn with_metadata(rows: Vec<(run_artifact::Model, Option<artifact::Model>)>) -> Vec<LinkedArtifact> {
    // The foreign key on `digest` guarantees the metadata exists.
    rows.into_iter()
        .filter_map(|(link, artifact)| {
            artifact.map(|artifact| LinkedArtifact {
                link,
                size: artifact.size,
                media_type: artifact.media_type,
            })
        })
        .collect()
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

fn conflict_with(existing: &run_artifact::Model, digest: &str) -> StoreError {
    let owner = match &existing.step_run_id {
        Some(step_run_id) => format!("step run {step_run_id} of run {}", existing.run_id),
        None => format!("run {}", existing.run_id),
    };
    link_conflict(
        owner,
        existing.direction,
        &existing.name,
        &existing.digest,
        digest,
    )
}

fn link_conflict(
    owner: String,
    direction: Direction,
    name: &str,
    existing: &str,
    digest: &str,
) -> StoreError {
    StoreError::ArtifactLinkConflict {
        owner,
        direction,
        name: name.to_owned(),
        existing: existing.to_owned(),
        digest: digest.to_owned(),
    }
}

/// Converts a size to the signed 64-bit column of `artifacts`, saturating at `i64::MAX`.
fn stored_size(size: u64) -> i64 {
    i64::try_from(size).unwrap_or(i64::MAX)
}

/// Records artifact metadata in multi-row statements. A digest recorded already keeps its
/// first row, so the caller checks sizes afterwards with [`check_recorded`].
pub(super) async fn insert_artifacts(
    db: &impl ConnectionTrait,
    artifacts: &[NewArtifact],
) -> Result<(), StoreError> {
    let now = now_ms();
    for chunk in artifacts.chunks(batch::rows_per_statement(4)) {
        let rows = chunk.iter().map(|new| artifact::ActiveModel {
            digest: Set(new.digest.clone()),
            size: Set(stored_size(new.size)),
            media_type: Set(new.media_type.clone()),
            created_at: Set(now),
        });
        let ignore = OnConflict::column(artifact::Column::Digest)
            .do_nothing()
            .to_owned();
        artifact::Entity::insert_many(rows)
            .on_conflict(ignore)
            .exec_without_returning(db)
            .await?;
    }
    Ok(())
}

/// Fails unless every digest of `artifacts` and `linked` is recorded, and each of `artifacts`
/// with the size given there. Reads all the digests in one query per chunk.
pub(super) async fn check_recorded<'a>(
    db: &impl ConnectionTrait,
    artifacts: &'a [NewArtifact],
    linked: impl IntoIterator<Item = &'a str>,
) -> Result<(), StoreError> {
    let mut digests: BTreeSet<&str> = linked.into_iter().collect();
    digests.extend(artifacts.iter().map(|new| new.digest.as_str()));
    let recorded = recorded_sizes(db, &digests).await?;

    if let Some(missing) = digests
        .iter()
        .find(|digest| !recorded.contains_key(**digest))
    {
        return Err(StoreError::ArtifactNotRecorded((*missing).to_owned()));
    }
    for new in artifacts {
        let size = stored_size(new.size);
        let recorded_size = recorded[new.digest.as_str()];
        if recorded_size != size {
            return Err(StoreError::ArtifactSizeMismatch {
                digest: new.digest.clone(),
                recorded: recorded_size,
                rejected: size,
            });
        }
    }
    Ok(())
}

/// Returns the recorded size of each of `digests` that is recorded.
async fn recorded_sizes(
    db: &impl ConnectionTrait,
    digests: &BTreeSet<&str>,
) -> Result<HashMap<String, i64>, StoreError> {
    let digests: Vec<&str> = digests.iter().copied().collect();
    let mut sizes = HashMap::new();
    for chunk in digests.chunks(batch::rows_per_statement(1)) {
        let found = artifact::Entity::find()
            .select_only()
            .column(artifact::Column::Digest)
            .column(artifact::Column::Size)
            .filter(artifact::Column::Digest.is_in(chunk.iter().copied()))
            .into_tuple::<(String, i64)>()
            .all(db)
            .await?;
        sizes.extend(found);
    }
    Ok(sizes)
}

/// Links artifacts to a step run of `run_id` by name, with the rules of
/// [`Store::link_artifact`]: a name linked again to the same digest keeps its link, and to
/// another digest fails. Reads the step run's links in one query and inserts the new ones in
/// multi-row statements. The caller checks that the step run belongs to the run and that the
/// digests are recorded.
pub(super) async fn insert_step_links(
    db: &impl ConnectionTrait,
    run_id: &str,
    step_run_id: &str,
    links: &[NewStepLink],
) -> Result<(), StoreError> {
    if links.is_empty() {
        return Ok(());
    }
    let existing = step_links(db, run_id, step_run_id).await?;
    let mut bound: HashMap<(Direction, &str), &str> = existing
        .iter()
        .map(|link| ((link.direction, link.name.as_str()), link.digest.as_str()))
        .collect();

    let mut new = Vec::new();
    for link in links {
        match bound.insert((link.direction, &link.name), &link.digest) {
            None => new.push(link),
            Some(digest) if digest == link.digest => {}
            Some(digest) => {
                let owner = format!("step run {step_run_id} of run {run_id}");
                return Err(link_conflict(
                    owner,
                    link.direction,
                    &link.name,
                    digest,
                    &link.digest,
                ));
            }
        }
    }

    let now = now_ms();
    for chunk in new.chunks(batch::rows_per_statement(6)) {
        let rows = chunk.iter().map(|link| run_artifact::ActiveModel {
            run_id: Set(run_id.to_owned()),
            step_run_id: Set(Some(step_run_id.to_owned())),
            name: Set(link.name.clone()),
            digest: Set(link.digest.clone()),
            direction: Set(link.direction),
            created_at: Set(now),
            ..Default::default()
        });
        run_artifact::Entity::insert_many(rows)
            .exec_without_returning(db)
            .await?;
    }
    Ok(())
}

async fn step_links(
    db: &impl ConnectionTrait,
    run_id: &str,
    step_run_id: &str,
) -> Result<Vec<run_artifact::Model>, StoreError> {
    Ok(run_artifact::Entity::find()
        .filter(run_artifact::Column::RunId.eq(run_id))
        .filter(run_artifact::Column::StepRunId.eq(step_run_id))
        .all(db)
        .await?)
}
