//! Projects and pipeline definitions.

use super::entity::{pipeline, project};
use super::{Store, StoreError, batch, now_ms};
use sea_orm::sea_query::OnConflict;
use sea_orm::{ActiveValue::Set, ConnectionTrait, EntityTrait, QueryFilter};
use sha2::{Digest as _, Sha256};

/// Name of the project that runs go to when they name none.
pub const DEFAULT_PROJECT: &str = "default";

impl Store {
    /// Returns the project called `name`, creating it if it does not exist yet.
    pub async fn ensure_project(&self, name: &str) -> Result<project::Model, StoreError> {
        ensure_project(&self.db, name).await
    }

    /// Records a pipeline definition and returns its row. The digest is the SHA-256 of
    /// `definition_text`, so recording the same text again returns the existing row.
    pub async fn ensure_pipeline(
        &self,
        project: &str,
        name: &str,
        definition_text: &str,
    ) -> Result<pipeline::Model, StoreError> {
        let project = ensure_project(&self.db, project).await?;
        let digest = hex::encode(Sha256::digest(definition_text.as_bytes()));
        let row = pipeline::ActiveModel {
            project_id: Set(project.id),
            name: Set(name.to_owned()),
            definition_digest: Set(digest.clone()),
            definition_text: Set(definition_text.to_owned()),
            created_at: Set(now_ms()),
            ..Default::default()
        };
        let conflict = OnConflict::columns([
            pipeline::Column::ProjectId,
            pipeline::Column::Name,
            pipeline::Column::DefinitionDigest,
        ])
        .do_nothing()
        .to_owned();
        pipeline::Entity::insert(row)
            .on_conflict(conflict)
            .exec_without_returning(&self.db)
            .await?;

        let stored = pipeline::Entity::find()
            .filter(pipeline::COLUMN.project_id.eq(project.id))
            .filter(pipeline::COLUMN.name.eq(name))
            .filter(pipeline::COLUMN.definition_digest.eq(&digest))
            .one(&self.db)
            .await?;
        stored.ok_or_else(|| batch::missing_after_insert(&format!("pipeline `{name}`")).into())
    }

    /// Returns the pipeline definition with this id, if any.
    pub async fn get_pipeline(&self, id: i64) -> Result<Option<pipeline::Model>, StoreError> {
        Ok(pipeline::Entity::find_by_id(id).one(&self.db).await?)
    }
}

/// Returns the project called `name`, creating it if needed. Concurrent callers get the same row.
pub(super) async fn ensure_project(
    db: &impl ConnectionTrait,
    name: &str,
) -> Result<project::Model, StoreError> {
    let row = project::ActiveModel {
        name: Set(name.to_owned()),
        created_at: Set(now_ms()),
        ..Default::default()
    };
    let conflict = OnConflict::column(project::Column::Name)
        .do_nothing()
        .to_owned();
    project::Entity::insert(row)
        .on_conflict(conflict)
        .exec_without_returning(db)
        .await?;

    let stored = project::Entity::find()
        .filter(project::COLUMN.name.eq(name))
        .one(db)
        .await?;
    stored.ok_or_else(|| batch::missing_after_insert(&format!("project `{name}`")).into())
}
