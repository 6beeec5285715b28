//! `mlflow_run_model_links`: logged models that runs declared as inputs or outputs.

use sea_orm::entity::prelude::*;

/// A logged model a run used (`input`) or produced (`output`).
#[sea_orm::model]
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "mlflow_run_model_links")]
pub struct Model {
    /// The run.
    #[sea_orm(primary_key, auto_increment = false)]
    pub run_id: String,
    /// The model.
    #[sea_orm(primary_key, auto_increment = false)]
    pub model_id: String,
    /// `input` or `output`.
    #[sea_orm(primary_key, auto_increment = false)]
    pub direction: String,
    /// Step of the run at which an output was produced; 0 for inputs.
    pub step: i64,
    /// Time of logging, in milliseconds since the Unix epoch.
    pub created_at: i64,
}

impl ActiveModelBehavior for ActiveModel {}
