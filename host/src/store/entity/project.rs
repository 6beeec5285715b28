//! `projects`: named groups of pipelines and runs.

use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

/// A project. Every pipeline and run belongs to exactly one.
#[sea_orm::model]
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, Serialize, Deserialize)]
#[sea_orm(table_name = "projects")]
pub struct Model {
    /// Surrogate key.
    #[sea_orm(primary_key)]
    pub id: i64,
    /// Unique name; runs that name no project go to `default`.
    #[sea_orm(unique)]
    pub name: String,
    /// Creation time, in milliseconds since the Unix epoch.
    pub created_at: i64,
}

impl ActiveModelBehavior for ActiveModel {}
