//! `api_tokens`: bearer tokens of the HTTP API, stored as hashes.

use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

/// A named bearer token and the role it grants.
#[sea_orm::model]
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, Serialize, Deserialize)]
#[sea_orm(table_name = "api_tokens")]
pub struct Model {
    /// Row id.
    #[sea_orm(primary_key)]
    pub id: i64,
    /// Unique name, shown in logs and listings in place of the token.
    pub name: String,
    /// Role: `viewer`, `editor`, `approver` or `admin`.
    pub role: String,
    /// Lowercase hex SHA-256 of the token. The token itself is never stored.
    pub token_hash: String,
    /// Creation time, in milliseconds since the Unix epoch.
    pub created_at: i64,
    /// Time the token was revoked; `None` while it is valid.
    pub revoked_at: Option<i64>,
}

impl ActiveModelBehavior for ActiveModel {}
