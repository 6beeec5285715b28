//! One step of a run: the cache lookup, the attempts with retries, and the records each leaves.

use super::executor::{ProgressEvent, StepSummary};
use super::plan::PlannedStep;
use super::{Engine, EngineError, StoreArtifactIo, environment, sha256_hex};
use crate::runtime::{ArtifactRef, CallError, CallReport, Limit, StepCall};
use crate::store::{
    Direction, NewArtifact, NewEdge, NewLogLine, NewMetric, NewStepLink, Node, StepCompletion,
    StepStatus,
};
use serde_json::json;
use sha2::Digest as _;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::mpsc::UnboundedSender;

/// First retry delay; each further retry doubles it, up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(200);
const MAX_BACKOFF: Duration = Duration::from_secs(10);

/// An input of a step with the lineage node it comes from.
#[derive(Debug, Clone)]
pub(super) struct StepInput {
    pub(super) artifact: ArtifactRef,
    pub(super) is_dataset: bool,
}

/// Everything one step task needs.
pub(super) struct StepTask {
    pub(super) engine: Engine,
    pub(super) run_id: String,
    pub(super) step_run_id: String,
    pub(super) step: PlannedStep,
    pub(super) inputs: Vec<StepInput>,
    pub(super) run_seed: u64,
    pub(super) deterministic: bool,
    pub(super) use_cache: bool,
    pub(super) cancel: Arc<AtomicBool>,
    pub(super) progress: Option<UnboundedSender<ProgressEvent>>,
}

impl StepTask {
    pub(super) fn send(&self, event: ProgressEvent) {
        if let Some(progress) = &self.progress {
            let _ = progress.send(event);
        }
    }

    fn seed(&self) -> u64 {
        step_seed(self.run_seed, &self.step.name)
    }

    /// Computes the cache key: plugin digest, resolved params, input digests, seed and runtime
    /// versions.
    fn cache_key(&self) -> String {
        let inputs: BTreeMap<&str, &str> = self
            .inputs
            .iter()
            .map(|input| (input.artifact.name.as_str(), input.artifact.digest.as_str()))
            .collect();
        let plugin = self.step.plugin.as_ref().map(|plugin| &plugin.digest);
        let material = json!({
            "plugin": plugin,
            "params": self.step.params,
            "inputs": inputs,
            "seed": self.seed(),
            "deterministic": self.deterministic,
            "runtime": format!(
                "runledger {} wasmtime {}",
                environment::RUNLEDGER_VERSION,
                environment::WASMTIME_VERSION
            ),
        });
        sha256_hex(material.to_string().as_bytes())
    }
}

/// Derives the seed of one step: the first 8 bytes of SHA-256 over the run seed and the step name, so
/// steps get independent streams that repeat whenever the run seed does.
pub(super) fn step_seed(run_seed: u64, step_name: &str) -> u64 {
    let digest = sha2::Sha256::digest(format!("{run_seed}:{step_name}").as_bytes());
    let mut bytes = [0; 8];
    bytes.copy_from_slice(&digest[..8]);
    u64::from_le_bytes(bytes)
}

/// Runs the step to a final status and records it. An external step waits for its client's
/// report instead.
pub(super) async fn run_step(task: StepTask) -> Result<StepSummary, EngineError> {
    if task.step.is_external() {
        return super::external::run_external(&task).await;
    }
    let started = Instant::now();
    let key = task.cache_key();
    let cacheable = task.step.cache && task.use_cache;
    if cacheable && let Some(summary) = try_cache(&task, &key, started).await? {
        return Ok(summary);
    }
    run_attempts(&task, &key, started).await
}

