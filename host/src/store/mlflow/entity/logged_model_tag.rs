//! `mlflow_logged_model_tags`: key-value tags of logged models.

use sea_orm::entity::prelude::*;

/// One tag of a logged model. Setting a tag again replaces its value.
#[sea_orm::model]
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "mlflow_logged_model_tags")]
pub struct Model {
    /// The model.
    #[sea_orm(primary_key, auto_increment = false)]
    pub model_id: String,
    /// Tag name.
    #[sea_orm(primary_key, auto_increment = false)]
    pub key: String,
    /// Tag value.
    #[sea_orm(column_type = "Text")]
    pub value: String,
}

impl ActiveModelBehavior for ActiveModel {}
