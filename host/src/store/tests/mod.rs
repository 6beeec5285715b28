//! Tests of the store. Each test body runs twice: on a SQLite file in a temporary directory,
//! then on a new PostgreSQL database that is dropped afterwards.
//!
//! PostgreSQL must accept connections at `postgres://postgres@127.0.0.1:5432/test`, or at the
//! URL in `RUNLEDGER_TEST_POSTGRES_URL`; the tests fail when it does not.

mod completion;
mod detail;
mod governance;
mod ingest;
mod lineage;
mod metric_blocks;
mod metrics;
mod mlflow_logged_models;
mod mlflow_search;
mod runs;
mod steps;
mod tokens;

use super::{DEFAULT_PROJECT, NewRun, RunSource, Store};
use sea_orm::ConnectionTrait;

const DEFAULT_POSTGRES_URL: &str = "postgres://postgres@127.0.0.1:5432/test";
const POSTGRES_URL_VARIABLE: &str = "RUNLEDGER_TEST_POSTGRES_URL";

/// Runs `body` on a new migrated SQLite store, then on a new migrated PostgreSQL store.
async fn on_each_backend(body: impl AsyncFn(&Store)) {
    let dir = tempfile::tempdir().expect("create temporary directory");
    let sqlite = Store::open_sqlite(dir.path())
        .await
        .expect("open SQLite store");
    eprintln!("running on sqlite");
    body(&sqlite).await;
    sqlite.close().await.expect("close SQLite store");

    let database = TempDatabase::create().await;
    let postgres = Store::connect(&database.url)
        .await
        .expect("connect to test database");
    postgres.migrate().await.expect("migrate PostgreSQL store");
    eprintln!("running on postgres");
    body(&postgres).await;
    postgres.close().await.expect("close PostgreSQL store");
}

/// A PostgreSQL database with a unique name, dropped when the value is dropped, including when
/// a test panics.
struct TempDatabase {
    admin_url: String,
    name: String,
    url: String,
}

impl TempDatabase {
    async fn create() -> Self {
        let admin_url =
            std::env::var(POSTGRES_URL_VARIABLE).unwrap_or_else(|_| DEFAULT_POSTGRES_URL.into());
        let name = format!("runledger_test_{}", uuid::Uuid::now_v7().simple());
        let admin = connect_admin(&admin_url).await;
        admin
            .connection()
            .execute_unprepared(&format!("CREATE DATABASE {name}"))
            .await
            .expect("create test database");
        admin.close().await.expect("close admin connection");

        let url = with_database(&admin_url, &name);
        Self {
            admin_url,
            name,
            url,
        }
    }
}

impl Drop for TempDatabase {
    fn drop(&mut self) {
        // Drop cannot await, and the test's runtime may be unwinding, so the database is
        // dropped from a thread with a runtime of its own.
        let admin_url = self.admin_url.clone();
        let statement = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name);
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("build runtime");
            runtime.block_on(async {
                let admin = connect_admin(&admin_url).await;
                let result = admin.connection().execute_unprepared(&statement).await;
                let _ = admin.close().await;
                result
            })
        })
        .join();
        if !matches!(dropped, Ok(Ok(_))) {
            eprintln!(
                "could not drop test database {}; drop it by hand",
                self.name
            );
        }
    }
}

async fn connect_admin(url: &str) -> Store {
    match Store::connect(url).await {
        Ok(store) => store,
        Err(error) => panic!(
            "PostgreSQL must run at 127.0.0.1:5432 with trust authentication for the store \
             tests, or set {POSTGRES_URL_VARIABLE} to the URL of a server that lets the user \
             create databases: {error}"
        ),
    }
}

/// Replaces the database name at the end of a PostgreSQL URL.
fn with_database(url: &str, database: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let prefix = &base[..base.rfind('/').expect("database URL has a path")];
    match query {
        Some(query) => format!("{prefix}/{database}?{query}"),
        None => format!("{prefix}/{database}"),
    }
}

/// Builds a run in the default project with no pipeline and no owner.
fn new_run(name: &str) -> NewRun {
    NewRun {
        project: DEFAULT_PROJECT.to_owned(),
        pipeline_id: None,
        name: name.to_owned(),
        source: RunSource::Cli,
        user_name: "tester".to_owned(),
        seed: Some(7),
        owner: None,
    }
}

/// Builds a valid digest of 64 copies of the hex character `fill`.
fn digest(fill: char) -> String {
    std::iter::repeat_n(fill, 64).collect()
}

/// Opening a SQLite file that another connection keeps in exclusive locking mode fails after the
/// busy timeout with an error that names the lock, not with the pool's timeout alone.
#[tokio::test]
async fn locked_sqlite_file_names_the_lock() {
    let dir = tempfile::tempdir().expect("create temporary directory");
    let store = Store::open_sqlite(dir.path())
        .await
        .expect("open SQLite store");
    store.close().await.expect("close SQLite store");
    let holder = rusqlite::Connection::open(dir.path().join(super::SQLITE_FILE_NAME))
        .expect("open the file with rusqlite");
    holder
        .execute_batch("PRAGMA locking_mode = EXCLUSIVE; BEGIN EXCLUSIVE;")
        .expect("lock the file");

    let error = Store::open_sqlite(dir.path()).await.unwrap_err();

    assert!(
        matches!(error, super::StoreError::SqliteLocked { .. }),
        "{error}"
    );
    assert!(
        error.to_string().contains("stayed locked for 30 s"),
        "{error}"
    );
    assert!(error.to_string().contains("runledger.db"), "{error}");
}
