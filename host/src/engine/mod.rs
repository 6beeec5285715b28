//! Pipeline execution: definitions, planning, scheduling, caching and recording of runs.
//!
//! A run is recorded before its first step starts ([`Engine::create_run`]) and executed by
//! [`Engine::execute`], which schedules ready steps in parallel on the plugin runtime and
//! commits each step's outputs, metrics, logs and lineage as it finishes.

mod artifact_io;
pub mod definition;
pub mod environment;
mod executor;
mod external;
pub mod plan;
mod record;
mod step;

pub use artifact_io::StoreArtifactIo;
pub use definition::{DefinitionError, PipelineDefinition, Problem};
pub use executor::{ProgressEvent, RunSummary, StepSummary};
pub use external::{
    ExternalReport, ExternalStepError, ExternalStepToken, ReportProblem, ReportStatus,
    ReportedMetric, ReportedOutput, StepToken, report_path,
};
pub use plan::{Plan, PlanContext, PlannedInput, PlannedStep, PlannedValidator, Source};

use crate::runtime::{Runtime, RuntimeError};
use crate::store::artifacts::{ArtifactError, ArtifactStore};
use crate::store::{RunSource, StepStatus, Store, StoreError};
use sha2::{Digest as _, Sha256};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

/// Lowercase hex SHA-256 of `bytes`.
pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Errors of the engine.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The definition has problems; nothing ran.
    #[error(transparent)]
    Definition(#[from] DefinitionError),
    /// The database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The artifact files failed.
    #[error(transparent)]
    Artifacts(#[from] ArtifactError),
    /// A plugin could not be loaded.
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    /// Anything else, with a message that says what to do.
    #[error("{0}")]
    Other(String),
}

/// How to execute a run.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Steps running at once.
    pub parallelism: usize,
    /// Whether cached step outputs may be reused.
    pub use_cache: bool,
    /// Fixed clock and seeded randomness for every step.
    pub deterministic: bool,
    /// Seed of the run; each step's seed derives from it and the step name.
    pub seed: u64,
    /// Tags to record.
    pub tags: Vec<(String, String)>,
    /// The user who started the run.
    pub user: String,
    /// The interface that started it.
    pub source: RunSource,
    /// Directory of the pipeline file, for its git state.
    pub pipeline_dir: Option<PathBuf>,
}

impl Default for RunOptions {
    fn default() -> Self {
        Self {
            parallelism: std::thread::available_parallelism().map_or(2, |n| n.get()),
            use_cache: true,
            deterministic: true,
            seed: 0,
            tags: Vec::new(),
            user: environment::current_user(),
            source: RunSource::Cli,
            pipeline_dir: None,
        }
    }
}

/// Runs pipelines on a plugin runtime and records them in a store.
#[derive(Clone)]
pub struct Engine {
    runtime: Arc<Runtime>,
    store: Store,
    artifacts: ArtifactStore,
}

impl Engine {
    /// Combines the runtime, the database and the artifact files.
    pub fn new(runtime: Arc<Runtime>, store: Store, artifacts: ArtifactStore) -> Self {
        Self {
            runtime,
            store,
            artifacts,
        }
    }

    /// Returns the database.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Returns the plugin runtime.
    pub fn runtime(&self) -> &Arc<Runtime> {
        &self.runtime
    }

    /// Returns the artifact files.
    pub fn artifacts(&self) -> &ArtifactStore {
        &self.artifacts
    }

    /// Most steps that can run at once: the runtime's instance pool size.
    pub fn max_parallelism(&self) -> usize {
        self.runtime.settings().pool_instances.max(1) as usize
    }

    /// Loads every plugin of the plan, steps and validators, so a corrupt component or one that
    /// does not implement its world is reported before any step runs. Planning has already
    /// checked each validator's kind and config.
    pub fn check_plugins(&self, plan: &Plan) -> Result<(), DefinitionError> {
        let steps = plan.steps.iter().enumerate().filter_map(|(index, step)| {
            let plugin = step.plugin.as_ref()?;
            Some((
                format!("/steps/{index}/plugin (step {})", step.name),
                plugin,
            ))
        });
        let validators = plan
            .validators
            .iter()
            .enumerate()
            .map(|(index, validator)| {
                let id = validator.plugin.id();
                (
                    format!("/validate/{index}/plugin (validator {id})"),
                    &validator.plugin,
                )
            });
        let problems: Vec<Problem> = steps
            .chain(validators)
            .filter_map(|(place, plugin)| {
                let error = self.runtime.prepare(plugin).err()?;
                Some(Problem {
                    place,
                    message: error.to_string(),
                })
            })
            .collect();
        if problems.is_empty() {
            return Ok(());
        }
        Err(DefinitionError {
            origin: plan.definition.name.clone(),
            problems,
        })
    }

    /// Records a new run of `plan`: pipeline, params, tags, environment, imported inputs and a
    /// pending step run per step, with a step token per external step. Returns the run id.
    pub async fn create_run(
        &self,
        plan: &Plan,
        options: &RunOptions,
    ) -> Result<String, EngineError> {
        record::create_run(self, plan, options).await
    }

    /// Executes a created run to the end, or until `cancel` is set.
    pub async fn execute(
        &self,
        run_id: &str,
        plan: &Plan,
        options: &RunOptions,
        cancel: Arc<AtomicBool>,
        progress: Option<tokio::sync::mpsc::UnboundedSender<ProgressEvent>>,
    ) -> Result<RunSummary, EngineError> {
        executor::execute(self, run_id, plan, options, cancel, progress).await
    }

    /// Returns the step tokens of the run's external steps, which their clients send with
    /// their reports.
    ///
    /// The database keeps only hashes of the tokens, so they are available only in the process
    /// that created the run, from [`Engine::create_run`] until [`Engine::execute`] of the run
    /// returns. Other runs, and runs without external steps, return an empty list.
    pub fn external_step_tokens(&self, run_id: &str) -> Vec<ExternalStepToken> {
        external::tokens_of(run_id)
    }

    /// Completes a waiting external step with a client's report, authorised by the step's
    /// `token`, and returns the step's final status. The run waiting for the step continues,
    /// in this process or in another one sharing the database.
    pub async fn report_external_step(
        &self,
        step_run_id: &str,
        token: &str,
        report: ExternalReport,
    ) -> Result<StepStatus, ExternalStepError> {
        external::report(self, step_run_id, token, report).await
    }
}

/// Marks runs left `running` or `queued` by dead processes on this host as `interrupted`, and
/// returns their ids.
pub async fn recover_interrupted(store: &Store) -> Result<Vec<String>, EngineError> {
    let hostname = environment::hostname();
    let own_pid = std::process::id();
    let ids = store
        .mark_interrupted(&hostname, |pid| {
            pid == own_pid || environment::process_alive(pid)
        })
        .await?;
    for id in &ids {
        tracing::warn!(run_id = %id, "run left running by a dead process marked interrupted");
    }
    Ok(ids)
}
