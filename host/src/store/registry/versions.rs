//! Numbered versions of registered models and their tags.

use super::{
    aliases, check_tag_key, cut_page, decode_page_token, encode_page_token, lock_model,
    require_model, touch_model,
};
use crate::store::audit::{self, AuditAction, Entry};
use crate::store::entity::model_version::{self, VersionStatus};
use crate::store::entity::{model_version_tag, registered_model};
use crate::store::{Store, StoreError, artifact_records, batch, now_ms, runs};
use sea_orm::sea_query::{Expr, OnConflict};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, ExprTrait,
    QueryFilter, QueryOrder, QuerySelect,
};
use serde_json::json;
use std::collections::BTreeMap;

/// Fields of a new model version, for [`Store::create_model_version`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NewModelVersion {
    /// Name of the registered model, which must exist.
    pub model: String,
    /// The run that produced the artifact, which must exist; `None` for artifacts from
    /// elsewhere.
    pub run_id: Option<String>,
    /// Name of the artifact within its run, such as `train.model`.
    pub artifact_name: String,
    /// Lowercase hex SHA-256 of the artifact.
    pub artifact_digest: String,
    /// Location of the artifact, such as a `runs:/` or artifact-store URI.
    pub source: String,
    /// Free-text description.
    pub description: String,
    /// Initial tags; keys follow [`check_tag_key`].
    pub tags: BTreeMap<String, String>,
}

/// Page of [`Store::list_model_versions`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VersionQuery {
    /// At most this many versions; 0 means the default page size. Capped at the maximum page
    /// size.
    pub limit: u64,
    /// `next_page_token` of the previous page; `None` for the first page.
    pub page_token: Option<String>,
}

/// One page of model versions, newest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionPage {
    /// The versions of this page.
    pub versions: Vec<model_version::Model>,
    /// Token of the next page; `None` on the last page.
    pub next_page_token: Option<String>,
}

/// Prefix of the page tokens of [`Store::list_model_versions`].
const VERSION_TOKEN_PREFIX: &str = "version:";

impl Store {
    /// Creates the next version of a model and returns it.
    ///
    /// Version numbers count up from 1 per model and are never reused, even after a version is
    /// deleted. Concurrent calls for one model get consecutive numbers: the counter lives in
    /// the model's row, which the increment locks until the transaction ends.
    pub async fn create_model_version(
        &self,
        actor: &str,
        new: NewModelVersion,
    ) -> Result<model_version::Model, StoreError> {
        artifact_records::check_digest(&new.artifact_digest)?;
        for key in new.tags.keys() {
            check_tag_key(key)?;
        }

        let now = now_ms();
        let transaction = batch::begin_write(&self.db).await?;
        if let Some(run_id) = &new.run_id {
            runs::require_run(&transaction, run_id).await?;
        }
        let model = next_version_number(&transaction, &new.model, now).await?;
        let row = model_version::ActiveModel {
            model_id: Set(model.id),
            version: Set(model.last_version),
            run_id: Set(new.run_id.clone()),
            artifact_name: Set(new.artifact_name.clone()),
            artifact_digest: Set(new.artifact_digest.clone()),
            source: Set(new.source.clone()),
            description: Set(new.description.clone()),
            status: Set(VersionStatus::Ready),
            created_by: Set(actor.to_owned()),
            created_at: Set(now),
            updated_at: Set(now),
            ..Default::default()
        };
        let version = model_version::Entity::insert(row)
            .exec_with_returning(&transaction)
            .await?;
        for (key, value) in &new.tags {
            upsert_version_tag(&transaction, version.id, key, value).await?;
        }

        let detail = json!({
            "run_id": new.run_id,
            "artifact_name": new.artifact_name,
            "artifact_digest": new.artifact_digest,
            "source": new.source,
            "description": new.description,
            "tags": new.tags,
        });
        let entry = Entry::new(AuditAction::VersionCreated, &model.name)
            .version(version.version)
            .detail(detail);
        audit::append(&transaction, actor, now, entry).await?;
        transaction.commit().await?;
        tracing::info!(model = %model.name, version = version.version, actor = %actor, "model version created");
        Ok(version)
    }

    /// Returns a model and its version with this number, if both exist.
    pub async fn get_model_version(
        &self,
        model: &str,
        version: i64,
    ) -> Result<Option<(registered_model::Model, model_version::Model)>, StoreError> {
        match self.require_model_version(model, version).await {
            Ok(found) => Ok(Some(found)),
            Err(StoreError::ModelNotFound { .. } | StoreError::ModelVersionNotFound { .. }) => {
                Ok(None)
            }
            Err(error) => Err(error),
        }
    }

