//! The plugin runtime: one wasmtime engine per process, plugins loaded by digest, and sandboxed
//! calls with memory, fuel and wall-clock limits.
//!
//! ```no_run
//! # fn demo(io: Box<dyn runledger::runtime::ArtifactIo>) -> Result<(), Box<dyn std::error::Error>> {
//! use runledger::runtime::{PluginRegistry, Runtime, RuntimeSettings, StepCall};
//!
//! let runtime = Runtime::new(RuntimeSettings::default());
//! let registry = PluginRegistry::scan(&["target/plugins".into()]);
//! let plugin = registry.resolve("hello@0.1.0")?;
//! let call = StepCall {
//!     run_id: "r1".into(),
//!     step_name: "greet".into(),
//!     attempt: 1,
//!     seed: 42,
//!     params: serde_json::json!({ "name": "wine" }).as_object().unwrap().clone(),
//!     inputs: vec![],
//!     outputs: vec!["greeting".into()],
//!     deterministic: true,
//!     timeout: None,
//!     cancel: None,
//! };
//! let report = runtime.call_step(&plugin, &call, io)?;
//! report.outcome?;
//! # Ok(()) }
//! ```

mod bindings;
mod cache;
mod call;
mod engine;
mod error;
pub mod governance;
#[doc(hidden)]
pub mod host;
mod io;
pub mod manifest;
mod registry;
mod schema;
mod settings;
mod state;
mod violations;
mod worlds;

pub use cache::LoadSource;
pub use call::{CallReport, StepCall, Usage};
pub use engine::AllocatorKind;
pub use error::{CallError, RuntimeError};
pub use governance::{
    Approval, Check, DatasetRef, Decision, GovernanceReport, LineageSummary, MAX_CHECK_NAME_CHARS,
    MAX_CHECKS, MAX_MESSAGE_CHARS, MAX_SERIES_POINTS, PromotionRequest, RecordedCheck, RunData,
    RunDataError, RunSummary, Severity, StepSummary, SummaryMetric,
};
pub use io::{ArtifactIo, ArtifactRef, InputSource, OutputSink, ReadSource};
pub use manifest::{Manifest, PluginKind};
pub use registry::{
    COMPONENT_FILE, DuplicatePlugin, LoadProblem, MANIFEST_FILE, Plugin, PluginRegistry,
};
pub use schema::{InvalidConfig, InvalidParams, SchemaViolation};
pub use settings::{AllocatorChoice, RuntimeSettings};
pub use state::{EffectiveLimits, LogLine, MetricPoint};
pub use violations::{Capability, Limit};

use dashmap::DashMap;
use state::CallState;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};
use wasmtime::Engine;
use wasmtime::component::Linker;

/// How a plugin's component was made ready.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct LoadInfo {
    /// Compiled, or read from the on-disk cache.
    pub source: LoadSource,
    /// Time to compile or deserialize, and pre-instantiate.
    pub duration: Duration,
    /// Interfaces the component exports, as `namespace:package/interface@version`.
    pub exports: Vec<String>,
    /// Interfaces the component imports.
    pub imports: Vec<String>,
}

struct Prepared {
    pre: worlds::WorldPre,
    info: LoadInfo,
}

/// The process-wide plugin runtime.
pub struct Runtime {
    settings: RuntimeSettings,
    /// The wasmtime parts, made when the first plugin is prepared.
    wasm: OnceLock<Wasm>,
    /// Held while the wasmtime parts are made, so two threads do not both make them.
    wasm_start: Mutex<()>,
    prepared: DashMap<String, Arc<Prepared>>,
    stats: CallStats,
}

/// The engine and what is built on it. A process that calls no plugin, such as a server that
/// only records runs sent to it, never makes them, which saves their memory at start.
struct Wasm {
    engine: Engine,
    linker: Linker<CallState>,
    allocator: AllocatorKind,
    cache: cache::CompileCache,
    ticker: engine::EpochTicker,
}

impl Wasm {
    /// Creates the engine (pooling allocator when possible), the linker with WASI granting
    /// nothing, and the epoch ticker.
    fn start(settings: &RuntimeSettings) -> Result<Self, RuntimeError> {
        let engine_error = |error: wasmtime::Error| RuntimeError::Engine(format!("{error:#}"));
        let (engine, allocator) = engine::build_engine(settings).map_err(engine_error)?;
        let linker = build_linker(&engine).map_err(engine_error)?;
        let ticker = engine::EpochTicker::start(engine.clone())
            .map_err(|error| RuntimeError::Engine(error.to_string()))?;
        Ok(Self {
            cache: cache::CompileCache::new(settings.cache_dir.clone(), &engine),
            engine,
            linker,
            allocator,
            ticker,
        })
    }
}

/// Counters of plugin calls of every kind (steps, validators, policies) since the runtime
/// started, for monitoring.
#[derive(Debug, Default)]
pub struct CallStats {
    /// Calls that started.
    pub started: AtomicU64,
    /// Calls that ended with an error or a trap.
    pub failed: AtomicU64,
    /// Calls running now.
    pub running: AtomicI64,
}

