//! `plugins`: every plugin component the host has seen.

use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

/// A plugin, identified by the SHA-256 of its component.
#[sea_orm::model]
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, Serialize, Deserialize)]
#[sea_orm(table_name = "plugins")]
pub struct Model {
    /// Lowercase hex SHA-256 of the component (`.wasm`) bytes.
    #[sea_orm(primary_key, auto_increment = false)]
    pub digest: String,
    /// Name from `plugin.toml`.
    pub name: String,
    /// Version from `plugin.toml`.
    pub version: String,
    /// Plugin kind, such as `step-executor` or `policy`.
    pub kind: String,
    /// The `plugin.toml` text.
    #[sea_orm(column_type = "Text")]
    pub manifest_text: String,
    /// Time the digest was first recorded, in milliseconds since the Unix epoch.
    pub first_seen: i64,
}

impl ActiveModelBehavior for ActiveModel {}
