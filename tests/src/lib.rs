//! Shared helpers for runledger's end-to-end tests and benchmarks: where the built plugins are,
//! a runtime shared by all tests of a binary, and artifact stores in temporary directories. The
//! [`Cli`] drives the `runledger` binary as a subprocess on SQLite or on a fresh PostgreSQL
//! database. [`http1`] is the blocking keep-alive client of the benchmarks' load generators.
//!
//! The plugins must be built first: `cargo xtask build-plugins` (which `cargo xtask test` runs).
//! Tests that drive the binary also need `cargo build -p runledger`.

pub mod http1;
pub mod server;
pub mod web_ui;

use runledger::engine::StoreArtifactIo;
use runledger::runtime::{
    ArtifactRef, CallReport, Plugin, PluginRegistry, Runtime, RuntimeSettings, StepCall,
};
use runledger::store::artifacts::ArtifactStore;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, OnceLock};

/// Returns the repository root.
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the tests crate sits one level below the repository root")
        .to_owned()
}

/// Directory of the collected first-party plugins.
pub fn plugins_dir() -> PathBuf {
    workspace_root().join("target/plugins")
}

/// Directory of the collected test-corpus plugins.
pub fn test_plugins_dir() -> PathBuf {
    workspace_root().join("target/test-plugins")
}

/// Returns a registry of first-party and test plugins, and panics with the fix when they are
/// not built.
pub fn registry() -> &'static PluginRegistry {
    static REGISTRY: OnceLock<PluginRegistry> = OnceLock::new();
    REGISTRY.get_or_init(|| {
        let dirs = [plugins_dir(), test_plugins_dir()];
        assert!(
            dirs.iter().all(|dir| dir.is_dir()),
            "plugins are not built: run `cargo xtask build-plugins` first"
        );
        PluginRegistry::scan(&dirs)
    })
}

/// Looks up a built plugin by `name` or `name@version`.
pub fn plugin(spec: &str) -> Arc<Plugin> {
    registry()
        .resolve(spec)
        .unwrap_or_else(|error| panic!("{error}"))
}

/// Returns the one runtime of this test binary, as in the server: the pooling allocator reserves address space
/// per engine, so tests share it instead of creating one each.
pub fn runtime() -> &'static Runtime {
    static RUNTIME: OnceLock<Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        let settings = RuntimeSettings {
            pool_instances: 16,
            ..RuntimeSettings::default()
        };
        Runtime::new(settings)
    })
}

/// Opens an artifact store in a fresh temporary directory, dropped with the returned guard.
pub fn temp_store() -> (tempfile::TempDir, ArtifactStore) {
    let dir = tempfile::tempdir().expect("temporary directory");
    let store = ArtifactStore::open(dir.path().join("artifacts")).expect("artifact store");
    (dir, store)
}

/// Stores `bytes` as an input artifact named `name`.
pub fn input(store: &ArtifactStore, name: &str, bytes: &[u8], media_type: &str) -> ArtifactRef {
    let (digest, size) = store.put_bytes(bytes).expect("store input");
    ArtifactRef {
        name: name.to_owned(),
        digest,
        size,
        media_type: media_type.to_owned(),
    }
}

/// Builds a deterministic first-attempt call with the given params, inputs and output names.
pub fn step_call(
    params: serde_json::Value,
    inputs: Vec<ArtifactRef>,
    outputs: &[&str],
) -> StepCall {
    StepCall {
        run_id: "test-run".into(),
        step_name: "test-step".into(),
        attempt: 1,
        seed: 7,
        params: params.as_object().cloned().unwrap_or_default(),
        inputs,
        outputs: outputs.iter().map(|name| (*name).to_owned()).collect(),
        deterministic: true,
        timeout: None,
        cancel: None,
    }
}

/// Calls `spec` with `call`, reading and writing artifacts in `store`.
pub fn call(spec: &str, call: &StepCall, store: &ArtifactStore) -> CallReport {
    let io = Box::new(StoreArtifactIo::new(store.clone()));
    runtime()
        .call_step(&plugin(spec), call, io)
        .unwrap_or_else(|error| panic!("{spec} could not be called: {error}"))
}

/// Resident set size of this process in bytes, from /proc (Linux).
pub fn rss_bytes() -> u64 {
    proc_status_kib("VmRSS:") * 1024
}

/// Peak resident set size of this process in bytes since start or the last
/// [`reset_peak_rss`], from /proc (Linux).
pub fn peak_rss_bytes() -> u64 {
    proc_status_kib("VmHWM:") * 1024
}

/// Resets the peak RSS counter so [`peak_rss_bytes`] measures from now (Linux 4.0 and later).
pub fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

fn proc_status_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix(field))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kib| kib.parse().ok())
        .unwrap_or(0)
}