impl Runtime {
    /// Creates a runtime with `settings`. The engine, its instance allocator, the linker and
    /// the epoch ticker start when the first plugin is prepared, and an error starting them is
    /// returned from that call.
    pub fn new(settings: RuntimeSettings) -> Self {
        Self {
            settings,
            wasm: OnceLock::new(),
            wasm_start: Mutex::new(()),
            prepared: DashMap::new(),
            stats: CallStats::default(),
        }
    }

    /// Returns the wasmtime parts, starting them on the first call. A failed start is not
    /// kept, so the next call tries again.
    fn wasm(&self) -> Result<&Wasm, RuntimeError> {
        if let Some(wasm) = self.wasm.get() {
            return Ok(wasm);
        }

        let _starting = self
            .wasm_start
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(wasm) = self.wasm.get() {
            return Ok(wasm);
        }
        let wasm = Wasm::start(&self.settings)?;
        Ok(self.wasm.get_or_init(|| wasm))
    }

    /// Returns the allocator the engine uses, starting the engine if no plugin was prepared yet.
    pub fn allocator(&self) -> Result<AllocatorKind, RuntimeError> {
        Ok(self.wasm()?.allocator)
    }

    /// Returns the operator settings.
    pub fn settings(&self) -> &RuntimeSettings {
        &self.settings
    }

    /// Returns the call counters.
    pub fn stats(&self) -> &CallStats {
        &self.stats
    }

    /// Compiles (or loads from cache) and pre-instantiates a plugin, checking that its component
    /// implements the world of its kind. Later calls reuse the result.
    pub fn prepare(&self, plugin: &Plugin) -> Result<LoadInfo, RuntimeError> {
        Ok(self.prepared(plugin)?.info.clone())
    }

    fn prepared(&self, plugin: &Plugin) -> Result<Arc<Prepared>, RuntimeError> {
        if let Some(prepared) = self.prepared.get(&plugin.digest) {
            return Ok(prepared.clone());
        }
        let prepared = Arc::new(self.load(plugin)?);
        self.prepared
            .insert(plugin.digest.clone(), prepared.clone());
        Ok(prepared)
    }

    fn load(&self, plugin: &Plugin) -> Result<Prepared, RuntimeError> {
        let wasm = self.wasm()?;
        let started = Instant::now();
        let path = plugin.component_path();
        let bytes = std::fs::read(&path).map_err(|source| RuntimeError::ReadComponent {
            path: path.display().to_string(),
            source,
        })?;
        let (component, source) = wasm
            .cache
            .load(&wasm.engine, &plugin.digest, &bytes)
            .map_err(|error| RuntimeError::InvalidComponent {
                plugin: plugin.id(),
                path: path.display().to_string(),
                message: format!("{error:#}"),
            })?;
        let (imports, exports) = interface_names(&wasm.engine, &component);
        let kind = plugin.manifest.kind;
        let pre = worlds::prepare(&wasm.linker, &component, &plugin.id(), kind, &imports)?;
        let info = LoadInfo {
            source,
            duration: started.elapsed(),
            exports,
            imports,
        };
        tracing::debug!(plugin = %plugin.id(), digest = %plugin.digest, source = ?info.source,
            millis = info.duration.as_millis() as u64, "plugin prepared");
        Ok(Prepared { pre, info })
    }

    /// Returns an error naming `expected` unless `plugin` is of that kind.
    fn require_kind(plugin: &Plugin, expected: PluginKind) -> Result<(), RuntimeError> {
        if plugin.manifest.kind == expected {
            return Ok(());
        }
        Err(RuntimeError::WrongKind {
            plugin: plugin.id(),
            kind: plugin.manifest.kind.world().to_owned(),
            expected: expected.world().to_owned(),
        })
    }

    /// Computes the limits a call of `plugin` runs under: the manifest's requests, else the defaults,
    /// each capped by the operator settings, and the call's own timeout if it is tighter.
    pub fn effective_limits(&self, plugin: &Plugin, timeout: Option<Duration>) -> EffectiveLimits {
        let requested = &plugin.manifest.limits;
        let settings = &self.settings;
        let plugin_timeout = requested
            .timeout_ms
            .map(Duration::from_millis)
            .unwrap_or(settings::DEFAULT_TIMEOUT);
        let timeout = timeout
            .map_or(plugin_timeout, |t| t.min(plugin_timeout))
            .min(settings.max_timeout);
        EffectiveLimits {
            memory_bytes: requested
                .memory_mib
                .map_or(settings::DEFAULT_MEMORY_BYTES, |mib| mib << 20)
                .min(settings.max_memory_bytes),
            timeout,
            fuel: requested
                .fuel
                .unwrap_or(settings::DEFAULT_FUEL)
                .min(settings.max_fuel),
            max_output_bytes: requested
                .max_output_mib
                .map_or(settings::DEFAULT_MAX_OUTPUT_BYTES, |mib| mib << 20)
                .min(settings.max_output_bytes),
            max_log_lines: settings.max_log_lines,
            max_log_bytes: settings.max_log_bytes,
            max_stdio_bytes: settings.max_stdio_bytes,
            max_metric_points: settings.max_metric_points,
        }
    }

