//! Creates artifact metadata, the artifacts each run and step consumed or produced, datasets
//! and the lineage graph.

use super::{cascade, index, named_index, reference};
use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub(super) struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        create_artifacts(manager).await?;
        create_run_artifacts(manager).await?;
        create_datasets(manager).await?;
        create_lineage_edges(manager).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            LineageEdges::Table.into_iden(),
            Datasets::Table.into_iden(),
            RunArtifacts::Table.into_iden(),
            Artifacts::Table.into_iden(),
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
enum StepRuns {
    Table,
    Id,
}

#[derive(DeriveIden, Clone, Copy)]
enum Artifacts {
    Table,
    Digest,
    Size,
    MediaType,
    CreatedAt,
}

#[derive(DeriveIden, Clone, Copy)]
enum RunArtifacts {
    Table,
    Id,
    RunId,
    StepRunId,
    Name,
    Digest,
    Direction,
    CreatedAt,
}

#[derive(DeriveIden, Clone, Copy)]
enum Datasets {
    Table,
    Digest,
    Name,
    Uri,
    CreatedAt,
}

#[derive(DeriveIden, Clone, Copy)]
enum LineageEdges {
    Table,
    Id,
    RunId,
    SourceKind,
    SourceId,
    TargetKind,
    TargetId,
    CreatedAt,
}

async fn create_artifacts(manager: &SchemaManager<'_>) -> Result<(), DbErr> {
    let table = Table::create()
        .table(Artifacts::Table)
        .col(string(Artifacts::Digest).primary_key())
        .col(big_integer(Artifacts::Size))
        .col(string(Artifacts::MediaType))
        .col(big_integer(Artifacts::CreatedAt))
        .to_owned();
    manager.create_table(table).await
}

async fn create_run_artifacts(manager: &SchemaManager<'_>) -> Result<(), DbErr> {
    let table = Table::create()
        .table(RunArtifacts::Table)
        .col(big_pk_auto(RunArtifacts::Id))
        .col(string(RunArtifacts::RunId))
        .col(string_null(RunArtifacts::StepRunId))
        .col(string(RunArtifacts::Name))
        .col(string(RunArtifacts::Digest))
        .col(string(RunArtifacts::Direction))
        .col(big_integer(RunArtifacts::CreatedAt))
        .foreign_key(&mut cascade(RunArtifacts::RunId, Runs::Table, Runs::Id))
        .foreign_key(&mut cascade(
            RunArtifacts::StepRunId,
            StepRuns::Table,
            StepRuns::Id,
        ))
        .foreign_key(&mut reference(
            RunArtifacts::Digest,
            Artifacts::Table,
            Artifacts::Digest,
        ))
        .to_owned();
    manager.create_table(table).await?;

    let indexes = [
        index(
            RunArtifacts::Table,
            &[RunArtifacts::RunId, RunArtifacts::Name],
        ),
        index(RunArtifacts::Table, &[RunArtifacts::StepRunId]),
        index(RunArtifacts::Table, &[RunArtifacts::Digest]),
    ];
    for statement in indexes {
        manager.create_index(statement).await?;
    }
    Ok(())
}

async fn create_datasets(manager: &SchemaManager<'_>) -> Result<(), DbErr> {
    let table = Table::create()
        .table(Datasets::Table)
        .col(string(Datasets::Digest).primary_key())
        .col(string(Datasets::Name))
        .col(text(Datasets::Uri))
        .col(big_integer(Datasets::CreatedAt))
        .to_owned();
    manager.create_table(table).await?;

    manager
        .create_index(index(Datasets::Table, &[Datasets::Name]))
        .await
}

async fn create_lineage_edges(manager: &SchemaManager<'_>) -> Result<(), DbErr> {
    let table = Table::create()
        .table(LineageEdges::Table)
        .col(big_pk_auto(LineageEdges::Id))
        .col(string(LineageEdges::RunId))
        .col(string(LineageEdges::SourceKind))
        .col(string(LineageEdges::SourceId))
        .col(string(LineageEdges::TargetKind))
        .col(string(LineageEdges::TargetId))
        .col(big_integer(LineageEdges::CreatedAt))
        .foreign_key(&mut cascade(LineageEdges::RunId, Runs::Table, Runs::Id))
        .to_owned();
    manager.create_table(table).await?;

    // The unique index also serves downstream traversal, which looks edges up by source.
    let unique = [
        LineageEdges::SourceKind,
        LineageEdges::SourceId,
        LineageEdges::TargetKind,
        LineageEdges::TargetId,
        LineageEdges::RunId,
    ];
    let upstream = [LineageEdges::TargetKind, LineageEdges::TargetId];
    let indexes = [
        named_index("idx_lineage_edges_unique", LineageEdges::Table, &unique)
            .unique()
            .to_owned(),
        index(LineageEdges::Table, &upstream),
        index(LineageEdges::Table, &[LineageEdges::RunId]),
    ];
    for statement in indexes {
        manager.create_index(statement).await?;
    }
    Ok(())
}
