//! External steps: work that a client outside the sandbox executes, such as a GPU training job
//! or a human labelling pass.
//!
//! Each external step gets a random step token when its run is created; the database keeps
//! only its SHA-256. When the scheduler reaches the step, the engine records it as `running`,
//! and waits until the client reports the outputs with that token, the step's timeout passes,
//! or the run is cancelled. The report may reach another process sharing the database (a
//! `runledger serve` while `runledger run` waits), so the waiting side polls the database, and
//! a report received in the same process wakes it at once.

use super::executor::{ProgressEvent, StepSummary};
use super::step::{StepInput, StepTask, add_links};
use super::{Engine, EngineError};
use crate::runtime::ArtifactRef;
use crate::store::artifacts::{ArtifactError, validate_digest};
use crate::store::entity::external_step;
use crate::store::tokens::hash_token;
use crate::store::{
    ExternalInput, ExternalState, NewExternalStep, NewLogLine, NewMetric, StepCompletion,
    StepStatus, StoreError,
};
use dashmap::DashMap;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};
use tokio::sync::Notify;

/// How often a waiting step reads its row for a report that reached another process. The read
/// is one primary-key lookup, so four a second cost little.
const REPORT_POLL: Duration = Duration::from_millis(250);

/// Prefix of step tokens, distinct from the `rlt_` of API tokens, so that a leaked step token
/// is easy to recognise in a scan.
const STEP_TOKEN_PREFIX: &str = "rls_";

/// Random bytes per step token: 256 bits cannot be guessed.
const STEP_TOKEN_BYTES: usize = 32;

/// Media type recorded for a reported output that names none.
const DEFAULT_MEDIA_TYPE: &str = "application/octet-stream";

/// A secret that authorises the report of one external step. `Debug` hides it.
#[derive(Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct StepToken(String);

impl StepToken {
    /// Returns the token text, for the client that reports the step.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for StepToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StepToken(***)")
    }
}

/// The step token of one external step of a run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ExternalStepToken {
    /// Step name.
    pub step: String,
    /// Id of the step run, which the report's URL names.
    pub step_run_id: String,
    /// The token, sent as `Authorization: Bearer TOKEN` with the report.
    pub token: StepToken,
}

impl ExternalStepToken {
    /// Returns the path of the step's report, relative to the server's address.
    pub fn report_path(&self) -> String {
        report_path(&self.step_run_id)
    }
}

/// Returns the API path that receives the report of external step run `step_run_id`.
pub fn report_path(step_run_id: &str) -> String {
    format!("/api/v1/external-steps/{step_run_id}/report")
}

/// Whether a reported step succeeded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReportStatus {
    /// The work finished and produced every declared output.
    Succeeded,
    /// The work failed; the step fails and its dependents are skipped.
    Failed,
}

/// A client's report of an external step.
#[derive(Debug, Clone, PartialEq)]
pub struct ExternalReport {
    /// The outcome of the work.
    pub status: ReportStatus,
    /// Why the work failed; only with [`ReportStatus::Failed`].
    pub error: Option<String>,
    /// The outputs, by declared name, each already in the artifact store.
    pub outputs: Vec<ReportedOutput>,
    /// Metric values the work measured.
    pub metrics: Vec<ReportedMetric>,
    /// Log lines of the work, recorded at level `info`.
    pub logs: Vec<String>,
}

/// One output of a report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportedOutput {
    /// A name the step declares in `outputs`.
    pub name: String,
    /// SHA-256 of an artifact already in the store.
    pub digest: String,
    /// Media type to record; `application/octet-stream` when `None`.
    pub media_type: Option<String>,
}

/// One metric value of a report.
#[derive(Debug, Clone, PartialEq)]
pub struct ReportedMetric {
    /// Metric name.
    pub key: String,
    /// The value.
    pub value: f64,
    /// Training step or iteration; 0 when `None`.
    pub step: Option<i64>,
}

/// A problem with one field of a report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReportProblem {
    /// Path of the field, such as `outputs[1].name`.
    pub field: String,
    /// The problem and its fix.
    pub problem: String,
}

