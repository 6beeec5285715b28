//! Operator settings of the runtime: caps on what any plugin may request, and defaults for what a
//! manifest leaves out.

use std::path::PathBuf;
use std::time::Duration;

/// Memory a plugin gets when its manifest requests none. Enough for a Rust component working on
/// tables of a few hundred thousand rows; plugins that need more ask for it.
pub(crate) const DEFAULT_MEMORY_BYTES: u64 = 256 << 20;

/// Wall-clock time a call gets when the manifest requests none.
pub(crate) const DEFAULT_TIMEOUT: Duration = Duration::from_secs(600);

/// Fuel (roughly one unit per WebAssembly instruction) a call gets when the manifest requests
/// none. At the one to two billion instructions per second compiled code runs here, this is tens
/// of seconds of pure computation, which the wall-clock timeout bounds anyway.
pub(crate) const DEFAULT_FUEL: u64 = 50_000_000_000;

/// Largest output artifact when the manifest requests no limit.
pub(crate) const DEFAULT_MAX_OUTPUT_BYTES: u64 = 1 << 30;

/// The instance allocator an engine is asked to use.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, clap::ValueEnum,
)]
#[serde(rename_all = "kebab-case")]
pub enum AllocatorChoice {
    /// Pooling when the address space allows it, on-demand otherwise.
    Auto,
    /// Pooling only; engine creation fails when the pool cannot be reserved.
    Pooling,
    /// Allocate each instance's memories and tables on demand.
    OnDemand,
}

/// Caps and defaults the operator sets for every plugin call.
#[derive(Debug, Clone)]
pub struct RuntimeSettings {
    /// Directory for compiled components; `None` disables the compile cache.
    pub cache_dir: Option<PathBuf>,
    /// Instance allocator.
    pub allocator: AllocatorChoice,
    /// Component instances the pooling allocator keeps slots for, which bounds concurrent calls.
    pub pool_instances: u32,
    /// Largest linear memory any plugin may request, in bytes (wasm32 allows at most 4 GiB).
    pub max_memory_bytes: u64,
    /// Maximum wall-clock time any call may request.
    pub max_timeout: Duration,
    /// Largest fuel budget any call may request.
    pub max_fuel: u64,
    /// Largest output artifact any plugin may request, in bytes.
    pub max_output_bytes: u64,
    /// Log lines one call may write through the logging import before it traps.
    pub max_log_lines: usize,
    /// Bytes of log messages and fields one call may write before it traps.
    pub max_log_bytes: usize,
    /// Bytes of stdout plus stderr kept per call; writing more traps.
    pub max_stdio_bytes: usize,
    /// Metric points one call may log.
    pub max_metric_points: usize,
    /// Whether plugins that request a scratch directory get one.
    pub grant_scratch_dir: bool,
}

impl Default for RuntimeSettings {
    fn default() -> Self {
        Self {
            cache_dir: None,
            allocator: AllocatorChoice::Auto,
            pool_instances: 64,
            max_memory_bytes: 4 << 30,
            max_timeout: Duration::from_secs(24 * 3600),
            max_fuel: u64::MAX / 2,
            max_output_bytes: 64 << 30,
            max_log_lines: 100_000,
            max_log_bytes: 16 << 20,
            max_stdio_bytes: 1 << 20,
            max_metric_points: 1_000_000,
            grant_scratch_dir: true,
        }
    }
}
