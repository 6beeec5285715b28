//! The scheduler: starts every step whose inputs are ready, up to the parallelism limit, skips
//! the dependents of failed steps, and stops cleanly when the run is cancelled.

use super::external::{StepToken, forget_tokens};
use super::plan::{Plan, Source};
use super::step::{StepInput, StepTask, run_step};
use super::{Engine, EngineError, RunOptions};
use crate::runtime::ArtifactRef;
use crate::store::{Direction, NewMetric, RunStatus, StepCompletion, StepStatus};
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::mpsc::UnboundedSender;
use tokio::task::JoinSet;

/// How often the scheduler looks at the cancel flag while steps run.
const CANCEL_POLL: Duration = Duration::from_millis(50);

/// What happened to one step of a run.
#[derive(Debug, Clone, Serialize)]
pub struct StepSummary {
    /// Step name.
    pub name: String,
    /// Id of the step run record.
    pub step_run_id: String,
    /// Final status.
    pub status: StepStatus,
    /// Attempts made; 0 for cached and skipped steps.
    pub attempts: u32,
    /// Wall time in milliseconds, retries included.
    pub duration_ms: u64,
    /// The step run whose outputs a cache hit reused.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cached_from: Option<String>,
    /// Why the step failed, was skipped or cancelled.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Output artifacts.
    pub outputs: Vec<ArtifactRef>,
    /// Latest value of each metric the step logged.
    pub metrics: BTreeMap<String, f64>,
}

impl StepSummary {
    pub(super) fn new(
        task: &StepTask,
        status: StepStatus,
        attempts: u32,
        duration: Duration,
    ) -> Self {
        Self {
            name: task.step.name.clone(),
            step_run_id: task.step_run_id.clone(),
            status,
            attempts,
            duration_ms: duration.as_millis() as u64,
            cached_from: None,
            error: None,
            outputs: Vec::new(),
            metrics: BTreeMap::new(),
        }
    }

    pub(super) fn with_outputs(mut self, outputs: Vec<ArtifactRef>) -> Self {
        self.outputs = outputs;
        self
    }

    pub(super) fn with_metrics(mut self, metrics: &[NewMetric]) -> Self {
        let mut latest: BTreeMap<String, (i64, f64)> = BTreeMap::new();
        for point in metrics {
            let entry = latest
                .entry(point.key.clone())
                .or_insert((point.step, point.value));
            if point.step >= entry.0 {
                *entry = (point.step, point.value);
            }
        }
        self.metrics = latest
            .into_iter()
            .map(|(key, (_, value))| (key, value))
            .collect();
        self
    }

    pub(super) fn cached_from(mut self, source: String) -> Self {
        self.cached_from = Some(source);
        self
    }
}

/// Progress of a run, for live displays.
#[derive(Debug, Clone)]
pub enum ProgressEvent {
    /// An attempt started.
    StepStarted {
        /// Step name.
        step: String,
        /// Attempt number.
        attempt: u32,
    },
    /// An attempt failed and the step will be retried after `delay`.
    StepRetrying {
        /// Step name.
        step: String,
        /// The attempt that failed.
        attempt: u32,
        /// Delay before the next attempt.
        delay: Duration,
        /// Why the attempt failed.
        error: String,
    },
    /// An external step started waiting for its client's report.
    StepWaiting {
        /// Step name.
        step: String,
        /// Id of the step run, which the report's URL names.
        step_run_id: String,
        /// The step token, when this process created the run and still keeps it.
        token: Option<StepToken>,
    },
    /// The step reached its final status.
    StepFinished(StepSummary),
}

/// The outcome of a run.
#[derive(Debug, Clone, Serialize)]
pub struct RunSummary {
    /// Run id.
    pub run_id: String,
    /// Pipeline name.
    pub pipeline: String,
    /// Final status.
    pub status: RunStatus,
    /// Wall time in milliseconds.
    pub duration_ms: u64,
    /// Steps in definition order.
    pub steps: Vec<StepSummary>,
}

#[derive(Debug, Clone, PartialEq)]
enum Slot {
    Pending,
    Running,
    Done(StepStatus),
}

struct Scheduler<'a> {
    engine: &'a Engine,
    run_id: &'a str,
    plan: &'a Plan,
    options: &'a RunOptions,
    cancel: Arc<AtomicBool>,
    progress: Option<UnboundedSender<ProgressEvent>>,
    step_run_ids: Vec<String>,
    pipeline_inputs: BTreeMap<String, (ArtifactRef, bool)>,
    slots: Vec<Slot>,
    summaries: Vec<Option<StepSummary>>,
}