    /// Returns a model and its version with this number, or [`StoreError::ModelNotFound`] or
    /// [`StoreError::ModelVersionNotFound`].
    pub async fn require_model_version(
        &self,
        model: &str,
        version: i64,
    ) -> Result<(registered_model::Model, model_version::Model), StoreError> {
        let model = require_model(&self.db, model).await?;
        let version = find_version(&self.db, &model, version).await?;
        Ok((model, version))
    }

    /// Returns the model version with this row id, if any.
    pub async fn model_version_by_id(
        &self,
        version_id: i64,
    ) -> Result<Option<model_version::Model>, StoreError> {
        Ok(model_version::Entity::find_by_id(version_id)
            .one(&self.db)
            .await?)
    }

    /// Returns the version of a model with the highest number, if it has any.
    pub async fn latest_model_version(
        &self,
        model_id: i64,
    ) -> Result<Option<model_version::Model>, StoreError> {
        Ok(model_version::Entity::find()
            .filter(model_version::Column::ModelId.eq(model_id))
            .order_by_desc(model_version::Column::Version)
            .one(&self.db)
            .await?)
    }

    /// Lists the versions of a model, newest first, one page at a time.
    pub async fn list_model_versions(
        &self,
        model: &str,
        query: &VersionQuery,
    ) -> Result<VersionPage, StoreError> {
        let model = require_model(&self.db, model).await?;
        let size = audit::page_size(query.limit);
        let mut select = model_version::Entity::find()
            .filter(model_version::Column::ModelId.eq(model.id))
            .order_by_desc(model_version::Column::Version)
            .limit(size + 1);
        if let Some(token) = &query.page_token {
            let before = decode_page_token(token, VERSION_TOKEN_PREFIX)?;
            let before: i64 = before
                .parse()
                .map_err(|_| StoreError::InvalidPageToken(token.chars().take(64).collect()))?;
            select = select.filter(model_version::Column::Version.lt(before));
        }

        let mut versions = select.all(&self.db).await?;
        let next_page_token = cut_page(&mut versions, size)
            .map(|last| encode_page_token(VERSION_TOKEN_PREFIX, &last.version.to_string()));
        Ok(VersionPage {
            versions,
            next_page_token,
        })
    }

    /// Replaces the description of a model version and returns the version.
    pub async fn update_model_version(
        &self,
        actor: &str,
        model: &str,
        version: i64,
        description: &str,
    ) -> Result<model_version::Model, StoreError> {
        let now = now_ms();
        let transaction = batch::begin_write(&self.db).await?;
        let model = lock_model(&transaction, model).await?;
        let current = find_version(&transaction, &model, version).await?;
        if current.description == description {
            return Ok(current);
        }
        let mut row: model_version::ActiveModel = current.clone().into();
        row.description = Set(description.to_owned());
        row.updated_at = Set(now);
        let updated = row.update(&transaction).await?;
        touch_model(&transaction, model.id, now).await?;

        let detail = json!({ "description": { "from": current.description, "to": description } });
        let entry = Entry::new(AuditAction::VersionUpdated, &model.name)
            .version(version)
            .detail(detail);
        audit::append(&transaction, actor, now, entry).await?;
        transaction.commit().await?;
        Ok(updated)
    }

    /// Deletes a model version with its tags, the aliases that point at it and its
    /// promotions. Each removed alias gets an `alias.removed` audit entry.
    pub async fn delete_model_version(
        &self,
        actor: &str,
        model: &str,
        version: i64,
    ) -> Result<(), StoreError> {
        let now = now_ms();
        let transaction = batch::begin_write(&self.db).await?;
        let model = lock_model(&transaction, model).await?;
        let row = find_version(&transaction, &model, version).await?;
        let aliases = aliases::aliases_of_version(&transaction, row.id).await?;
        model_version::Entity::delete_by_id(row.id)
            .exec(&transaction)
            .await?;
        touch_model(&transaction, model.id, now).await?;

        let detail = json!({ "artifact_digest": row.artifact_digest, "run_id": row.run_id });
        let entry = Entry::new(AuditAction::VersionDeleted, &model.name)
            .version(version)
            .detail(detail);
        audit::append(&transaction, actor, now, entry).await?;
        for alias in aliases {
            let detail = json!({ "version": version, "cause": "version deleted" });
            let entry = Entry::new(AuditAction::AliasRemoved, &model.name)
                .version(version)
                .alias(&alias)
                .detail(detail);
            audit::append(&transaction, actor, now, entry).await?;
        }
        transaction.commit().await?;
        tracing::info!(model = %model.name, version, actor = %actor, "model version deleted");
        Ok(())
    }

    /// Returns the tags of a model version by key.
    pub async fn version_tags(
        &self,
        version_id: i64,
    ) -> Result<BTreeMap<String, String>, StoreError> {
        let tags = model_version_tag::Entity::find()
            .filter(model_version_tag::Column::VersionId.eq(version_id))
            .all(&self.db)
            .await?;
        Ok(tags.into_iter().map(|tag| (tag.key, tag.value)).collect())
    }

