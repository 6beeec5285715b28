//! `mlflow_logged_models`: models that MLflow 3 clients log, each in the project of its
//! experiment.

use sea_orm::entity::prelude::*;

/// A logged model, with the fields of MLflow's `LoggedModelInfo` message.
#[sea_orm::model]
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "mlflow_logged_models")]
pub struct Model {
    /// Model id, `m-` and 32 hex digits, as MLflow's servers form it.
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    /// The project of the model's experiment.
    pub project_id: i64,
    /// Display name, unique neither in the experiment nor anywhere else.
    pub name: String,
    /// Kind of model the client named, such as `agent`.
    pub model_type: Option<String>,
    /// The run that produced the model; `None` when none was given or the run was deleted.
    pub source_run_id: Option<String>,
    /// `pending`, `ready` or `failed`.
    pub status: String,
    /// Message about the status, such as why an upload failed.
    #[sea_orm(column_type = "Text", nullable)]
    pub status_message: Option<String>,
    /// Artifact URI: the experiment's artifact location and `models/<id>/artifacts`.
    #[sea_orm(column_type = "Text")]
    pub artifact_location: String,
    /// `active` or `deleted`.
    pub lifecycle_stage: String,
    /// Time of creation, in milliseconds since the Unix epoch.
    pub created_at: i64,
    /// Time of the last change, in milliseconds since the Unix epoch.
    pub updated_at: i64,
}

impl ActiveModelBehavior for ActiveModel {}
