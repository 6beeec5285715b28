//! `artifacts`: metadata of content-addressed artifacts. The bytes live in the artifact store.

use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

/// Metadata of one stored artifact.
#[sea_orm::model]
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, Serialize, Deserialize)]
#[sea_orm(table_name = "artifacts")]
pub struct Model {
    /// Lowercase hex SHA-256 of the content.
    #[sea_orm(primary_key, auto_increment = false)]
    pub digest: String,
    /// Size of the content in bytes.
    pub size: i64,
    /// Media type, such as `application/octet-stream`.
    pub media_type: String,
    /// Time the artifact was first recorded, in milliseconds since the Unix epoch.
    pub created_at: i64,
}

impl ActiveModelBehavior for ActiveModel {}
