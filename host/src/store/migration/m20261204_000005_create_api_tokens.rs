//! Creates the bearer tokens of the HTTP API.

use super::index;
use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub(super) struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let table = Table::create()
            .table(ApiTokens::Table)
            .col(big_pk_auto(ApiTokens::Id))
            .col(string_uniq(ApiTokens::Name))
            .col(string(ApiTokens::Role))
            .col(string_uniq(ApiTokens::TokenHash))
            .col(big_integer(ApiTokens::CreatedAt))
            .col(big_integer_null(ApiTokens::RevokedAt))
            .to_owned();
        manager.create_table(table).await?;
        manager
            .create_index(index(ApiTokens::Table, &[ApiTokens::RevokedAt]))
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(ApiTokens::Table).to_owned())
            .await
    }

    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }
}

#[derive(DeriveIden, Clone, Copy)]
enum ApiTokens {
    Table,
    Id,
    Name,
    Role,
    TokenHash,
    CreatedAt,
    RevokedAt,
}
