//! Governance of the model registry: validator and policy attachments, recorded validations,
//! promotion requests, approvals and policy decisions.
//!
//! Like the registry, every change appends its audit entries in its own transaction and locks
//! the model's row first, so the decisions on one model are applied one at a time.

mod promotions;
mod validations;

pub use promotions::{NewPromotion, PolicyDecisionRow, PromotionOutcome, StoredNeed};
pub use validations::{CheckRow, NewValidation, ValidationRecord};

use super::audit::{self, AuditAction, Entry};
use super::entity::{alias_policy, model_validator};
use super::registry::{check_alias, lock_model, require_model};
use super::{Store, StoreError, batch, now_ms};
use sea_orm::{ActiveValue::Set, ColumnTrait, EntityTrait, QueryFilter, QueryOrder};
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::collections::BTreeMap;

/// A plugin attached to a model (a validator) or to an alias (a policy), with its
/// configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Attachment {
    /// Plugin reference, `name` or `name@version`.
    pub plugin: String,
    /// Configuration passed to the plugin.
    pub config: serde_json::Value,
}

impl Store {
    /// Replaces the validators attached to a model by `validators`, in order. The store does
    /// not check that the plugins exist; the caller does.
    pub async fn set_model_validators(
        &self,
        actor: &str,
        model: &str,
        validators: Vec<Attachment>,
    ) -> Result<(), StoreError> {
        let now = now_ms();
        let transaction = batch::begin_write(&self.db).await?;
        let model = lock_model(&transaction, model).await?;
        let previous = model_validators(&transaction, model.id).await?;
        model_validator::Entity::delete_many()
            .filter(model_validator::Column::ModelId.eq(model.id))
            .exec(&transaction)
            .await?;
        let rows =
            validators
                .iter()
                .zip(0..)
                .map(|(attachment, position)| model_validator::ActiveModel {
                    model_id: Set(model.id),
                    position: Set(position),
                    plugin: Set(attachment.plugin.clone()),
                    config: Set(attachment.config.clone()),
                });
        model_validator::Entity::insert_many(rows)
            .exec_without_returning(&transaction)
            .await?;

        let detail = json!({ "validators": validators, "previous": previous });
        let entry = Entry::new(AuditAction::ValidatorsSet, &model.name).detail(detail);
        audit::append(&transaction, actor, now, entry).await?;
        transaction.commit().await?;
        tracing::info!(model = %model.name, count = validators.len(), actor = %actor, "validators attached");
        Ok(())
    }

    /// Returns the validators attached to a model, in order.
    pub async fn model_validators(&self, model: &str) -> Result<Vec<Attachment>, StoreError> {
        let model = require_model(&self.db, model).await?;
        model_validators(&self.db, model.id).await
    }

    /// Replaces the policies attached to `alias` of a model by `policies`, in order. The alias
    /// need not point at a version yet. An empty list detaches every policy, after which
    /// promotions to the alias complete at once.
    pub async fn set_alias_policies(
        &self,
        actor: &str,
        model: &str,
        alias: &str,
        policies: Vec<Attachment>,
    ) -> Result<(), StoreError> {
        check_alias(alias)?;

        let now = now_ms();
        let transaction = batch::begin_write(&self.db).await?;
        let model = lock_model(&transaction, model).await?;
        let previous = alias_policies(&transaction, model.id, Some(alias)).await?;
        alias_policy::Entity::delete_many()
            .filter(alias_policy::Column::ModelId.eq(model.id))
            .filter(alias_policy::Column::Alias.eq(alias))
            .exec(&transaction)
            .await?;
        let rows =
            policies
                .iter()
                .zip(0..)
                .map(|(attachment, position)| alias_policy::ActiveModel {
                    model_id: Set(model.id),
                    alias: Set(alias.to_owned()),
                    position: Set(position),
                    plugin: Set(attachment.plugin.clone()),
                    config: Set(attachment.config.clone()),
                });
        alias_policy::Entity::insert_many(rows)
            .exec_without_returning(&transaction)
            .await?;

        let previous: Vec<Attachment> = previous.into_values().flatten().collect();
        let detail = json!({ "policies": policies, "previous": previous });
        let entry = Entry::new(AuditAction::PoliciesSet, &model.name)
            .alias(alias)
            .detail(detail);
        audit::append(&transaction, actor, now, entry).await?;
        transaction.commit().await?;
        tracing::info!(model = %model.name, alias = %alias, count = policies.len(), actor = %actor, "policies attached");
        Ok(())
    }

    /// Returns the policies attached to `alias` of a model, in order; empty when none are.
    pub async fn alias_policies(
        &self,
        model: &str,
        alias: &str,
    ) -> Result<Vec<Attachment>, StoreError> {
        let model = require_model(&self.db, model).await?;
        let mut policies = alias_policies(&self.db, model.id, Some(alias)).await?;
        Ok(policies.remove(alias).unwrap_or_default())
    }

    /// Returns the policies of every alias of a model that has any, by alias.
    pub async fn all_alias_policies(
        &self,
        model: &str,
    ) -> Result<BTreeMap<String, Vec<Attachment>>, StoreError> {
        let model = require_model(&self.db, model).await?;
        alias_policies(&self.db, model.id, None).await
    }
}

async fn model_validators(
    db: &impl sea_orm::ConnectionTrait,
    model_id: i64,
) -> Result<Vec<Attachment>, StoreError> {
    let rows = model_validator::Entity::find()
        .filter(model_validator::Column::ModelId.eq(model_id))
        .order_by_asc(model_validator::Column::Position)
        .all(db)
        .await?;
    Ok(rows
        .into_iter()
        .map(|row| Attachment {
            plugin: row.plugin,
            config: row.config,
        })
        .collect())
}

/// Returns the policies of one alias, or of every alias when `alias` is `None`, by alias.
async fn alias_policies(
    db: &impl sea_orm::ConnectionTrait,
    model_id: i64,
    alias: Option<&str>,
) -> Result<BTreeMap<String, Vec<Attachment>>, StoreError> {
    let mut select = alias_policy::Entity::find()
        .filter(alias_policy::Column::ModelId.eq(model_id))
        .order_by_asc(alias_policy::Column::Alias)
        .order_by_asc(alias_policy::Column::Position);
    if let Some(alias) = alias {
        select = select.filter(alias_policy::Column::Alias.eq(alias));
    }

    let mut policies: BTreeMap<String, Vec<Attachment>> = BTreeMap::new();
    for row in select.all(db).await? {
        policies.entry(row.alias).or_default().push(Attachment {
            plugin: row.plugin,
            config: row.config,
        });
    }
    Ok(policies)
}