/// Errors of [`Engine::report_external_step`].
#[derive(Debug, thiserror::Error)]
pub enum ExternalStepError {
    /// No external step has this step run id.
    #[error(
        "no external step has step run id `{0}`; use the id that `runledger run` printed or \
         that GET /api/v1/runs/RUN_ID/external-steps lists"
    )]
    NotFound(String),
    /// The token does not belong to the step.
    #[error(
        "the step token is not valid for step run `{0}`; send the token printed when the run \
         was created as `Authorization: Bearer TOKEN`"
    )]
    InvalidToken(String),
    /// The step does not wait for a report now.
    #[error("{message}")]
    NotWaiting {
        /// The step run.
        step_run_id: String,
        /// The reason no report is accepted, and the fix.
        message: String,
    },
    /// The report does not fit the step's declaration or names missing artifacts.
    #[error("invalid report: {}", render(.0))]
    InvalidReport(Vec<ReportProblem>),
    /// The database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The artifact files failed.
    #[error(transparent)]
    Artifacts(#[from] ArtifactError),
}

fn render(problems: &[ReportProblem]) -> String {
    let parts: Vec<String> = problems
        .iter()
        .map(|p| format!("{}: {}", p.field, p.problem))
        .collect();
    parts.join("; ")
}

/// Tokens issued by this process, by run id, kept from run creation until the run's execution
/// ends, because the database stores only their hashes.
// NOTE: a run that is created but never executed keeps its tokens here until the process
// exits.
fn issued_tokens() -> &'static DashMap<String, Vec<ExternalStepToken>> {
    static TOKENS: OnceLock<DashMap<String, Vec<ExternalStepToken>>> = OnceLock::new();
    TOKENS.get_or_init(DashMap::new)
}

/// Wake-ups of the waits in this process, by step run id.
fn waiters() -> &'static DashMap<String, Arc<Notify>> {
    static WAITERS: OnceLock<DashMap<String, Arc<Notify>>> = OnceLock::new();
    WAITERS.get_or_init(DashMap::new)
}

/// A registered wait, removed from [`waiters`] when dropped.
struct Waiter {
    step_run_id: String,
    notify: Arc<Notify>,
}

impl Waiter {
    fn register(step_run_id: &str) -> Self {
        let notify = Arc::new(Notify::new());
        waiters().insert(step_run_id.to_owned(), notify.clone());
        Self {
            step_run_id: step_run_id.to_owned(),
            notify,
        }
    }
}

impl Drop for Waiter {
    fn drop(&mut self) {
        waiters().remove(&self.step_run_id);
    }
}

/// Wakes the wait for `step_run_id` if it runs in this process. A wake-up that arrives before
/// the wait sleeps is kept by the `Notify`, so none is lost.
fn wake(step_run_id: &str) {
    if let Some(notify) = waiters().get(step_run_id) {
        notify.notify_one();
    }
}

fn generate_token() -> Result<StepToken, EngineError> {
    let mut bytes = [0_u8; STEP_TOKEN_BYTES];
    getrandom::fill(&mut bytes).map_err(|error| StoreError::Random(error.to_string()))?;
    Ok(StepToken(format!(
        "{STEP_TOKEN_PREFIX}{}",
        hex::encode(bytes)
    )))
}

/// Compares two byte strings in time that depends only on their lengths, so the time of a
/// failed token check does not tell how much of a guess was right.
fn constant_time_eq(left: &[u8], right: &[u8]) -> bool {
    if left.len() != right.len() {
        return false;
    }
    let difference = left
        .iter()
        .zip(right)
        .fold(0_u8, |acc, (a, b)| acc | (a ^ b));
    std::hint::black_box(difference) == 0
}

