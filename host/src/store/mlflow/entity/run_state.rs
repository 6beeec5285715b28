//! `mlflow_runs`: the MLflow lifecycle of a run. A run without a row is active.

use sea_orm::entity::prelude::*;

/// Lifecycle of a run seen as an MLflow run.
#[sea_orm::model]
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "mlflow_runs")]
pub struct Model {
    /// The run.
    #[sea_orm(primary_key, auto_increment = false)]
    pub run_id: String,
    /// `active` or `deleted`.
    pub lifecycle_stage: String,
    /// Time of deletion, in milliseconds since the Unix epoch, while deleted.
    pub deleted_at: Option<i64>,
}

impl ActiveModelBehavior for ActiveModel {}
