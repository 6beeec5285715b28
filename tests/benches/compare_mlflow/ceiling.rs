//! The physical ceiling of metric ingestion: rows inserted straight into runledger's SQLite
//! `metrics` table by one prepared statement in one transaction, with no HTTP, JSON or
//! validation in between.
//!
//! The statement inserts [`ROWS_PER_STATEMENT`] rows per execution. sqlx runs each execution on
//! its SQLite worker thread and waits for the result, which costs about 15 µs on the machine
//! of BENCHMARKS.md, so a one-row statement would measure that hand-off (about 60,000 rows/s
//! there) rather than SQLite.

use anyhow::{Context as _, Result};
use runledger::store::{NewExternalRun, SQLITE_FILE_NAME, Store};
use sea_orm::sqlx::AssertSqlSafe;
use sea_orm::sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous};
use sea_orm::sqlx::{Connection as _, SqliteConnection};
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

/// Rows inserted; enough that the commit is a small part of the time.
const ROWS: u64 = 1_000_000;

/// Rows of one execution of the statement, as in runledger's own multi-row inserts.
const ROWS_PER_STATEMENT: u64 = 100;

/// Inserts [`ROWS`] metric rows into a fresh runledger database in `dir` and returns rows per
/// second, commit included.
pub(crate) async fn rows_per_second(dir: &Path) -> Result<f64> {
    let run_id = prepare_database(dir).await?;
    // The same settings as runledger's store: WAL, synchronous NORMAL, foreign keys on.
    let options = SqliteConnectOptions::new()
        .filename(dir.join(SQLITE_FILE_NAME))
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Normal)
        .foreign_keys(true);
    let mut connection = SqliteConnection::connect_with(&options)
        .await
        .context("cannot open the ceiling's database")?;

    let sql: Arc<str> = insert_statement().into();
    let started = Instant::now();
    let mut transaction = connection.begin().await?;
    for first_step in (0..ROWS).step_by(ROWS_PER_STATEMENT as usize) {
        // sqlx prepares the statement once per connection and reuses it for every execution.
        let mut query = sea_orm::sqlx::query(AssertSqlSafe(sql.clone()));
        for step in first_step..first_step + ROWS_PER_STATEMENT {
            query = query
                .bind(&run_id)
                .bind(1.0 / (step + 1) as f64)
                .bind(step as i64)
                .bind(1_767_225_600_000_i64);
        }
        query.execute(&mut *transaction).await?;
    }
    transaction.commit().await?;
    let elapsed = started.elapsed();

    connection.close().await?;
    Ok(ROWS as f64 / elapsed.as_secs_f64())
}

/// Returns the `INSERT` of [`ROWS_PER_STATEMENT`] rows of run id, value, step and timestamp.
fn insert_statement() -> String {
    let row = "(?, NULL, 'loss', ?, ?, ?)";
    let rows = vec![row; ROWS_PER_STATEMENT as usize].join(", ");
    format!(
        "INSERT INTO metrics (run_id, step_run_id, key, value, step, timestamp_ms) VALUES {rows}"
    )
}

/// Creates the database with runledger's migrations and one run, and returns the run's id.
async fn prepare_database(dir: &Path) -> Result<String> {
    let store = Store::open_sqlite(dir).await?;
    let new = NewExternalRun {
        project: "ceiling".to_owned(),
        name: "ceiling".to_owned(),
        user_name: "bench".to_owned(),
        started_at: None,
        params: Vec::new(),
        tags: Vec::new(),
    };
    let run_id = store.create_external_run(new).await?.run.id;
    store.close().await?;
    Ok(run_id)
}