async fn try_cache(
    task: &StepTask,
    key: &str,
    started: Instant,
) -> Result<Option<StepSummary>, EngineError> {
    let store = task.engine.store();
    let Some(source) = store.find_cached_step_run(key).await? else {
        return Ok(None);
    };
    if source.id == task.step_run_id {
        return Ok(None);
    }
    let Some(outputs) = reusable_outputs(task, &source.id).await? else {
        return Ok(None);
    };

    // A hit on a step run that was itself a hit points at the step run that executed.
    let origin = source
        .cached_from
        .clone()
        .unwrap_or_else(|| source.id.clone());
    let resource_prefix = format!("{}/", source.name);
    let mut cached = completion(task, key, StepStatus::Cached, 0, None);
    cached.cached_from = Some(origin.clone());
    // The step's own metrics are copied; its resource use is not, since this run spent none.
    cached.metrics = store
        .step_metrics(&source.id)
        .await?
        .into_iter()
        .filter(|point| !point.key.starts_with(&resource_prefix))
        .map(|point| NewMetric {
            step_run_id: Some(task.step_run_id.clone()),
            key: point.key,
            value: point.value,
            step: point.step,
            timestamp_ms: point.timestamp_ms,
        })
        .collect();
    cached.logs.push(NewLogLine {
        level: "info".into(),
        message: format!(
            "cache hit: outputs reused from step run {origin}, found through step run {} of run {}",
            source.id, source.run_id
        ),
        fields: None,
        timestamp_ms: chrono::Utc::now().timestamp_millis(),
    });
    add_inputs_and_outputs(&mut cached, task, &outputs);
    store.complete_step(&cached).await?;

    let summary = StepSummary::new(task, StepStatus::Cached, 0, started.elapsed())
        .with_outputs(outputs)
        .with_metrics(&cached.metrics)
        .cached_from(origin);
    task.send(ProgressEvent::StepFinished(summary.clone()));
    Ok(Some(summary))
}

/// Returns the outputs of step run `source` for a cache hit to reuse, or `None` when one of
/// the step's declared outputs is missing from the records or from the artifact store.
async fn reusable_outputs(
    task: &StepTask,
    source: &str,
) -> Result<Option<Vec<ArtifactRef>>, EngineError> {
    let mut outputs = Vec::new();
    for linked in task.engine.store().step_output_artifacts(source).await? {
        if !task.engine.artifacts().contains(&linked.link.digest) {
            return Ok(None);
        }
        outputs.push(ArtifactRef {
            name: linked.link.name,
            digest: linked.link.digest,
            size: linked.size as u64,
            media_type: linked.media_type,
        });
    }
    let complete = task
        .step
        .outputs
        .iter()
        .all(|name| outputs.iter().any(|o| &o.name == name));
    Ok(complete.then_some(outputs))
}

/// Outcome of one attempt.
enum Attempt {
    /// The step reached its final status, which is recorded.
    Ended(StepSummary),
    /// The attempt failed with this error, which a retry may fix, and left these records.
    Failed(String, AttemptRecords),
}

/// Log lines and metric values of one attempt, its resource use included.
struct AttemptRecords {
    logs: Vec<NewLogLine>,
    metrics: Vec<NewMetric>,
}

impl AttemptRecords {
    /// Moves the records into the step's completion.
    fn complete(self, mut completion: StepCompletion) -> StepCompletion {
        completion.logs = self.logs;
        completion.metrics = self.metrics;
        completion
    }
}

async fn run_attempts(
    task: &StepTask,
    key: &str,
    started: Instant,
) -> Result<StepSummary, EngineError> {
    let attempts = task.step.retries + 1;
    let mut attempt = 1;
    loop {
        if task.cancel.load(Ordering::Relaxed) {
            let error = Some("run cancelled".into());
            let cancelled = completion(task, key, StepStatus::Cancelled, attempt - 1, error);
            return finish(task, cancelled, started, Vec::new()).await;
        }

        let (error, records) = match run_attempt(task, key, attempt, started).await? {
            Attempt::Ended(summary) => return Ok(summary),
            Attempt::Failed(error, records) => (error, records),
        };
        if attempt == attempts {
            let last = completion(task, key, StepStatus::Failed, attempt, Some(error));
            return finish(task, records.complete(last), started, Vec::new()).await;
        }

        // A retried attempt's records are committed before the pause, so they show while the
        // step waits and survive a crash.
        task.engine
            .store()
            .record_step_attempt(
                &task.run_id,
                &task.step_run_id,
                &records.logs,
                &records.metrics,
            )
            .await?;
        wait_before_retry(task, attempt, error).await;
        attempt += 1;
    }
}

