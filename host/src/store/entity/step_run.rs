//! `step_runs`: one execution of one pipeline step within a run.

use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

/// A step run. Retries of the step reuse the row and count up `attempts`.
#[sea_orm::model]
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, Serialize, Deserialize)]
#[sea_orm(table_name = "step_runs")]
pub struct Model {
    /// UUIDv7, so ids sort by creation time.
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    /// The run this step belongs to.
    pub run_id: String,
    /// Step name from the pipeline definition.
    pub name: String,
    /// Name of the plugin that executes the step; `None` for steps without a plugin, such as
    /// external ones.
    pub plugin_name: Option<String>,
    /// Version of that plugin.
    pub plugin_version: Option<String>,
    /// Lowercase hex SHA-256 of the plugin component.
    pub plugin_digest: Option<String>,
    /// Executor kind, such as `wasm` or `external`.
    pub executor: String,
    /// Lifecycle state.
    pub status: StepStatus,
    /// Number of attempts started so far.
    pub attempts: i32,
    /// Creation time, in milliseconds since the Unix epoch.
    pub created_at: i64,
    /// Time the first attempt started, in milliseconds since the Unix epoch.
    pub started_at: Option<i64>,
    /// Time the step reached a final status, in milliseconds since the Unix epoch.
    pub ended_at: Option<i64>,
    /// Parameters after defaults and references were resolved.
    pub params_json: Json,
    /// Cache key: SHA-256 over plugin digest, resolved params, input digests and runtime
    /// version. `None` when the step must not be cached.
    pub cache_key: Option<String>,
    /// Step run whose outputs this one reused, when it was a cache hit.
    pub cached_from: Option<String>,
    /// Reason the step failed or was cancelled.
    #[sea_orm(column_type = "Text", nullable)]
    pub error: Option<String>,
    /// The run this step belongs to.
    #[sea_orm(belongs_to, from = "run_id", to = "id")]
    pub run: BelongsTo<super::run::Entity>,
}

impl ActiveModelBehavior for ActiveModel {}

/// Lifecycle state of a step run.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, EnumIter, DeriveActiveEnum, Serialize, Deserialize,
)]
#[sea_orm(
    rs_type = "String",
    db_type = "String(StringLen::None)",
    rename_all = "snake_case"
)]
#[serde(rename_all = "snake_case")]
pub enum StepStatus {
    /// Waiting for its inputs or for a free slot.
    Pending,
    /// An attempt is executing.
    Running,
    /// Finished without error.
    Succeeded,
    /// The last attempt failed.
    Failed,
    /// Not executed because a dependency failed or a condition was false.
    Skipped,
    /// Not executed because an earlier step run with the same cache key supplied the outputs.
    Cached,
    /// Stopped on request, or because its run was interrupted.
    Cancelled,
}

impl StepStatus {
    /// Whether the step has ended and its status will not change by itself.
    pub fn is_final(self) -> bool {
        !matches!(self, Self::Pending | Self::Running)
    }
}

super::text_enum!(StepStatus, "step status");
