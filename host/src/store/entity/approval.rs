//! `approvals`: approvals of pending promotion requests.

use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

/// One approval of a promotion. Each approver approves a promotion at most once.
#[sea_orm::model]
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, Serialize, Deserialize)]
#[sea_orm(table_name = "approvals")]
pub struct Model {
    /// Row id.
    #[sea_orm(primary_key)]
    pub id: i64,
    /// The promotion.
    pub promotion_id: i64,
    /// User or API token name that approved.
    pub approver: String,
    /// Role the approver held when approving: `viewer`, `editor`, `approver` or `admin`.
    pub role: String,
    /// Free-text comment of the approver.
    #[sea_orm(column_type = "Text")]
    pub comment: String,
    /// Time of the approval, in milliseconds since the Unix epoch.
    pub created_at: i64,
    /// The promotion.
    #[sea_orm(belongs_to, from = "promotion_id", to = "id")]
    pub promotion: BelongsTo<super::promotion::Entity>,
}

impl ActiveModelBehavior for ActiveModel {}