/// Returns the path of the dev build's `runledger` binary and panics with the fix when it is
/// missing.
pub fn runledger_binary() -> PathBuf {
    let path = workspace_root().join("target/debug/runledger");
    assert!(
        path.is_file(),
        "{} is missing: run `cargo build -p runledger` first",
        path.display()
    );
    path
}

/// Returns the tests' Python venv, `target/venv`, with schemathesis, openapi-spec-validator and
/// openlineage-python installed; its interpreter is `bin/python` inside it. Panics with the fix
/// when it is missing.
pub fn python_venv() -> PathBuf {
    let venv = workspace_root().join("target/venv");
    assert!(
        venv.join("bin/python").is_file(),
        "{} is missing: run cargo xtask setup",
        venv.display()
    );
    venv
}

/// Computes the lowercase hex SHA-256 of a file with coreutils `sha256sum`, so the check does not
/// depend on runledger's own hashing.
pub fn sha256_file(path: &Path) -> String {
    let output = Command::new("sha256sum")
        .arg(path)
        .output()
        .unwrap_or_else(|error| panic!("cannot start sha256sum (from coreutils): {error}"));
    assert!(
        output.status.success(),
        "sha256sum {} failed: {}",
        path.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    let text = String::from_utf8_lossy(&output.stdout);
    text.split_whitespace()
        .next()
        .expect("sha256sum prints the digest first")
        .to_owned()
}

/// Host, port and maintenance database of the PostgreSQL server the tests create databases on.
const POSTGRES_HOST: &str = "127.0.0.1";
const POSTGRES_PORT: &str = "5432";
const POSTGRES_USER: &str = "postgres";
const POSTGRES_MAINTENANCE_DB: &str = "test";

/// A database created on the local PostgreSQL server for one test, dropped with the value.
#[derive(Debug)]
pub struct PostgresDatabase {
    name: String,
}

impl PostgresDatabase {
    /// Creates an empty database with a name unique to this process and call. Panics with the
    /// server's message when PostgreSQL at 127.0.0.1:5432 is unreachable.
    pub fn create() -> Self {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let started = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock after 1970")
            .as_millis();
        let number = COUNTER.fetch_add(1, Ordering::Relaxed);
        let name = format!("runledger_e2e_{}_{started}_{number}", std::process::id());
        if let Err(message) = psql(&format!("CREATE DATABASE \"{name}\"")) {
            panic!(
                "cannot create a test database on PostgreSQL at {POSTGRES_HOST}:{POSTGRES_PORT} \
                 (user {POSTGRES_USER}, trust authentication): {message}; start the server, or \
                 run only the SQLite tests by adding the filter `sqlite` to `cargo test`"
            );
        }
        Self { name }
    }

    /// Returns the URL runledger connects to, such as `postgres://postgres@127.0.0.1:5432/NAME`.
    pub fn url(&self) -> String {
        format!(
            "postgres://{POSTGRES_USER}@{POSTGRES_HOST}:{POSTGRES_PORT}/{}",
            self.name
        )
    }
}

impl Drop for PostgresDatabase {
    fn drop(&mut self) {
        // FORCE ends connections a failed test may have left open (PostgreSQL 13 and later).
        let drop = format!("DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)", self.name);
        if let Err(message) = psql(&drop) {
            eprintln!(
                "warning: test database {} was not dropped: {message}",
                self.name
            );
        }
    }
}

/// Runs one SQL command with `psql` on the maintenance database and returns psql's error text
/// when it fails.
fn psql(sql: &str) -> Result<(), String> {
    let output = Command::new("psql")
        .args([
            "-h",
            POSTGRES_HOST,
            "-p",
            POSTGRES_PORT,
            "-U",
            POSTGRES_USER,
        ])
        .args([
            "-d",
            POSTGRES_MAINTENANCE_DB,
            "-v",
            "ON_ERROR_STOP=1",
            "-qAt",
            "-c",
            sql,
        ])
        .env("PGCONNECT_TIMEOUT", "5")
        .output()
        .map_err(|error| format!("cannot start psql (the PostgreSQL client): {error}"))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&output.stderr).trim().to_owned())
    }
}

/// The database a [`Cli`] records runs in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// The SQLite file runledger keeps in its data directory by default.
    Sqlite,
    /// A fresh database on the local PostgreSQL server, passed with `--database-url`.
    Postgres,
}

/// User name the [`Cli`] gives the binary in `$USER`, so tests can check the recorded user.
pub const TEST_USER: &str = "runledger-e2e";

/// The `runledger` binary with a temporary data directory of its own and a database on the
/// chosen backend. Both are removed when the value is dropped.
#[derive(Debug)]
pub struct Cli {
    data_dir: tempfile::TempDir,
    database: Option<PostgresDatabase>,
    plugin_dirs: Vec<PathBuf>,
}

