//! `metrics`: every logged metric value, run-level or step-level.

use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

/// One point of a metric time series.
#[sea_orm::model]
#[derive(Clone, Debug, PartialEq, DeriveEntityModel, Serialize, Deserialize)]
#[sea_orm(table_name = "metrics")]
pub struct Model {
    /// Insertion order.
    #[sea_orm(primary_key)]
    pub id: i64,
    /// The run.
    pub run_id: String,
    /// The step run that logged the value; `None` for run-level metrics.
    pub step_run_id: Option<String>,
    /// Metric name.
    pub key: String,
    /// The value; `None` stands for NaN because SQLite stores NaN as NULL. Infinities are
    /// stored as they are.
    pub value: Option<f64>,
    /// Training step or iteration the value belongs to.
    pub step: i64,
    /// Time the value was measured, in milliseconds since the Unix epoch.
    pub timestamp_ms: i64,
    /// The run the value belongs to.
    #[sea_orm(belongs_to, from = "run_id", to = "id")]
    pub run: BelongsTo<super::run::Entity>,
}

impl ActiveModelBehavior for ActiveModel {}
