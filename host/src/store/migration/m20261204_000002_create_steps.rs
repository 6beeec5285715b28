//! Creates plugins, step runs and step log lines.

use super::{cascade, index, reference};
use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub(super) struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        create_plugins(manager).await?;
        create_step_runs(manager).await?;
        create_step_logs(manager).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            StepLogs::Table.into_iden(),
            StepRuns::Table.into_iden(),
            Plugins::Table.into_iden(),
        ] {
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
enum Plugins {
    Table,
    Digest,
    Name,
    Version,
    Kind,
    ManifestText,
    FirstSeen,
}

#[derive(DeriveIden, Clone, Copy)]
enum StepRuns {
    Table,
    Id,
    RunId,
    Name,
    PluginName,
    PluginVersion,
    PluginDigest,
    Executor,
    Status,
    Attempts,
    CreatedAt,
    StartedAt,
    EndedAt,
    ParamsJson,
    CacheKey,
    CachedFrom,
    Error,
}

#[derive(DeriveIden, Clone, Copy)]
enum StepLogs {
    Table,
    Id,
    StepRunId,
    Seq,
    Level,
    Message,
    FieldsJson,
    TimestampMs,
}

async fn create_plugins(manager: &SchemaManager<'_>) -> Result<(), DbErr> {
    let table = Table::create()
        .table(Plugins::Table)
        .col(string(Plugins::Digest).primary_key())
        .col(string(Plugins::Name))
        .col(string(Plugins::Version))
        .col(string(Plugins::Kind))
        .col(text(Plugins::ManifestText))
        .col(big_integer(Plugins::FirstSeen))
        .to_owned();
    manager.create_table(table).await?;

    manager
        .create_index(index(Plugins::Table, &[Plugins::Name, Plugins::Version]))
        .await
}

async fn create_step_runs(manager: &SchemaManager<'_>) -> Result<(), DbErr> {
    let table = Table::create()
        .table(StepRuns::Table)
        .col(string(StepRuns::Id).primary_key())
        .col(string(StepRuns::RunId))
        .col(string(StepRuns::Name))
        .col(string_null(StepRuns::PluginName))
        .col(string_null(StepRuns::PluginVersion))
        .col(string_null(StepRuns::PluginDigest))
        .col(string(StepRuns::Executor))
        .col(string(StepRuns::Status))
        .col(integer(StepRuns::Attempts))
        .col(big_integer(StepRuns::CreatedAt))
        .col(big_integer_null(StepRuns::StartedAt))
        .col(big_integer_null(StepRuns::EndedAt))
        .col(json(StepRuns::ParamsJson))
        .col(string_null(StepRuns::CacheKey))
        .col(string_null(StepRuns::CachedFrom))
        .col(text_null(StepRuns::Error))
        .foreign_key(&mut cascade(StepRuns::RunId, Runs::Table, Runs::Id))
        .foreign_key(&mut reference(
            StepRuns::CachedFrom,
            StepRuns::Table,
            StepRuns::Id,
        ))
        .to_owned();
    manager.create_table(table).await?;

    let indexes = [
        index(StepRuns::Table, &[StepRuns::RunId, StepRuns::CreatedAt]),
        index(StepRuns::Table, &[StepRuns::CacheKey, StepRuns::Status]),
        index(StepRuns::Table, &[StepRuns::CachedFrom]),
    ];
    for statement in indexes {
        manager.create_index(statement).await?;
    }
    Ok(())
}

async fn create_step_logs(manager: &SchemaManager<'_>) -> Result<(), DbErr> {
    let table = Table::create()
        .table(StepLogs::Table)
        .col(big_pk_auto(StepLogs::Id))
        .col(string(StepLogs::StepRunId))
        .col(big_integer(StepLogs::Seq))
        .col(string(StepLogs::Level))
        .col(text(StepLogs::Message))
        .col(json_null(StepLogs::FieldsJson))
        .col(big_integer(StepLogs::TimestampMs))
        .foreign_key(&mut cascade(
            StepLogs::StepRunId,
            StepRuns::Table,
            StepRuns::Id,
        ))
        .to_owned();
    manager.create_table(table).await?;

    let unique = [StepLogs::StepRunId, StepLogs::Seq];
    manager
        .create_index(index(StepLogs::Table, &unique).unique().to_owned())
        .await
}