/// Records the external steps among `steps` (name, step run id, declared outputs) with new
/// step tokens, and keeps the tokens for [`tokens_of`].
pub(super) async fn issue_tokens(
    engine: &Engine,
    run_id: &str,
    steps: Vec<(String, String, Vec<String>)>,
) -> Result<(), EngineError> {
    if steps.is_empty() {
        return Ok(());
    }
    let mut rows = Vec::new();
    let mut tokens = Vec::new();
    for (step, step_run_id, outputs) in steps {
        let token = generate_token()?;
        rows.push(NewExternalStep {
            step_run_id: step_run_id.clone(),
            run_id: run_id.to_owned(),
            token_hash: hash_token(token.expose()),
            outputs,
        });
        tokens.push(ExternalStepToken {
            step,
            step_run_id,
            token,
        });
    }
    engine.store().create_external_steps(rows).await?;
    issued_tokens().insert(run_id.to_owned(), tokens);
    Ok(())
}

/// Returns the tokens this process issued for the run, while it keeps them.
pub(super) fn tokens_of(run_id: &str) -> Vec<ExternalStepToken> {
    issued_tokens()
        .get(run_id)
        .map(|tokens| tokens.clone())
        .unwrap_or_default()
}

/// Drops the tokens of a run whose execution ended.
pub(super) fn forget_tokens(run_id: &str) {
    issued_tokens().remove(run_id);
}

fn token_for(run_id: &str, step_run_id: &str) -> Option<StepToken> {
    let tokens = issued_tokens().get(run_id)?;
    let issued = tokens.iter().find(|t| t.step_run_id == step_run_id)?;
    Some(issued.token.clone())
}

fn recorded_input(input: &StepInput) -> ExternalInput {
    let artifact = &input.artifact;
    ExternalInput {
        name: artifact.name.clone(),
        digest: artifact.digest.clone(),
        size: artifact.size,
        media_type: artifact.media_type.clone(),
        dataset: input.is_dataset,
    }
}

fn step_input(input: ExternalInput) -> StepInput {
    StepInput {
        artifact: ArtifactRef {
            name: input.name,
            digest: input.digest,
            size: input.size,
            media_type: input.media_type,
        },
        is_dataset: input.dataset,
    }
}

/// The reason a wait ended.
enum WaitEnd {
    /// The row left `waiting`: a report, or another process, ended the wait.
    Ended,
    /// The step's timeout passed.
    TimedOut(Duration),
    /// The run was cancelled.
    Cancelled,
}

/// Waits for the external step's report and returns the step's final summary.
pub(super) async fn run_external(task: &StepTask) -> Result<StepSummary, EngineError> {
    let started = Instant::now();
    let inputs: Vec<ExternalInput> = task.inputs.iter().map(recorded_input).collect();
    let waiter = Waiter::register(&task.step_run_id);
    task.engine
        .store()
        .start_external_wait(&task.step_run_id, &inputs)
        .await?;

    tracing::info!(
        run_id = %task.run_id,
        step = %task.step.name,
        step_run_id = %task.step_run_id,
        "external step waits for a report"
    );
    task.send(ProgressEvent::StepWaiting {
        step: task.step.name.clone(),
        step_run_id: task.step_run_id.clone(),
        token: token_for(&task.run_id, &task.step_run_id),
    });

    match wait(task, &waiter.notify).await? {
        WaitEnd::Ended => {}
        WaitEnd::TimedOut(limit) => {
            let message = format!(
                "wall-clock timeout of {} ms exceeded while waiting for an external report",
                limit.as_millis()
            );
            end_wait(task, ExternalState::TimedOut, StepStatus::Failed, &message).await?;
        }
        WaitEnd::Cancelled => {
            let message = "run cancelled while the step waited for an external report";
            end_wait(
                task,
                ExternalState::Cancelled,
                StepStatus::Cancelled,
                message,
            )
            .await?;
        }
    }
    recorded_summary(task, started).await
}