impl Cli {
    /// Creates a fresh data directory and, for [`Backend::Postgres`], a fresh database. The
    /// plugin directories are the first-party and test-corpus ones.
    pub fn new(backend: Backend) -> Self {
        runledger_binary();
        assert!(
            plugins_dir().is_dir() && test_plugins_dir().is_dir(),
            "plugins are not built: run `cargo xtask build-plugins` first"
        );
        let database = match backend {
            Backend::Sqlite => None,
            Backend::Postgres => Some(PostgresDatabase::create()),
        };
        Self {
            data_dir: tempfile::tempdir().expect("temporary data directory"),
            database,
            plugin_dirs: vec![plugins_dir(), test_plugins_dir()],
        }
    }

    /// Replaces the plugin directories passed with `--plugin-dir`.
    pub fn with_plugin_dirs(mut self, dirs: Vec<PathBuf>) -> Self {
        self.plugin_dirs = dirs;
        self
    }

    /// Returns the data directory, which contains the artifacts, the compile cache and, on
    /// SQLite, the database.
    pub fn data_dir(&self) -> &Path {
        self.data_dir.path()
    }

    /// Builds a command for `runledger ARGS` with this data directory, database and plugin
    /// directories, run from the repository root with `$USER` set to [`TEST_USER`]. The
    /// `RUNLEDGER_*` variables of the test's environment are removed, so only the arguments
    /// configure the binary.
    pub fn command(&self, args: &[&str]) -> Command {
        let plugin_dirs = std::env::join_paths(&self.plugin_dirs).expect("plugin dirs without ':'");
        let mut command = Command::new(runledger_binary());
        command
            .current_dir(workspace_root())
            .env_remove("RUNLEDGER_DATA_DIR")
            .env_remove("RUNLEDGER_PLUGIN_DIR")
            .env_remove("RUNLEDGER_DATABASE_URL")
            .env_remove("LOGNAME")
            .env("USER", TEST_USER)
            .arg("--data-dir")
            .arg(self.data_dir())
            .arg("--plugin-dir")
            .arg(plugin_dirs);
        if let Some(database) = &self.database {
            command.arg("--database-url").arg(database.url());
        }
        command.args(args);
        command
    }

    /// Runs `runledger ARGS` to the end and returns its exit status and output.
    pub fn output(&self, args: &[&str]) -> Output {
        self.command(args)
            .output()
            .unwrap_or_else(|error| panic!("cannot start runledger {}: {error}", args.join(" ")))
    }

    /// Runs `runledger ARGS`, which must exit 0 and print JSON on stdout, and returns the JSON.
    pub fn json(&self, args: &[&str]) -> serde_json::Value {
        let output = self.output(args);
        assert!(
            output.status.success(),
            "runledger {} exited with {}: {}",
            args.join(" "),
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
        parse_json(&output.stdout, args)
    }
}

/// Parses the stdout of `runledger ARGS` as JSON and panics with the text when it is not JSON.
pub fn parse_json(stdout: &[u8], args: &[&str]) -> serde_json::Value {
    serde_json::from_slice(stdout).unwrap_or_else(|error| {
        panic!(
            "runledger {} printed invalid JSON ({error}): {}",
            args.join(" "),
            String::from_utf8_lossy(stdout)
        )
    })
}

/// Returns the one shared-ownership runtime of this test binary, for APIs that keep an
/// `Arc<Runtime>`, such as the engine and the governance gates. A binary should use either this
/// or [`runtime`], because each creates an engine of its own.
pub fn shared_runtime() -> Arc<Runtime> {
    static RUNTIME: OnceLock<Arc<Runtime>> = OnceLock::new();
    RUNTIME
        .get_or_init(|| {
            let settings = RuntimeSettings {
                pool_instances: 16,
                ..RuntimeSettings::default()
            };
            Arc::new(Runtime::new(settings))
        })
        .clone()
}

/// A migrated store on a fresh database, with the temporary directory and PostgreSQL database
/// that are removed when it is dropped.
pub struct TestStore {
    /// The store.
    pub store: runledger::store::Store,
    /// Directory of the SQLite file, and of any artifacts a test keeps next to it.
    pub dir: tempfile::TempDir,
    _database: Option<PostgresDatabase>,
}

impl TestStore {
    /// Opens a store on a SQLite file in a new temporary directory, or on a new PostgreSQL
    /// database, and applies the migrations.
    pub async fn open(backend: Backend) -> Self {
        let dir = tempfile::tempdir().expect("temporary directory");
        let database = (backend == Backend::Postgres).then(PostgresDatabase::create);
        let store = match &database {
            Some(database) => {
                let store = runledger::store::Store::connect(&database.url())
                    .await
                    .expect("PostgreSQL connects");
                store.migrate().await.expect("migrations apply");
                store
            }
            None => runledger::store::Store::open_sqlite(dir.path())
                .await
                .expect("SQLite opens"),
        };
        Self {
            store,
            dir,
            _database: database,
        }
    }
}
