//! Metric groups committed through a SQLite connection that the calling thread drives itself.
//!
//! Each connection of the sqlx pool lives on a driver thread, and every statement of a
//! transaction crosses to that thread and back. A group of five statements cost about two dozen
//! context switches, which on two cores took longer than the statements themselves, so a single
//! client's small writes waited mostly on thread wake-ups. This connection runs on the thread
//! that calls it, keeps its statements prepared between groups, and binds one row at a time,
//! which costs SQLite no more than a multi-row `INSERT`.
//!
//! The connection does not checkpoint the write-ahead log as part of a commit, so a commit never
//! waits on the copy into the database file and its `fsync`. It counts the log's frames
//! instead, and its owner calls [`SqliteCommitter::checkpoint_if_large`] on a thread that may
//! block.
//!
//! The checks and the rows written are those of [`Store::log_metric_group`]: the same
//! [`check_writes`] decides each write, the latest values follow the same rule, and the block
//! summaries of long series are merged in the same transaction.
//!
//! A small write may instead be staged: checked the same way, then appended to the
//! `metric_inbox` table. That commit changes one page where a full one changes five or six: the
//! metric row, its index, the latest value with its index, and the block summary. A lone
//! client's write then costs far less, and the log fills and is checkpointed several times less
//! often. A staged value is committed, so it survives a crash of the process as any other
//! commit does, but readers of `metrics` do not see it yet. The next commit of the connection,
//! or [`SqliteCommitter::move_staged`], moves every staged value into `metrics` in its own
//! transaction, and opening the connection counts values left staged by an earlier process.

use super::metric_group::{RunState, RunsAccepting, check_writes, latest_per_run_key};
use super::{MetricWrite, NewMetric};
use crate::store::downsample::rollup;
use crate::store::entity::run::RunStatus;
use crate::store::mlflow::LifecycleStage;
use crate::store::{Store, StoreError, metrics};
use rusqlite::{Connection, OpenFlags, OptionalExtension, Statement, params};
use sea_orm::DbErr;
use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicI32, AtomicUsize, Ordering};
use std::time::Duration;

/// How long a commit waits for SQLite's write lock held by another connection.
const BUSY_TIMEOUT: Duration = Duration::from_secs(30);

/// Frames in the write-ahead log from which [`SqliteCommitter::checkpoint_if_large`] copies
/// them into the database file: SQLite's own automatic checkpoint threshold.
const CHECKPOINT_FRAMES: i32 = 1000;

const RUN_STATE: &str = "SELECT status, EXISTS (SELECT 1 FROM mlflow_runs WHERE \
     mlflow_runs.run_id = runs.id AND lifecycle_stage = ?2) FROM runs WHERE id = ?1";

const STEP_RUN_OWNER: &str = "SELECT run_id FROM step_runs WHERE id = ?1";

/// Rows per multi-row `INSERT`. Executing a statement has a fixed cost (cursors opened and
/// closed, the program reset), so full chunks go in one statement of this many rows and only
/// the remainder row by row.
const ROWS_PER_INSERT: usize = 64;

const INSERT_METRICS: &str =
    "INSERT INTO metrics (run_id, step_run_id, key, value, step, timestamp_ms) VALUES ";

/// Columns of a metric row.
const METRIC_COLUMNS: usize = 6;

/// Keeps a stored latest value that is newer, as `metrics::incoming_is_newer` does.
const UPSERT_LATEST: &str = "INSERT INTO latest_metrics (run_id, key, value, step, \
     timestamp_ms) VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (run_id, key) DO UPDATE SET \
     value = excluded.value, step = excluded.step, timestamp_ms = excluded.timestamp_ms \
     WHERE excluded.step > latest_metrics.step OR (excluded.step = latest_metrics.step AND \
     excluded.timestamp_ms >= latest_metrics.timestamp_ms)";

const STAGE_METRIC: &str = "INSERT INTO metric_inbox (run_id, step_run_id, key, value, step, \
     timestamp_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6)";

