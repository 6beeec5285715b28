//! `datasets`: raw data that entered the system from outside.

use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

/// A dataset: a pipeline input file or a dataset a client declared, identified by the
/// SHA-256 of its content.
#[sea_orm::model]
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, Serialize, Deserialize)]
#[sea_orm(table_name = "datasets")]
pub struct Model {
    /// Lowercase hex SHA-256 of the content.
    #[sea_orm(primary_key, auto_increment = false)]
    pub digest: String,
    /// Name it was first recorded under.
    pub name: String,
    /// Location it was first read from, such as a file path or URL.
    #[sea_orm(column_type = "Text")]
    pub uri: String,
    /// Time of the first record, in milliseconds since the Unix epoch.
    pub created_at: i64,
}

impl ActiveModelBehavior for ActiveModel {}
