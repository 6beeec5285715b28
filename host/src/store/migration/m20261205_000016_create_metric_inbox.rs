//! Creates `metric_inbox`, where the SQLite metric committer stages a lone client's small
//! writes until it moves them into `metrics` in a later, larger transaction.
//!
//! Staging a value changes one page of the database file instead of the five or six that a
//! metric row, its index, its latest value and its block summary change.
//! `store::ingest::sqlite_committer` describes how staged values are moved and when.
//!
//! The table is created on SQLite only: on PostgreSQL every write goes through the pool.
//! It has no foreign keys and no indexes, so a staged row costs one append. Its implicit rowid
//! keeps the order in which values were accepted.

use sea_orm::{ConnectionTrait, DbBackend};
use sea_orm_migration::prelude::*;

const CREATE: &str = "CREATE TABLE metric_inbox (run_id TEXT NOT NULL, step_run_id TEXT, \
     key TEXT NOT NULL, value REAL, step INTEGER NOT NULL, timestamp_ms INTEGER NOT NULL)";

#[derive(DeriveMigrationName)]
pub(super) struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let connection = manager.get_connection();
        if connection.get_database_backend() != DbBackend::Sqlite {
            return Ok(());
        }
        connection.execute_unprepared(CREATE).await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let connection = manager.get_connection();
        if connection.get_database_backend() != DbBackend::Sqlite {
            return Ok(());
        }
        connection
            .execute_unprepared("DROP TABLE metric_inbox")
            .await?;
        Ok(())
    }

    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }
}