const STAGED_METRICS: &str = "SELECT run_id, step_run_id, key, value, step, timestamp_ms FROM \
     metric_inbox ORDER BY rowid";

const STAGED_COUNT: &str = "SELECT count(*) FROM metric_inbox";

/// Prepared statements a connection keeps: the ones above, with two sizes of `INSERT`.
const STATEMENT_CACHE: usize = 16;

/// A SQLite connection that commits metric groups on the calling thread.
#[derive(Debug)]
pub struct SqliteCommitter {
    connection: Connection,
    /// Frames in the write-ahead log after this connection's last commit.
    wal_frames: Arc<AtomicI32>,
    /// Values in `metric_inbox` as counted by this connection: the ones it staged, and the ones
    /// it found when it opened, until it moves them.
    staged: Arc<AtomicUsize>,
}

impl Store {
    /// Opens a connection that commits metric groups on the calling thread when the store is
    /// a writable SQLite file. Returns `None` otherwise, and writes go through
    /// [`Store::log_metric_group`].
    pub fn sqlite_committer(&self) -> Option<Result<SqliteCommitter, StoreError>> {
        self.sqlite_file().map(SqliteCommitter::open)
    }

    /// Moves metric values that a server staged and had not moved when it stopped into
    /// `metrics`, so that this store's readers see them. Does nothing on PostgreSQL and on
    /// in-memory SQLite, where nothing is staged. The schema must be migrated.
    pub async fn move_staged_metrics(&self) -> Result<(), StoreError> {
        let Some(path) = self.sqlite_file().map(Path::to_owned) else {
            return Ok(());
        };
        let moved =
            tokio::task::spawn_blocking(move || SqliteCommitter::open(&path)?.move_staged());
        moved.await.map_err(|error| {
            let message = format!("moving staged metric values failed: {error}");
            StoreError::Database(DbErr::Custom(message))
        })?
    }
}

