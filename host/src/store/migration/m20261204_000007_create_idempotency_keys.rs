//! Creates the idempotency keys of the HTTP API: one row per caller and key, with the stored
//! response once the request has finished.

use super::index;
use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub(super) struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // `response_status` stays NULL while the request is in progress.
        let table = Table::create()
            .table(IdempotencyKeys::Table)
            .col(string(IdempotencyKeys::Caller))
            .col(string(IdempotencyKeys::Key))
            .col(string(IdempotencyKeys::RequestHash))
            .col(integer_null(IdempotencyKeys::ResponseStatus))
            .col(json_null(IdempotencyKeys::ResponseHeaders))
            .col(blob_null(IdempotencyKeys::ResponseBody))
            .col(big_integer(IdempotencyKeys::CreatedAt))
            .col(big_integer_null(IdempotencyKeys::CompletedAt))
            .primary_key(
                Index::create()
                    .col(IdempotencyKeys::Caller)
                    .col(IdempotencyKeys::Key),
            )
            .to_owned();
        manager.create_table(table).await?;

        // Expired keys are deleted by age.
        manager
            .create_index(index(IdempotencyKeys::Table, &[IdempotencyKeys::CreatedAt]))
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(IdempotencyKeys::Table).to_owned())
            .await
    }

    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }
}

#[derive(DeriveIden, Clone, Copy)]
enum IdempotencyKeys {
    Table,
    Caller,
    Key,
    RequestHash,
    ResponseStatus,
    ResponseHeaders,
    ResponseBody,
    CreatedAt,
    CompletedAt,
}
