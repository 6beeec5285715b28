//! Helpers for write transactions and multi-row statements.

use sea_orm::{
    AccessMode, DatabaseConnection, DatabaseTransaction, DbBackend, DbErr, IsolationLevel,
    SqliteTransactionMode, TransactionOptions, TransactionTrait,
};

/// Most bind parameters one statement may carry on either backend: SQLite allows 32,766 since
/// version 3.32 (the bundled library is newer), PostgreSQL 65,535.
const MAX_BIND_PARAMS: usize = 32_766;

/// Rows per multi-row `INSERT` for a table whose rows bind `columns` parameters each.
pub(super) fn rows_per_statement(columns: usize) -> usize {
    (MAX_BIND_PARAMS / columns.max(1)).max(1)
}

/// Starts a transaction that will write.
///
/// On SQLite it takes the write lock at `BEGIN IMMEDIATE`. A second writer then waits up to
/// the busy timeout at its own `BEGIN`, instead of failing with "database is locked" when a
/// deferred transaction tries to upgrade its read lock. PostgreSQL ignores the SQLite mode.
pub(super) async fn begin_write(db: &DatabaseConnection) -> Result<DatabaseTransaction, DbErr> {
    let options = TransactionOptions {
        sqlite_transaction_mode: Some(SqliteTransactionMode::Immediate),
        ..TransactionOptions::default()
    };
    db.begin_with_options(options).await
}

/// Starts a read-only transaction in which every query sees the same snapshot.
///
/// PostgreSQL needs `REPEATABLE READ` for that; a SQLite transaction keeps its snapshot from
/// its first read on, and sea-orm only warns about isolation settings there, so none are sent.
pub(super) async fn begin_read(db: &DatabaseConnection) -> Result<DatabaseTransaction, DbErr> {
    if db.get_database_backend() == DbBackend::Postgres {
        db.begin_with_config(
            Some(IsolationLevel::RepeatableRead),
            Some(AccessMode::ReadOnly),
        )
        .await
    } else {
        db.begin().await
    }
}

/// Builds the error for a row that an insert-or-ignore did not leave behind, which only a
/// concurrent delete can cause.
pub(super) fn missing_after_insert(row: &str) -> DbErr {
    DbErr::RecordNotFound(format!(
        "{row} was deleted right after it was inserted; retry the operation"
    ))
}
