//! Creates the per-block summaries of metric series that chart reads of long series use, and
//! fills them from the metric values already stored.
//!
//! From then on, each transaction that inserts metric rows updates the summaries too.
//! `store::downsample::rollup` describes what a block contains and how summaries merge.

use super::cascade;
use crate::store::downsample::rollup;
use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub(super) struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        create_metric_blocks(manager).await?;
        rollup::backfill(manager.get_connection())
            .await
            .map_err(|error| DbErr::Custom(format!("filling metric_blocks failed: {error}")))
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(MetricBlocks::Table).to_owned())
            .await
    }

    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }
}

#[derive(DeriveIden, Clone, Copy)]
enum Runs {
    Table,
    Id,
}

#[derive(DeriveIden, Clone, Copy)]
enum MetricBlocks {
    Table,
    RunId,
    Key,
    Block,
    PointCount,
    MinValue,
    MinStep,
    MinTimestampMs,
    MinStepRunId,
    MaxValue,
    MaxStep,
    MaxTimestampMs,
    MaxStepRunId,
    FirstValue,
    FirstStep,
    FirstTimestampMs,
    FirstStepRunId,
    LastValue,
    LastStep,
    LastTimestampMs,
    LastStepRunId,
}

/// Creates the table. A value column is NULL for NaN, as in `metrics`, and the `min_` point is
/// all NULL when every value of the block is NaN.
async fn create_metric_blocks(manager: &SchemaManager<'_>) -> Result<(), DbErr> {
    let table = Table::create()
        .table(MetricBlocks::Table)
        .col(string(MetricBlocks::RunId))
        .col(string(MetricBlocks::Key))
        .col(big_integer(MetricBlocks::Block))
        .col(big_integer(MetricBlocks::PointCount))
        .col(double_null(MetricBlocks::MinValue))
        .col(big_integer_null(MetricBlocks::MinStep))
        .col(big_integer_null(MetricBlocks::MinTimestampMs))
        .col(string_null(MetricBlocks::MinStepRunId))
        .col(double_null(MetricBlocks::MaxValue))
        .col(big_integer(MetricBlocks::MaxStep))
        .col(big_integer(MetricBlocks::MaxTimestampMs))
        .col(string_null(MetricBlocks::MaxStepRunId))
        .col(double_null(MetricBlocks::FirstValue))
        .col(big_integer(MetricBlocks::FirstStep))
        .col(big_integer(MetricBlocks::FirstTimestampMs))
        .col(string_null(MetricBlocks::FirstStepRunId))
        .col(double_null(MetricBlocks::LastValue))
        .col(big_integer(MetricBlocks::LastStep))
        .col(big_integer(MetricBlocks::LastTimestampMs))
        .col(string_null(MetricBlocks::LastStepRunId))
        .primary_key(
            Index::create()
                .col(MetricBlocks::RunId)
                .col(MetricBlocks::Key)
                .col(MetricBlocks::Block),
        )
        .foreign_key(&mut cascade(MetricBlocks::RunId, Runs::Table, Runs::Id))
        .to_owned();
    manager.create_table(table).await
}
