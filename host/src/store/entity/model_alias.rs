//! `model_aliases`: named pointers such as `production` from a model to one of its versions.

use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

/// An alias of a registered model and the version it points at.
#[sea_orm::model]
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, Serialize, Deserialize)]
#[sea_orm(table_name = "model_aliases")]
pub struct Model {
    /// The registered model.
    #[sea_orm(primary_key, auto_increment = false)]
    pub model_id: i64,
    /// Alias name: lowercase letters, digits, `-` and `_`.
    #[sea_orm(primary_key, auto_increment = false)]
    pub alias: String,
    /// The model version the alias points at. Deleting the version deletes the alias.
    pub version_id: i64,
    /// Time the alias last moved, in milliseconds since the Unix epoch.
    pub updated_at: i64,
    /// The registered model.
    #[sea_orm(belongs_to, from = "model_id", to = "id")]
    pub model: BelongsTo<super::registered_model::Entity>,
    /// The model version.
    #[sea_orm(belongs_to, from = "version_id", to = "id")]
    pub version: BelongsTo<super::model_version::Entity>,
}

impl ActiveModelBehavior for ActiveModel {}