pub(super) async fn execute(
    engine: &Engine,
    run_id: &str,
    plan: &Plan,
    options: &RunOptions,
    cancel: Arc<AtomicBool>,
    progress: Option<UnboundedSender<ProgressEvent>>,
) -> Result<RunSummary, EngineError> {
    let started = Instant::now();
    let store = engine.store();
    store
        .set_run_status(run_id, RunStatus::Running, None)
        .await?;
    let records = store.list_step_runs(run_id).await?;
    let step_run_ids = plan
        .steps
        .iter()
        .map(|step| {
            records
                .iter()
                .find(|record| record.name == step.name)
                .map(|record| record.id.clone())
                .ok_or_else(|| {
                    EngineError::Other(format!(
                        "run {run_id} has no record of step `{}`",
                        step.name
                    ))
                })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let mut scheduler = Scheduler {
        engine,
        run_id,
        plan,
        options,
        cancel,
        progress,
        step_run_ids,
        pipeline_inputs: pipeline_inputs(engine, run_id).await?,
        slots: vec![Slot::Pending; plan.steps.len()],
        summaries: vec![None; plan.steps.len()],
    };
    let result = scheduler.run().await;
    forget_tokens(run_id);
    let status = match &result {
        Ok(()) => scheduler.final_status(),
        Err(_) => RunStatus::Failed,
    };
    let error = match &result {
        Err(error) => Some(error.to_string()),
        Ok(()) => scheduler.failure_message(),
    };
    store.set_run_status(run_id, status, error).await?;
    result?;
    tracing::info!(run_id, %status, "run finished");
    Ok(RunSummary {
        run_id: run_id.to_owned(),
        pipeline: plan.definition.name.clone(),
        status,
        duration_ms: started.elapsed().as_millis() as u64,
        steps: scheduler.summaries.into_iter().flatten().collect(),
    })
}

/// Loads the run's pipeline inputs by name, each with whether it is a recorded dataset (raw data
/// entering the system) rather than an artifact some step produced.
async fn pipeline_inputs(
    engine: &Engine,
    run_id: &str,
) -> Result<BTreeMap<String, (ArtifactRef, bool)>, EngineError> {
    let store = engine.store();
    let mut inputs = BTreeMap::new();
    for linked in store.run_artifacts(run_id).await? {
        if linked.link.step_run_id.is_some() || linked.link.direction != Direction::Input {
            continue;
        }
        let is_dataset = store.get_dataset(&linked.link.digest).await?.is_some();
        let reference = ArtifactRef {
            name: linked.link.name.clone(),
            digest: linked.link.digest.clone(),
            size: linked.size as u64,
            media_type: linked.media_type.clone(),
        };
        inputs.insert(linked.link.name, (reference, is_dataset));
    }
    Ok(inputs)
}

impl Scheduler<'_> {
    async fn run(&mut self) -> Result<(), EngineError> {
        let mut running: JoinSet<(usize, Result<StepSummary, EngineError>)> = JoinSet::new();
        loop {
            self.skip_blocked().await?;
            if !self.cancel.load(Ordering::Relaxed) {
                self.start_ready(&mut running);
            }
            if running.is_empty() {
                break;
            }
            tokio::select! {
                joined = running.join_next() => {
                    let Some(joined) = joined else { continue };
                    let (index, result) = joined
                        .map_err(|error| EngineError::Other(format!("step task failed: {error}")))?;
                    let summary = result?;
                    self.slots[index] = Slot::Done(summary.status);
                    self.summaries[index] = Some(summary);
                }
                () = tokio::time::sleep(CANCEL_POLL) => {}
            }
        }
        if self.cancel.load(Ordering::Relaxed) {
            self.mark_remaining(
                StepStatus::Cancelled,
                "run cancelled before the step started",
            )
            .await?;
        }
        Ok(())
    }

    /// Starts the pending steps whose upstream steps are done. Plugin steps count against the
    /// parallelism limit; external steps only wait, so they start whenever they are ready.
    fn start_ready(&mut self, running: &mut JoinSet<(usize, Result<StepSummary, EngineError>)>) {
        let parallelism = self.options.parallelism.max(1);
        for index in 0..self.plan.steps.len() {
            if self.slots[index] != Slot::Pending || !self.upstream_done(index) {
                continue;
            }
            if !self.plan.steps[index].is_external() && self.running_plugin_steps() >= parallelism {
                continue;
            }
            self.slots[index] = Slot::Running;
            let task = self.task(index);
            running.spawn(async move { (index, run_step(task).await) });
        }
    }

    fn running_plugin_steps(&self) -> usize {
        self.slots
            .iter()
            .zip(&self.plan.steps)
            .filter(|(slot, step)| **slot == Slot::Running && !step.is_external())
            .count()
    }

    fn upstream_done(&self, index: usize) -> bool {
        self.plan.steps[index].upstream.iter().all(|&up| {
            matches!(
                self.slots[up],
                Slot::Done(StepStatus::Succeeded | StepStatus::Cached)
            )
        })
    }

    fn task(&self, index: usize) -> StepTask {
        let step = &self.plan.steps[index];
        let inputs = step
            .inputs
            .iter()
            .map(|(name, source)| self.resolve_input(name, source))
            .collect();
        StepTask {
            engine: self.engine.clone(),
            run_id: self.run_id.to_owned(),
            step_run_id: self.step_run_ids[index].clone(),
            step: step.clone(),
            inputs,
            run_seed: self.options.seed,
            deterministic: self.options.deterministic,
            use_cache: self.options.use_cache,
            cancel: self.cancel.clone(),
            progress: self.progress.clone(),
        }
    }

    fn resolve_input(&self, name: &str, source: &Source) -> StepInput {
        let (artifact, is_dataset) = match source {
            Source::PipelineInput(input) => self.pipeline_inputs[input].clone(),
            Source::StepOutput { step, output } => {
                let summary = self.summaries[*step]
                    .as_ref()
                    .expect("upstream step finished");
                let artifact = summary
                    .outputs
                    .iter()
                    .find(|o| &o.name == output)
                    .cloned()
                    .expect("a finished step has all declared outputs");
                (artifact, false)
            }
        };
        StepInput {
            artifact: ArtifactRef {
                name: name.to_owned(),
                ..artifact
            },
            is_dataset,
        }
    }

    /// Marks pending steps whose upstream failed, was skipped or cancelled as skipped.
    async fn skip_blocked(&mut self) -> Result<(), EngineError> {
        loop {
            let mut changed = false;
            for index in 0..self.plan.steps.len() {
                if self.slots[index] != Slot::Pending {
                    continue;
                }
                let blocker = self.plan.steps[index].upstream.iter().copied().find(|&up| {
                    matches!(
                        self.slots[up],
                        Slot::Done(
                            StepStatus::Failed | StepStatus::Skipped | StepStatus::Cancelled
                        )
                    )
                });
                if let Some(up) = blocker {
                    let reason = format!(
                        "skipped: upstream step `{}` did not succeed",
                        self.plan.steps[up].name
                    );
                    self.finish_unrun(index, StepStatus::Skipped, reason)
                        .await?;
                    changed = true;
                }
            }
            if !changed {
                return Ok(());
            }
        }
    }

    async fn mark_remaining(
        &mut self,
        status: StepStatus,
        reason: &str,
    ) -> Result<(), EngineError> {
        for index in 0..self.plan.steps.len() {
            if self.slots[index] == Slot::Pending {
                self.finish_unrun(index, status, reason.to_owned()).await?;
            }
        }
        Ok(())
    }

    async fn finish_unrun(
        &mut self,
        index: usize,
        status: StepStatus,
        reason: String,
    ) -> Result<(), EngineError> {
        let step_run_id = self.step_run_ids[index].clone();
        let mut completion = StepCompletion::new(self.run_id, &step_run_id, status, 0);
        completion.error = Some(reason.clone());
        self.engine.store().complete_step(&completion).await?;
        let summary = StepSummary {
            name: self.plan.steps[index].name.clone(),
            step_run_id,
            status,
            attempts: 0,
            duration_ms: 0,
            cached_from: None,
            error: Some(reason),
            outputs: Vec::new(),
            metrics: BTreeMap::new(),
        };
        if let Some(progress) = &self.progress {
            let _ = progress.send(ProgressEvent::StepFinished(summary.clone()));
        }
        self.slots[index] = Slot::Done(status);
        self.summaries[index] = Some(summary);
        Ok(())
    }

    fn final_status(&self) -> RunStatus {
        let statuses = self.slots.iter().filter_map(|slot| match slot {
            Slot::Done(status) => Some(*status),
            _ => None,
        });
        let statuses: Vec<StepStatus> = statuses.collect();
        if self.cancel.load(Ordering::Relaxed) || statuses.contains(&StepStatus::Cancelled) {
            RunStatus::Cancelled
        } else if statuses
            .iter()
            .all(|s| matches!(s, StepStatus::Succeeded | StepStatus::Cached))
        {
            RunStatus::Succeeded
        } else {
            RunStatus::Failed
        }
    }

    fn failure_message(&self) -> Option<String> {
        let failed: Vec<String> = self
            .summaries
            .iter()
            .flatten()
            .filter(|s| s.status == StepStatus::Failed)
            .map(|s| {
                format!(
                    "step `{}` failed: {}",
                    s.name,
                    s.error.as_deref().unwrap_or("unknown error")
                )
            })
            .collect();
        (!failed.is_empty()).then(|| failed.join("; "))
    }
}
