//! `model_tags`: key-value labels of a registered model.

use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

/// One tag of a registered model. Setting a tag again replaces its value.
#[sea_orm::model]
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, Serialize, Deserialize)]
#[sea_orm(table_name = "model_tags")]
pub struct Model {
    /// The registered model.
    #[sea_orm(primary_key, auto_increment = false)]
    pub model_id: i64,
    /// Tag name.
    #[sea_orm(primary_key, auto_increment = false)]
    pub key: String,
    /// Tag value.
    #[sea_orm(column_type = "Text")]
    pub value: String,
    /// The registered model the tag belongs to.
    #[sea_orm(belongs_to, from = "model_id", to = "id")]
    pub model: BelongsTo<super::registered_model::Entity>,
}

impl ActiveModelBehavior for ActiveModel {}
