//! `mlflow_logged_model_params`: key-value params of logged models.

use sea_orm::entity::prelude::*;

/// One param of a logged model. Like a run's params, a param keeps its first value.
#[sea_orm::model]
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "mlflow_logged_model_params")]
pub struct Model {
    /// The model.
    #[sea_orm(primary_key, auto_increment = false)]
    pub model_id: String,
    /// Param name.
    #[sea_orm(primary_key, auto_increment = false)]
    pub key: String,
    /// Param value.
    #[sea_orm(column_type = "Text")]
    pub value: String,
}

impl ActiveModelBehavior for ActiveModel {}
