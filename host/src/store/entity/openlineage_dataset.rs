//! `openlineage_datasets`: datasets named by OpenLineage events, identified by namespace and
//! name rather than by content.

use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

/// A dataset an OpenLineage event named as an input or output.
#[sea_orm::model]
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, Serialize, Deserialize)]
#[sea_orm(table_name = "openlineage_datasets")]
pub struct Model {
    /// Id of the dataset's lineage node: `NAMESPACE/NAME`, the URI form of OpenLineage's
    /// dataset naming.
    #[sea_orm(primary_key, auto_increment = false, column_type = "Text")]
    pub node_id: String,
    /// Namespace, such as `postgres://db:5432` or `s3://bucket`.
    #[sea_orm(column_type = "Text")]
    pub namespace: String,
    /// Name within the namespace, such as `public.orders` or `raw/2024/orders.csv`.
    #[sea_orm(column_type = "Text")]
    pub name: String,
    /// Dataset facets of the latest event that sent any, such as `schema`.
    pub facets_json: Option<Json>,
    /// Time the dataset was first named, in milliseconds since the Unix epoch.
    pub created_at: i64,
    /// Time of the latest event that named it, in milliseconds since the Unix epoch.
    pub updated_at: i64,
}

impl ActiveModelBehavior for ActiveModel {}
