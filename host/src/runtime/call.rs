//! One call of a step executor: a fresh store with the call's limits, instantiation, the call,
//! and the translation of whatever ended it into a [`CallError`] that names the cause.

use super::bindings::{GuestError, StepExecutorPre, WitStepContext, types};
use super::error::CallError;
use super::governance::RunData;
use super::host::clocks::VirtualClock;
use super::io::{ArtifactIo, ArtifactRef};
use super::state::{CallState, EffectiveLimits, LogLine, MetricPoint, StdioCapture};
use super::violations::{Limit, Violation, ViolationLog};
use rand::SeedableRng as _;
use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use wasmtime::component::ResourceTable;
use wasmtime::{Engine, Store, Trap, UpdateDeadline};
use wasmtime_wasi::sockets::SocketAddrUse;
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder};

/// What to run: the step's identity, params and artifacts.
#[derive(Debug, Clone)]
pub struct StepCall {
    /// The pipeline run.
    pub run_id: String,
    /// The step's name.
    pub step_name: String,
    /// Attempt number, from 1.
    pub attempt: u32,
    /// Seed of the step's randomness.
    pub seed: u64,
    /// Resolved params (a JSON object).
    pub params: serde_json::Map<String, serde_json::Value>,
    /// Input artifacts the step may open.
    pub inputs: Vec<ArtifactRef>,
    /// Output names the step may create.
    pub outputs: Vec<String>,
    /// Fixed clock and seeded randomness, so re-executions repeat bit for bit.
    pub deterministic: bool,
    /// A tighter wall-clock limit than the plugin's, such as a pipeline step's timeout.
    pub timeout: Option<Duration>,
    /// Set to `true` from another thread to stop the call within one epoch tick.
    pub cancel: Option<Arc<AtomicBool>>,
}

/// Resources one call used.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct Usage {
    /// Wall-clock time of the call, instantiation included.
    pub wall_time: Duration,
    /// Fuel consumed.
    pub fuel_consumed: u64,
    /// Largest total linear memory granted, in bytes.
    pub peak_memory_bytes: u64,
}

/// Everything a call produced, whether it succeeded or not.
#[derive(Debug)]
pub struct CallReport {
    /// Success, or why the call failed.
    pub outcome: Result<(), CallError>,
    /// Outputs finished during the call.
    pub outputs: Vec<ArtifactRef>,
    /// Metric points logged.
    pub metrics: Vec<MetricPoint>,
    /// Log lines, including captured stdout and stderr.
    pub logs: Vec<LogLine>,
    /// Resources used.
    pub usage: Usage,
    /// The limits the call ran under.
    pub limits: EffectiveLimits,
}

pub(crate) struct CallSetup<'a> {
    pub(crate) engine: &'a Engine,
    pub(crate) limits: EffectiveLimits,
    pub(crate) scratch_dir: Option<&'a std::path::Path>,
}

/// The inputs of a call's store besides its limits: randomness, cancellation and the host
/// services its world imports.
pub(crate) struct Sandbox {
    pub(crate) seed: u64,
    pub(crate) deterministic: bool,
    pub(crate) cancel: Option<Arc<AtomicBool>>,
    pub(crate) io: Box<dyn ArtifactIo>,
    pub(crate) inputs: Vec<ArtifactRef>,
    pub(crate) outputs: Vec<String>,
    pub(crate) run_data: Option<Box<dyn RunData>>,
}

/// The result of any call: its outcome and everything the store recorded.
pub(crate) struct Finished<T> {
    pub(crate) outcome: Result<T, CallError>,
    pub(crate) outputs: Vec<ArtifactRef>,
    pub(crate) metrics: Vec<MetricPoint>,
    pub(crate) logs: Vec<LogLine>,
    pub(crate) usage: Usage,
}

