//! `mlflow_dataset_inputs`: datasets that MLflow clients declared as inputs of runs.

use sea_orm::entity::prelude::*;

/// A dataset an MLflow client logged as an input of a run, with the fields of MLflow's
/// `Dataset` message. MLflow identifies a dataset by name and digest.
#[sea_orm::model]
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "mlflow_dataset_inputs")]
pub struct Model {
    /// Surrogate key.
    #[sea_orm(primary_key)]
    pub id: i64,
    /// The run.
    pub run_id: String,
    /// Dataset name.
    pub name: String,
    /// Digest the client computed; MLflow's digests are short hashes, not SHA-256.
    pub digest: String,
    /// Kind of source, such as `http` or `local`.
    pub source_type: String,
    /// The source, as the JSON text the client sent.
    #[sea_orm(column_type = "Text")]
    pub source: String,
    /// Schema, as the JSON text the client sent.
    #[sea_orm(column_type = "Text", nullable)]
    pub schema: Option<String>,
    /// Profile, as the JSON text the client sent.
    #[sea_orm(column_type = "Text", nullable)]
    pub profile: Option<String>,
    /// Input tags, such as `mlflow.data.context`, as a JSON object.
    pub tags_json: Json,
    /// Time of logging, in milliseconds since the Unix epoch.
    pub created_at: i64,
}

impl ActiveModelBehavior for ActiveModel {}
