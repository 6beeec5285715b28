//! `model_validators`: metric-validator plugins attached to a registered model, which run on
//! each new version.

use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

/// One validator attached to a model, at its place in the model's list.
#[sea_orm::model]
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, Serialize, Deserialize)]
#[sea_orm(table_name = "model_validators")]
pub struct Model {
    /// The registered model.
    #[sea_orm(primary_key, auto_increment = false)]
    pub model_id: i64,
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
