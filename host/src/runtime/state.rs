//! Per-call store state: the WASI context with nothing granted, the memory limiter, captured
//! stdio, and everything the call records.

use super::host::artifacts::OutputHandle;
use super::io::{ArtifactIo, ArtifactRef};
use super::violations::{Capability, Limit, Violation, ViolationLog};
use bytes::Bytes;
use std::collections::BTreeSet;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use wasmtime::component::{ResourceTable, ResourceTableError};
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamError, StreamResult};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

/// One line of a step's log.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct LogLine {
    /// `trace`, `debug`, `info`, `warn`, `error`, or `stdout` / `stderr` for captured output.
    pub level: String,
    /// The message.
    pub message: String,
    /// Structured key-value fields.
    pub fields: Vec<(String, String)>,
    /// Milliseconds since the call started.
    pub offset_ms: u64,
}

/// One metric point a call logged.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct MetricPoint {
    /// Metric name.
    pub key: String,
    /// Value; NaN and infinities allowed.
    pub value: f64,
    /// Training step.
    pub step: i64,
    /// Milliseconds since the Unix epoch when the host received it.
    pub timestamp_ms: i64,
}

/// The limits in force for one call, after the operator's caps.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct EffectiveLimits {
    /// Largest linear memory in bytes.
    pub memory_bytes: u64,
    /// Wall-clock limit.
    pub timeout: Duration,
    /// Fuel budget.
    pub fuel: u64,
    /// Largest output artifact in bytes.
    pub max_output_bytes: u64,
    /// Log lines per call.
    pub max_log_lines: usize,
    /// Log bytes per call.
    pub max_log_bytes: usize,
    /// Stdout plus stderr bytes per call.
    pub max_stdio_bytes: usize,
    /// Metric points per call.
    pub max_metric_points: usize,
}

/// Tracks linear-memory growth against the limit and records the peak.
pub(crate) struct MemoryLimiter {
    limit: u64,
    peak: u64,
    violations: ViolationLog,
}

impl wasmtime::ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        // Several memories may exist; `current` is this memory's size, so the sum is approximated
        // by adding the growth to the running peak of what was granted.
        let granted = self.peak.saturating_add((desired - current) as u64);
        if desired as u64 > self.limit || granted > self.limit {
            let limit = Limit::Memory { bytes: self.limit };
            self.violations.record(Violation::Limit(limit.clone()));
            return Err(wasmtime::format_err!("{limit} (requested {desired} bytes)"));
        }
        self.peak = granted;
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 1_000_000)
    }
}

/// Everything the store holds for one call.
pub(crate) struct CallState {
    pub(crate) wasi: WasiCtx,
    pub(crate) table: ResourceTable,
    pub(crate) limiter: MemoryLimiter,
    pub(crate) limits: EffectiveLimits,
    pub(crate) io: Box<dyn ArtifactIo>,
    pub(crate) inputs: Vec<ArtifactRef>,
    pub(crate) declared_outputs: Vec<String>,
    pub(crate) created_outputs: BTreeSet<String>,
    pub(crate) outputs: Vec<ArtifactRef>,
    pub(crate) logs: Vec<LogLine>,
    pub(crate) log_bytes: usize,
    pub(crate) metrics: Vec<MetricPoint>,
    /// Read access to recorded runs; `Some` only in metric-validator calls.
    pub(crate) run_data: Option<Box<dyn super::governance::RunData>>,
    pub(crate) violations: ViolationLog,
    pub(crate) stdio: StdioCapture,
    pub(crate) filesystem_granted: bool,
    pub(crate) started: std::time::Instant,
    /// When the call's wall-clock limit runs out.
    pub(crate) deadline: std::time::Instant,
    /// The virtual clock of a deterministic call; `None` gives the real clock.
    pub(crate) virtual_clock: Option<super::host::clocks::VirtualClock>,
}

impl CallState {
    pub(crate) fn new_limiter(limit: u64, violations: ViolationLog) -> MemoryLimiter {
        MemoryLimiter {
            limit,
            peak: 0,
            violations,
        }
    }