/// Polls the step's row until the wait ends, sleeping between polls unless a report in this
/// process wakes it.
async fn wait(task: &StepTask, notify: &Notify) -> Result<WaitEnd, EngineError> {
    let deadline = task
        .step
        .timeout
        .map(|limit| (Instant::now() + limit, limit));
    loop {
        let row = external_row(task).await?;
        if row.state != ExternalState::Waiting {
            return Ok(WaitEnd::Ended);
        }
        if task.cancel.load(Ordering::Relaxed) {
            return Ok(WaitEnd::Cancelled);
        }

        let now = Instant::now();
        let mut pause = REPORT_POLL;
        if let Some((at, limit)) = deadline {
            if now >= at {
                return Ok(WaitEnd::TimedOut(limit));
            }
            pause = pause.min(at - now);
        }
        tokio::select! {
            () = notify.notified() => {}
            () = tokio::time::sleep(pause) => {}
        }
    }
}

async fn external_row(task: &StepTask) -> Result<external_step::Model, EngineError> {
    let row = task
        .engine
        .store()
        .get_external_step(&task.step_run_id)
        .await?;
    row.ok_or_else(|| {
        EngineError::Other(format!(
            "external step run {} was deleted while the step waited",
            task.step_run_id
        ))
    })
}

/// Ends the wait without a report. A report that won the race leaves its own result.
async fn end_wait(
    task: &StepTask,
    state: ExternalState,
    status: StepStatus,
    message: &str,
) -> Result<(), EngineError> {
    let mut completion = StepCompletion::new(&task.run_id, &task.step_run_id, status, 1);
    completion.error = Some(message.to_owned());
    add_links(&mut completion, &task.inputs, &[]);
    let ended = task
        .engine
        .store()
        .end_external_wait(state, &completion)
        .await?;
    if ended {
        tracing::warn!(
            run_id = %task.run_id,
            step = %task.step.name,
            step_run_id = %task.step_run_id,
            %status,
            cause = %message,
            "external step ended without a report"
        );
    }
    Ok(())
}

/// Builds the step's summary from what the database recorded, wherever the report arrived.
async fn recorded_summary(task: &StepTask, started: Instant) -> Result<StepSummary, EngineError> {
    let store = task.engine.store();
    let step_run = store
        .get_step_run(&task.step_run_id)
        .await?
        .ok_or_else(|| StoreError::StepRunNotFound(task.step_run_id.clone()))?;
    if !step_run.status.is_final() {
        return Err(EngineError::Other(format!(
            "external step run {} left its wait but is still {}",
            task.step_run_id, step_run.status
        )));
    }

    let outputs: Vec<ArtifactRef> = store
        .step_output_artifacts(&task.step_run_id)
        .await?
        .into_iter()
        .map(|linked| ArtifactRef {
            name: linked.link.name,
            digest: linked.link.digest,
            size: linked.size as u64,
            media_type: linked.media_type,
        })
        .collect();
    let metrics: Vec<NewMetric> = store
        .step_metrics(&task.step_run_id)
        .await?
        .into_iter()
        .map(|point| NewMetric {
            step_run_id: point.step_run_id,
            key: point.key,
            value: point.value,
            step: point.step,
            timestamp_ms: point.timestamp_ms,
        })
        .collect();

    let attempts = step_run.attempts.max(0) as u32;
    let mut summary = StepSummary::new(task, step_run.status, attempts, started.elapsed());
    summary.error = step_run.error;
    let summary = summary.with_outputs(outputs).with_metrics(&metrics);
    task.send(ProgressEvent::StepFinished(summary.clone()));
    Ok(summary)
}

