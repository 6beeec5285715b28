//! Creates metric time series and the index of each run's latest metric values.

use super::{cascade, index};
use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub(super) struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        create_metrics(manager).await?;
        create_latest_metrics(manager).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [LatestMetrics::Table.into_iden(), Metrics::Table.into_iden()] {
            manager
                .drop_table(Table::drop().table(table).to_owned())
                .await?;
        }
        Ok(())
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
enum StepRuns {
    Table,
    Id,
}

#[derive(DeriveIden, Clone, Copy)]
enum Metrics {
    Table,
    Id,
    RunId,
    StepRunId,
    Key,
    Value,
    Step,
    TimestampMs,
}

#[derive(DeriveIden, Clone, Copy)]
enum LatestMetrics {
    Table,
    RunId,
    Key,
    Value,
    Step,
    TimestampMs,
}

async fn create_metrics(manager: &SchemaManager<'_>) -> Result<(), DbErr> {
    // `value` is NULL for NaN, because SQLite turns a NaN it is given into NULL anyway.
    let table = Table::create()
        .table(Metrics::Table)
        .col(big_pk_auto(Metrics::Id))
        .col(string(Metrics::RunId))
        .col(string_null(Metrics::StepRunId))
        .col(string(Metrics::Key))
        .col(double_null(Metrics::Value))
        .col(big_integer(Metrics::Step))
        .col(big_integer(Metrics::TimestampMs))
        .foreign_key(&mut cascade(Metrics::RunId, Runs::Table, Runs::Id))
        .foreign_key(&mut cascade(
            Metrics::StepRunId,
            StepRuns::Table,
            StepRuns::Id,
        ))
        .to_owned();
    manager.create_table(table).await?;

    let history = [
        Metrics::RunId,
        Metrics::Key,
        Metrics::Step,
        Metrics::TimestampMs,
    ];
    manager
        .create_index(index(Metrics::Table, &history))
        .await?;
    manager
        .create_index(index(Metrics::Table, &[Metrics::StepRunId, Metrics::Key]))
        .await
}

async fn create_latest_metrics(manager: &SchemaManager<'_>) -> Result<(), DbErr> {
    let table = Table::create()
        .table(LatestMetrics::Table)
        .col(string(LatestMetrics::RunId))
        .col(string(LatestMetrics::Key))
        .col(double_null(LatestMetrics::Value))
        .col(big_integer(LatestMetrics::Step))
        .col(big_integer(LatestMetrics::TimestampMs))
        .primary_key(
            Index::create()
                .col(LatestMetrics::RunId)
                .col(LatestMetrics::Key),
        )
        .foreign_key(&mut cascade(LatestMetrics::RunId, Runs::Table, Runs::Id))
        .to_owned();
    manager.create_table(table).await?;

    // Searching and comparing runs by metric looks values up by key across runs.
    manager
        .create_index(index(
            LatestMetrics::Table,
            &[LatestMetrics::Key, LatestMetrics::Value],
        ))
        .await
}
