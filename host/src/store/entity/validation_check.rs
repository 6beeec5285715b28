//! `validation_checks`: the checks one validator call returned.

use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

/// One check of a validation, at its place in the list the plugin returned.
#[sea_orm::model]
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, Serialize, Deserialize)]
#[sea_orm(table_name = "validation_checks")]
pub struct Model {
    /// The validation.
    #[sea_orm(primary_key, auto_increment = false)]
    pub validation_id: i64,
    /// Place in the plugin's list, from 0.
    #[sea_orm(primary_key, auto_increment = false)]
    pub position: i32,
    /// Check name, such as the rule it tested.
    #[sea_orm(column_type = "Text")]
    pub name: String,
    /// Whether the check passed.
    pub passed: bool,
    /// `blocking` or `warning`: whether a failure stops a promotion.
    pub severity: String,
    /// Explanation from the plugin, such as the value it found.
    #[sea_orm(column_type = "Text")]
    pub message: String,
    /// The validation.
    #[sea_orm(belongs_to, from = "validation_id", to = "id")]
    pub validation: BelongsTo<super::validation::Entity>,
}

impl ActiveModelBehavior for ActiveModel {}