/// Runs one attempt and, unless it failed in a way a retry may fix, completes the step.
async fn run_attempt(
    task: &StepTask,
    key: &str,
    attempt: u32,
    started: Instant,
) -> Result<Attempt, EngineError> {
    task.engine
        .store()
        .start_step_attempt(&task.step_run_id, attempt as i32, Some(key))
        .await?;
    task.send(ProgressEvent::StepStarted {
        step: task.step.name.clone(),
        attempt,
    });

    let report = match call_plugin(task, attempt).await {
        Ok(report) => report,
        Err(error) => {
            let failed = failed_completion(task, key, attempt, &error);
            return Ok(Attempt::Ended(
                finish(task, failed, started, Vec::new()).await?,
            ));
        }
    };
    let records = attempt_records(task, attempt, &report);
    let summary = match &report.outcome {
        Ok(()) => finish_success(task, key, attempt, started, report, records).await?,
        Err(CallError::Cancelled) => {
            let error = Some("run cancelled".into());
            let cancelled = completion(task, key, StepStatus::Cancelled, attempt, error);
            finish(task, records.complete(cancelled), started, Vec::new()).await?
        }
        Err(error) if retry_may_help(error) => {
            return Ok(Attempt::Failed(error.to_string(), records));
        }
        Err(error) => {
            let failed = failed_completion(task, key, attempt, error);
            finish(task, records.complete(failed), started, Vec::new()).await?
        }
    };
    Ok(Attempt::Ended(summary))
}

/// Builds the completion of a step whose attempt failed for good with `error`.
fn failed_completion(
    task: &StepTask,
    key: &str,
    attempt: u32,
    error: &impl ToString,
) -> StepCompletion {
    let message = Some(error.to_string());
    completion(task, key, StepStatus::Failed, attempt, message)
}

/// Checks whether another attempt may end differently. A sandboxed call that hit a memory,
/// fuel, stack, log or output limit, or reached for a withheld capability, does the same again.
/// A timeout depends on the machine's load, and an error value may report a passing condition.
fn retry_may_help(error: &CallError) -> bool {
    match error {
        CallError::LimitExceeded { limit } => matches!(limit, Limit::Timeout { .. }),
        CallError::CapabilityDenied { .. } => false,
        _ => true,
    }
}

async fn wait_before_retry(task: &StepTask, attempt: u32, error: String) {
    let delay = FIRST_BACKOFF
        .saturating_mul(1 << (attempt - 1).min(16))
        .min(MAX_BACKOFF);
    tracing::warn!(step = %task.step.name, attempt, cause = %error, "step attempt failed, retrying");
    task.send(ProgressEvent::StepRetrying {
        step: task.step.name.clone(),
        attempt,
        delay,
        error,
    });
    sleep_unless_cancelled(delay, &task.cancel).await;
}

async fn sleep_unless_cancelled(delay: Duration, cancel: &AtomicBool) {
    let deadline = Instant::now() + delay;
    while Instant::now() < deadline && !cancel.load(Ordering::Relaxed) {
        tokio::time::sleep(Duration::from_millis(50).min(delay)).await;
    }
}

