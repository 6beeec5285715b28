//! The state every handler shares.

use super::auth::{AccessMode, Auth};
use super::jobs::Jobs;
use super::telemetry::Telemetry;
use super::writer::MetricWriter;
use crate::config::Config;
use crate::engine::Engine;
use crate::gates::Gates;
use crate::runtime::PluginRegistry;
use crate::store::Store;
use crate::store::artifacts::ArtifactStore;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

/// Default cap on a request body that is read whole (JSON), in bytes. Artifact uploads stream
/// and are not bound by it.
pub const DEFAULT_MAX_BODY_BYTES: usize = 32 << 20;

/// Settings of `runledger serve`.
#[derive(Debug, Clone)]
pub struct ServerSettings {
    /// Address the server listens on.
    pub bind: SocketAddr,
    /// Largest request body read whole, in bytes.
    pub max_body_bytes: usize,
    /// Steps of pipelines submitted over the API running at once, per run.
    pub parallelism: usize,
    /// Time a connection keeps reading for the client's next request after a response before
    /// it sleeps, zero for never. See [`super::connection`].
    pub poll_budget: Duration,
}

/// Handle to the server's shared state; cloning it is cheap.
#[derive(Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

struct Inner {
    config: Config,
    settings: ServerSettings,
    engine: Engine,
    gates: Gates,
    registry: RwLock<Arc<PluginRegistry>>,
    auth: Auth,
    telemetry: Telemetry,
    writer: MetricWriter,
    jobs: Jobs,
    stopping: AtomicBool,
}

impl AppState {
    /// Combines the opened engine and plugins with the server settings, and starts the
    /// metric writer.
    pub fn new(
        config: Config,
        settings: ServerSettings,
        engine: Engine,
        registry: PluginRegistry,
        mode: AccessMode,
    ) -> Self {
        let telemetry = Telemetry::new(engine.runtime().clone());
        let writer = MetricWriter::start(engine.store().clone());
        let gates = Gates::new(engine.store().clone(), engine.runtime().clone());
        Self {
            inner: Arc::new(Inner {
                config,
                settings,
                registry: RwLock::new(Arc::new(registry)),
                auth: Auth::new(mode),
                telemetry,
                writer,
                jobs: Jobs::default(),
                stopping: AtomicBool::new(false),
                gates,
                engine,
            }),
        }
    }

    /// The configuration the server started with.
    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// The server settings.
    pub fn settings(&self) -> &ServerSettings {
        &self.inner.settings
    }

    /// The engine that runs submitted pipelines.
    pub fn engine(&self) -> &Engine {
        &self.inner.engine
    }

    /// Returns the model registry, validations and promotions.
    pub fn gates(&self) -> &Gates {
        &self.inner.gates
    }

    /// The database.
    pub fn store(&self) -> &Store {
        self.inner.engine.store()
    }

    /// The artifact files.
    pub fn artifacts(&self) -> &ArtifactStore {
        self.inner.engine.artifacts()
    }

    /// The plugins known now. Uploads replace the registry, so hold the returned `Arc` only
    /// for the duration of one request.
    pub fn registry(&self) -> Arc<PluginRegistry> {
        let guard = self
            .inner
            .registry
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        guard.clone()
    }

    /// Replaces the plugin registry, after an upload.
    pub fn replace_registry(&self, registry: PluginRegistry) {
        let mut guard = self
            .inner
            .registry
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *guard = Arc::new(registry);
    }

    /// Access control.
    pub fn auth(&self) -> &Auth {
        &self.inner.auth
    }

    /// The Prometheus metrics.
    pub fn telemetry(&self) -> &Telemetry {
        &self.inner.telemetry
    }

    /// The group-commit writer of metric values.
    pub fn writer(&self) -> &MetricWriter {
        &self.inner.writer
    }

    /// Pipeline runs executing in this server.
    pub fn jobs(&self) -> &Jobs {
        &self.inner.jobs
    }

    /// Whether shutdown has begun; `/readyz` then fails so load balancers stop sending work.
    pub fn is_stopping(&self) -> bool {
        self.inner.stopping.load(Ordering::Relaxed)
    }

    /// Marks the server as stopping.
    pub fn begin_stopping(&self) {
        self.inner.stopping.store(true, Ordering::Relaxed);
    }
}
