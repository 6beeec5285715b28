//! `registered_models`: named models of the model registry.

use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

/// A registered model: a name under which trained artifacts are published as numbered versions.
#[sea_orm::model]
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, Serialize, Deserialize)]
#[sea_orm(table_name = "registered_models")]
pub struct Model {
    /// Row id.
    #[sea_orm(primary_key)]
    pub id: i64,
    /// Unique name: ASCII letters, digits, `-`, `_` and `.`, starting with a letter or digit.
    pub name: String,
    /// Free-text description.
    #[sea_orm(column_type = "Text")]
    pub description: String,
    /// User or API token name that created the model.
    pub created_by: String,
    /// Highest version number handed out so far. Numbers of deleted versions are not reused.
    pub last_version: i64,
    /// Creation time, in milliseconds since the Unix epoch.
    pub created_at: i64,
    /// Time of the last change to the model or its versions, in milliseconds since the Unix
    /// epoch.
    pub updated_at: i64,
}

impl ActiveModelBehavior for ActiveModel {}
