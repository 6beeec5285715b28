//! Indexes for searching runs by metric, param, tag and time, replacing the narrower indexes
//! they contain.
//!
//! `run_params` and `run_tags` index the key with the first 100 characters of the value, not
//! the whole value, because PostgreSQL rejects index entries over about 2.7 kB and MLflow
//! clients store long notes as tags. Searches compare the same `substr` expression, written
//! with the same literal numbers, so both databases can use these indexes.

use super::index;
use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub(super) struct Migration;

/// Expression indexes, which sea-query cannot describe for SQLite. Both databases accept the
/// same statements.
const CREATE_VALUE_PREFIX_INDEXES: [&str; 2] = [
    r#"CREATE INDEX "idx_run_params_key_value_prefix"
        ON "run_params" ("key", substr("value", 1, 100))"#,
    r#"CREATE INDEX "idx_run_tags_key_value_prefix"
        ON "run_tags" ("key", substr("value", 1, 100))"#,
];

const DROP_VALUE_PREFIX_INDEXES: [&str; 2] = [
    r#"DROP INDEX "idx_run_params_key_value_prefix""#,
    r#"DROP INDEX "idx_run_tags_key_value_prefix""#,
];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // Comparisons look metric values up by key and value and return run ids, which the
        // index then covers.
        let latest = [
            LatestMetrics::Key,
            LatestMetrics::Value,
            LatestMetrics::RunId,
        ];
        manager
            .create_index(index(LatestMetrics::Table, &latest))
            .await?;
        drop_index(
            manager,
            "idx_latest_metrics_key_value",
            LatestMetrics::Table,
        )
        .await?;

        // Pages in creation order continue from the last (created_at, id) of the page before.
        manager
            .create_index(index(Runs::Table, &[Runs::CreatedAt, Runs::Id]))
            .await?;
        drop_index(manager, "idx_runs_created_at", Runs::Table).await?;

        let connection = manager.get_connection();
        for statement in CREATE_VALUE_PREFIX_INDEXES {
            connection.execute_unprepared(statement).await?;
        }
        drop_index(manager, "idx_run_params_key", RunParams::Table).await?;
        drop_index(manager, "idx_run_tags_key", RunTags::Table).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_index(index(RunTags::Table, &[KeyValue::Key]))
            .await?;
        manager
            .create_index(index(RunParams::Table, &[KeyValue::Key]))
            .await?;
        let connection = manager.get_connection();
        for statement in DROP_VALUE_PREFIX_INDEXES {
            connection.execute_unprepared(statement).await?;
        }

        manager
            .create_index(index(Runs::Table, &[Runs::CreatedAt]))
            .await?;
        drop_index(manager, "idx_runs_created_at_id", Runs::Table).await?;

        let latest = [LatestMetrics::Key, LatestMetrics::Value];
        manager
            .create_index(index(LatestMetrics::Table, &latest))
            .await?;
        drop_index(
            manager,
            "idx_latest_metrics_key_value_run_id",
            LatestMetrics::Table,
        )
        .await
    }

    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }
}

async fn drop_index<T>(manager: &SchemaManager<'_>, name: &str, table: T) -> Result<(), DbErr>
where
    T: IntoTableRef,
{
    manager
        .drop_index(Index::drop().name(name).table(table).to_owned())
        .await
}

#[derive(DeriveIden, Clone, Copy)]
enum Runs {
    Table,
    Id,
    CreatedAt,
}

#[derive(DeriveIden, Clone, Copy)]
enum LatestMetrics {
    Table,
    RunId,
    Key,
    Value,
}

#[derive(DeriveIden, Clone, Copy)]
enum RunParams {
    Table,
}

#[derive(DeriveIden, Clone, Copy)]
enum RunTags {
    Table,
}

/// Columns shared by `run_params` and `run_tags`.
#[derive(DeriveIden, Clone, Copy)]
enum KeyValue {
    Key,
}
