//! `mlflow_experiments`: the MLflow lifecycle of a project. A project without a row is an
//! active experiment.

use sea_orm::entity::prelude::*;

/// Lifecycle and artifact location of a project seen as an MLflow experiment.
#[sea_orm::model]
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "mlflow_experiments")]
pub struct Model {
    /// The project.
    #[sea_orm(primary_key, auto_increment = false)]
    pub project_id: i64,
    /// `active` or `deleted`.
    pub lifecycle_stage: String,
    /// Artifact location the client gave at creation; `None` for the proxied default.
    #[sea_orm(column_type = "Text", nullable)]
    pub artifact_location: Option<String>,
    /// Time of the last change, in milliseconds since the Unix epoch.
    pub last_update_time: i64,
    /// Time of deletion, in milliseconds since the Unix epoch, while deleted.
    pub deleted_at: Option<i64>,
}

impl ActiveModelBehavior for ActiveModel {}
