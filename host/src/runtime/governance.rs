//! Calls of metric validators and promotion policies, and the values that cross into and out of
//! them.
//!
//! The runtime has no access to the database, so the caller builds the [`RunSummary`] or
//! [`PromotionRequest`] and supplies [`RunData`] for a validator's reads of recorded runs.
//! Strings returned by a plugin are capped before the caller sees them, so a plugin cannot fill
//! the database. A check name keeps at most [`MAX_CHECK_NAME_CHARS`] characters, and a message
//! or a reason at most [`MAX_MESSAGE_CHARS`]. A validator call that returns more than
//! [`MAX_CHECKS`] checks fails with [`Limit::Checks`](super::Limit::Checks).

mod call;
pub(crate) mod convert;

use super::call::Usage;
use super::error::CallError;
use super::state::LogLine;
use serde::{Deserialize, Serialize};

pub use convert::{MAX_CHECK_NAME_CHARS, MAX_CHECKS, MAX_MESSAGE_CHARS, MAX_SERIES_POINTS};

/// The run a validator or policy judges, as the host describes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct RunSummary {
    /// The run's id.
    pub run_id: String,
    /// Display name of the run.
    pub name: String,
    /// Name of the pipeline that ran; empty for an external run.
    pub pipeline: String,
    /// Run status, such as `succeeded`.
    pub status: String,
    /// The user or API token name that started the run.
    pub author: String,
    /// Run params as (name, value as JSON text).
    pub params: Vec<(String, String)>,
    /// The latest value of every metric key.
    pub metrics: Vec<SummaryMetric>,
    /// Run tags as (key, value).
    pub tags: Vec<(String, String)>,
    /// Every step run, in the order the steps started.
    pub steps: Vec<StepSummary>,
    /// The datasets the run read directly, such as pipeline inputs.
    pub input_datasets: Vec<DatasetRef>,
}

/// One metric point.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SummaryMetric {
    /// Metric name.
    pub key: String,
    /// The value; NaN and infinities allowed.
    pub value: f64,
    /// Training step; 0 when there is none.
    pub step: i64,
}

/// The outcome of one step run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepSummary {
    /// Step name.
    pub name: String,
    /// Step status, such as `succeeded`.
    pub status: String,
    /// SHA-256 of the component that ran the step; `None` for external steps.
    pub plugin_digest: Option<String>,
    /// True when the step reused an earlier identical step's outputs.
    pub cached: bool,
}

/// A dataset, by the name a run gave it and its content digest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DatasetRef {
    /// Dataset name within the run.
    pub name: String,
    /// Lowercase hex SHA-256 of the content.
    pub digest: String,
}

/// Whether a failing check blocks promotion.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// A failure blocks promotion.
    Blocking,
    /// A failure is reported only.
    Warning,
}

/// One check a validator made.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Check {
    /// Check name, at most [`MAX_CHECK_NAME_CHARS`] characters.
    pub name: String,
    /// True when the run passed.
    pub passed: bool,
    /// The consequence of a failure.
    pub severity: Severity,
    /// The measured and the expected value, at most [`MAX_MESSAGE_CHARS`] characters.
    pub message: String,
}

/// A check with the validator that made it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecordedCheck {
    /// The validator as `name@version`.
    pub validator: String,
    /// SHA-256 of the validator's component.
    pub validator_digest: String,
    /// The check.
    pub check: Check,
}

/// An approval given to a promotion.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Approval {
    /// Who approved.
    pub approver: String,
    /// The approver's role when approving, such as `approver`.
    pub role: String,
    /// Milliseconds since the Unix epoch.
    pub approved_at_ms: i64,
    /// The approver's comment; may be empty.
    pub comment: String,
}

/// The ancestry of a model version's artifact.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct LineageSummary {
    /// SHA-256 of the version's artifact.
    pub artifact_digest: String,
    /// Every dataset upstream of the artifact, each once.
    pub datasets: Vec<DatasetRef>,
}

/// A request to point an alias of a registered model at one of its versions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct PromotionRequest {
    /// Registered model name.
    pub model: String,
    /// The version to promote.
    pub version: u64,
    /// The alias to move.
    pub alias: String,
    /// The user who requested the promotion.
    pub requester: String,
    /// The run that produced the version.
    pub run: RunSummary,
    /// Every check recorded for that run and version.
    pub validations: Vec<RecordedCheck>,
    /// The version's lineage.
    pub lineage: LineageSummary,
    /// Approvals so far, oldest first.
    pub approvals: Vec<Approval>,
}

/// A policy's decision as the plugin returned it, with reasons capped at [`MAX_MESSAGE_CHARS`].
///
/// The runtime does not check that a decision is well formed. The caller denies a pending
/// decision with a count of 0 or an unknown role, and a deny with an empty reason.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "decision", rename_all = "snake_case")]
pub enum Decision {
    /// The promotion may proceed as far as this policy is concerned.
    Allow,
    /// The promotion must not happen.
    Deny {
        /// Why, and what would change it.
        reason: String,
    },
    /// The promotion waits for approvals.
    Pending {
        /// How many more approvals are needed.
        count: u32,
        /// The lowest role an approver must hold.
        role: String,
        /// The approvers that count, and why.
        reason: String,
    },
}

/// The cause of a failed [`RunData`] read, returned to the validator as the matching WIT
/// `error` case.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RunDataError {
    /// No such metric or registered model (`not-found`).
    #[error("not found: {0}")]
    NotFound(String),
    /// The result would be larger than the host returns in one call (`limit-exceeded`).
    #[error("limit exceeded: {0}")]
    LimitExceeded(String),
    /// Reading failed (`io`).
    #[error("i/o error: {0}")]
    Io(String),
}

/// Read access a validator gets to recorded runs, supplied by the caller because the runtime
/// has no access to the database. Called on the thread running the plugin, so implementations
/// block (for example with `tokio::runtime::Handle::block_on` from a blocking task).
pub trait RunData: Send {
    /// Returns every point of metric `key` of the run being validated, ordered by step and then
    /// by time. The host fails the read with `limit-exceeded` past
    /// [`MAX_SERIES_POINTS`] points whatever this returns.
    fn metric_series(&mut self, key: &str) -> Result<Vec<SummaryMetric>, RunDataError>;

    /// Returns the run behind the version that alias `alias` of registered model `model` points
    /// at, or `None` when the model has no such alias; [`RunDataError::NotFound`] when there is
    /// no such model.
    fn alias_run(&mut self, model: &str, alias: &str) -> Result<Option<RunSummary>, RunDataError>;
}

/// What one validator or policy call produced.
#[derive(Debug)]
pub struct GovernanceReport<T> {
    /// The checks or decision; `Err` when the plugin returned an error value, trapped, or ran
    /// out of fuel, time or memory.
    pub outcome: Result<T, CallError>,
    /// Log lines, including captured stdout and stderr.
    pub logs: Vec<LogLine>,
    /// Resources the call used.
    pub usage: Usage,
}
