//! `openlineage_runs`: the runs created from OpenLineage run events, with their job.

use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

/// The OpenLineage side of a run: the job it executed and the parent run that started it. The
/// run's id is the OpenLineage `runId`, and its status and times live in its `runs` row.
#[sea_orm::model]
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, Serialize, Deserialize)]
#[sea_orm(table_name = "openlineage_runs")]
pub struct Model {
    /// The run, whose id is the OpenLineage `runId`.
    #[sea_orm(primary_key, auto_increment = false)]
    pub run_id: String,
    /// Namespace of the job, such as the scheduler that started it.
    #[sea_orm(column_type = "Text")]
    pub job_namespace: String,
    /// Name of the job within its namespace.
    #[sea_orm(column_type = "Text")]
    pub job_name: String,
    /// `runId` of the parent run from the `parent` run facet, such as the DAG run of a task.
    pub parent_run_id: Option<String>,
    /// Time of the first event received, in milliseconds since the Unix epoch.
    pub created_at: i64,
    /// The run.
    #[sea_orm(belongs_to, from = "run_id", to = "id")]
    pub run: BelongsTo<super::run::Entity>,
}

impl ActiveModelBehavior for ActiveModel {}
