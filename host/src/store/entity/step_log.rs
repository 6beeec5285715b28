//! `step_logs`: log lines that step runs emitted.

use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

/// One log line of a step run.
#[sea_orm::model]
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, Serialize, Deserialize)]
#[sea_orm(table_name = "step_logs")]
pub struct Model {
    /// Surrogate key.
    #[sea_orm(primary_key)]
    pub id: i64,
    /// The step run.
    pub step_run_id: String,
    /// Position of the line within the step run, from 0 without gaps.
    pub seq: i64,
    /// Level: `trace`, `debug`, `info`, `warn` or `error`.
    pub level: String,
    /// The message.
    #[sea_orm(column_type = "Text")]
    pub message: String,
    /// Structured fields attached to the line, as a JSON object.
    pub fields_json: Option<Json>,
    /// Time the line was emitted, in milliseconds since the Unix epoch.
    pub timestamp_ms: i64,
    /// The step run.
    #[sea_orm(belongs_to, from = "step_run_id", to = "id")]
    pub step_run: BelongsTo<super::step_run::Entity>,
}

impl ActiveModelBehavior for ActiveModel {}
