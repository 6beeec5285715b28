//! Persistence: sea-orm entities and migrations, the queries over them, and the
//! content-addressed artifact store.
//!
//! [`Store`] is the handle to the database. It runs on SQLite (a file in the data directory, the
//! default) or on PostgreSQL (when many hosts share one database), with the same schema and
//! queries on both. Every write is committed before the method returns, and writes that add
//! several rows run in one transaction. This module depends on no module above it.

pub mod artifacts;
pub mod entity;
pub mod migration;
pub mod mlflow;

mod artifact_records;
mod artifact_uses;
mod audit;
mod batch;
mod completion;
mod detail;
mod downsample;
mod environments;
mod error;
mod external;
mod governance;
mod idempotency;
mod ingest;
mod lineage;
mod lineage_views;
mod logs;
mod metrics;
mod openlineage;
mod params;
mod plugins;
mod projects;
mod registry;
mod runs;
mod search;
mod steps;
pub mod tokens;

#[cfg(test)]
mod tests;

pub use artifact_records::{LinkedArtifact, NewArtifact, NewStepLink};
pub use artifact_uses::ArtifactUse;
pub use artifacts::{ArtifactError, ArtifactStore};
pub use audit::{AuditAction, AuditQuery, SYSTEM_ACTOR};
pub use completion::StepCompletion;
pub use detail::{RunDetail, StepRunDetail};
pub use downsample::{MIN_SERIES_POINTS, MetricSeries};
pub use entity::external_step::ExternalState;
pub use entity::lineage_edge::NodeKind;
pub use entity::model_version::VersionStatus;
pub use entity::promotion::PromotionStatus;
pub use entity::run::{RunSource, RunStatus};
pub use entity::run_artifact::Direction;
pub use entity::step_run::StepStatus;
pub use entity::validation::ValidationTrigger;
pub use environments::{EnvironmentSnapshot, GitState};
pub use error::StoreError;
pub use external::{ExternalInput, ExternalStepRecord, NewExternalStep};
pub use governance::{
    Attachment, CheckRow, NewPromotion, NewValidation, PolicyDecisionRow, PromotionOutcome,
    StoredNeed, ValidationRecord,
};
pub use idempotency::{IdempotentRequest, KeyClaim, KeyLifetime, StoredResponse};
pub use ingest::{
    ClientArtifact, ClientStepChange, ExternalRunRecord, MetricWrite, NewClientStep,
    NewExternalRun, RunBatch, RunFinish, RunsAccepting, SqliteCommitter,
};
pub use lineage::{Graph, NewEdge, Node, TraverseDirection};
pub use lineage_views::NodeDescription;
pub use logs::NewLogLine;
pub use metrics::{MetricPoint, NewMetric};
pub use openlineage::{NamedDataset, OpenLineageEvent, RecordedEvent};
pub use plugins::NewPlugin;
pub use projects::DEFAULT_PROJECT;
pub use registry::{
    ModelChange, ModelPage, ModelQuery, NewModel, NewModelVersion, VersionPage, VersionQuery,
    check_alias, check_model_name, check_tag_key,
};
pub use runs::{NewRun, RunFilter, RunOwner};
pub use search::{
    CompareOp, Comparison, Cursor, DEFAULT_PAGE_SIZE, DatasetField, MAX_PAGE_SIZE, PageTokenError,
    RunPage, RunSearch, RunSummary, SortKey, SortTerm, TextAttribute, TextMatch, TieOrder,
    TimeAttribute,
};
pub use steps::{NewStepRun, PluginRef, StepRunUpdate};

use migration::Migrator;
use sea_orm::sqlx::sqlite::{SqliteConnectOptions, SqliteSynchronous};
use sea_orm::{
    ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DbBackend, DbErr, RuntimeErr,
    Statement,
};
use sea_orm_migration::MigratorTrait;
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Name of the SQLite file that [`Store::open_sqlite`] keeps in the data directory.
pub const SQLITE_FILE_NAME: &str = "runledger.db";

