//! `model_version_tags`: key-value labels of a model version.

use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

/// One tag of a model version. Setting a tag again replaces its value.
#[sea_orm::model]
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, Serialize, Deserialize)]
#[sea_orm(table_name = "model_version_tags")]
pub struct Model {
    /// The model version.
    #[sea_orm(primary_key, auto_increment = false)]
    pub version_id: i64,
    /// Tag name.
    #[sea_orm(primary_key, auto_increment = false)]
    pub key: String,
    /// Tag value.
    #[sea_orm(column_type = "Text")]
    pub value: String,
    /// The model version the tag belongs to.
    #[sea_orm(belongs_to, from = "version_id", to = "id")]
    pub version: BelongsTo<super::model_version::Entity>,
}

impl ActiveModelBehavior for ActiveModel {}