async fn call_plugin(task: &StepTask, attempt: u32) -> Result<CallReport, EngineError> {
    let call = StepCall {
        run_id: task.run_id.clone(),
        step_name: task.step.name.clone(),
        attempt,
        seed: task.seed(),
        params: task.step.params.clone(),
        inputs: task
            .inputs
            .iter()
            .map(|input| input.artifact.clone())
            .collect(),
        outputs: task.step.outputs.clone(),
        deterministic: task.deterministic,
        timeout: task.step.timeout,
        cancel: Some(task.cancel.clone()),
    };
    let runtime = task.engine.runtime.clone();
    let plugin = task.step.plugin.clone().ok_or_else(|| {
        EngineError::Other(format!("step `{}` has no plugin to call", task.step.name))
    })?;
    let io = Box::new(StoreArtifactIo::new(task.engine.artifacts().clone()));
    let report = tokio::task::spawn_blocking(move || runtime.call_step(&plugin, &call, io))
        .await
        .map_err(|error| EngineError::Other(format!("step task failed: {error}")))??;
    Ok(report)
}

/// Builds an attempt's log lines and metric values, its resource use included.
fn attempt_records(task: &StepTask, attempt: u32, report: &CallReport) -> AttemptRecords {
    let now = chrono::Utc::now().timestamp_millis();
    let mut metrics: Vec<NewMetric> = report
        .metrics
        .iter()
        .map(|point| NewMetric {
            step_run_id: Some(task.step_run_id.clone()),
            key: point.key.clone(),
            value: point.value,
            step: point.step,
            timestamp_ms: point.timestamp_ms,
        })
        .collect();
    metrics.extend(resource_metrics(task, attempt, report, now));
    AttemptRecords {
        logs: attempt_logs(attempt, report, now),
        metrics,
    }
}

/// Builds an attempt's log lines: the plugin's lines with the attempt number added to their
/// fields, and a line for the attempt's error if it failed.
fn attempt_logs(attempt: u32, report: &CallReport, now: i64) -> Vec<NewLogLine> {
    let start_ms = now - report.usage.wall_time.as_millis() as i64;
    let mut lines: Vec<NewLogLine> = report
        .logs
        .iter()
        .map(|line| {
            let mut fields: serde_json::Map<String, serde_json::Value> = line
                .fields
                .iter()
                .map(|(key, value)| (key.clone(), json!(value)))
                .collect();
            fields.insert("attempt".into(), json!(attempt));
            NewLogLine {
                level: line.level.clone(),
                message: line.message.clone(),
                fields: Some(serde_json::Value::Object(fields)),
                timestamp_ms: start_ms + line.offset_ms as i64,
            }
        })
        .collect();
    if let Err(error) = &report.outcome {
        lines.push(NewLogLine {
            level: "error".into(),
            message: format!("attempt {attempt} failed: {error}"),
            fields: Some(json!({ "attempt": attempt })),
            timestamp_ms: now,
        });
    }
    lines
}

/// Wall time, fuel and peak memory of an attempt, as `STEP/wall_time_ms` and so on, with the
/// attempt number as the metric step.
fn resource_metrics(
    task: &StepTask,
    attempt: u32,
    report: &CallReport,
    now: i64,
) -> Vec<NewMetric> {
    let usage = &report.usage;
    [
        ("wall_time_ms", usage.wall_time.as_secs_f64() * 1000.0),
        ("fuel", usage.fuel_consumed as f64),
        ("peak_memory_bytes", usage.peak_memory_bytes as f64),
    ]
    .into_iter()
    .map(|(name, value)| NewMetric {
        step_run_id: Some(task.step_run_id.clone()),
        key: format!("{}/{name}", task.step.name),
        value,
        step: i64::from(attempt),
        timestamp_ms: now,
    })
    .collect()
}