    /// Validates params, then runs one call of a step executor in a fresh store.
    ///
    /// Returns `Err` when the plugin cannot be used at all (invalid params, a component that
    /// does not load); a call that starts always yields a [`CallReport`], whose `outcome` says
    /// whether it succeeded. Blocks the current thread for the duration of the call.
    pub fn call_step(
        &self,
        plugin: &Plugin,
        call: &StepCall,
        io: Box<dyn ArtifactIo>,
    ) -> Result<CallReport, RuntimeError> {
        Self::require_kind(plugin, PluginKind::StepExecutor)?;
        plugin.validate_params(&serde_json::Value::Object(call.params.clone()))?;
        let prepared = self.prepared(plugin)?;
        let worlds::WorldPre::Step(pre) = &prepared.pre else {
            return Err(RuntimeError::WrongKind {
                plugin: plugin.id(),
                kind: plugin.manifest.kind.world().to_owned(),
                expected: PluginKind::StepExecutor.world().to_owned(),
            });
        };
        let wasm = self.wasm()?;
        let scratch = self.scratch_dir(plugin);
        let setup = call::CallSetup {
            engine: &wasm.engine,
            limits: self.effective_limits(plugin, call.timeout),
            scratch_dir: scratch.as_ref().map(|dir| dir.path()),
        };

        let report = self.counted(wasm, || call::run_call(setup, pre, call, io));
        Ok(report)
    }

    /// Runs `call` with the epoch ticking and counts it in [`CallStats`].
    fn counted<R: CountedOutcome>(&self, wasm: &Wasm, call: impl FnOnce() -> R) -> R {
        let _ticking = wasm.ticker.keep_ticking();
        self.stats.started.fetch_add(1, Ordering::Relaxed);
        self.stats.running.fetch_add(1, Ordering::Relaxed);
        let report = call();
        self.stats.running.fetch_sub(1, Ordering::Relaxed);
        if report.failed() {
            self.stats.failed.fetch_add(1, Ordering::Relaxed);
        }
        report
    }

    fn scratch_dir(&self, plugin: &Plugin) -> Option<tempfile::TempDir> {
        if !plugin.manifest.capabilities.scratch_dir || !self.settings.grant_scratch_dir {
            return None;
        }
        match tempfile::tempdir() {
            Ok(dir) => Some(dir),
            Err(error) => {
                tracing::warn!(plugin = %plugin.id(), cause = %error, "no scratch directory");
                None
            }
        }
    }
}

/// A call's report, which records whether the call failed.
trait CountedOutcome {
    fn failed(&self) -> bool;
}

impl CountedOutcome for CallReport {
    fn failed(&self) -> bool {
        self.outcome.is_err()
    }
}

impl<T> CountedOutcome for call::Finished<T> {
    fn failed(&self) -> bool {
        self.outcome.is_err()
    }
}

/// Builds the one linker of the runtime: WASI granting nothing, then the imports of every
/// world. Each interface is added once, and `worlds::prepare` keeps a component to the
/// imports of its own kind's world.
fn build_linker(engine: &Engine) -> wasmtime::Result<Linker<CallState>> {
    let mut linker = Linker::new(engine);
    wasmtime_wasi::p2::add_to_linker_sync(&mut linker)?;
    host::wasi_audit::shadow_wasi_functions(&mut linker)?;
    host::clocks::shadow_monotonic_clock(&mut linker)?;
    bindings::StepExecutor::add_to_linker::<CallState, wasmtime::component::HasSelf<CallState>>(
        &mut linker,
        |state| state,
    )?;
    type Host = wasmtime::component::HasSelf<CallState>;
    bindings::governance_types::add_to_linker::<CallState, Host>(&mut linker, |state| state)?;
    bindings::validator::runledger::plugin::run_data::add_to_linker::<CallState, Host>(
        &mut linker,
        |state| state,
    )?;
    Ok(linker)
}

fn interface_names(
    engine: &Engine,
    component: &wasmtime::component::Component,
) -> (Vec<String>, Vec<String>) {
    let ty = component.component_type();
    let imports = ty
        .imports(engine)
        .map(|(name, _)| name.to_owned())
        .collect();
    let exports = ty
        .exports(engine)
        .map(|(name, _)| name.to_owned())
        .collect();
    (imports, exports)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_runtime_starts_engine_on_first_use() {
        let runtime = Runtime::new(RuntimeSettings {
            allocator: AllocatorChoice::OnDemand,
            ..RuntimeSettings::default()
        });
        assert!(
            runtime.wasm.get().is_none(),
            "the engine started at creation"
        );

        let allocator = runtime.allocator().unwrap();

        assert_eq!(allocator, AllocatorKind::OnDemand);
        assert!(runtime.wasm.get().is_some(), "the engine did not start");
    }
}
