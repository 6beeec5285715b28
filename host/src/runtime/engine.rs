//! The process-wide wasmtime engine: configuration, instance allocator and the epoch ticker that
//! enforces wall-clock timeouts.

use super::settings::{AllocatorChoice, RuntimeSettings};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

/// Interval between epoch increments, so the precision of wall-clock limits and cancellation;
/// 10 ms keeps the ticker's own cost negligible.
pub(crate) const EPOCH_TICK: Duration = Duration::from_millis(10);

/// Native stack a call may use for WebAssembly frames. Deep enough for recursive parsers, small
/// enough that unbounded recursion traps quickly.
pub(crate) const MAX_WASM_STACK: usize = 1 << 20;

/// Memories, tables and core instances one component may have. A Rust component has one memory
/// and a handful of core instances; components built by componentize-py or componentize-js
/// have a few dozen core instances and larger tables.
const MAX_MEMORIES_PER_COMPONENT: u32 = 4;
const MAX_TABLES_PER_COMPONENT: u32 = 16;
const MAX_CORE_INSTANCES_PER_COMPONENT: u32 = 64;
const MAX_TABLE_ELEMENTS: usize = 100_000;

/// The allocator an engine ended up with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum AllocatorKind {
    /// Slots reserved up front and reused per call.
    Pooling,
    /// Memory and tables mapped for each instance.
    OnDemand,
}

fn base_config() -> Config {
    let mut config = Config::new();
    config.wasm_component_model(true);
    config.consume_fuel(true);
    config.epoch_interruption(true);
    config.max_wasm_stack(MAX_WASM_STACK);
    config.parallel_compilation(true);
    config
}

fn pooling_config(settings: &RuntimeSettings) -> PoolingAllocationConfig {
    let instances = settings.pool_instances.max(1);
    let mut pool = PoolingAllocationConfig::default();
    pool.total_component_instances(instances);
    pool.total_core_instances(instances * 8);
    pool.total_memories(instances * 2);
    pool.total_tables(instances * 4);
    pool.max_memories_per_component(MAX_MEMORIES_PER_COMPONENT);
    pool.max_tables_per_component(MAX_TABLES_PER_COMPONENT);
    pool.max_core_instances_per_component(MAX_CORE_INSTANCES_PER_COMPONENT);
    pool.table_elements(MAX_TABLE_ELEMENTS);
    // Slots always reserve the largest 32-bit memory, so a component's declared minimum never
    // fails the pool's own check: the per-call limiter enforces the operator's memory cap.
    pool.max_memory_size(4 << 30);
    pool.max_component_instance_size(16 << 20);
    pool.max_core_instance_size(16 << 20);
    // Resetting the first pages of a slot with memset is cheaper than madvise for the few
    // pages a small component touches; beyond this size the kernel takes the pages back.
    pool.linear_memory_keep_resident(64 << 10);
    pool.table_keep_resident(16 << 10);
    pool
}

/// Builds the engine with the allocator the settings ask for, falling back from pooling to
/// on-demand when the pool's address space cannot be reserved.
pub(crate) fn build_engine(
    settings: &RuntimeSettings,
) -> wasmtime::Result<(Engine, AllocatorKind)> {
    if settings.allocator == AllocatorChoice::OnDemand {
        tracing::info!(allocator = "on-demand", "wasm instance allocator selected");
        return Ok((Engine::new(&base_config())?, AllocatorKind::OnDemand));
    }

    let mut config = base_config();
    config.allocation_strategy(InstanceAllocationStrategy::Pooling(pooling_config(
        settings,
    )));
    match Engine::new(&config) {
        Ok(engine) => {
            tracing::info!(
                allocator = "pooling",
                slots = settings.pool_instances,
                "wasm instance allocator selected"
            );
            Ok((engine, AllocatorKind::Pooling))
        }
        Err(error) if settings.allocator == AllocatorChoice::Auto => {
            tracing::warn!(
                allocator = "on-demand",
                cause = %error,
                "pooling allocator unavailable, falling back to on-demand allocation"
            );
            Ok((Engine::new(&base_config())?, AllocatorKind::OnDemand))
        }
        Err(error) => Err(error.context("failed to reserve the pooling allocator")),
    }
}

