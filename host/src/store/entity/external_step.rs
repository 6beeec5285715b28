//! `external_steps`: step runs that a client outside the sandbox executes and reports.

use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

/// An external step of a run: the outputs it must report and the state of the wait for its
/// report. The step's status, times and records stay in its `step_runs` row.
#[sea_orm::model]
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, Serialize, Deserialize)]
#[sea_orm(table_name = "external_steps")]
pub struct Model {
    /// The step run.
    #[sea_orm(primary_key, auto_increment = false)]
    pub step_run_id: String,
    /// The run the step belongs to.
    pub run_id: String,
    /// Lowercase hex SHA-256 of the step token. The token itself is never stored.
    pub token_hash: String,
    /// Output names the pipeline declares for the step, as a JSON array of strings.
    pub outputs_json: Json,
    /// State of the wait for the report.
    pub state: ExternalState,
    /// The step's inputs, recorded when the wait starts: a JSON array of objects with `name`,
    /// `digest`, `size`, `media_type` and `dataset` (whether the input is a recorded dataset).
    pub inputs_json: Option<Json>,
    /// Creation time, in milliseconds since the Unix epoch.
    pub created_at: i64,
    /// Time the engine started waiting for the report, in milliseconds since the Unix epoch.
    pub waiting_since: Option<i64>,
    /// Time the wait ended by a report, a timeout or a cancellation, in milliseconds since the
    /// Unix epoch.
    pub ended_at: Option<i64>,
    /// The step run.
    #[sea_orm(belongs_to, from = "step_run_id", to = "id")]
    pub step_run: BelongsTo<super::step_run::Entity>,
    /// The run.
    #[sea_orm(belongs_to, from = "run_id", to = "id")]
    pub run: BelongsTo<super::run::Entity>,
}

impl ActiveModelBehavior for ActiveModel {}

/// State of the wait for an external step's report.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, EnumIter, DeriveActiveEnum, Serialize, Deserialize,
)]
#[sea_orm(
    rs_type = "String",
    db_type = "String(StringLen::None)",
    rename_all = "snake_case"
)]
#[serde(rename_all = "snake_case")]
pub enum ExternalState {
    /// The step's inputs are not ready yet, or the step never started.
    Pending,
    /// The engine waits for the report; only now is a report accepted.
    Waiting,
    /// A client reported the step.
    Reported,
    /// The step's timeout passed before a report arrived.
    TimedOut,
    /// The run was cancelled during the wait.
    Cancelled,
}

super::text_enum!(ExternalState, "external step state");