impl SqliteCommitter {
    /// Opens the database file with the settings of the store's own connections: WAL,
    /// synchronous `NORMAL`, foreign keys and the busy timeout.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let wal_frames = Arc::new(AtomicI32::new(0));
        let connection = open_connection(path, wal_frames.clone()).map_err(|error| {
            let message = format!("cannot open {} for metric writes: {error}", path.display());
            StoreError::Database(DbErr::Custom(message))
        })?;
        connection.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        let left: i64 = connection
            .query_row(STAGED_COUNT, [], |row| row.get(0))
            .map_err(|error| commit_error(&error))?;
        let staged = Arc::new(AtomicUsize::new(usize::try_from(left).unwrap_or(0)));
        Ok(Self {
            connection,
            wal_frames,
            staged,
        })
    }

    /// Returns the count of values staged and not yet moved into `metrics`, shared so that
    /// other threads can read it while the committer is in use.
    pub fn staged_rows(&self) -> Arc<AtomicUsize> {
        self.staged.clone()
    }

    /// Checks `write` as [`SqliteCommitter::commit`] does and, when it is accepted, stages its
    /// values in `metric_inbox`. Returns `Ok(None)` at once, without waiting, when another
    /// connection holds SQLite's write lock.
    pub fn stage_unless_busy(
        &mut self,
        write: &MetricWrite,
    ) -> Result<Option<Result<(), StoreError>>, StoreError> {
        self.set_busy_timeout(Duration::ZERO)?;
        let outcome = self.try_stage(write);
        if let Err(error) = self.set_busy_timeout(BUSY_TIMEOUT) {
            tracing::warn!(cause = %error, "metric committer cannot restore its busy timeout");
        }
        match outcome {
            Ok(outcome) => Ok(Some(outcome)),
            Err(error) if error.sqlite_error_code() == Some(rusqlite::ErrorCode::DatabaseBusy) => {
                Ok(None)
            }
            Err(error) => Err(commit_error(&error)),
        }
    }

    fn try_stage(&mut self, write: &MetricWrite) -> rusqlite::Result<Result<(), StoreError>> {
        let transaction = self
            .connection
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let writes = std::slice::from_ref(write);
        let states = run_states(&transaction, writes)?;
        let owners = step_run_owners(&transaction, writes)?;
        let (mut outcomes, accepted) = check_writes(writes, &states, &owners);
        let outcome = outcomes.pop().unwrap_or(Ok(()));
        if accepted.is_empty() {
            return Ok(outcome);
        }

        let mut statement = transaction.prepare_cached(STAGE_METRIC)?;
        for value in &write.values {
            statement.execute(params![
                write.run_id,
                value.step_run_id,
                value.key,
                metrics::encode(value.value),
                value.step,
                value.timestamp_ms,
            ])?;
        }
        drop(statement);
        transaction.commit()?;
        self.staged.fetch_add(write.values.len(), Ordering::Release);
        Ok(outcome)
    }

    /// Moves every staged value into `metrics`, with their latest values and block summaries,
    /// in one transaction. Does nothing when no value is staged.
    pub fn move_staged(&mut self) -> Result<(), StoreError> {
        if self.staged.load(Ordering::Acquire) == 0 {
            return Ok(());
        }
        self.commit(&[]).map(drop)
    }

    /// Returns whether the write-ahead log has grown to [`CHECKPOINT_FRAMES`] frames.
    pub fn wal_is_large(&self) -> bool {
        self.wal_frames.load(Ordering::Relaxed) >= CHECKPOINT_FRAMES
    }

    /// Copies the write-ahead log into the database file when it is large, without waiting for
    /// readers or other writers, as SQLite's automatic checkpoint does. This can take
    /// milliseconds, `fsync` included, so the caller must be a thread that may block.
    ///
    /// The caller must not let this connection commit during the checkpoint. SQLite starts the
    /// log over only when a write begins after every frame was copied, so commits that keep
    /// arriving during checkpoints would make the log grow without end.
    pub fn checkpoint_if_large(&mut self) {
        if !self.wal_is_large() {
            return;
        }
        match self
            .connection
            .wal_checkpoint_v2(None::<&str>, rusqlite::wal::CheckpointMode::PASSIVE)
        {
            Ok((frames, copied)) if frames >= 0 => {
                tracing::debug!(frames, copied, "metric writer checkpointed the log");
                if frames == copied {
                    self.wal_frames.store(0, Ordering::Relaxed);
                }
            }
            Ok(_) => tracing::warn!("metric writer cannot checkpoint: the log is not in WAL mode"),
            Err(error) => tracing::warn!(cause = %error, "metric writer cannot checkpoint"),
        }
    }

    fn set_busy_timeout(&self, timeout: Duration) -> Result<(), StoreError> {
        self.connection
            .busy_timeout(timeout)
            .map_err(|error| commit_error(&error))
    }

    /// Records the metric values of many requests in one transaction and returns the outcome
    /// of each request, in order, as [`Store::log_metric_group`] does.
    pub fn commit(
        &mut self,
        writes: &[MetricWrite],
    ) -> Result<Vec<Result<(), StoreError>>, StoreError> {
        // A handler that panicked inside `stage_unless_busy` may have left the timeout at zero.
        self.set_busy_timeout(BUSY_TIMEOUT)?;
        self.try_commit(writes)
            .map_err(|error| commit_error(&error))
    }

    fn try_commit(
        &mut self,
        writes: &[MetricWrite],
    ) -> rusqlite::Result<Vec<Result<(), StoreError>>> {
        let transaction = self
            .connection
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let states = run_states(&transaction, writes)?;
        let owners = step_run_owners(&transaction, writes)?;
        let (outcomes, accepted) = check_writes(writes, &states, &owners);
        let staged = if self.staged.load(Ordering::Acquire) > 0 {
            take_staged(&transaction)?
        } else {
            Vec::new()
        };

        // Staged values were accepted first, so they go first: of two values with the same step
        // and timestamp, the later one becomes the latest.
        let mut rows: Vec<&MetricWrite> = staged.iter().collect();
        rows.extend(accepted);
        insert_rows(&transaction, &rows)?;
        upsert_latest(&transaction, &rows)?;
        transaction.commit()?;
        self.staged.store(0, Ordering::Release);
        Ok(outcomes)
    }
}

