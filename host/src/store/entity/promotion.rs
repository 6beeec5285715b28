//! `promotions`: requests to point an alias of a model at one of its versions.

use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

/// A promotion request and its status.
#[sea_orm::model]
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, Serialize, Deserialize)]
#[sea_orm(table_name = "promotions")]
pub struct Model {
    /// Row id.
    #[sea_orm(primary_key)]
    pub id: i64,
    /// The registered model.
    pub model_id: i64,
    /// The model version to promote.
    pub version_id: i64,
    /// The alias to move.
    pub alias: String,
    /// User or API token name that requested the promotion.
    pub requester: String,
    /// Status of the request.
    pub status: PromotionStatus,
    /// Reason the request was denied or superseded; `None` otherwise.
    #[sea_orm(column_type = "Text", nullable)]
    pub reason: Option<String>,
    /// Time of the request, in milliseconds since the Unix epoch.
    pub created_at: i64,
    /// Time the request left `pending`, in milliseconds since the Unix epoch.
    pub decided_at: Option<i64>,
    /// The registered model.
    #[sea_orm(belongs_to, from = "model_id", to = "id")]
    pub model: BelongsTo<super::registered_model::Entity>,
    /// The model version.
    #[sea_orm(belongs_to, from = "version_id", to = "id")]
    pub version: BelongsTo<super::model_version::Entity>,
}

impl ActiveModelBehavior for ActiveModel {}

/// Status of a promotion request.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, EnumIter, DeriveActiveEnum, Serialize, Deserialize,
)]
#[sea_orm(
    rs_type = "String",
    db_type = "String(StringLen::None)",
    rename_all = "snake_case"
)]
#[serde(rename_all = "snake_case")]
pub enum PromotionStatus {
    /// Waiting for approvals.
    Pending,
    /// Every policy allowed it, and the alias moved.
    Completed,
    /// A policy denied it.
    Denied,
    /// A later request for the same alias replaced it while it was pending.
    Superseded,
}

super::text_enum!(PromotionStatus, "promotion status");
