//! One step of a run: the cache lookup, the attempts with retries, and the records each leaves.

use super::executor::{ProgressEvent, StepSummary};
use super::plan::PlannedStep;
use super::{Engine, EngineError, StoreArtifactIo, environment, sha256_hex};
use crate::runtime::{ArtifactRef, CallError, CallReport, StepCall};
use crate::store::{
    Direction, NewEdge, NewLogLine, NewMetric, Node, StepRunUpdate, StepStatus,
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
    fn send(&self, event: ProgressEvent) {
        if let Some(progress) = &self.progress {
            let _ = progress.send(event);
        }
    }

    fn seed(&self) -> u64 {
        step_seed(self.run_seed, &self.step.name)
    }

    /// The cache key: plugin digest, resolved params, input digests, seed and runtime versions.
    fn cache_key(&self) -> String {
        let inputs: BTreeMap<&str, &str> = self
            .inputs
            .iter()
            .map(|input| (input.artifact.name.as_str(), input.artifact.digest.as_str()))
            .collect();
        let material = json!({
            "plugin": self.step.plugin.digest,
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

/// The seed of one step: the first 8 bytes of SHA-256 over the run seed and the step name, so
/// steps get independent streams that repeat whenever the run seed does.
pub(super) fn step_seed(run_seed: u64, step_name: &str) -> u64 {
    let digest = sha2::Sha256::digest(format!("{run_seed}:{step_name}").as_bytes());
    let mut bytes = [0; 8];
    bytes.copy_from_slice(&digest[..8]);
    u64::from_le_bytes(bytes)
}

/// Runs the step to a final status and records it.
pub(super) async fn run_step(task: StepTask) -> Result<StepSummary, EngineError> {
    let started = Instant::now();
    let key = task.cache_key();
    let cacheable = task.step.cache && task.use_cache;
    task.engine
        .store()
        .set_step_cache(&task.step_run_id, Some(&key), None)
        .await?;
    if cacheable && let Some(summary) = try_cache(&task, &key, started).await? {
        return Ok(summary);
    }
    run_attempts(&task, started).await
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
    let mut outputs = Vec::new();
    for link in store.step_outputs(&source.id).await? {
        let Some(meta) = store.get_artifact(&link.digest).await? else {
            return Ok(None);
        };
        if !task.engine.artifacts().contains(&link.digest) {
            return Ok(None);
        }
        outputs.push(ArtifactRef {
            name: link.name,
            digest: link.digest,
            size: meta.size as u64,
            media_type: meta.media_type,
        });
    }
    if task.step.outputs.iter().any(|name| !outputs.iter().any(|o| &o.name == name)) {
        return Ok(None);
    }

    record_inputs_and_outputs(task, &outputs).await?;
    let metrics = store.step_metrics(&source.id).await?;
    let copied: Vec<NewMetric> = metrics
        .iter()
        .map(|point| NewMetric {
            step_run_id: Some(task.step_run_id.clone()),
            key: point.key.clone(),
            value: point.value,
            step: point.step,
            timestamp_ms: point.timestamp_ms,
        })
        .collect();
    store.log_metrics(&task.run_id, &copied).await?;
    let note = NewLogLine {
        level: "info".into(),
        message: format!("cache hit: outputs reused from step run {} of run {}", source.id, source.run_id),
        fields: None,
        timestamp_ms: chrono::Utc::now().timestamp_millis(),
    };
    store.append_step_logs(&task.step_run_id, &[note]).await?;
    store.set_step_cache(&task.step_run_id, Some(key), Some(&source.id)).await?;
    store
        .update_step_run(&task.step_run_id, StepRunUpdate {
            status: StepStatus::Cached,
            attempts: Some(0),
            error: None,
        })
        .await?;
    let summary = StepSummary::new(task, StepStatus::Cached, 0, started.elapsed())
        .with_outputs(outputs)
        .with_metrics(&copied)
        .cached_from(source.id);
    task.send(ProgressEvent::StepFinished(summary.clone()));
    Ok(Some(summary))
}

async fn run_attempts(task: &StepTask, started: Instant) -> Result<StepSummary, EngineError> {
    let attempts = task.step.retries + 1;
    let mut last_error = String::new();
    for attempt in 1..=attempts {
        if task.cancel.load(Ordering::Relaxed) {
            return finish(task, StepStatus::Cancelled, attempt - 1, started, Some("run cancelled".into()), None).await;
        }
        task.engine
            .store()
            .update_step_run(&task.step_run_id, StepRunUpdate {
                status: StepStatus::Running,
                attempts: Some(attempt as i32),
                error: None,
            })
            .await?;
        task.send(ProgressEvent::StepStarted { step: task.step.name.clone(), attempt });
        let report = call_plugin(task, attempt).await;
        let report = match report {
            Ok(report) => report,
            Err(error) => {
                let message = error.to_string();
                return finish(task, StepStatus::Failed, attempt, started, Some(message), None).await;
            }
        };
        record_attempt(task, attempt, &report).await?;
        match &report.outcome {
            Ok(()) => return finish_success(task, attempt, started, report).await,
            Err(CallError::Cancelled) => {
                return finish(task, StepStatus::Cancelled, attempt, started, Some("run cancelled".into()), None).await;
            }
            Err(error) => last_error = error.to_string(),
        }
        if attempt < attempts {
            let delay = FIRST_BACKOFF.saturating_mul(1 << (attempt - 1).min(16)).min(MAX_BACKOFF);
            tracing::warn!(step = %task.step.name, attempt, cause = %last_error, "step attempt failed, retrying");
            task.send(ProgressEvent::StepRetrying {
                step: task.step.name.clone(),
                attempt,
                delay,
                error: last_error.clone(),
            });
            sleep_unless_cancelled(delay, &task.cancel).await;
        }
    }
    finish(task, StepStatus::Failed, attempts, started, Some(last_error), None).await
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
        inputs: task.inputs.iter().map(|input| input.artifact.clone()).collect(),
        outputs: task.step.outputs.clone(),
        deterministic: task.deterministic,
        timeout: task.step.timeout,
        cancel: Some(task.cancel.clone()),
    };
    let runtime = task.engine.runtime.clone();
    let plugin = task.step.plugin.clone();
    let io = Box::new(StoreArtifactIo::new(task.engine.artifacts().clone()));
    let report = tokio::task::spawn_blocking(move || runtime.call_step(&plugin, &call, io))
        .await
        .map_err(|error| EngineError::Other(format!("step task failed: {error}")))??;
    Ok(report)
}

/// Stores an attempt's logs and metrics, including its resource use.
async fn record_attempt(task: &StepTask, attempt: u32, report: &CallReport) -> Result<(), EngineError> {
    let store = task.engine.store();
    let now = chrono::Utc::now().timestamp_millis();
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
    store.append_step_logs(&task.step_run_id, &lines).await?;
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
    store.log_metrics(&task.run_id, &metrics).await?;
    Ok(())
}

/// Wall time, fuel and peak memory of an attempt, as `STEP/wall_time_ms` and so on, with the
/// attempt number as the metric step.
fn resource_metrics(task: &StepTask, attempt: u32, report: &CallReport, now: i64) -> Vec<NewMetric> {
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
    attempt: u32,
    started: Instant,
    report: CallReport,
) -> Result<StepSummary, EngineError> {
    let missing: Vec<&str> = task
        .step
        .outputs
        .iter()
        .filter(|name| !report.outputs.iter().any(|o| &o.name == *name))
        .map(String::as_str)
        .collect();
    if !missing.is_empty() {
        let message = format!(
            "plugin {} finished without producing its declared outputs [{}]",
            task.step.plugin.id(),
            missing.join(", ")
        );
        return finish(task, StepStatus::Failed, attempt, started, Some(message), None).await;
    }
    record_inputs_and_outputs(task, &report.outputs).await?;
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
    let summary = finish(task, StepStatus::Succeeded, attempt, started, None, Some(report.outputs)).await?;
    Ok(summary.with_metrics(&metrics))
}

async fn finish(
    task: &StepTask,
    status: StepStatus,
    attempts: u32,
    started: Instant,
    error: Option<String>,
    outputs: Option<Vec<ArtifactRef>>,
) -> Result<StepSummary, EngineError> {
    task.engine
        .store()
        .update_step_run(&task.step_run_id, StepRunUpdate {
            status,
            attempts: Some(attempts as i32),
            error: error.clone(),
        })
        .await?;
    let mut summary = StepSummary::new(task, status, attempts, started.elapsed());
    summary.error = error;
    summary = summary.with_outputs(outputs.unwrap_or_default());
    task.send(ProgressEvent::StepFinished(summary.clone()));
    Ok(summary)
}

/// Links the step's inputs and outputs to it and adds the lineage edges
/// input -> step run -> output.
async fn record_inputs_and_outputs(task: &StepTask, outputs: &[ArtifactRef]) -> Result<(), EngineError> {
    let store = task.engine.store();
    let step_node = Node::step_run(task.step_run_id.clone());
    let mut edges = Vec::new();
    for input in &task.inputs {
        let artifact = &input.artifact;
        store
            .link_artifact(&task.run_id, Some(&task.step_run_id), &artifact.name, &artifact.digest, Direction::Input)
            .await?;
        let source = if input.is_dataset {
            Node::dataset(artifact.digest.clone())
        } else {
            Node::artifact(artifact.digest.clone())
        };
        edges.push(NewEdge { run_id: task.run_id.clone(), source, target: step_node.clone() });
    }
    for output in outputs {
        store.record_artifact(&output.digest, output.size, &output.media_type).await?;
        store
            .link_artifact(&task.run_id, Some(&task.step_run_id), &output.name, &output.digest, Direction::Output)
            .await?;
        edges.push(NewEdge {
            run_id: task.run_id.clone(),
            source: step_node.clone(),
            target: Node::artifact(output.digest.clone()),
        });
    }
    store.add_edges(&edges).await?;
    Ok(())
}