/// How long a SQLite statement waits for another connection's write lock before failing with
/// "database is locked". Writes are short transactions, so waiting this long means something is
/// stuck.
const SQLITE_BUSY_TIMEOUT: Duration = Duration::from_secs(30);

/// Maximum pause between two attempts to turn on WAL while another connection has the lock
/// that the switch needs.
const WAL_RETRY_PAUSE: Duration = Duration::from_millis(100);

/// Connections in a SQLite pool. WAL lets readers proceed during a write, but SQLite runs one
/// write at a time, so a few connections suffice.
const SQLITE_MAX_CONNECTIONS: u32 = 4;

/// Key of the PostgreSQL advisory lock that serialises migrations. Any fixed number works; this
/// one is unlikely to collide with locks of other programs sharing the database.
const MIGRATION_LOCK_KEY: i64 = 7_242_591_860_301_254_971;

/// Handle to the database. Cloning it is cheap and shares the connection pool.
#[derive(Debug, Clone)]
pub struct Store {
    db: DatabaseConnection,
    /// The database file, when the store is a SQLite file.
    sqlite_file: Option<Arc<Path>>,
}

impl Store {
    /// Connects to a database without migrating it.
    ///
    /// `url` is `sqlite://PATH?mode=rwc` (the file is created if missing) or
    /// `postgres://USER@HOST:PORT/DATABASE`. SQLite connections use WAL, enforce foreign keys
    /// and wait [`SQLITE_BUSY_TIMEOUT`] for locks.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        let mut options = ConnectOptions::new(url);
        let mut file = None;
        let sqlite = url.starts_with("sqlite:");
        let in_memory = is_in_memory(url);
        if sqlite {
            configure_sqlite(&mut options, None, in_memory);
            file = sqlite_file_of(url);
        }

