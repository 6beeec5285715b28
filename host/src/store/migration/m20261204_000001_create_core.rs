//! Creates projects, pipelines, runs with their params and tags, and environment snapshots.

use super::{cascade, index, reference};
use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub(super) struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        create_projects(manager).await?;
        create_pipelines(manager).await?;
        create_runs(manager).await?;
        create_key_values(manager, RunParams::Table).await?;
        create_key_values(manager, RunTags::Table).await?;
        create_environments(manager).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            Environments::Table.into_iden(),
            RunTags::Table.into_iden(),
            RunParams::Table.into_iden(),
            Runs::Table.into_iden(),
            Pipelines::Table.into_iden(),
            Projects::Table.into_iden(),
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
enum Projects {
    Table,
    Id,
    Name,
    CreatedAt,
}

#[derive(DeriveIden, Clone, Copy)]
enum Pipelines {
    Table,
    Id,
    ProjectId,
    Name,
    DefinitionDigest,
    DefinitionText,
    CreatedAt,
}

#[derive(DeriveIden, Clone, Copy)]
enum Runs {
    Table,
    Id,
    ProjectId,
    PipelineId,
    Name,
    Status,
    Source,
    UserName,
    Seed,
    CreatedAt,
    StartedAt,
    EndedAt,
    Error,
    OwnerPid,
    OwnerHostname,
}

/// Columns shared by `run_params` and `run_tags`.
#[derive(DeriveIden, Clone, Copy)]
enum KeyValue {
    RunId,
    Key,
    Value,
}

#[derive(DeriveIden, Clone, Copy)]
enum RunParams {
    Table,
}

#[derive(DeriveIden, Clone, Copy)]
enum RunTags {
    Table,
}

#[derive(DeriveIden, Clone, Copy)]
enum Environments {
    Table,
    RunId,
    SnapshotJson,
}

async fn create_projects(manager: &SchemaManager<'_>) -> Result<(), DbErr> {
    let table = Table::create()
        .table(Projects::Table)
        .col(big_pk_auto(Projects::Id))
        .col(string_uniq(Projects::Name))
        .col(big_integer(Projects::CreatedAt))
        .to_owned();
    manager.create_table(table).await
}

async fn create_pipelines(manager: &SchemaManager<'_>) -> Result<(), DbErr> {
    let table = Table::create()
        .table(Pipelines::Table)
        .col(big_pk_auto(Pipelines::Id))
        .col(big_integer(Pipelines::ProjectId))
        .col(string(Pipelines::Name))
        .col(string(Pipelines::DefinitionDigest))
        .col(text(Pipelines::DefinitionText))
        .col(big_integer(Pipelines::CreatedAt))
        .foreign_key(&mut reference(
            Pipelines::ProjectId,
            Projects::Table,
            Projects::Id,
        ))
        .to_owned();
    manager.create_table(table).await?;

    let unique = [
        Pipelines::ProjectId,
        Pipelines::Name,
        Pipelines::DefinitionDigest,
    ];
    manager
        .create_index(index(Pipelines::Table, &unique).unique().to_owned())
        .await?;
    manager
        .create_index(index(Pipelines::Table, &[Pipelines::Name]))
        .await
}

async fn create_runs(manager: &SchemaManager<'_>) -> Result<(), DbErr> {
    let table = Table::create()
        .table(Runs::Table)
        .col(string(Runs::Id).primary_key())
        .col(big_integer(Runs::ProjectId))
        .col(big_integer_null(Runs::PipelineId))
        .col(string(Runs::Name))
        .col(string(Runs::Status))
        .col(string(Runs::Source))
        .col(string(Runs::UserName))
        .col(big_integer_null(Runs::Seed))
        .col(big_integer(Runs::CreatedAt))
        .col(big_integer_null(Runs::StartedAt))
        .col(big_integer_null(Runs::EndedAt))
        .col(text_null(Runs::Error))
        .col(big_integer_null(Runs::OwnerPid))
        .col(string_null(Runs::OwnerHostname))
        .foreign_key(&mut reference(
            Runs::ProjectId,
            Projects::Table,
            Projects::Id,
        ))
        .foreign_key(&mut reference(
            Runs::PipelineId,
            Pipelines::Table,
            Pipelines::Id,
        ))
        .to_owned();
    manager.create_table(table).await?;

    let indexes = [
        index(Runs::Table, &[Runs::ProjectId, Runs::CreatedAt]),
        index(Runs::Table, &[Runs::PipelineId, Runs::CreatedAt]),
        index(Runs::Table, &[Runs::Status, Runs::CreatedAt]),
        index(Runs::Table, &[Runs::OwnerHostname, Runs::Status]),
        index(Runs::Table, &[Runs::CreatedAt]),
    ];
    for statement in indexes {
        manager.create_index(statement).await?;
    }
    Ok(())
}

/// Creates `run_params` or `run_tags`: text values keyed by run and name.
async fn create_key_values<T>(manager: &SchemaManager<'_>, table: T) -> Result<(), DbErr>
where
    T: IntoTableRef + Iden + Copy,
{
    let statement = Table::create()
        .table(table)
        .col(string(KeyValue::RunId))
        .col(string(KeyValue::Key))
        .col(text(KeyValue::Value))
        .primary_key(Index::create().col(KeyValue::RunId).col(KeyValue::Key))
        .foreign_key(&mut cascade(KeyValue::RunId, Runs::Table, Runs::Id))
        .to_owned();
    manager.create_table(statement).await?;

    // Tag filters look runs up by key. The value stays out of the index because PostgreSQL
    // rejects index entries over about 2.7 kB, and MLflow clients store long notes as tags.
    manager.create_index(index(table, &[KeyValue::Key])).await
}

async fn create_environments(manager: &SchemaManager<'_>) -> Result<(), DbErr> {
    let table = Table::create()
        .table(Environments::Table)
        .col(string(Environments::RunId).primary_key())
        .col(json(Environments::SnapshotJson))
        .foreign_key(&mut cascade(Environments::RunId, Runs::Table, Runs::Id))
        .to_owned();
    manager.create_table(table).await
}