/// Checks a client's report of external step run `step_run_id` and, when the step waits for
/// it, completes the step with the report's outputs, metrics and logs.
pub(super) async fn report(
    engine: &Engine,
    step_run_id: &str,
    token: &str,
    report: ExternalReport,
) -> Result<StepStatus, ExternalStepError> {
    let store = engine.store();
    let Some(row) = store.get_external_step(step_run_id).await? else {
        return Err(ExternalStepError::NotFound(step_run_id.to_owned()));
    };
    let presented = hash_token(token);
    if !constant_time_eq(presented.as_bytes(), row.token_hash.as_bytes()) {
        return Err(ExternalStepError::InvalidToken(step_run_id.to_owned()));
    }
    let step_run = store
        .get_step_run(step_run_id)
        .await?
        .ok_or_else(|| ExternalStepError::NotFound(step_run_id.to_owned()))?;
    if row.state != ExternalState::Waiting || step_run.status.is_final() {
        return Err(not_waiting(step_run_id, row.state, step_run.status));
    }

    let declared = row.declared_outputs()?;
    let outputs = check_report(engine, &step_run.name, &declared, &report)?;
    let inputs: Vec<StepInput> = row.recorded_inputs()?.into_iter().map(step_input).collect();
    let completion = report_completion(&row, &inputs, &outputs, report);
    let status = completion.status;

    if !store
        .end_external_wait(ExternalState::Reported, &completion)
        .await?
    {
        let row = store.get_external_step(step_run_id).await?;
        let step_run = store.get_step_run(step_run_id).await?;
        let state = row.map_or(ExternalState::Reported, |row| row.state);
        let step_status = step_run.map_or(StepStatus::Cancelled, |step| step.status);
        return Err(not_waiting(step_run_id, state, step_status));
    }
    wake(step_run_id);
    tracing::info!(
        run_id = %row.run_id,
        step = %step_run.name,
        step_run_id = %step_run_id,
        %status,
        "external step reported"
    );
    Ok(status)
}

fn not_waiting(step_run_id: &str, state: ExternalState, status: StepStatus) -> ExternalStepError {
    let message = match state {
        ExternalState::Pending if !status.is_final() => format!(
            "step run `{step_run_id}` does not wait for a report yet, because its inputs are \
             not ready; report once `runledger run` prints that the step waits"
        ),
        ExternalState::Reported => format!(
            "step run `{step_run_id}` was already reported and ended as {status}; a step \
             accepts one report"
        ),
        ExternalState::TimedOut => format!(
            "step run `{step_run_id}` timed out waiting for its report and failed; start a new \
             run to execute it again"
        ),
        _ => format!(
            "step run `{step_run_id}` ended as {status} without a report and accepts none; \
             start a new run to execute it again"
        ),
    };
    ExternalStepError::NotWaiting {
        step_run_id: step_run_id.to_owned(),
        message,
    }
}

/// Checks the report against the step's declared outputs and the artifact store, and returns
/// the outputs to record. Every problem is listed, not only the first.
fn check_report(
    engine: &Engine,
    step: &str,
    declared: &[String],
    report: &ExternalReport,
) -> Result<Vec<ArtifactRef>, ExternalStepError> {
    let mut problems = Vec::new();
    let mut outputs = Vec::new();
    check_status_fields(report, &mut problems);
    let mut seen = BTreeSet::new();
    for (index, output) in report.outputs.iter().enumerate() {
        let field = |name: &str| format!("outputs[{index}].{name}");
        if !declared.contains(&output.name) {
            let hint = super::plan::nearest(&output.name, declared.iter().map(String::as_str));
            problems.push(ReportProblem {
                field: field("name"),
                problem: format!(
                    "`{}` is not an output of step `{step}`{hint}; its outputs are [{}]",
                    output.name,
                    declared.join(", ")
                ),
            });
        } else if !seen.insert(output.name.as_str()) {
            problems.push(ReportProblem {
                field: field("name"),
                problem: format!("output `{}` is reported twice; report it once", output.name),
            });
        }
        match stored_output(engine, output) {
            Ok(artifact) => outputs.push(artifact),
            Err(problem) => problems.push(ReportProblem {
                field: field("digest"),
                problem,
            }),
        }
    }
    if report.status == ReportStatus::Succeeded {
        let missing: Vec<&str> = declared
            .iter()
            .filter(|name| !seen.contains(name.as_str()))
            .map(String::as_str)
            .collect();
        if !missing.is_empty() {
            problems.push(ReportProblem {
                field: "outputs".to_owned(),
                problem: format!(
                    "outputs [{}] of step `{step}` are missing; a succeeded step reports every \
                     output it declares",
                    missing.join(", ")
                ),
            });
        }
    }
    check_metrics(report, &mut problems);
    if problems.is_empty() {
        Ok(outputs)
    } else {
        Err(ExternalStepError::InvalidReport(problems))
    }
}

