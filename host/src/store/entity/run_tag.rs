//! `run_tags`: mutable key-value labels of a run.

use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

/// One tag of a run. Setting a tag again replaces its value.
#[sea_orm::model]
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, Serialize, Deserialize)]
#[sea_orm(table_name = "run_tags")]
pub struct Model {
    /// The run.
    #[sea_orm(primary_key, auto_increment = false)]
    pub run_id: String,
    /// Tag name.
    #[sea_orm(primary_key, auto_increment = false)]
    pub key: String,
    /// Tag value.
    #[sea_orm(column_type = "Text")]
    pub value: String,
    /// The run the tag belongs to.
    #[sea_orm(belongs_to, from = "run_id", to = "id")]
    pub run: BelongsTo<super::run::Entity>,
}

impl ActiveModelBehavior for ActiveModel {}
