//! `audit_log`: the append-only record of every change to the registry and its governance.
//!
//! Database triggers reject `UPDATE` and `DELETE` on the table, so entries stay even when the
//! model they name is deleted.

use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

/// One audit entry.
#[sea_orm::model]
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, Serialize, Deserialize)]
#[sea_orm(table_name = "audit_log")]
pub struct Model {
    /// Position in the log. Later entries have higher numbers, but numbers may have gaps.
    #[sea_orm(primary_key)]
    pub seq: i64,
    /// Time of the change, in milliseconds since the Unix epoch.
    pub at: i64,
    /// User or API token name that made the change, or `runledger` for decisions the server
    /// made itself.
    pub actor: String,
    /// Kind of change, such as `alias.moved`: the text of an
    /// [`AuditAction`](crate::store::AuditAction).
    pub action: String,
    /// Name of the registered model at the time of the change. `None` for validations of runs
    /// that were not tied to a model version.
    pub model: Option<String>,
    /// Version number concerned, if any.
    pub version: Option<i64>,
    /// Alias concerned, if any.
    pub alias: Option<String>,
    /// Promotion concerned, if any.
    pub promotion_id: Option<i64>,
    /// Details of the change for an auditor, such as the old and new version of a moved alias.
    pub detail: Json,
}

impl ActiveModelBehavior for ActiveModel {}
