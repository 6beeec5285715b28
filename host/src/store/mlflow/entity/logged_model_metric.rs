//! `mlflow_logged_model_metrics`: metric values that runs logged for logged models.

use sea_orm::entity::prelude::*;

/// One metric value of a logged model. The run also records the value as its own metric.
#[sea_orm::model]
#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "mlflow_logged_model_metrics")]
pub struct Model {
    /// Insertion order.
    #[sea_orm(primary_key)]
    pub id: i64,
    /// The model.
    pub model_id: String,
    /// The run that logged the value.
    pub run_id: String,
    /// Metric name.
    pub key: String,
    /// The value; `None` stands for NaN because SQLite stores NaN as NULL.
    pub value: Option<f64>,
    /// Time the value was measured, in milliseconds since the Unix epoch.
    pub timestamp_ms: i64,
    /// Training step or iteration the value belongs to.
    pub step: i64,
    /// Name of the dataset the value was measured on.
    pub dataset_name: Option<String>,
    /// Digest of the dataset the value was measured on.
    pub dataset_digest: Option<String>,
}

impl ActiveModelBehavior for ActiveModel {}
