//! Indexes runs by project and start time, the default order of MLflow's run search: newest
//! start first, within the searched experiments.
//!
//! Without it, a search sorts every run of the experiment before returning the first page.
//! PostgreSQL stores the index in that order, with missing start times last, so a backward
//! scan is not needed; SQLite has no `NULLS LAST` in index definitions, and its ascending
//! index already yields that order when scanned backward.

use sea_orm::DbBackend;
use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub(super) struct Migration;

/// Name of the index.
const INDEX: &str = "idx_runs_project_id_started_at";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let order = match manager.get_database_backend() {
            DbBackend::Postgres => "started_at DESC NULLS LAST",
            _ => "started_at",
        };
        manager
            .get_connection()
            .execute_unprepared(&format!(
                "CREATE INDEX {INDEX} ON runs (project_id, {order})"
            ))
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .get_connection()
            .execute_unprepared(&format!("DROP INDEX {INDEX}"))
            .await?;
        Ok(())
    }
}