    pub(crate) fn peak_memory(&self) -> u64 {
        self.limiter.peak
    }

    pub(crate) fn elapsed_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    pub(crate) fn output_handle(
        &mut self,
        handle: &wasmtime::component::Resource<OutputHandle>,
    ) -> Result<&mut OutputHandle, ResourceTableError> {
        self.table.get_mut(handle)
    }

    pub(crate) fn deny(&self, capability: Capability, detail: impl Into<String>) {
        self.violations.record(Violation::Denied {
            capability,
            detail: detail.into(),
        });
    }
}

impl WasiView for CallState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// Captured stdout and stderr of a call, bounded in total.
#[derive(Clone)]
pub(crate) struct StdioCapture {
    inner: Arc<Mutex<CaptureInner>>,
}

struct CaptureInner {
    stdout: Vec<u8>,
    stderr: Vec<u8>,
    limit: usize,
    violations: ViolationLog,
}

impl StdioCapture {
    pub(crate) fn new(limit: usize, violations: ViolationLog) -> Self {
        Self {
            inner: Arc::new(Mutex::new(CaptureInner {
                stdout: Vec::new(),
                stderr: Vec::new(),
                limit,
                violations,
            })),
        }
    }

    pub(crate) fn violations(&self) -> ViolationLog {
        self.lock().violations.clone()
    }

    /// The message of a Rust panic printed to stderr, if there is one.
    pub(crate) fn last_panic_message(&self) -> Option<String> {
        let inner = self.lock();
        let text = String::from_utf8_lossy(&inner.stderr);
        let start = text.rfind("panicked at")?;
        let mut lines = text[start..].lines();
        let location = lines.next()?.trim_end_matches(':');
        let message = lines.next().unwrap_or_default();
        Some(format!("{location}: {message}"))
    }

    pub(crate) fn stream(&self, stderr: bool) -> CaptureStream {
        CaptureStream {
            capture: self.clone(),
            stderr,
        }
    }

    /// Takes the captured text, stdout first.
    pub(crate) fn take(&self) -> (String, String) {
        let mut inner = self.lock();
        let stdout = String::from_utf8_lossy(&std::mem::take(&mut inner.stdout)).into_owned();
        let stderr = String::from_utf8_lossy(&std::mem::take(&mut inner.stderr)).into_owned();
        (stdout, stderr)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, CaptureInner> {
        self.inner
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }

    fn append(&self, stderr: bool, bytes: &[u8]) -> Result<(), Limit> {
        let mut inner = self.lock();
        let used = inner.stdout.len() + inner.stderr.len();
        if used + bytes.len() > inner.limit {
            let limit = Limit::Stdio { bytes: inner.limit };
            inner.violations.record(Violation::Limit(limit.clone()));
            return Err(limit);
        }
        let target = if stderr {
            &mut inner.stderr
        } else {
            &mut inner.stdout
        };
        target.extend_from_slice(bytes);
        Ok(())
    }
}

/// One of the two captured streams, handed to WASI as stdout or stderr.
pub(crate) struct CaptureStream {
    capture: StdioCapture,
    stderr: bool,
}

impl IsTerminal for CaptureStream {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for CaptureStream {
    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone_stream())
    }

    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone_stream())
    }
}

impl CaptureStream {
    fn clone_stream(&self) -> Self {
        Self {
            capture: self.capture.clone(),
            stderr: self.stderr,
        }
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for CaptureStream {
    async fn ready(&mut self) {}
}

impl OutputStream for CaptureStream {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.capture
            .append(self.stderr, &bytes)
            .map_err(|limit| StreamError::Trap(wasmtime::format_err!("{limit}")))
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(64 * 1024)
    }
}

impl tokio::io::AsyncWrite for CaptureStream {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let result = self
            .capture
            .append(self.stderr, buf)
            .map(|()| buf.len())
            .map_err(|limit| io::Error::other(limit.to_string()));
        Poll::Ready(result)
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}
