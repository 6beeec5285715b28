//! `mlflow_logged_model_artifacts`: files uploaded to logged models' artifact locations.

use sea_orm::entity::prelude::*;

/// One file of a logged model, stored in the content-addressed artifact store.
#[sea_orm::model]
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "mlflow_logged_model_artifacts")]
pub struct Model {
    /// The model.
    #[sea_orm(primary_key, auto_increment = false)]
    pub model_id: String,
    /// Path under the model's artifact root, such as `MLmodel`.
    #[sea_orm(primary_key, auto_increment = false)]
    pub path: String,
    /// SHA-256 of the content, a key of `artifacts`.
    pub digest: String,
    /// Time of the upload, in milliseconds since the Unix epoch.
    pub created_at: i64,
}

impl ActiveModelBehavior for ActiveModel {}