/// Checks that only a failed report carries an error, and that it carries no outputs, since a
/// failed step records none.
fn check_status_fields(report: &ExternalReport, problems: &mut Vec<ReportProblem>) {
    match report.status {
        ReportStatus::Succeeded if report.error.is_some() => problems.push(ReportProblem {
            field: "error".to_owned(),
            problem: "`error` belongs to a failed step; remove it or report `status: failed`"
                .to_owned(),
        }),
        ReportStatus::Failed if !report.outputs.is_empty() => problems.push(ReportProblem {
            field: "outputs".to_owned(),
            problem: "a failed step records no outputs; send `outputs: []` with `status: failed`"
                .to_owned(),
        }),
        _ => {}
    }
}

fn check_metrics(report: &ExternalReport, problems: &mut Vec<ReportProblem>) {
    for (index, metric) in report.metrics.iter().enumerate() {
        if metric.key.trim().is_empty() {
            problems.push(ReportProblem {
                field: format!("metrics[{index}].key"),
                problem: "the metric name is empty; give each metric a name".to_owned(),
            });
        }
    }
}

/// Returns the reported output as stored, or why it cannot be recorded.
fn stored_output(engine: &Engine, output: &ReportedOutput) -> Result<ArtifactRef, String> {
    if let Err(error) = validate_digest(&output.digest) {
        return Err(error.to_string());
    }
    let size = match engine.artifacts().size_of(&output.digest) {
        Ok(size) => size,
        Err(ArtifactError::NotFound(_)) => {
            return Err(format!(
                "artifact {} is not stored; upload it with PUT /api/v1/artifacts/{} before \
                 the report",
                output.digest, output.digest
            ));
        }
        Err(error) => return Err(format!("cannot read artifact {}: {error}", output.digest)),
    };
    Ok(ArtifactRef {
        name: output.name.clone(),
        digest: output.digest.clone(),
        size,
        media_type: output
            .media_type
            .clone()
            .unwrap_or_else(|| DEFAULT_MEDIA_TYPE.to_owned()),
    })
}

/// Builds the step's completion from a checked report.
fn report_completion(
    row: &external_step::Model,
    inputs: &[StepInput],
    outputs: &[ArtifactRef],
    report: ExternalReport,
) -> StepCompletion {
    let status = match report.status {
        ReportStatus::Succeeded => StepStatus::Succeeded,
        ReportStatus::Failed => StepStatus::Failed,
    };
    let mut completion = StepCompletion::new(&row.run_id, &row.step_run_id, status, 1);
    if status == StepStatus::Failed {
        let error = report
            .error
            .unwrap_or_else(|| "the external client reported a failure without a message".into());
        completion.error = Some(error);
    }

    let now = chrono::Utc::now().timestamp_millis();
    completion.logs = report
        .logs
        .into_iter()
        .map(|message| NewLogLine {
            level: "info".to_owned(),
            message,
            fields: None,
            timestamp_ms: now,
        })
        .collect();
    completion.metrics = report
        .metrics
        .into_iter()
        .map(|metric| NewMetric {
            step_run_id: Some(row.step_run_id.clone()),
            key: metric.key,
            value: metric.value,
            step: metric.step.unwrap_or(0),
            timestamp_ms: now,
        })
        .collect();
    add_links(&mut completion, inputs, outputs);
    completion
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compares_in_constant_time() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
    }

    #[test]
    fn debug_hides_step_token() {
        let token = generate_token().unwrap();

        let shown = format!("{token:?}");

        assert!(token.expose().starts_with(STEP_TOKEN_PREFIX));
        assert_eq!(token.expose().len(), STEP_TOKEN_PREFIX.len() + 64);
        assert!(!shown.contains(token.expose()), "{shown}");
    }
}
