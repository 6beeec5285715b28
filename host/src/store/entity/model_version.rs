//! `model_versions`: numbered versions of a registered model, each pointing at one artifact.

use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

/// A version of a registered model.
#[sea_orm::model]
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, Serialize, Deserialize)]
#[sea_orm(table_name = "model_versions")]
pub struct Model {
    /// Row id.
    #[sea_orm(primary_key)]
    pub id: i64,
    /// The registered model.
    pub model_id: i64,
    /// Version number, unique within the model, counting up from 1.
    pub version: i64,
    /// The run that produced the artifact; `None` when the artifact came from elsewhere or the
    /// run was deleted.
    pub run_id: Option<String>,
    /// Name of the artifact within its run, such as `train.model`.
    pub artifact_name: String,
    /// Lowercase hex SHA-256 of the artifact.
    pub artifact_digest: String,
    /// Location of the artifact, such as a `runs:/` or artifact-store URI.
    #[sea_orm(column_type = "Text")]
    pub source: String,
    /// Free-text description.
    #[sea_orm(column_type = "Text")]
    pub description: String,
    /// Lifecycle state.
    pub status: VersionStatus,
    /// User or API token name that created the version.
    pub created_by: String,
    /// Creation time, in milliseconds since the Unix epoch.
    pub created_at: i64,
    /// Time of the last change, in milliseconds since the Unix epoch.
    pub updated_at: i64,
    /// The registered model.
    #[sea_orm(belongs_to, from = "model_id", to = "id")]
    pub model: BelongsTo<super::registered_model::Entity>,
    /// The run that produced the artifact.
    #[sea_orm(belongs_to, from = "run_id", to = "id")]
    pub run: BelongsTo<Option<super::run::Entity>>,
}

impl ActiveModelBehavior for ActiveModel {}

/// Lifecycle state of a model version.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, EnumIter, DeriveActiveEnum, Serialize, Deserialize,
)]
#[sea_orm(
    rs_type = "String",
    db_type = "String(StringLen::None)",
    rename_all = "snake_case"
)]
#[serde(rename_all = "snake_case")]
pub enum VersionStatus {
    /// The artifact is recorded and the version can be used.
    Ready,
}

super::text_enum!(VersionStatus, "model version status");
