//! `pipelines`: the exact definition text that runs executed.

use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

/// One version of a pipeline definition. Editing the YAML and running it again adds a row with
/// a new digest under the same name.
#[sea_orm::model]
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, Serialize, Deserialize)]
#[sea_orm(table_name = "pipelines")]
pub struct Model {
    /// Surrogate key.
    #[sea_orm(primary_key)]
    pub id: i64,
    /// Project the pipeline belongs to.
    pub project_id: i64,
    /// Pipeline name from the definition.
    pub name: String,
    /// Lowercase hex SHA-256 of `definition_text`.
    pub definition_digest: String,
    /// The YAML definition, byte for byte as it was run.
    #[sea_orm(column_type = "Text")]
    pub definition_text: String,
    /// Time the definition was first recorded, in milliseconds since the Unix epoch.
    pub created_at: i64,
    /// The owning project.
    #[sea_orm(belongs_to, from = "project_id", to = "id")]
    pub project: BelongsTo<super::project::Entity>,
}

impl ActiveModelBehavior for ActiveModel {}
