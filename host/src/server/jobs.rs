//! Pipeline runs submitted over the API and executing in this server.
//!
//! Each run executes on its own tokio task with a cancel flag that the engine polls. A job
//! leaves the table when its run has recorded its end, so the table only contains runs that a
//! cancel request can still stop.
//!
//! A run that succeeds is then judged by its pipeline's `validate:` list before its job ends,
//! so the run detail shows the checks soon after the run's status turns `succeeded`.

use crate::engine::{Engine, EngineError, Plan, RunOptions};
use crate::gates::{Actor, Gates, Trigger, ValidatorSpec};
use crate::runtime::PluginRegistry;
use crate::store::{RunStatus, StoreError};
use dashmap::DashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use tokio::task::JoinHandle;

/// The runs this server executes.
#[derive(Debug, Default)]
pub struct Jobs {
    running: Arc<DashMap<String, Job>>,
    /// Set by [`Jobs::shutdown`]; runs started afterwards are cancelled from the start.
    closed: AtomicBool,
}

/// Context for running a succeeded run's pipeline validators: through `gates`, with the
/// plugins of `registry`, acting as the user who submitted the run.
#[derive(Clone)]
pub struct RunValidation {
    /// The governance operations that call and record validators.
    pub gates: Gates,
    /// The plugins known when the run was submitted.
    pub registry: Arc<PluginRegistry>,
    /// The user who submitted the run, recorded as the author of the validations.
    pub actor: Actor,
}

#[derive(Debug)]
struct Job {
    cancel: Arc<AtomicBool>,
    handle: JoinHandle<()>,
}

impl Jobs {
    /// Starts executing the recorded run `run_id` of `plan` on a new task, and once the run
    /// succeeds, runs the plan's validators through `validation`.
    pub fn start(
        &self,
        engine: Engine,
        run_id: String,
        plan: Plan,
        options: RunOptions,
        validation: RunValidation,
    ) {
        let cancel = Arc::new(AtomicBool::new(self.closed.load(Ordering::Relaxed)));
        let running = self.running.clone();
        let (registered, is_registered) = tokio::sync::oneshot::channel::<()>();
        let flag = cancel.clone();
        let id = run_id.clone();

        // The task waits until its entry is in the table, so its removal at the end cannot
        // come first and leave a finished job behind.
        let handle = tokio::spawn(async move {
            let _ = is_registered.await;
            let status = execute(&engine, &id, &plan, &options, flag).await;
            if status == Some(RunStatus::Succeeded) {
                validate(&validation, &id, &plan).await;
            }
            running.remove(&id);
        });
        self.running.insert(run_id.clone(), Job { cancel, handle });
        let _ = registered.send(());
        tracing::info!(run_id = %run_id, "run execution started");
    }

    /// Asks the run to stop. Returns false when this server is not executing it.
    pub fn cancel(&self, run_id: &str) -> bool {
        let Some(job) = self.running.get(run_id) else {
            return false;
        };
        job.cancel.store(true, Ordering::Relaxed);
        tracing::info!(run_id, "run cancellation requested");
        true
    }

    /// Returns how many runs are executing.
    pub fn len(&self) -> usize {
        self.running.len()
    }

    /// Returns whether no run is executing.
    pub fn is_empty(&self) -> bool {
        self.running.is_empty()
    }

    /// Cancels every running job and waits for each to record its end.
    pub async fn shutdown(&self) {
        self.closed.store(true, Ordering::Relaxed);
        let ids: Vec<String> = self
            .running
            .iter()
            .map(|entry| {
                entry.cancel.store(true, Ordering::Relaxed);
                entry.key().clone()
            })
            .collect();
        if !ids.is_empty() {
            tracing::info!(runs = ids.len(), "cancelling runs before shutdown");
        }
        for id in ids {
            let Some((_, job)) = self.running.remove(&id) else {
                continue;
            };
            if let Err(error) = job.handle.await {
                tracing::error!(run_id = %id, cause = %error, "run task ended abnormally");
            }
        }
    }
}

/// Executes a run and makes sure it ends with a final status even when the engine fails
/// before it could record one. Returns the status the engine reported.
async fn execute(
    engine: &Engine,
    run_id: &str,
    plan: &Plan,
    options: &RunOptions,
    cancel: Arc<AtomicBool>,
) -> Option<RunStatus> {
    match engine.execute(run_id, plan, options, cancel, None).await {
        Ok(summary) => {
            tracing::info!(run_id, status = %summary.status, "run execution ended");
            Some(summary.status)
        }
        Err(error) => {
            tracing::error!(run_id, cause = %error, "run execution failed");
            mark_failed(engine, run_id, &error).await;
            None
        }
    }
}

/// Runs the plan's validators on the succeeded run and records their checks. A failure to
/// record them is logged, since the run itself has ended and stays succeeded.
async fn validate(validation: &RunValidation, run_id: &str, plan: &Plan) {
    if plan.validators.is_empty() {
        return;
    }
    let specs: Vec<ValidatorSpec> = plan
        .validators
        .iter()
        .map(|validator| ValidatorSpec {
            plugin: validator.plugin.id(),
            config: validator.config.clone(),
        })
        .collect();
    let result = validation
        .gates
        .validate_run(
            &validation.registry,
            &validation.actor,
            run_id,
            &specs,
            Trigger::Pipeline,
            None,
        )
        .await;
    match result {
        Ok(outcome) => tracing::info!(
            run_id,
            validators = specs.len(),
            blocking_failures = outcome.blocking_failures,
            warnings = outcome.warnings,
            "run validated"
        ),
        Err(error) => {
            tracing::error!(run_id, cause = %error, "cannot validate the succeeded run");
        }
    }
}

async fn mark_failed(engine: &Engine, run_id: &str, error: &EngineError) {
    let message = format!("the server failed to execute the run: {error}");
    match engine
        .store()
        .set_run_status(run_id, RunStatus::Failed, Some(message))
        .await
    {
        Ok(_) | Err(StoreError::RunAlreadyEnded { .. }) => {}
        Err(cause) => {
            tracing::error!(run_id, cause = %cause, "cannot record the failure of a run");
        }
    }
}