fn build_wasi(
    call: &Sandbox,
    stdio: &StdioCapture,
    setup: &CallSetup<'_>,
    clock: Option<&VirtualClock>,
) -> WasiCtx {
    let mut builder = WasiCtxBuilder::new();
    builder.stdout(stdio.stream(false));
    builder.stderr(stdio.stream(true));
    builder.allow_tcp(true);
    builder.allow_udp(true);
    builder.allow_ip_name_lookup(false);
    let violations = stdio.violations();
    builder.socket_addr_check(move |addr, usage| {
        violations.record(Violation::Denied {
            capability: super::violations::Capability::Network,
            detail: format!("the plugin tried to {} {addr}", socket_action(usage)),
        });
        Box::pin(async { false })
    });
    if call.deterministic {
        builder.secure_random(rand::rngs::StdRng::seed_from_u64(call.seed));
        builder.insecure_random(rand::rngs::StdRng::seed_from_u64(!call.seed));
        builder.insecure_random_seed(u128::from(call.seed));
    }
    if let Some(clock) = clock {
        builder.wall_clock(clock.clone());
        builder.monotonic_clock(clock.clone());
    }
    if let Some(dir) = setup.scratch_dir {
        let granted = builder.preopened_dir(dir, "/scratch", wasmtime_wasi::FsPerms::ReadWrite);
        if let Err(error) = granted {
            tracing::warn!(cause = %error, "cannot preopen the scratch directory");
        }
    }
    builder.build()
}

fn socket_action(usage: SocketAddrUse) -> &'static str {
    match usage {
        SocketAddrUse::TcpBind => "bind a TCP socket to",
        SocketAddrUse::TcpListen => "listen for TCP on",
        SocketAddrUse::TcpAccept => "accept a TCP connection on",
        SocketAddrUse::TcpConnect => "connect over TCP to",
        SocketAddrUse::UdpBind => "bind a UDP socket to",
        SocketAddrUse::UdpSend => "send a UDP datagram to",
        SocketAddrUse::UdpReceive => "receive UDP datagrams from",
    }
}

fn wit_context(call: &StepCall) -> WitStepContext {
    let params = call
        .params
        .iter()
        .map(|(name, value)| types::Param {
            name: name.clone(),
            value_json: value.to_string(),
        })
        .collect();
    let inputs = call
        .inputs
        .iter()
        .map(|a| types::ArtifactRef {
            name: a.name.clone(),
            digest: a.digest.clone(),
            size: a.size,
            media_type: a.media_type.clone(),
        })
        .collect();
    WitStepContext {
        run_id: call.run_id.clone(),
        step_name: call.step_name.clone(),
        attempt: call.attempt,
        seed: call.seed,
        params,
        inputs,
        outputs: call.outputs.clone(),
    }
}

/// Runs one step-executor call to completion and reports what happened. Guest faults become
/// a [`CallError`] in the report rather than a panic.
pub(crate) fn run_call(
    setup: CallSetup<'_>,
    pre: &StepExecutorPre<CallState>,
    call: &StepCall,
    io: Box<dyn ArtifactIo>,
) -> CallReport {
    let limits = setup.limits.clone();
    let sandbox = Sandbox {
        seed: call.seed,
        deterministic: call.deterministic,
        cancel: call.cancel.clone(),
        io,
        inputs: call.inputs.clone(),
        outputs: call.outputs.clone(),
        run_data: None,
    };
    let finished = run_sandboxed(setup, sandbox, |store| {
        let bindings = pre
            .instantiate(&mut *store)
            .map_err(RawFailure::Instantiate)?;
        let context = wit_context(call);
        let result = bindings
            .runledger_plugin_executor()
            .call_execute(&mut *store, &context)
            .map_err(RawFailure::Trap)?;
        Ok(result.map_err(guest_error))
    });
    CallReport {
        outcome: finished.outcome,
        outputs: finished.outputs,
        metrics: finished.metrics,
        logs: finished.logs,
        usage: finished.usage,
        limits,
    }
}

/// Runs `invoke` (instantiate and call) in a fresh store with the setup's limits, and turns
/// whatever ended it into a [`CallError`] that names the cause.
pub(crate) fn run_sandboxed<T>(
    setup: CallSetup<'_>,
    sandbox: Sandbox,
    invoke: impl FnOnce(&mut Store<CallState>) -> RawOutcome<T>,
) -> Finished<T> {
    let started = Instant::now();
    let violations = ViolationLog::default();
    let stdio = StdioCapture::new(setup.limits.max_stdio_bytes, violations.clone());
    let virtual_clock = sandbox.deterministic.then(VirtualClock::default);
    let wasi = build_wasi(&sandbox, &stdio, &setup, virtual_clock.as_ref());
    let cancel = sandbox.cancel;
    let state = CallState {
        wasi,
        table: ResourceTable::new(),
        limiter: CallState::new_limiter(setup.limits.memory_bytes, violations.clone()),
        limits: setup.limits.clone(),
        io: sandbox.io,
        inputs: sandbox.inputs,
        declared_outputs: sandbox.outputs,
        created_outputs: BTreeSet::new(),
        outputs: Vec::new(),
        logs: Vec::new(),
        log_bytes: 0,
        metrics: Vec::new(),
        run_data: sandbox.run_data,
        violations: violations.clone(),
        stdio: stdio.clone(),
        filesystem_granted: setup.scratch_dir.is_some(),
        started,
        deadline: started + setup.limits.timeout,
        virtual_clock,
    };
    let mut store = Store::new(setup.engine, state);
    store.limiter(|state| &mut state.limiter);
    let fuel = setup.limits.fuel;
    let outcome = store
        .set_fuel(fuel)
        .map_err(|error| CallError::Instantiate {
            message: error.to_string(),
        })
        .and_then(|()| {
            let deadline = started + setup.limits.timeout;
            watch_deadline(&mut store, deadline, cancel);
            let raw = invoke(&mut store);
            let violations = store.data().violations.take();
            classify(raw, violations, &store.data().stdio, &store.data().limits)
        });
    finish(store, outcome, fuel, started)
}

