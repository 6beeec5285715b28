//! Creates MLflow 3's logged models: the models, their params, tags, metric values and
//! artifacts, and the links that name a model as an input or output of a run.

use super::{cascade, index, named_index, reference};
use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub(super) struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.create_table(models()).await?;
        manager
            .create_index(index(
                MlflowLoggedModels::Table,
                &[MlflowLoggedModels::ProjectId],
            ))
            .await?;
        manager.create_table(params()).await?;
        manager.create_table(tags()).await?;
        manager.create_table(metrics()).await?;
        manager.create_index(unique_metric_values()).await?;
        manager.create_table(artifacts()).await?;
        manager.create_table(run_links()).await?;
        manager
            .create_index(index(
                MlflowRunModelLinks::Table,
                &[MlflowRunModelLinks::ModelId],
            ))
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            MlflowRunModelLinks::Table.into_iden(),
            MlflowLoggedModelArtifacts::Table.into_iden(),
            MlflowLoggedModelMetrics::Table.into_iden(),
            MlflowLoggedModelTags::Table.into_iden(),
            MlflowLoggedModelParams::Table.into_iden(),
            MlflowLoggedModels::Table.into_iden(),
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

/// Logged models. A model belongs to the project of its experiment; deleting the source run
/// keeps the model and clears the link.
fn models() -> TableCreateStatement {
    Table::create()
        .table(MlflowLoggedModels::Table)
        .col(string(MlflowLoggedModels::Id).primary_key())
        .col(big_integer(MlflowLoggedModels::ProjectId))
        .col(string(MlflowLoggedModels::Name))
        .col(string_null(MlflowLoggedModels::ModelType))
        .col(string_null(MlflowLoggedModels::SourceRunId))
        .col(string(MlflowLoggedModels::Status))
        .col(text_null(MlflowLoggedModels::StatusMessage))
        .col(text(MlflowLoggedModels::ArtifactLocation))
        .col(string(MlflowLoggedModels::LifecycleStage))
        .col(big_integer(MlflowLoggedModels::CreatedAt))
        .col(big_integer(MlflowLoggedModels::UpdatedAt))
        .foreign_key(&mut cascade(
            MlflowLoggedModels::ProjectId,
            Projects::Table,
            Projects::Id,
        ))
        .foreign_key(
            &mut reference(MlflowLoggedModels::SourceRunId, Runs::Table, Runs::Id)
                .on_delete(ForeignKeyAction::SetNull)
                .to_owned(),
        )
        .to_owned()
}

fn params() -> TableCreateStatement {
    Table::create()
        .table(MlflowLoggedModelParams::Table)
        .col(string(MlflowLoggedModelParams::ModelId))
        .col(string(MlflowLoggedModelParams::Key))
        .col(text(MlflowLoggedModelParams::Value))
        .primary_key(
            Index::create()
                .col(MlflowLoggedModelParams::ModelId)
                .col(MlflowLoggedModelParams::Key),
        )
        .foreign_key(&mut cascade(
            MlflowLoggedModelParams::ModelId,
            MlflowLoggedModels::Table,
            MlflowLoggedModels::Id,
        ))
        .to_owned()
}

fn tags() -> TableCreateStatement {
    Table::create()
        .table(MlflowLoggedModelTags::Table)
        .col(string(MlflowLoggedModelTags::ModelId))
        .col(string(MlflowLoggedModelTags::Key))
        .col(text(MlflowLoggedModelTags::Value))
        .primary_key(
            Index::create()
                .col(MlflowLoggedModelTags::ModelId)
                .col(MlflowLoggedModelTags::Key),
        )
        .foreign_key(&mut cascade(
            MlflowLoggedModelTags::ModelId,
            MlflowLoggedModels::Table,
            MlflowLoggedModels::Id,
        ))
        .to_owned()
}

/// Metric values logged for a model by a run. `value` is NULL for NaN, as in `metrics`,
/// because SQLite stores a NaN it is given as NULL.
fn metrics() -> TableCreateStatement {
    Table::create()
        .table(MlflowLoggedModelMetrics::Table)
        .col(big_pk_auto(MlflowLoggedModelMetrics::Id))
        .col(string(MlflowLoggedModelMetrics::ModelId))
        .col(string(MlflowLoggedModelMetrics::RunId))
        .col(string(MlflowLoggedModelMetrics::Key))
        .col(double_null(MlflowLoggedModelMetrics::Value))
        .col(big_integer(MlflowLoggedModelMetrics::TimestampMs))
        .col(big_integer(MlflowLoggedModelMetrics::Step))
        .col(string_null(MlflowLoggedModelMetrics::DatasetName))
        .col(string_null(MlflowLoggedModelMetrics::DatasetDigest))
        .foreign_key(&mut cascade(
            MlflowLoggedModelMetrics::ModelId,
            MlflowLoggedModels::Table,
            MlflowLoggedModels::Id,
        ))
        .foreign_key(&mut cascade(
            MlflowLoggedModelMetrics::RunId,
            Runs::Table,
            Runs::Id,
        ))
        .to_owned()
}