        let shown_url = redact_password(url);
        let mut store = Self::connect_with(options, shown_url.clone()).await?;
        if sqlite && !in_memory {
            store.enable_wal(&shown_url).await?;
        }
        store.sqlite_file = file;
        Ok(store)
    }

    /// Opens the SQLite database `runledger.db` in `data_dir`, creating the directory and the
    /// file if needed, applies pending migrations, and moves metric values a server left
    /// staged into `metrics`.
    pub async fn open_sqlite(data_dir: &Path) -> Result<Self, StoreError> {
        std::fs::create_dir_all(data_dir).map_err(|source| StoreError::DataDir {
            path: data_dir.to_owned(),
            source,
        })?;

        // The path goes to the driver as a path rather than inside the URL, so no character of
        // it can be read as URL syntax. The URL only selects the SQLite driver.
        let path = data_dir.join(SQLITE_FILE_NAME);
        let mut options = ConnectOptions::new(format!("sqlite://{SQLITE_FILE_NAME}"));
        configure_sqlite(&mut options, Some(path.clone()), false);

        let shown_url = format!("sqlite://{}", path.display());
        let mut store = Self::connect_with(options, shown_url.clone()).await?;
        store.enable_wal(&shown_url).await?;
        store.sqlite_file = Some(Arc::from(path));
        store.migrate().await?;
        store.move_staged_metrics().await?;
        Ok(store)
    }

    async fn connect_with(
        mut options: ConnectOptions,
        shown_url: String,
    ) -> Result<Self, StoreError> {
        options.sqlx_logging(false);
        let sqlite = options.get_url().starts_with("sqlite:");
        let db = Database::connect(options)
            .await
            .map_err(|source| connect_error(sqlite, &shown_url, source))?;
        tracing::debug!(url = %shown_url, "connected to database");
        Ok(Self {
            db,
            sqlite_file: None,
        })
    }

    /// Puts a SQLite file in WAL mode. The mode is stored in the file, so one switch per store
    /// is enough, and pooled connections do not repeat it as they open.
    ///
    /// The switch takes a lock that SQLite's busy timeout does not wait for. Processes that open
    /// a new file together, such as a pipeline run and a `runs list` beside it, can therefore
    /// get "database is locked", and the switch is retried until [`SQLITE_BUSY_TIMEOUT`] passes.
    async fn enable_wal(&self, shown_url: &str) -> Result<(), StoreError> {
        let deadline = Instant::now() + SQLITE_BUSY_TIMEOUT;
        let mut pause = Duration::from_millis(2);
        loop {
            match self.switch_to_wal().await {
                Err(error) if is_sqlite_busy(&error) && Instant::now() < deadline => {
                    tracing::debug!(%error, "database file is locked, retrying the switch to wal");
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(WAL_RETRY_PAUSE);
                }
                result => {
                    return result.map_err(|source| StoreError::WalMode {
                        url: shown_url.to_owned(),
                        source,
                    });
                }
            }
        }
    }

    async fn switch_to_wal(&self) -> Result<(), DbErr> {
        let statement = Statement::from_string(DbBackend::Sqlite, "PRAGMA journal_mode = WAL");
        let row = self.db.query_one_raw(statement).await?;
        let mode = row
            .map(|row| row.try_get_by_index::<String>(0))
            .transpose()?;

        // Without shared memory in the file system the file keeps its rollback journal. SQLite
        // still works there, but readers and writers block each other.
        if mode.as_deref() != Some("wal") {
            tracing::warn!(mode = ?mode, "sqlite file not in wal mode, readers wait for writers");
        }
        Ok(())
    }

    /// Applies every pending migration. Running it on an up-to-date database does nothing, and
    /// concurrent callers on one database apply each migration once.
    #[tracing::instrument(name = "runledger.store.migrate", skip_all)]
    pub async fn migrate(&self) -> Result<(), StoreError> {
        // Almost every start finds the schema current. One read checks that, without the write
        // lock or the statements the migrator builds.
        if self.schema_is_current().await {
            tracing::debug!("database schema is up to date");
            return Ok(());
        }

        let transaction = batch::begin_write(&self.db)
            .await
            .map_err(StoreError::Migrate)?;

        // Hosts sharing a PostgreSQL database may start together. The advisory lock, released
        // at commit, makes the later ones wait and then find nothing pending.
        if self.backend() == DbBackend::Postgres {
            let lock = format!("SELECT pg_advisory_xact_lock({MIGRATION_LOCK_KEY})");
            transaction
                .execute_unprepared(&lock)
                .await
                .map_err(StoreError::Migrate)?;
        }

        Migrator::up(&transaction, None)
            .await
            .map_err(StoreError::Migrate)?;
        transaction.commit().await.map_err(StoreError::Migrate)?;
        tracing::debug!("database schema is up to date");
        Ok(())
    }

    /// Returns whether the database records exactly the migrations of this build. A missing
    /// table or a failed read returns false, and the migrator then applies what is pending or
    /// reports a migration missing from this build.
    async fn schema_is_current(&self) -> bool {
        let statement =
            Statement::from_string(self.backend(), "SELECT version FROM seaql_migrations");
        let Ok(rows) = self.db.query_all_raw(statement).await else {
            return false;
        };
        let applied: HashSet<String> = rows
            .iter()
            .filter_map(|row| row.try_get_by_index::<String>(0).ok())
            .collect();
        let known = Migrator::migrations();
        applied.len() == known.len() && known.iter().all(|step| applied.contains(step.name()))
    }

    /// Returns the underlying connection, for queries this module does not offer.
    pub fn connection(&self) -> &DatabaseConnection {
        &self.db
    }

    /// Returns the database file, when the store is a SQLite file.
    pub fn sqlite_file(&self) -> Option<&Path> {
        self.sqlite_file.as_deref()
    }

    /// Returns the database backend the store runs on.
    pub fn backend(&self) -> DbBackend {
        self.db.get_database_backend()
    }

    /// Closes the connection pool, waiting for checked-out connections to return.
    pub async fn close(self) -> Result<(), StoreError> {
        self.db.close().await?;
        Ok(())
    }
}

