//! Creates the external steps: step runs that a client outside the sandbox executes and
//! reports, each with the hash of the token that authorises its report.

use super::{cascade, index};
use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub(super) struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let table = Table::create()
            .table(ExternalSteps::Table)
            .col(string(ExternalSteps::StepRunId).primary_key())
            .col(string(ExternalSteps::RunId))
            .col(string(ExternalSteps::TokenHash))
            .col(json(ExternalSteps::OutputsJson))
            .col(string(ExternalSteps::State))
            .col(json_null(ExternalSteps::InputsJson))
            .col(big_integer(ExternalSteps::CreatedAt))
            .col(big_integer_null(ExternalSteps::WaitingSince))
            .col(big_integer_null(ExternalSteps::EndedAt))
            .foreign_key(&mut cascade(
                ExternalSteps::StepRunId,
                StepRuns::Table,
                StepRuns::Id,
            ))
            .foreign_key(&mut cascade(ExternalSteps::RunId, Runs::Table, Runs::Id))
            .to_owned();
        manager.create_table(table).await?;
        manager
            .create_index(index(ExternalSteps::Table, &[ExternalSteps::RunId]))
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(ExternalSteps::Table).to_owned())
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
enum StepRuns {
    Table,
    Id,
}

#[derive(DeriveIden, Clone, Copy)]
enum ExternalSteps {
    Table,
    StepRunId,
    RunId,
    TokenHash,
    OutputsJson,
    State,
    InputsJson,
    CreatedAt,
    WaitingSince,
    EndedAt,
}
