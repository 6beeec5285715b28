//! `run_artifacts`: names under which runs and step runs consumed or produced artifacts.

use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

/// A named input or output of a run or of one of its step runs, pointing at an artifact.
#[sea_orm::model]
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, Serialize, Deserialize)]
#[sea_orm(table_name = "run_artifacts")]
pub struct Model {
    /// Surrogate key.
    #[sea_orm(primary_key)]
    pub id: i64,
    /// The run.
    pub run_id: String,
    /// The step run; `None` for run-level inputs and outputs.
    pub step_run_id: Option<String>,
    /// Name of the input or output, such as `model` or `report`.
    pub name: String,
    /// Digest of the artifact.
    pub digest: String,
    /// Whether the artifact was consumed or produced.
    pub direction: Direction,
    /// Time of linking, in milliseconds since the Unix epoch.
    pub created_at: i64,
    /// The run.
    #[sea_orm(belongs_to, from = "run_id", to = "id")]
    pub run: BelongsTo<super::run::Entity>,
    /// The artifact's metadata.
    #[sea_orm(belongs_to, from = "digest", to = "digest")]
    pub artifact: BelongsTo<super::artifact::Entity>,
}

impl ActiveModelBehavior for ActiveModel {}

/// Whether a run or step consumed or produced an artifact.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, EnumIter, DeriveActiveEnum, Serialize, Deserialize,
)]
#[sea_orm(
    rs_type = "String",
    db_type = "String(StringLen::None)",
    rename_all = "snake_case"
)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// Consumed.
    Input,
    /// Produced.
    Output,
}

super::text_enum!(Direction, "artifact direction");