    /// Sets a tag of a model version, replacing any value it had.
    pub async fn set_version_tag(
        &self,
        actor: &str,
        model: &str,
        version: i64,
        key: &str,
        value: &str,
    ) -> Result<(), StoreError> {
        check_tag_key(key)?;

        let now = now_ms();
        let transaction = batch::begin_write(&self.db).await?;
        let model = lock_model(&transaction, model).await?;
        let row = find_version(&transaction, &model, version).await?;
        let previous = model_version_tag::Entity::find_by_id((row.id, key.to_owned()))
            .one(&transaction)
            .await?
            .map(|tag| tag.value);
        upsert_version_tag(&transaction, row.id, key, value).await?;

        let detail = json!({ "key": key, "value": value, "previous": previous });
        let entry = Entry::new(AuditAction::VersionTagSet, &model.name)
            .version(version)
            .detail(detail);
        audit::append(&transaction, actor, now, entry).await?;
        transaction.commit().await?;
        Ok(())
    }

    /// Deletes a tag of a model version. Returns whether the tag existed; deleting a missing
    /// tag changes nothing and writes no audit entry.
    pub async fn delete_version_tag(
        &self,
        actor: &str,
        model: &str,
        version: i64,
        key: &str,
    ) -> Result<bool, StoreError> {
        let now = now_ms();
        let transaction = batch::begin_write(&self.db).await?;
        let model = lock_model(&transaction, model).await?;
        let row = find_version(&transaction, &model, version).await?;
        let Some(tag) = model_version_tag::Entity::find_by_id((row.id, key.to_owned()))
            .one(&transaction)
            .await?
        else {
            return Ok(false);
        };
        model_version_tag::Entity::delete_by_id((row.id, key.to_owned()))
            .exec(&transaction)
            .await?;

        let detail = json!({ "key": key, "previous": tag.value });
        let entry = Entry::new(AuditAction::VersionTagDeleted, &model.name)
            .version(version)
            .detail(detail);
        audit::append(&transaction, actor, now, entry).await?;
        transaction.commit().await?;
        Ok(true)
    }
}

/// Returns version number `version` of `model` or [`StoreError::ModelVersionNotFound`].
pub(in crate::store) async fn find_version(
    db: &impl ConnectionTrait,
    model: &registered_model::Model,
    version: i64,
) -> Result<model_version::Model, StoreError> {
    let row = model_version::Entity::find()
        .filter(model_version::Column::ModelId.eq(model.id))
        .filter(model_version::Column::Version.eq(version))
        .one(db)
        .await?;
    row.ok_or_else(|| StoreError::ModelVersionNotFound {
        model: model.name.clone(),
        version,
    })
}

/// Returns the version number of the version with row id `version_id`.
pub(in crate::store) async fn version_number(
    db: &impl ConnectionTrait,
    version_id: i64,
) -> Result<i64, StoreError> {
    let row = model_version::Entity::find_by_id(version_id)
        .one(db)
        .await?;
    row.map(|row| row.version).ok_or_else(|| {
        sea_orm::DbErr::RecordNotFound(format!("model version with id {version_id}")).into()
    })
}

/// Counts up the version counter of the model called `name` and returns the model with the
/// new number in `last_version`. The `UPDATE` locks the model's row on PostgreSQL, so a
/// concurrent call waits and then counts from the new value.
async fn next_version_number(
    transaction: &impl ConnectionTrait,
    name: &str,
    now: i64,
) -> Result<registered_model::Model, StoreError> {
    let result = registered_model::Entity::update_many()
        .col_expr(
            registered_model::Column::LastVersion,
            Expr::col(registered_model::Column::LastVersion).add(1),
        )
        .col_expr(registered_model::Column::UpdatedAt, Expr::value(now))
        .filter(registered_model::Column::Name.eq(name))
        .exec(transaction)
        .await?;
    if result.rows_affected == 0 {
        return Err(StoreError::ModelNotFound {
            name: name.to_owned(),
        });
    }
    require_model(transaction, name).await
}

async fn upsert_version_tag(
    db: &impl ConnectionTrait,
    version_id: i64,
    key: &str,
    value: &str,
) -> Result<(), StoreError> {
    let row = model_version_tag::ActiveModel {
        version_id: Set(version_id),
        key: Set(key.to_owned()),
        value: Set(value.to_owned()),
    };
    let conflict = OnConflict::columns([
        model_version_tag::Column::VersionId,
        model_version_tag::Column::Key,
    ])
    .update_column(model_version_tag::Column::Value)
    .to_owned();
    model_version_tag::Entity::insert(row)
        .on_conflict(conflict)
        .exec_without_returning(db)
        .await?;
    Ok(())
}