/// The error a call stops with when its cancel flag is set.
#[derive(Debug, thiserror::Error)]
#[error("the call was cancelled")]
struct CancelledCall;

/// Checks the cancel flag and the wall-clock deadline on every epoch tick while wasm runs.
///
/// NOTE: a call blocked in a host function is only stopped when it returns to wasm. Sleeps are
/// cut short at the deadline (see `host::clocks`), and the other blocking WASI calls reach
/// nothing in this sandbox, but a cancel request waits for a running sleep to end.
fn watch_deadline(
    store: &mut Store<CallState>,
    deadline: Instant,
    cancel: Option<Arc<AtomicBool>>,
) {
    store.set_epoch_deadline(1);
    store.epoch_deadline_callback(move |_| {
        if cancel
            .as_ref()
            .is_some_and(|flag| flag.load(Ordering::Relaxed))
        {
            return Err(wasmtime::Error::new(CancelledCall));
        }
        if Instant::now() >= deadline {
            return Err(Trap::Interrupt.into());
        }
        Ok(UpdateDeadline::Continue(1))
    });
}

/// The result of `invoke`: the guest's result or error value, or the fault that stopped it.
pub(crate) type RawOutcome<T> = Result<Result<T, CallError>, RawFailure>;

/// A fault that stopped a call before the guest returned.
pub(crate) enum RawFailure {
    /// Instantiation failed.
    Instantiate(wasmtime::Error),
    /// The call trapped.
    Trap(wasmtime::Error),
}

/// Maximum length of an error message kept from a plugin. The rest is cut, so a plugin cannot
/// flood the step record or the terminal through its error value.
const MAX_ERROR_MESSAGE_BYTES: usize = 16 << 10;

fn truncate_message(mut message: String) -> String {
    if message.len() <= MAX_ERROR_MESSAGE_BYTES {
        return message;
    }
    let total = message.len();
    let mut cut = MAX_ERROR_MESSAGE_BYTES;
    while !message.is_char_boundary(cut) {
        cut -= 1;
    }
    message.truncate(cut);
    message.push_str(&format!(" ... ({} more bytes cut)", total - cut));
    message
}

pub(crate) fn guest_error(error: GuestError) -> CallError {
    let (kind, message) = match error {
        GuestError::InvalidParams(m) => ("invalid-params", m),
        GuestError::InvalidInput(m) => ("invalid-input", m),
        GuestError::NotFound(m) => ("not-found", m),
        GuestError::LimitExceeded(m) => ("limit-exceeded", m),
        GuestError::InvalidState(m) => ("invalid-state", m),
        GuestError::Io(m) => ("io", m),
        GuestError::Other(m) => ("other", m),
    };
    CallError::Plugin {
        kind: kind.to_owned(),
        message: truncate_message(message),
    }
}

/// Picks the most telling cause: a withheld capability first, then a limit the host recorded,
/// then what the trap or the guest's error value reports.
fn classify<T>(
    raw: RawOutcome<T>,
    mut violations: Vec<Violation>,
    stdio: &StdioCapture,
    limits: &EffectiveLimits,
) -> Result<T, CallError> {
    if let Err(RawFailure::Trap(error)) = &raw
        && error.downcast_ref::<Trap>() == Some(&Trap::UnreachableCodeReached)
    {
        // Rust's panic handler reads RUST_BACKTRACE, so a panic always looks like an attempt
        // to read the environment. The panic message is the better explanation.
        violations.retain(|v| {
            !matches!(v, Violation::Denied { capability, .. }
            if *capability == super::violations::Capability::Environment)
        });
    }
    let outcome = match raw {
        Ok(result) => result,
        Err(RawFailure::Instantiate(error)) => Err(instantiate_error(error, limits)),
        Err(RawFailure::Trap(error)) => Err(trap_error(&error, stdio, limits)),
    };
    let failure = match outcome {
        Ok(value) => return Ok(value),
        Err(failure) => failure,
    };
    Err(violation_error(&violations, &failure).unwrap_or(failure))
}

