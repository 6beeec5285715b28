//! Aliases: named pointers from a model to one of its versions. Only a completed promotion
//! moves an alias (see `Store::record_decisions`); this module reads and removes them.

use super::{check_alias, lock_model, require_model, touch_model};
use crate::store::audit::{self, AuditAction, Entry};
use crate::store::entity::{model_alias, model_version, registered_model};
use crate::store::{Store, StoreError, batch, now_ms};
use sea_orm::sea_query::OnConflict;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder,
};
use serde_json::json;

impl Store {
    /// Returns the aliases of a model with the version number each points at, by alias.
    pub async fn model_aliases(&self, model_id: i64) -> Result<Vec<(String, i64)>, StoreError> {
        model_aliases(&self.db, model_id).await
    }

    /// Returns the version that `alias` of `model` points at, or `None` when the alias is not
    /// set. A missing model returns [`StoreError::ModelNotFound`].
    pub async fn version_by_alias(
        &self,
        model: &str,
        alias: &str,
    ) -> Result<Option<model_version::Model>, StoreError> {
        let model = require_model(&self.db, model).await?;
        let found = model_alias::Entity::find_by_id((model.id, alias.to_owned()))
            .find_also_related(model_version::Entity)
            .one(&self.db)
            .await?;
        Ok(found.and_then(|(_, version)| version))
    }

    /// Removes `alias` of `model`. Returns whether the alias was set; removing an alias that
    /// is not set changes nothing and writes no audit entry. Policies attached to the alias
    /// stay.
    pub async fn remove_alias(
        &self,
        actor: &str,
        model: &str,
        alias: &str,
    ) -> Result<bool, StoreError> {
        let now = now_ms();
        let transaction = batch::begin_write(&self.db).await?;
        let model = lock_model(&transaction, model).await?;
        let Some((_, Some(version))) =
            model_alias::Entity::find_by_id((model.id, alias.to_owned()))
                .find_also_related(model_version::Entity)
                .one(&transaction)
                .await?
        else {
            return Ok(false);
        };
        model_alias::Entity::delete_by_id((model.id, alias.to_owned()))
            .exec(&transaction)
            .await?;
        touch_model(&transaction, model.id, now).await?;

        let detail = json!({ "version": version.version, "cause": "removed by request" });
        let entry = Entry::new(AuditAction::AliasRemoved, &model.name)
            .version(version.version)
            .alias(alias)
            .detail(detail);
        audit::append(&transaction, actor, now, entry).await?;
        transaction.commit().await?;
        tracing::info!(model = %model.name, alias = %alias, actor = %actor, "alias removed");
        Ok(true)
    }
}

/// Returns the aliases of a model with their version numbers, by alias.
pub(super) async fn model_aliases(
    db: &impl ConnectionTrait,
    model_id: i64,
) -> Result<Vec<(String, i64)>, StoreError> {
    let rows = model_alias::Entity::find()
        .filter(model_alias::Column::ModelId.eq(model_id))
        .order_by_asc(model_alias::Column::Alias)
        .find_also_related(model_version::Entity)
        .all(db)
        .await?;
    Ok(rows
        .into_iter()
        .filter_map(|(alias, version)| Some((alias.alias, version?.version)))
        .collect())
}

/// Returns the aliases that point at the version with row id `version_id`.
pub(super) async fn aliases_of_version(
    db: &impl ConnectionTrait,
    version_id: i64,
) -> Result<Vec<String>, StoreError> {
    let rows = model_alias::Entity::find()
        .filter(model_alias::Column::VersionId.eq(version_id))
        .order_by_asc(model_alias::Column::Alias)
        .all(db)
        .await?;
    Ok(rows.into_iter().map(|row| row.alias).collect())
}

/// Points `alias` of `model` at `version` for promotion `promotion_id` and appends the
/// `alias.moved` entry, with the version it pointed at before (`null` when the alias is new).
/// Returns that version number. The caller holds the model's lock. `triggered_by` names who
/// made the request or approval that completed the promotion.
pub(in crate::store) async fn move_alias(
    transaction: &impl ConnectionTrait,
    (actor, triggered_by): (&str, &str),
    now: i64,
    model: &registered_model::Model,
    version: &model_version::Model,
    (alias, promotion_id): (&str, i64),
) -> Result<Option<i64>, StoreError> {
    check_alias(alias)?;
    let previous = model_alias::Entity::find_by_id((model.id, alias.to_owned()))
        .find_also_related(model_version::Entity)
        .one(transaction)
        .await?
        .and_then(|(_, version)| version.map(|version| version.version));

    let row = model_alias::ActiveModel {
        model_id: Set(model.id),
        alias: Set(alias.to_owned()),
        version_id: Set(version.id),
        updated_at: Set(now),
    };
    let conflict = OnConflict::columns([model_alias::Column::ModelId, model_alias::Column::Alias])
        .update_columns([
            model_alias::Column::VersionId,
            model_alias::Column::UpdatedAt,
        ])
        .to_owned();
    model_alias::Entity::insert(row)
        .on_conflict(conflict)
        .exec_without_returning(transaction)
        .await?;
    touch_model(transaction, model.id, now).await?;

    let detail = json!({ "from": previous, "to": version.version, "triggered_by": triggered_by });
    let entry = Entry::new(AuditAction::AliasMoved, &model.name)
        .version(version.version)
        .alias(alias)
        .promotion(promotion_id)
        .detail(detail);
    audit::append(transaction, actor, now, entry).await?;
    tracing::info!(model = %model.name, alias = %alias, from = ?previous, to = version.version, "alias moved");
    Ok(previous)
}