/// Reads and deletes every staged value, and returns them as writes in the order they were
/// staged. Each was checked when it was staged. A run may have been deleted since, with its
/// step runs, and the values of a run that no longer exists are dropped with it.
fn take_staged(connection: &Connection) -> rusqlite::Result<Vec<MetricWrite>> {
    let mut writes: Vec<MetricWrite> = Vec::new();
    let mut statement = connection.prepare_cached(STAGED_METRICS)?;
    let mut rows = statement.query([])?;
    while let Some(row) = rows.next()? {
        let run_id: String = row.get(0)?;
        let value = NewMetric {
            step_run_id: row.get(1)?,
            key: row.get(2)?,
            value: row.get::<_, Option<f64>>(3)?.unwrap_or(f64::NAN),
            step: row.get(4)?,
            timestamp_ms: row.get(5)?,
        };
        match writes.last_mut() {
            Some(last) if last.run_id == run_id => last.values.push(value),
            _ => writes.push(MetricWrite {
                run_id,
                values: vec![value],
                accepts: RunsAccepting::NotDeleted,
            }),
        }
    }
    drop(rows);
    drop(statement);
    connection.execute("DELETE FROM metric_inbox", [])?;

    let states = run_states(connection, &writes)?;
    let owners = step_run_owners(connection, &writes)?;
    let before: usize = writes.iter().map(|write| write.values.len()).sum();
    writes.retain(|write| states.contains_key(&write.run_id));
    for write in &mut writes {
        write.values.retain(|value| {
            value
                .step_run_id
                .as_ref()
                .is_none_or(|step_run_id| owners.contains_key(step_run_id))
        });
    }
    let after: usize = writes.iter().map(|write| write.values.len()).sum();
    if after < before {
        tracing::debug!(
            dropped = before - after,
            "staged metric values of deleted runs were dropped"
        );
    }
    Ok(writes)
}

fn commit_error(error: &rusqlite::Error) -> StoreError {
    StoreError::Database(DbErr::Custom(format!("metric group commit: {error}")))
}

/// Opens the connection and replaces its automatic checkpoint with a hook that stores the
/// log's frame count in `wal_frames` after each commit.
fn open_connection(path: &Path, wal_frames: Arc<AtomicI32>) -> rusqlite::Result<Connection> {
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let mut connection = Connection::open_with_flags(path, flags)?;
    connection.busy_timeout(BUSY_TIMEOUT)?;
    connection.pragma_update(None, "journal_mode", "WAL")?;
    connection.pragma_update(None, "synchronous", "NORMAL")?;
    connection.pragma_update(None, "foreign_keys", true)?;
    connection.wal_hook(Some(move |_: &mut rusqlite::hooks::Wal, frames| {
        wal_frames.store(frames, Ordering::Relaxed);
        Ok(())
    }))?;
    Ok(connection)
}

/// Reads the status of every run the writes name, and whether it is in MLflow's trash. The
/// immediate transaction holds SQLite's write lock, so no finish can interleave.
fn run_states(
    connection: &Connection,
    writes: &[MetricWrite],
) -> rusqlite::Result<HashMap<String, RunState>> {
    let run_ids: BTreeSet<&str> = writes.iter().map(|write| write.run_id.as_str()).collect();
    let mut statement = connection.prepare_cached(RUN_STATE)?;
    let deleted = LifecycleStage::Deleted.as_str();
    let mut states = HashMap::new();
    for run_id in run_ids {
        let found = statement
            .query_row(params![run_id, deleted], |row| {
                Ok((row.get::<_, String>(0)?, row.get::<_, bool>(1)?))
            })
            .optional()?;
        if let Some((status, deleted)) = found {
            let status = status.parse::<RunStatus>().map_err(|error| {
                rusqlite::Error::FromSqlConversionFailure(
                    0,
                    rusqlite::types::Type::Text,
                    Box::new(error),
                )
            })?;
            states.insert(run_id.to_owned(), RunState { status, deleted });
        }
    }
    Ok(states)
}

