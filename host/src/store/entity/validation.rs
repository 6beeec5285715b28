//! `validations`: one call of a metric-validator plugin on a run, with its outcome.

use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

/// A validator call on a run. Its checks are rows of `validation_checks`.
#[sea_orm::model]
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, Serialize, Deserialize)]
#[sea_orm(table_name = "validations")]
pub struct Model {
    /// Row id.
    #[sea_orm(primary_key)]
    pub id: i64,
    /// The validated run.
    pub run_id: String,
    /// The model version being created when the validation ran; `None` for validations of a
    /// pipeline or started by hand, and after the version was deleted.
    pub model_version_id: Option<i64>,
    /// Origin of the validation: a pipeline, a new model version or a request.
    pub trigger: ValidationTrigger,
    /// Plugin reference, `name@version`.
    pub plugin: String,
    /// Lowercase hex SHA-256 of the plugin component.
    pub plugin_digest: String,
    /// Configuration passed to the plugin.
    pub config: Json,
    /// Cause of the failure when the plugin produced no checks: an error value, a trap or an
    /// exhausted limit.
    #[sea_orm(column_type = "Text", nullable)]
    pub error: Option<String>,
    /// Time of recording, in milliseconds since the Unix epoch.
    pub created_at: i64,
    /// The validated run.
    #[sea_orm(belongs_to, from = "run_id", to = "id")]
    pub run: BelongsTo<super::run::Entity>,
    /// The model version, if any.
    #[sea_orm(belongs_to, from = "model_version_id", to = "id")]
    pub model_version: BelongsTo<Option<super::model_version::Entity>>,
}

impl ActiveModelBehavior for ActiveModel {}

/// Origin of a validation.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, EnumIter, DeriveActiveEnum, Serialize, Deserialize,
)]
#[sea_orm(
    rs_type = "String",
    db_type = "String(StringLen::None)",
    rename_all = "snake_case"
)]
#[serde(rename_all = "snake_case")]
pub enum ValidationTrigger {
    /// The validators declared by the run's pipeline, after the run ended.
    Pipeline,
    /// The validators attached to a model, when a version of it was created from the run.
    ModelVersion,
    /// A request to validate the run.
    Manual,
}

super::text_enum!(ValidationTrigger, "validation trigger");
