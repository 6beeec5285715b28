//! `environments`: the code and environment snapshot of each run.

use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

/// The environment a run executed in, as JSON. `store::EnvironmentSnapshot` is its typed form.
#[sea_orm::model]
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, Serialize, Deserialize)]
#[sea_orm(table_name = "environments")]
pub struct Model {
    /// The run.
    #[sea_orm(primary_key, auto_increment = false)]
    pub run_id: String,
    /// The snapshot.
    pub snapshot_json: Json,
    /// The run.
    #[sea_orm(belongs_to, from = "run_id", to = "id")]
    pub run: BelongsTo<super::run::Entity>,
}

impl ActiveModelBehavior for ActiveModel {}
