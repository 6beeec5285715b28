//! Creates what the MLflow tracking protocol needs beyond runs, params, tags and metrics:
//! experiment lifecycle and tags, run lifecycle, and the datasets runs declared as inputs.

use super::{cascade, index, named_index};
use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub(super) struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.create_table(experiments()).await?;
        manager.create_table(experiment_tags()).await?;
        manager.create_table(runs()).await?;
        manager.create_table(dataset_inputs()).await?;
        manager
            .create_index(index(
                MlflowDatasetInputs::Table,
                &[MlflowDatasetInputs::RunId],
            ))
            .await?;
        let unique = named_index(
            "idx_mlflow_dataset_inputs_unique",
            MlflowDatasetInputs::Table,
            &[
                MlflowDatasetInputs::RunId,
                MlflowDatasetInputs::Name,
                MlflowDatasetInputs::Digest,
            ],
        )
        .unique()
        .to_owned();
        manager.create_index(unique).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            MlflowDatasetInputs::Table.into_iden(),
            MlflowRuns::Table.into_iden(),
            MlflowExperimentTags::Table.into_iden(),
            MlflowExperiments::Table.into_iden(),
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

/// Lifecycle of a project seen as an MLflow experiment. A project without a row is active.
fn experiments() -> TableCreateStatement {
    Table::create()
        .table(MlflowExperiments::Table)
        .col(big_integer(MlflowExperiments::ProjectId).primary_key())
        .col(string(MlflowExperiments::LifecycleStage))
        .col(text_null(MlflowExperiments::ArtifactLocation))
        .col(big_integer(MlflowExperiments::LastUpdateTime))
        .col(big_integer_null(MlflowExperiments::DeletedAt))
        .foreign_key(&mut cascade(
            MlflowExperiments::ProjectId,
            Projects::Table,
            Projects::Id,
        ))
        .to_owned()
}

fn experiment_tags() -> TableCreateStatement {
    Table::create()
        .table(MlflowExperimentTags::Table)
        .col(big_integer(MlflowExperimentTags::ProjectId))
        .col(string(MlflowExperimentTags::Key))
        .col(text(MlflowExperimentTags::Value))
        .primary_key(
            Index::create()
                .col(MlflowExperimentTags::ProjectId)
                .col(MlflowExperimentTags::Key),
        )
        .foreign_key(&mut cascade(
            MlflowExperimentTags::ProjectId,
            Projects::Table,
            Projects::Id,
        ))
        .to_owned()
}

/// Lifecycle of a run seen as an MLflow run. A run without a row is active.
fn runs() -> TableCreateStatement {
    Table::create()
        .table(MlflowRuns::Table)
        .col(string(MlflowRuns::RunId).primary_key())
        .col(string(MlflowRuns::LifecycleStage))
        .col(big_integer_null(MlflowRuns::DeletedAt))
        .foreign_key(&mut cascade(MlflowRuns::RunId, Runs::Table, Runs::Id))
        .to_owned()
}

fn dataset_inputs() -> TableCreateStatement {
    Table::create()
        .table(MlflowDatasetInputs::Table)
        .col(big_pk_auto(MlflowDatasetInputs::Id))
        .col(string(MlflowDatasetInputs::RunId))
        .col(string(MlflowDatasetInputs::Name))
        .col(string(MlflowDatasetInputs::Digest))
        .col(string(MlflowDatasetInputs::SourceType))
        .col(text(MlflowDatasetInputs::Source))
        .col(text_null(MlflowDatasetInputs::Schema))
        .col(text_null(MlflowDatasetInputs::Profile))
        .col(json(MlflowDatasetInputs::TagsJson))
        .col(big_integer(MlflowDatasetInputs::CreatedAt))
        .foreign_key(&mut cascade(
            MlflowDatasetInputs::RunId,
            Runs::Table,
            Runs::Id,
        ))
        .to_owned()
}

#[derive(DeriveIden, Clone, Copy)]
enum Projects {
    Table,
    Id,
}

#[derive(DeriveIden, Clone, Copy)]
enum Runs {
    Table,
    Id,
}

#[derive(DeriveIden, Clone, Copy)]
enum MlflowExperiments {
    Table,
    ProjectId,
    LifecycleStage,
    ArtifactLocation,
    LastUpdateTime,
    DeletedAt,
}

#[derive(DeriveIden, Clone, Copy)]
enum MlflowExperimentTags {
    Table,
    ProjectId,
    Key,
    Value,
}

#[derive(DeriveIden, Clone, Copy)]
enum MlflowRuns {
    Table,
    RunId,
    LifecycleStage,
    DeletedAt,
}

#[derive(DeriveIden, Clone, Copy)]
enum MlflowDatasetInputs {
    Table,
    Id,
    RunId,
    Name,
    Digest,
    SourceType,
    Source,
    Schema,
    Profile,
    TagsJson,
    CreatedAt,
}
