//! Opening the database, artifact store, plugin registry and runtime a command needs.

use crate::config::Config;
use crate::engine::Engine;
use crate::engine::environment::current_user;
use crate::gates::{Actor, Gates, Role};
use crate::runtime::{PluginRegistry, Runtime};
use crate::store::Store;
use crate::store::artifacts::ArtifactStore;
use anyhow::{Context as _, Result};
use std::sync::Arc;

/// Connects to the configured database, applies pending migrations, moves the metric values a
/// stopped server left staged, and marks runs of dead processes as interrupted.
pub(crate) async fn open_store(config: &Config) -> Result<Store> {
    let store = match &config.database_url {
        Some(url) => connect_and_migrate(url).await?,
        None => open_data_dir(config).await?,
    };
    recover_interrupted(&store).await?;
    Ok(store)
}

/// Connects to the database at `url` and migrates it, because [`Store::connect`] does not,
/// then moves staged metric values. The connection errors name the URL, without its password.
async fn connect_and_migrate(url: &str) -> Result<Store> {
    let store = Store::connect(url).await?;
    store.migrate().await.context("database migration failed")?;
    store
        .move_staged_metrics()
        .await
        .context("cannot move the metric values a server left staged")?;
    Ok(store)
}

/// Opens the SQLite file in the data directory. [`Store::open_sqlite`] migrates it and moves
/// staged metric values itself.
async fn open_data_dir(config: &Config) -> Result<Store> {
    std::fs::create_dir_all(&config.data_dir).with_context(|| {
        format!(
            "cannot create the data directory {}",
            config.data_dir.display()
        )
    })?;
    Store::open_sqlite(&config.data_dir)
        .await
        .with_context(|| format!("cannot open the database in {}", config.data_dir.display()))
}

/// Marks runs left `running` by dead processes on this host as `interrupted`.
async fn recover_interrupted(store: &Store) -> Result<()> {
    let interrupted = crate::engine::recover_interrupted(store).await?;
    if !interrupted.is_empty() {
        eprintln!(
            "marked {} run(s) left running by a stopped process as interrupted: {}",
            interrupted.len(),
            interrupted.join(", ")
        );
    }
    Ok(())
}

/// Opens the artifact files under the data directory.
pub(crate) fn open_artifacts(config: &Config) -> Result<ArtifactStore> {
    ArtifactStore::open(config.artifacts_dir()).with_context(|| {
        format!(
            "cannot open the artifact store in {}",
            config.data_dir.display()
        )
    })
}

/// Everything needed to run pipelines.
pub(crate) struct EngineContext {
    pub(crate) engine: Engine,
    pub(crate) registry: PluginRegistry,
}

/// Opens the store, artifacts, plugins and runtime, and recovers runs left by dead processes.
pub(crate) async fn open_engine(config: &Config) -> Result<EngineContext> {
    let store = open_store(config).await?;
    let artifacts = open_artifacts(config)?;
    let registry = PluginRegistry::scan(&config.plugin_dirs);
    for problem in registry.problems() {
        eprintln!(
            "warning: plugin {} skipped: {}",
            problem.dir.display(),
            problem.message
        );
    }
    let runtime = Runtime::new(config.runtime_settings());
    let engine = Engine::new(Arc::new(runtime), store, artifacts);
    Ok(EngineContext { engine, registry })
}

/// Returns a governance layer over the engine's store and runtime.
pub(crate) fn gates_of(engine: &Engine) -> Gates {
    Gates::new(engine.store().clone(), engine.runtime().clone())
}

/// Returns who the command line acts as: the OS user with the admin role. Whoever can open the
/// database can act as anyone; only the HTTP API, with its tokens, enforces identities.
pub(crate) fn cli_actor() -> Actor {
    Actor {
        name: current_user(),
        role: Role::Admin,
    }
}

/// Builds a tokio runtime for one command.
pub(crate) fn tokio_runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}