async fn finish_success(
    task: &StepTask,
    key: &str,
    attempt: u32,
    started: Instant,
    report: CallReport,
    records: AttemptRecords,
) -> Result<StepSummary, EngineError> {
    let missing: Vec<&str> = task
        .step
        .outputs
        .iter()
        .filter(|name| !report.outputs.iter().any(|o| &o.name == *name))
        .map(String::as_str)
        .collect();
    if !missing.is_empty() {
        let plugin = task.step.plugin.as_ref().map(|plugin| plugin.id());
        let message = format!(
            "plugin {} finished without producing its declared outputs [{}]",
            plugin.unwrap_or_default(),
            missing.join(", ")
        );
        let failed = completion(task, key, StepStatus::Failed, attempt, Some(message));
        return finish(task, records.complete(failed), started, Vec::new()).await;
    }

    let metrics: Vec<NewMetric> = report
        .metrics
        .iter()
        .map(|point| NewMetric {
            step_run_id: None,
            key: point.key.clone(),
            value: point.value,
            step: point.step,
            timestamp_ms: point.timestamp_ms,
        })
        .collect();
    let succeeded = completion(task, key, StepStatus::Succeeded, attempt, None);
    let mut succeeded = records.complete(succeeded);
    add_inputs_and_outputs(&mut succeeded, task, &report.outputs);
    let summary = finish(task, succeeded, started, report.outputs).await?;
    Ok(summary.with_metrics(&metrics))
}

/// Starts the step's completion. It carries the cache key because a step that started no
/// attempt, a cache hit or a step cancelled before its first attempt, has not stored it yet.
fn completion(
    task: &StepTask,
    key: &str,
    status: StepStatus,
    attempts: u32,
    error: Option<String>,
) -> StepCompletion {
    let mut completion =
        StepCompletion::new(&task.run_id, &task.step_run_id, status, attempts as i32);
    completion.error = error;
    completion.cache_key = Some(key.to_owned());
    completion
}

/// Commits the step's completion in one transaction and reports the step finished.
async fn finish(
    task: &StepTask,
    mut completion: StepCompletion,
    started: Instant,
    outputs: Vec<ArtifactRef>,
) -> Result<StepSummary, EngineError> {
    // A step that ran and failed keeps a record of the inputs it failed on.
    if completion.links.is_empty() && completion.attempts > 0 {
        add_inputs_and_outputs(&mut completion, task, &[]);
    }
    task.engine.store().complete_step(&completion).await?;
    let attempts = completion.attempts as u32;
    let mut summary = StepSummary::new(task, completion.status, attempts, started.elapsed());
    summary.error = completion.error;
    summary = summary.with_outputs(outputs);
    task.send(ProgressEvent::StepFinished(summary.clone()));
    Ok(summary)
}

/// Adds to the completion the links of the step's inputs and outputs, the outputs' metadata
/// and the lineage edges input -> step run -> output.
fn add_inputs_and_outputs(
    completion: &mut StepCompletion,
    task: &StepTask,
    outputs: &[ArtifactRef],
) {
    add_links(completion, &task.inputs, outputs);
}

/// Adds to the completion the links of `inputs` and `outputs`, the outputs' metadata and the
/// lineage edges input -> step run -> output, for the completion's step run and run.
pub(super) fn add_links(
    completion: &mut StepCompletion,
    inputs: &[StepInput],
    outputs: &[ArtifactRef],
) {
    let step_node = Node::step_run(completion.step_run_id.clone());
    let run_id = completion.run_id.clone();
    for input in inputs {
        let artifact = &input.artifact;
        completion
            .links
            .push(link(&artifact.name, &artifact.digest, Direction::Input));
        let source = if input.is_dataset {
            Node::dataset(artifact.digest.clone())
        } else {
            Node::artifact(artifact.digest.clone())
        };
        completion.edges.push(NewEdge {
            run_id: run_id.clone(),
            source,
            target: step_node.clone(),
        });
    }
    for output in outputs {
        completion.artifacts.push(NewArtifact {
            digest: output.digest.clone(),
            size: output.size,
            media_type: output.media_type.clone(),
        });
        completion
            .links
            .push(link(&output.name, &output.digest, Direction::Output));
        completion.edges.push(NewEdge {
            run_id: run_id.clone(),
            source: step_node.clone(),
            target: Node::artifact(output.digest.clone()),
        });
    }
}

fn link(name: &str, digest: &str, direction: Direction) -> NewStepLink {
    NewStepLink {
        name: name.to_owned(),
        digest: digest.to_owned(),
        direction,
    }
}