/// Turns on foreign keys, the busy timeout and, for files, synchronous NORMAL. `file` replaces
/// the path of the URL.
fn configure_sqlite(options: &mut ConnectOptions, file: Option<PathBuf>, in_memory: bool) {
    // Each connection to `sqlite::memory:` opens its own empty database, so an in-memory store
    // must keep to one connection.
    let max_connections = if in_memory { 1 } else { SQLITE_MAX_CONNECTIONS };
    options.max_connections(max_connections);
    // A SQLite connection cannot go stale as a network connection can, and the check costs a
    // round trip to the connection's thread on every checkout.
    options.test_before_acquire(false);

    options.map_sqlx_sqlite_opts(move |opts| {
        let mut opts = opts.foreign_keys(true).busy_timeout(SQLITE_BUSY_TIMEOUT);
        if let Some(path) = &file {
            opts = opts.filename(path).create_if_missing(true);
        }
        if !in_memory {
            // In WAL mode NORMAL keeps the database consistent through an application crash,
            // and only an OS crash or power loss can roll back the most recent commits. WAL
            // itself is turned on once per store, by `Store::enable_wal`.
            opts = opts.synchronous(SqliteSynchronous::Normal);
        }
        opts
    });
}

/// Returns the file a SQLite URL names, or `None` for an in-memory database, a URL the driver
/// does not accept, and a URL with open options (`mode=ro`, `immutable`, `vfs`) that the
/// metric committer's own connection would not honour, so writes keep to the pool.
fn sqlite_file_of(url: &str) -> Option<Arc<Path>> {
    let query = url.split_once('?').map_or("", |(_, query)| query);
    let pool_only = query.split('&').any(|option| {
        let name = option.split('=').next().unwrap_or_default();
        matches!(name, "immutable" | "vfs")
            || (name == "mode" && option != "mode=rwc" && option != "mode=rw")
    });
    if is_in_memory(url) || pool_only {
        return None;
    }
    let options = SqliteConnectOptions::from_str(url).ok()?;
    Some(Arc::from(options.get_filename()))
}

/// Names the lock as the cause when a SQLite connection did not open in time. Opening runs
/// statements that wait for another process's exclusive lock until the busy timeout, and the
/// pool stops waiting for the connection at about the same time.
fn connect_error(sqlite: bool, shown_url: &str, source: DbErr) -> StoreError {
    let timed_out = matches!(
        &source,
        DbErr::Conn(RuntimeErr::SqlxError(error))
            if matches!(**error, sea_orm::sqlx::Error::PoolTimedOut)
    );
    if sqlite && (timed_out || is_sqlite_busy(&source)) {
        return StoreError::SqliteLocked {
            url: shown_url.to_owned(),
            seconds: SQLITE_BUSY_TIMEOUT.as_secs(),
            source,
        };
    }
    StoreError::Connect {
        url: shown_url.to_owned(),
        source,
    }
}

/// Returns whether `error` is SQLite's "database is locked", under any of its extended codes.
fn is_sqlite_busy(error: &DbErr) -> bool {
    const SQLITE_BUSY: i32 = 5;
    let (DbErr::Conn(runtime) | DbErr::Exec(runtime) | DbErr::Query(runtime)) = error else {
        return false;
    };
    let RuntimeErr::SqlxError(error) = runtime else {
        return false;
    };
    error
        .as_database_error()
        .and_then(|error| error.code())
        .and_then(|code| code.parse::<i32>().ok())
        .is_some_and(|code| code & 0xff == SQLITE_BUSY)
}

fn is_in_memory(url: &str) -> bool {
    url.contains(":memory:") || url.contains("mode=memory")
}

/// Replaces the password of a database URL with `***`, so the URL can be logged.
pub fn redact_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let Some(at) = rest[..authority_end].rfind('@') else {
        return url.to_owned();
    };
    match rest[..at].split_once(':') {
        Some((user, _password)) => format!("{scheme}://{user}:***{}", &rest[at..]),
        None => url.to_owned(),
    }
}

/// Current time in milliseconds since the Unix epoch.
fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// Generates a UUIDv7 as a lowercase hyphenated string, which sorts by creation time.
fn new_id() -> String {
    uuid::Uuid::now_v7().to_string()
}
