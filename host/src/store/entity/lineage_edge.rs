//! `lineage_edges`: the lineage graph, recorded as edges between datasets, artifacts, step runs
//! and the runs and datasets of OpenLineage events.

use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

/// A directed edge: `source` flowed into `target` during `run_id`. A dataset or artifact
/// flows into the step run that consumed it, and a step run into the artifacts it produced. For
/// OpenLineage events, a named dataset flows into the run and the run into a named dataset.
#[sea_orm::model]
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, Serialize, Deserialize)]
#[sea_orm(table_name = "lineage_edges")]
pub struct Model {
    /// Surrogate key.
    #[sea_orm(primary_key)]
    pub id: i64,
    /// The run during which the edge was recorded.
    pub run_id: String,
    /// Kind of the source node.
    pub source_kind: NodeKind,
    /// Id of the source node: a digest for datasets and artifacts, a UUID for step runs and
    /// runs, `NAMESPACE/NAME` for named datasets.
    pub source_id: String,
    /// Kind of the target node.
    pub target_kind: NodeKind,
    /// Id of the target node, as for `source_id`.
    pub target_id: String,
    /// Time of recording, in milliseconds since the Unix epoch.
    pub created_at: i64,
    /// The run.
    #[sea_orm(belongs_to, from = "run_id", to = "id")]
    pub run: BelongsTo<super::run::Entity>,
}

impl ActiveModelBehavior for ActiveModel {}

/// Kind of a lineage node.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    EnumIter,
    DeriveActiveEnum,
    Serialize,
    Deserialize,
)]
#[sea_orm(
    rs_type = "String",
    db_type = "String(StringLen::None)",
    rename_all = "snake_case"
)]
#[serde(rename_all = "snake_case")]
pub enum NodeKind {
    /// A row of `datasets`, identified by digest.
    Dataset,
    /// A row of `artifacts`, identified by digest.
    Artifact,
    /// A row of `step_runs`, identified by UUID.
    StepRun,
    /// A row of `runs`, identified by UUID: a run reported by OpenLineage events, which names
    /// no steps.
    Run,
    /// A row of `openlineage_datasets`, identified by `NAMESPACE/NAME`.
    NamedDataset,
}

super::text_enum!(NodeKind, "lineage node kind");
