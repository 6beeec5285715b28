//! The physical ceiling of metric ingestion: rows inserted straight into runledger's SQLite
//! `metrics` table by one prepared statement in one transaction, with no HTTP, JSON or
//! validation in between.
//!
//! The connection is rusqlite's, which runs SQLite on the calling thread as runledger's metric
//! committer does. An sqlx connection would hand each execution to its SQLite thread and wait
//! for the result, and on a host where waking a thread is slow that hand-off, not SQLite, would
//! set the figure. The statement inserts [`ROWS_PER_STATEMENT`] rows per execution, as
//! runledger's own multi-row inserts do.

use anyhow::{Context as _, Result};
use runledger::store::{NewExternalRun, SQLITE_FILE_NAME, Store};
use std::path::Path;
use std::time::Instant;

/// Rows inserted; enough that the commit is a small part of the time.
const ROWS: u64 = 1_000_000;

/// Rows of one execution of the statement.
const ROWS_PER_STATEMENT: u64 = 100;

/// Columns bound per row: run id, value, step and timestamp.
const BOUND_PER_ROW: usize = 4;

/// Inserts [`ROWS`] metric rows into a fresh runledger database in `dir` and returns rows per
/// second, commit included. The directory is removed afterwards.
pub(crate) async fn rows_per_second(dir: &Path) -> Result<f64> {
    let run_id = prepare_database(dir).await?;
    let database = dir.join(SQLITE_FILE_NAME);
    let rows_per_second = tokio::task::spawn_blocking(move || insert_rows(&database, &run_id))
        .await
        .context("the ceiling's insert thread failed")??;
    std::fs::remove_dir_all(dir).with_context(|| format!("cannot remove {}", dir.display()))?;
    Ok(rows_per_second)
}

/// Inserts the rows on the calling thread and returns rows per second.
fn insert_rows(database: &Path, run_id: &str) -> Result<f64> {
    let mut connection = rusqlite::Connection::open(database)
        .with_context(|| format!("cannot open {}", database.display()))?;
    // The same settings as runledger's store: WAL, synchronous NORMAL, foreign keys on.
    connection.pragma_update(None, "journal_mode", "WAL")?;
    connection.pragma_update(None, "synchronous", "NORMAL")?;
    connection.pragma_update(None, "foreign_keys", true)?;

    let started = Instant::now();
    let transaction = connection.transaction()?;
    let mut statement = transaction.prepare(&insert_statement())?;
    for first_step in (0..ROWS).step_by(ROWS_PER_STATEMENT as usize) {
        for (row, step) in (first_step..first_step + ROWS_PER_STATEMENT).enumerate() {
            let first = row * BOUND_PER_ROW + 1;
            statement.raw_bind_parameter(first, run_id)?;
            statement.raw_bind_parameter(first + 1, 1.0 / (step + 1) as f64)?;
            statement.raw_bind_parameter(first + 2, step as i64)?;
            statement.raw_bind_parameter(first + 3, 1_767_225_600_000_i64)?;
        }
        statement.raw_execute()?;
    }
    drop(statement);
    transaction.commit()?;
    Ok(ROWS as f64 / started.elapsed().as_secs_f64())
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
