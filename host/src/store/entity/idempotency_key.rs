//! `idempotency_keys`: `Idempotency-Key` headers of write requests and the responses they got.

use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

/// A key one caller sent with a write request, and the stored response once it finished.
#[sea_orm::model]
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, Serialize, Deserialize)]
#[sea_orm(table_name = "idempotency_keys")]
pub struct Model {
    /// Name of the caller (token name, or `local`), so two callers' keys never collide.
    #[sea_orm(primary_key, auto_increment = false)]
    pub caller: String,
    /// The `Idempotency-Key` header.
    #[sea_orm(primary_key, auto_increment = false)]
    pub key: String,
    /// Lowercase hex SHA-256 over the method, path and body, so a reused key with another
    /// request is recognised.
    pub request_hash: String,
    /// HTTP status of the response, or `None` while the request is in progress.
    pub response_status: Option<i32>,
    /// Response headers as a JSON array of `[name, value]` pairs.
    pub response_headers: Option<Json>,
    /// Response body, or `None` while in progress or when the body was too large to keep.
    pub response_body: Option<Vec<u8>>,
    /// Time the key was first used, in milliseconds since the Unix epoch.
    pub created_at: i64,
    /// Time the response was stored, in milliseconds since the Unix epoch.
    pub completed_at: Option<i64>,
}

impl ActiveModelBehavior for ActiveModel {}