/// Finds the recorded violation that explains `failure`: a denied capability (keeping the plugin's
/// own error beside it), else a limit.
fn violation_error(violations: &[Violation], failure: &CallError) -> Option<CallError> {
    let plugin_error = match failure {
        CallError::LimitExceeded { .. } => None,
        other => Some(other.to_string()),
    };
    let denied = violations.iter().find_map(|v| match v {
        Violation::Denied { capability, detail } => Some(CallError::CapabilityDenied {
            capability: *capability,
            detail: detail.clone(),
            plugin_error: plugin_error.clone(),
        }),
        Violation::Limit(_) => None,
    });
    let limit = violations.iter().find_map(|v| match v {
        Violation::Limit(limit) => Some(CallError::LimitExceeded {
            limit: limit.clone(),
        }),
        Violation::Denied { .. } => None,
    });
    denied.or(limit)
}

fn instantiate_error(error: wasmtime::Error, limits: &EffectiveLimits) -> CallError {
    if error.downcast_ref::<CancelledCall>().is_some() {
        return CallError::Cancelled;
    }
    match error.downcast_ref::<Trap>() {
        Some(trap) => trap_limit(*trap, limits).unwrap_or_else(|| CallError::Instantiate {
            message: format!("{error:#}"),
        }),
        None => CallError::Instantiate {
            message: format!("{error:#}"),
        },
    }
}

fn trap_limit(trap: Trap, limits: &EffectiveLimits) -> Option<CallError> {
    let limit = match trap {
        Trap::OutOfFuel => Limit::Fuel {
            budget: limits.fuel,
        },
        Trap::Interrupt => Limit::Timeout {
            millis: limits.timeout.as_millis() as u64,
        },
        Trap::StackOverflow => Limit::Stack {
            bytes: super::engine::MAX_WASM_STACK,
        },
        _ => return None,
    };
    Some(CallError::LimitExceeded { limit })
}

fn trap_error(
    error: &wasmtime::Error,
    stdio: &StdioCapture,
    limits: &EffectiveLimits,
) -> CallError {
    if error.downcast_ref::<CancelledCall>().is_some() {
        return CallError::Cancelled;
    }
    let Some(trap) = error.downcast_ref::<Trap>() else {
        return CallError::Trap {
            message: format!("{error:#}"),
        };
    };
    if let Some(limit) = trap_limit(*trap, limits) {
        return limit;
    }
    if *trap == Trap::UnreachableCodeReached {
        return CallError::Panic {
            message: stdio
                .last_panic_message()
                .unwrap_or_else(|| "wasm `unreachable` executed".into()),
        };
    }
    CallError::Trap {
        message: trap.to_string(),
    }
}

fn finish<T>(
    mut store: Store<CallState>,
    outcome: Result<T, CallError>,
    fuel: u64,
    started: Instant,
) -> Finished<T> {
    let fuel_left = store.get_fuel().unwrap_or(0);
    let peak_memory_bytes = store.data().peak_memory();
    let state = store.data_mut();
    let (stdout, stderr) = state.stdio.take();
    let mut logs = std::mem::take(&mut state.logs);
    let offset_ms = started.elapsed().as_millis() as u64;
    append_captured(&mut logs, "stdout", &stdout, offset_ms);
    append_captured(&mut logs, "stderr", &stderr, offset_ms);
    let outputs = std::mem::take(&mut state.outputs);
    let metrics = std::mem::take(&mut state.metrics);
    drop(store);
    Finished {
        outcome,
        outputs,
        metrics,
        logs,
        usage: Usage {
            wall_time: started.elapsed(),
            fuel_consumed: fuel.saturating_sub(fuel_left),
            peak_memory_bytes,
        },
    }
}

fn append_captured(logs: &mut Vec<LogLine>, stream: &str, text: &str, offset_ms: u64) {
    for line in text.lines() {
        logs.push(LogLine {
            level: stream.to_owned(),
            message: line.to_owned(),
            fields: Vec::new(),
            offset_ms,
        });
    }
}
