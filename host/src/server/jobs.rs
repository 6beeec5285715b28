//! Pipeline runs submitted over the API and executing in this server.
//!
//! Each run executes on its own tokio task with a cancel flag that the engine polls. A job
//! leaves the table when its run has recorded its end, so the table only contains runs that a
//! cancel request can still stop.

use crate::engine::{Engine, EngineError, Plan, RunOptions};
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

#[derive(Debug)]
struct Job {
    cancel: Arc<AtomicBool>,
    handle: JoinHandle<()>,
}

impl Jobs {
    /// Starts executing the recorded run `run_id` of `plan` on a new task.
    pub fn start(&self, engine: Engine, run_id: String, plan: Plan, options: RunOptions) {
        let cancel = Arc::new(AtomicBool::new(self.closed.load(Ordering::Relaxed)));
        let running = self.running.clone();
        let (registered, is_registered) = tokio::sync::oneshot::channel::<()>();
        let flag = cancel.clone();
        let id = run_id.clone();

        // The task waits until its entry is in the table, so its removal at the end cannot
        // come first and leave a finished job behind.
        let handle = tokio::spawn(async move {
            let _ = is_registered.await;
            execute(&engine, &id, &plan, &options, flag).await;
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
/// before it could record one.
async fn execute(
    engine: &Engine,
    run_id: &str,
    plan: &Plan,
    options: &RunOptions,
    cancel: Arc<AtomicBool>,
) {
    match engine.execute(run_id, plan, options, cancel, None).await {
        Ok(summary) => {
            tracing::info!(run_id, status = %summary.status, "run execution ended");
        }
        Err(error) => {
            tracing::error!(run_id, cause = %error, "run execution failed");
            mark_failed(engine, run_id, &error).await;
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
