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

use super::metric_group::{RunState, check_writes, latest_per_run_key};
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
use std::sync::atomic::{AtomicI32, Ordering};
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

/// Prepared statements a connection keeps: the ones above, with two sizes of `INSERT`.
const STATEMENT_CACHE: usize = 16;

/// A SQLite connection that commits metric groups on the calling thread.
#[derive(Debug)]
pub struct SqliteCommitter {
    connection: Connection,
    /// Frames in the write-ahead log after this connection's last commit.
    wal_frames: Arc<AtomicI32>,
}

impl Store {
    /// Opens a connection that commits metric groups on the calling thread when the store is
    /// a writable SQLite file. Returns `None` otherwise, and writes go through
    /// [`Store::log_metric_group`].
    pub fn sqlite_committer(&self) -> Option<Result<SqliteCommitter, StoreError>> {
        self.sqlite_file().map(SqliteCommitter::open)
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
        Ok(Self {
            connection,
            wal_frames,
        })
    }

    /// Commits `writes` as [`SqliteCommitter::commit`] does, unless another connection holds
    /// SQLite's write lock: then it returns `Ok(None)` at once instead of waiting.
    pub fn commit_unless_busy(
        &mut self,
        writes: &[MetricWrite],
    ) -> Result<Option<Vec<Result<(), StoreError>>>, StoreError> {
        self.set_busy_timeout(Duration::ZERO)?;
        let outcome = self.try_commit(writes);
        // The commit's outcome is kept even if this fails, because the next `commit` sets the
        // timeout again.
        if let Err(error) = self.set_busy_timeout(BUSY_TIMEOUT) {
            tracing::warn!(cause = %error, "metric committer cannot restore its busy timeout");
        }
        match outcome {
            Ok(outcomes) => Ok(Some(outcomes)),
            Err(error) if error.sqlite_error_code() == Some(rusqlite::ErrorCode::DatabaseBusy) => {
                Ok(None)
            }
            Err(error) => Err(commit_error(&error)),
        }
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
        // A handler that panicked inside `commit_unless_busy` may have left the timeout at zero.
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

        insert_rows(&transaction, &accepted)?;
        upsert_latest(&transaction, &accepted)?;
        transaction.commit()?;
        Ok(outcomes)
    }
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