/// A background thread that advances the engine's epoch every [`EPOCH_TICK`] while a call
/// runs, and stores set their deadline in ticks. Between calls the thread is parked, so an
/// idle process does not wake a hundred times a second. Stops when dropped.
pub(crate) struct EpochTicker {
    state: Arc<TickerState>,
    thread: Option<JoinHandle<()>>,
}

/// State shared by the ticker thread and the calls that keep it ticking.
struct TickerState {
    stop: AtomicBool,
    /// Calls that hold a [`Ticking`] guard now.
    calls: AtomicUsize,
    /// Epoch increments so far.
    ticks: AtomicU64,
}

impl EpochTicker {
    pub(crate) fn start(engine: Engine) -> std::io::Result<Self> {
        let state = Arc::new(TickerState {
            stop: AtomicBool::new(false),
            calls: AtomicUsize::new(0),
            ticks: AtomicU64::new(0),
        });
        let shared = state.clone();
        let thread = std::thread::Builder::new()
            .name("runledger-epoch".into())
            .spawn(move || tick_while_calls_run(&engine, &shared))?;
        Ok(Self {
            state,
            thread: Some(thread),
        })
    }

    /// Returns a guard that keeps the epoch advancing until it is dropped. Every call into a
    /// component holds one, because its wall-clock deadline and cancel flag are checked on
    /// epoch ticks.
    pub(crate) fn keep_ticking(&self) -> Ticking<'_> {
        if self.state.calls.fetch_add(1, Ordering::AcqRel) == 0 {
            self.wake();
        }
        Ticking { ticker: self }
    }

    /// Returns how many times the thread has advanced the epoch.
    #[cfg(test)]
    pub(crate) fn ticks(&self) -> u64 {
        self.state.ticks.load(Ordering::Relaxed)
    }

    fn wake(&self) {
        if let Some(thread) = &self.thread {
            thread.thread().unpark();
        }
    }
}

/// Advances the epoch every [`EPOCH_TICK`] while `state` counts a running call, and parks the
/// thread otherwise. `park` returns at once when `unpark` came first, so a call that starts
/// between the check and the park is not missed.
fn tick_while_calls_run(engine: &Engine, state: &TickerState) {
    while !state.stop.load(Ordering::Acquire) {
        if state.calls.load(Ordering::Acquire) == 0 {
            std::thread::park();
            continue;
        }
        std::thread::sleep(EPOCH_TICK);
        engine.increment_epoch();
        state.ticks.fetch_add(1, Ordering::Relaxed);
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.state.stop.store(true, Ordering::Release);
        self.wake();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// A running call's hold on the [`EpochTicker`].
pub(crate) struct Ticking<'a> {
    ticker: &'a EpochTicker,
}

impl Drop for Ticking<'_> {
    fn drop(&mut self) {
        self.ticker.state.calls.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    /// Maximum wait for a condition that the ticker reaches within a few ticks on an idle machine.
    const PATIENCE: Duration = Duration::from_secs(10);

    /// Waits until `done` holds, and panics naming `what` after [`PATIENCE`].
    fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
        let deadline = Instant::now() + PATIENCE;
        while !done() {
            assert!(Instant::now() < deadline, "{what} within {PATIENCE:?}");
            std::thread::sleep(EPOCH_TICK);
        }
    }

    /// Returns whether `ticker` advanced no tick during 10 tick intervals.
    fn stays_still(ticker: &EpochTicker) -> bool {
        let before = ticker.ticks();
        std::thread::sleep(EPOCH_TICK * 10);
        ticker.ticks() == before
    }

    #[test]
    fn ticker_ticks_only_during_calls() {
        let ticker = EpochTicker::start(Engine::new(&base_config()).unwrap()).unwrap();
        assert!(stays_still(&ticker), "the ticker ticked before any call");

        let call = ticker.keep_ticking();
        let start = ticker.ticks();
        wait_for("3 ticks during a call", || ticker.ticks() >= start + 3);

        drop(call);
        // The tick under way when the call ended may still land, so the check is repeated.
        wait_for("the ticker stopping after the call", || {
            stays_still(&ticker)
        });
    }

    #[test]
    fn ticker_ticks_while_any_call_runs() {
        let ticker = EpochTicker::start(Engine::new(&base_config()).unwrap()).unwrap();
        let first = ticker.keep_ticking();
        let second = ticker.keep_ticking();

        drop(first);
        let start = ticker.ticks();

        wait_for("3 ticks with one call left", || ticker.ticks() >= start + 3);
        drop(second);
    }
}
