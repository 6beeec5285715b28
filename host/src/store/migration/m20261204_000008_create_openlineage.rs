//! Creates the tables of OpenLineage events: the job and parent of each run created from
//! events, and the datasets the events name.

use super::cascade;
use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub(super) struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        create_openlineage_runs(manager).await?;
        create_openlineage_datasets(manager).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            OpenlineageDatasets::Table.into_iden(),
            OpenlineageRuns::Table.into_iden(),
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
enum OpenlineageRuns {
    Table,
    RunId,
    JobNamespace,
    JobName,
    ParentRunId,
    CreatedAt,
}

#[derive(DeriveIden, Clone, Copy)]
enum OpenlineageDatasets {
    Table,
    NodeId,
    Namespace,
    Name,
    FacetsJson,
    CreatedAt,
    UpdatedAt,
}

async fn create_openlineage_runs(manager: &SchemaManager<'_>) -> Result<(), DbErr> {
    let table = Table::create()
        .table(OpenlineageRuns::Table)
        .col(string(OpenlineageRuns::RunId).primary_key())
        .col(text(OpenlineageRuns::JobNamespace))
        .col(text(OpenlineageRuns::JobName))
        .col(string_null(OpenlineageRuns::ParentRunId))
        .col(big_integer(OpenlineageRuns::CreatedAt))
        .foreign_key(&mut cascade(OpenlineageRuns::RunId, Runs::Table, Runs::Id))
        .to_owned();
    manager.create_table(table).await
}

async fn create_openlineage_datasets(manager: &SchemaManager<'_>) -> Result<(), DbErr> {
    let table = Table::create()
        .table(OpenlineageDatasets::Table)
        .col(text(OpenlineageDatasets::NodeId).primary_key())
        .col(text(OpenlineageDatasets::Namespace))
        .col(text(OpenlineageDatasets::Name))
        .col(json_null(OpenlineageDatasets::FacetsJson))
        .col(big_integer(OpenlineageDatasets::CreatedAt))
        .col(big_integer(OpenlineageDatasets::UpdatedAt))
        .to_owned();
    manager.create_table(table).await
}
