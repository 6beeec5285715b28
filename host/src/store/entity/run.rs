//! `runs`: one row per pipeline run or external run.

use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

/// A pipeline run, or a run reported by an external client.
#[sea_orm::model]
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, Serialize, Deserialize)]
#[sea_orm(table_name = "runs")]
pub struct Model {
    /// UUIDv7, so ids sort by creation time.
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    /// Project the run belongs to.
    pub project_id: i64,
    /// Pipeline definition that was run; `None` for external runs.
    pub pipeline_id: Option<i64>,
    /// Display name, not necessarily unique.
    pub name: String,
    /// Lifecycle state.
    pub status: RunStatus,
    /// Origin of the run: command line, API, schedule or external client.
    pub source: RunSource,
    /// User or API token name that started the run.
    pub user_name: String,
    /// Seed of the run's deterministic randomness, when it has one.
    pub seed: Option<i64>,
    /// Creation time, in milliseconds since the Unix epoch.
    pub created_at: i64,
    /// Time the run entered `running`, in milliseconds since the Unix epoch.
    pub started_at: Option<i64>,
    /// Time the run reached a final status, in milliseconds since the Unix epoch.
    pub ended_at: Option<i64>,
    /// Reason the run failed, was cancelled or was interrupted.
    #[sea_orm(column_type = "Text", nullable)]
    pub error: Option<String>,
    /// Process id of the runledger process executing the run, so a restart can recognise runs
    /// left behind by a process that died.
    pub owner_pid: Option<i64>,
    /// Host name of the machine of `owner_pid`.
    pub owner_hostname: Option<String>,
    /// The owning project.
    #[sea_orm(belongs_to, from = "project_id", to = "id")]
    pub project: BelongsTo<super::project::Entity>,
    /// The pipeline definition, if any.
    #[sea_orm(belongs_to, from = "pipeline_id", to = "id")]
    pub pipeline: BelongsTo<Option<super::pipeline::Entity>>,
}

impl ActiveModelBehavior for ActiveModel {}

/// Lifecycle state of a run.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, EnumIter, DeriveActiveEnum, Serialize, Deserialize,
)]
#[sea_orm(
    rs_type = "String",
    db_type = "String(StringLen::None)",
    rename_all = "snake_case"
)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    /// Recorded, waiting for a worker.
    Queued,
    /// A process is executing it.
    Running,
    /// Every step finished without error.
    Succeeded,
    /// A step or the run itself failed.
    Failed,
    /// Stopped on request.
    Cancelled,
    /// Its owning process died before it finished.
    Interrupted,
}

impl RunStatus {
    /// Whether the run has ended and its status will not change by itself.
    pub fn is_final(self) -> bool {
        !matches!(self, Self::Queued | Self::Running)
    }
}

super::text_enum!(RunStatus, "run status");

/// Origin of a run.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, EnumIter, DeriveActiveEnum, Serialize, Deserialize,
)]
#[sea_orm(
    rs_type = "String",
    db_type = "String(StringLen::None)",
    rename_all = "snake_case"
)]
#[serde(rename_all = "snake_case")]
pub enum RunSource {
    /// The `runledger` command line.
    Cli,
    /// The native REST API.
    Api,
    /// A schedule.
    Schedule,
    /// A client that executes the run elsewhere and reports it, such as an MLflow client.
    External,
}

super::text_enum!(RunSource, "run source");
