//! `alias_policies`: promotion-policy plugins attached to an alias of a registered model, all
//! of which must allow a promotion to that alias.

use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

/// One policy attached to an alias, at its place in the alias's list.
#[sea_orm::model]
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, Serialize, Deserialize)]
#[sea_orm(table_name = "alias_policies")]
pub struct Model {
    /// The registered model.
    #[sea_orm(primary_key, auto_increment = false)]
    pub model_id: i64,
    /// Alias name. The alias need not point at a version yet.
    #[sea_orm(primary_key, auto_increment = false)]
    pub alias: String,
    /// Place in the list, from 0.
    #[sea_orm(primary_key, auto_increment = false)]
    pub position: i32,
    /// Plugin reference, `name` or `name@version`.
    pub plugin: String,
    /// Configuration passed to the plugin.
    pub config: Json,
    /// The registered model.
    #[sea_orm(belongs_to, from = "model_id", to = "id")]
    pub model: BelongsTo<super::registered_model::Entity>,
}

impl ActiveModelBehavior for ActiveModel {}
