//! `latest_metrics`: the latest value of every metric key of a run, for search and comparison.

use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

/// The latest value of one metric key: the one with the highest step, and among those the
/// highest timestamp. Maintained in the same transaction as the `metrics` insert.
#[sea_orm::model]
#[derive(Clone, Debug, PartialEq, DeriveEntityModel, Serialize, Deserialize)]
#[sea_orm(table_name = "latest_metrics")]
pub struct Model {
    /// The run.
    #[sea_orm(primary_key, auto_increment = false)]
    pub run_id: String,
    /// Metric name.
    #[sea_orm(primary_key, auto_increment = false)]
    pub key: String,
    /// The value; `None` stands for NaN, as in `metrics`.
    pub value: Option<f64>,
    /// Step of the value.
    pub step: i64,
    /// Time of the value, in milliseconds since the Unix epoch.
    pub timestamp_ms: i64,
    /// The run the value belongs to.
    #[sea_orm(belongs_to, from = "run_id", to = "id")]
    pub run: BelongsTo<super::run::Entity>,
}

impl ActiveModelBehavior for ActiveModel {}
