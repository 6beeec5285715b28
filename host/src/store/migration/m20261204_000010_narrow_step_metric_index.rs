//! Limits the index of metrics by step run to the rows that have a step run.
//!
//! Run-level metric values, which clients executing runs elsewhere log by the thousand, have no
//! step run, so keeping them out of the index saves an index update per inserted value. A query
//! for `step_run_id = ?` implies `step_run_id IS NOT NULL`, so SQLite and PostgreSQL both still
//! use the partial index for it.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub(super) struct Migration;

/// Name of the index, as the metrics migration created it.
const INDEX: &str = "idx_metrics_step_run_id_key";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        db.execute_unprepared(&format!("DROP INDEX {INDEX}"))
            .await?;
        db.execute_unprepared(&format!(
            "CREATE INDEX {INDEX} ON metrics (step_run_id, key) WHERE step_run_id IS NOT NULL"
        ))
        .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        db.execute_unprepared(&format!("DROP INDEX {INDEX}"))
            .await?;
        db.execute_unprepared(&format!(
            "CREATE INDEX {INDEX} ON metrics (step_run_id, key)"
        ))
        .await?;
        Ok(())
    }

    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }
}