/// Creates the unique index that keeps one value per model, run, key, timestamp and step, as
/// MLflow's primary key does, so a batch sent again is not recorded twice.
fn unique_metric_values() -> IndexCreateStatement {
    named_index(
        "idx_mlflow_logged_model_metrics_unique",
        MlflowLoggedModelMetrics::Table,
        &[
            MlflowLoggedModelMetrics::ModelId,
            MlflowLoggedModelMetrics::RunId,
            MlflowLoggedModelMetrics::Key,
            MlflowLoggedModelMetrics::TimestampMs,
            MlflowLoggedModelMetrics::Step,
        ],
    )
    .unique()
    .to_owned()
}

/// Files uploaded to a model's artifact location, by path, pointing at content-addressed
/// artifacts.
fn artifacts() -> TableCreateStatement {
    Table::create()
        .table(MlflowLoggedModelArtifacts::Table)
        .col(string(MlflowLoggedModelArtifacts::ModelId))
        .col(string(MlflowLoggedModelArtifacts::Path))
        .col(string(MlflowLoggedModelArtifacts::Digest))
        .col(big_integer(MlflowLoggedModelArtifacts::CreatedAt))
        .primary_key(
            Index::create()
                .col(MlflowLoggedModelArtifacts::ModelId)
                .col(MlflowLoggedModelArtifacts::Path),
        )
        .foreign_key(&mut cascade(
            MlflowLoggedModelArtifacts::ModelId,
            MlflowLoggedModels::Table,
            MlflowLoggedModels::Id,
        ))
        .foreign_key(&mut reference(
            MlflowLoggedModelArtifacts::Digest,
            Artifacts::Table,
            Artifacts::Digest,
        ))
        .to_owned()
}

/// Models a run declared as inputs (`input`) or outputs (`output`). The primary key keeps one
/// link per run, model and direction.
fn run_links() -> TableCreateStatement {
    Table::create()
        .table(MlflowRunModelLinks::Table)
        .col(string(MlflowRunModelLinks::RunId))
        .col(string(MlflowRunModelLinks::ModelId))
        .col(string(MlflowRunModelLinks::Direction))
        .col(big_integer(MlflowRunModelLinks::Step))
        .col(big_integer(MlflowRunModelLinks::CreatedAt))
        .primary_key(
            Index::create()
                .col(MlflowRunModelLinks::RunId)
                .col(MlflowRunModelLinks::ModelId)
                .col(MlflowRunModelLinks::Direction),
        )
        .foreign_key(&mut cascade(
            MlflowRunModelLinks::RunId,
            Runs::Table,
            Runs::Id,
        ))
        .foreign_key(&mut cascade(
            MlflowRunModelLinks::ModelId,
            MlflowLoggedModels::Table,
            MlflowLoggedModels::Id,
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
enum Artifacts {
    Table,
    Digest,
}

#[derive(DeriveIden, Clone, Copy)]
enum MlflowLoggedModels {
    Table,
    Id,
    ProjectId,
    Name,
    ModelType,
    SourceRunId,
    Status,
    StatusMessage,
    ArtifactLocation,
    LifecycleStage,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden, Clone, Copy)]
enum MlflowLoggedModelParams {
    Table,
    ModelId,
    Key,
    Value,
}

#[derive(DeriveIden, Clone, Copy)]
enum MlflowLoggedModelTags {
    Table,
    ModelId,
    Key,
    Value,
}

#[derive(DeriveIden, Clone, Copy)]
enum MlflowLoggedModelMetrics {
    Table,
    Id,
    ModelId,
    RunId,
    Key,
    Value,
    TimestampMs,
    Step,
    DatasetName,
    DatasetDigest,
}

#[derive(DeriveIden, Clone, Copy)]
enum MlflowLoggedModelArtifacts {
    Table,
    ModelId,
    Path,
    Digest,
    CreatedAt,
}

#[derive(DeriveIden, Clone, Copy)]
enum MlflowRunModelLinks {
    Table,
    RunId,
    ModelId,
    Direction,
    Step,
    CreatedAt,
}
