//! `mlflow_experiment_tags`: key-value tags of a project seen as an MLflow experiment.

use sea_orm::entity::prelude::*;

/// One experiment tag. Setting a tag again replaces its value.
#[sea_orm::model]
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "mlflow_experiment_tags")]
pub struct Model {
    /// The project.
    #[sea_orm(primary_key, auto_increment = false)]
    pub project_id: i64,
    /// Tag name.
    #[sea_orm(primary_key, auto_increment = false)]
    pub key: String,
    /// Tag value.
    #[sea_orm(column_type = "Text")]
    pub value: String,
}

impl ActiveModelBehavior for ActiveModel {}