/// Reads the run of every step run the writes name.
fn step_run_owners(
    connection: &Connection,
    writes: &[MetricWrite],
) -> rusqlite::Result<HashMap<String, String>> {
    let named: BTreeSet<&str> = writes
        .iter()
        .flat_map(|write| metrics::named_step_runs(&write.values))
        .collect();
    let mut owners = HashMap::new();
    if named.is_empty() {
        return Ok(owners);
    }
    let mut statement = connection.prepare_cached(STEP_RUN_OWNER)?;
    for step_run_id in named {
        let owner: Option<String> = statement
            .query_row([step_run_id], |row| row.get(0))
            .optional()?;
        if let Some(owner) = owner {
            owners.insert(step_run_id.to_owned(), owner);
        }
    }
    Ok(owners)
}

/// Inserts the metric rows of every accepted write, across runs, and merges them into the block
/// summaries of their series.
fn insert_rows(connection: &Connection, writes: &[&MetricWrite]) -> rusqlite::Result<()> {
    let rows: Vec<(&str, &NewMetric)> = writes
        .iter()
        .flat_map(|write| {
            write
                .values
                .iter()
                .map(|value| (write.run_id.as_str(), value))
        })
        .collect();
    let chunks = rows.chunks_exact(ROWS_PER_INSERT);
    let remainder = chunks.remainder();
    if chunks.len() > 0 {
        let mut statement = connection.prepare_cached(&insert_sql(ROWS_PER_INSERT))?;
        for chunk in chunks {
            bind_rows(&mut statement, chunk)?;
            statement.raw_execute()?;
        }
    }
    let mut statement = connection.prepare_cached(&insert_sql(1))?;
    for row in remainder {
        bind_rows(&mut statement, std::slice::from_ref(row))?;
        statement.raw_execute()?;
    }

    rollup::upsert_blocks_sqlite(connection, rows.iter().copied())?;
    Ok(())
}

/// Builds the `INSERT` of `rows` metric rows.
fn insert_sql(rows: usize) -> String {
    let row = format!("({})", ["?"; METRIC_COLUMNS].join(", "));
    format!("{INSERT_METRICS}{}", vec![row; rows].join(", "))
}

/// Binds the columns of `rows` to the parameters of `statement`, in order.
fn bind_rows(statement: &mut Statement<'_>, rows: &[(&str, &NewMetric)]) -> rusqlite::Result<()> {
    for (index, (run_id, value)) in rows.iter().enumerate() {
        let first = index * METRIC_COLUMNS + 1;
        statement.raw_bind_parameter(first, run_id)?;
        statement.raw_bind_parameter(first + 1, &value.step_run_id)?;
        statement.raw_bind_parameter(first + 2, &value.key)?;
        statement.raw_bind_parameter(first + 3, metrics::encode(value.value))?;
        statement.raw_bind_parameter(first + 4, value.step)?;
        statement.raw_bind_parameter(first + 5, value.timestamp_ms)?;
    }
    Ok(())
}

fn upsert_latest(connection: &Connection, writes: &[&MetricWrite]) -> rusqlite::Result<()> {
    let mut statement = connection.prepare_cached(UPSERT_LATEST)?;
    for ((run_id, key), value) in latest_per_run_key(writes) {
        let value: &NewMetric = value;
        statement.execute(params![
            run_id,
            key,
            metrics::encode(value.value),
            value.step,
            value.timestamp_ms,
        ])?;
    }
    Ok(())
}
