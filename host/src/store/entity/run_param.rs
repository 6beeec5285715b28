//! `run_params`: resolved parameters of a run, immutable once written.

use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

/// One parameter of a run.
#[sea_orm::model]
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, Serialize, Deserialize)]
#[sea_orm(table_name = "run_params")]
pub struct Model {
    /// The run.
    #[sea_orm(primary_key, auto_increment = false)]
    pub run_id: String,
    /// Parameter name.
    #[sea_orm(primary_key, auto_increment = false)]
    pub key: String,
    /// Parameter value as text.
    #[sea_orm(column_type = "Text")]
    pub value: String,
    /// The run the parameter belongs to.
    #[sea_orm(belongs_to, from = "run_id", to = "id")]
    pub run: BelongsTo<super::run::Entity>,
}

impl ActiveModelBehavior for ActiveModel {}
