//! Plain Rust types for validators and policies, mirroring the records of the WIT interfaces
//! `governance-types` and `promotion-policy`.

use crate::bindings::runledger::plugin::types as raw_types;
use crate::policy_bindings::exports::runledger::plugin::promotion_policy as raw_policy;
use crate::validator_bindings::runledger::plugin::governance_types as raw;

/// One metric point: the latest value of a key in a [`RunSummary`], or a point of a series from
/// [`crate::run_data::metric_series`].
#[derive(Debug, Clone, PartialEq)]
pub struct Metric {
    /// Metric name, such as `test_rmse`.
    pub key: String,
    /// The value; NaN and infinities are possible.
    pub value: f64,
    /// The training step or epoch the value belongs to; 0 when there is none.
    pub step: i64,
}

/// The outcome of one step run.
#[derive(Debug, Clone, PartialEq)]
pub struct StepSummary {
    /// Name of the step within its pipeline.
    pub name: String,
    /// Status, such as `succeeded` or `failed`.
    pub status: String,
    /// SHA-256 of the plugin component that ran the step; `None` for external steps.
    pub plugin_digest: Option<String>,
    /// True when the step reused the outputs of an earlier identical step.
    pub cached: bool,
}

/// A dataset a run read, or one upstream of a model in the lineage graph.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatasetRef {
    /// The name the run gave the dataset.
    pub name: String,
    /// Lowercase hex SHA-256 of the dataset's content.
    pub digest: String,
}

/// The host's record of a run, as validators and policies receive it.
///
/// ```
/// use runledger_sdk::{Metric, RunSummary};
///
/// let run = RunSummary {
///     metrics: vec![Metric { key: "test_rmse".into(), value: 0.64, step: 0 }],
///     params: vec![("alpha".into(), "0.5".into())],
///     ..RunSummary::default()
/// };
/// assert_eq!(run.metric("test_rmse"), Some(0.64));
/// assert_eq!(run.param("alpha"), Some("0.5"));
/// assert_eq!(run.metric("test_r2"), None);
/// ```
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RunSummary {
    /// The run's id.
    pub run_id: String,
    /// Display name of the run.
    pub name: String,
    /// Name of the pipeline that ran; empty for an external run.
    pub pipeline: String,
    /// Status, such as `succeeded`.
    pub status: String,
    /// The user or API token name that started the run.
    pub author: String,
    /// Run params as (name, value as JSON text).
    pub params: Vec<(String, String)>,
    /// The latest value of every metric key of the run.
    pub metrics: Vec<Metric>,
    /// The run's tags as (key, value).
    pub tags: Vec<(String, String)>,
    /// Every step run, in the order the steps started.
    pub steps: Vec<StepSummary>,
    /// The datasets the run read directly.
    pub input_datasets: Vec<DatasetRef>,
}

impl RunSummary {
    /// Returns the latest value of metric `key`, or `None` when the run has no such metric.
    pub fn metric(&self, key: &str) -> Option<f64> {
        self.metrics
            .iter()
            .find(|metric| metric.key == key)
            .map(|metric| metric.value)
    }

    /// Returns the value of param `name` as JSON text (a string keeps its quotes), or `None`.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(param, _)| param == name)
            .map(|(_, value)| value.as_str())
    }

    /// Returns the value of tag `key`, or `None`.
    ///
    /// ```
    /// let run = runledger_sdk::RunSummary {
    ///     tags: vec![("team".into(), "wine".into())],
    ///     ..Default::default()
    /// };
    /// assert_eq!(run.tag("team"), Some("wine"));
    /// ```
    pub fn tag(&self, key: &str) -> Option<&str> {
        self.tags
            .iter()
            .find(|(tag, _)| tag == key)
            .map(|(_, value)| value.as_str())
    }
}

/// Whether a failing check stops a run from being promoted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    /// A failure blocks promotion.
    Blocking,
    /// A failure is reported but blocks nothing.
    Warning,
}

/// One check a validator made.
///
/// The host keeps at most 200 characters of a name and 4,000 of a message, and fails a call
/// that returns more than 1,000 checks.
///
/// ```
/// use runledger_sdk::{Check, Severity};
///
/// let check = Check::fail("test_rmse <= 0.75", Severity::Blocking, "test_rmse is 0.81");
/// assert!(!check.passed);
/// assert_eq!(check.severity, Severity::Blocking);
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Check {
    /// Short name of the check, unique within one validator call.
    pub name: String,
    /// True when the run passed the check.
    pub passed: bool,
    /// The consequence of a failure: blocking or warning.
    pub severity: Severity,
    /// The measured value and the expected one, for a person to read.
    pub message: String,
}

impl Check {
    /// Creates a check that passed.
    ///
    /// ```
    /// let check = runledger_sdk::Check::pass("rows", runledger_sdk::Severity::Warning, "1599 rows");
    /// assert!(check.passed);
    /// ```
    pub fn pass(name: impl Into<String>, severity: Severity, message: impl Into<String>) -> Self {
        Self::new(name, true, severity, message)
    }

    /// Creates a check that failed.
    ///
    /// ```
    /// let check = runledger_sdk::Check::fail("rows", runledger_sdk::Severity::Warning, "0 rows");
    /// assert!(!check.passed);
    /// ```
    pub fn fail(name: impl Into<String>, severity: Severity, message: impl Into<String>) -> Self {
        Self::new(name, false, severity, message)
    }

    fn new(
        name: impl Into<String>,
        passed: bool,
        severity: Severity,
        message: impl Into<String>,
    ) -> Self {
        Self {
            name: name.into(),
            passed,
            severity,
            message: message.into(),
        }
    }
}

/// A check as the host recorded it, with the validator that made it.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordedCheck {
    /// The validator as `name@version`.
    pub validator: String,
    /// SHA-256 of the validator's component.
    pub validator_digest: String,
    /// The check itself.
    pub check: Check,
}

/// An approval given to a promotion.
#[derive(Debug, Clone, PartialEq)]
pub struct Approval {
    /// The approver: a user or API token name.
    pub approver: String,
    /// The approver's role when approving: `viewer`, `editor`, `approver` or `admin`.
    pub role: String,
    /// Milliseconds since the Unix epoch.
    pub approved_at_ms: i64,
    /// Free text the approver gave; may be empty.
    pub comment: String,
}

/// The ancestry of a model version's artifact.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LineageSummary {
    /// SHA-256 of the artifact the version was created from.
    pub artifact_digest: String,
    /// Every dataset upstream of that artifact, each once.
    pub datasets: Vec<DatasetRef>,
}

/// A request to point an alias of a registered model at one of its versions.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PromotionRequest {
    /// Name of the registered model.
    pub model: String,
    /// The version to promote.
    pub version: u64,
    /// The alias to move, such as `production`.
    pub alias: String,
    /// The user or API token name that requested the promotion.
    pub requester: String,
    /// The run that produced the version.
    pub run: RunSummary,
    /// Every check recorded for that run and version.
    pub validations: Vec<RecordedCheck>,
    /// The ancestry of the version's artifact.
    pub lineage: LineageSummary,
    /// Approvals given so far, oldest first.
    pub approvals: Vec<Approval>,
}

/// A policy's decision on a promotion request.
///
/// The host denies a promotion for a `Deny` with an empty reason and for a `Pending` with a
/// count of 0 or an unknown role, so a policy states what it waits for.
///
/// ```
/// use runledger_sdk::Decision;
///
/// let decision = Decision::Pending {
///     count: 1,
///     role: "approver".into(),
///     reason: "needs one more approval from someone other than the requester".into(),
/// };
/// assert_ne!(decision, Decision::Allow);
/// ```
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// The promotion may proceed as far as this policy is concerned.
    Allow,
    /// The promotion must not happen, for the reason given.
    Deny(String),
    /// The promotion waits for approvals.
    Pending {
        /// How many more approvals are needed; at least 1.
        count: u32,
        /// The lowest role an approver must hold, such as `approver`.
        role: String,
        /// The approvers that count and the reason, for a person to read.
        reason: String,
    },
}

impl Metric {
    pub(crate) fn from_raw(raw: raw_types::Metric) -> Self {
        Self {
            key: raw.key,
            value: raw.value,
            step: raw.step,
        }
    }
}

impl DatasetRef {
    fn from_raw(raw: raw::DatasetRef) -> Self {
        Self {
            name: raw.name,
            digest: raw.digest,
        }
    }
}

impl RunSummary {
    pub(crate) fn from_raw(raw: raw::RunSummary) -> Self {
        Self {
            run_id: raw.run_id,
            name: raw.name,
            pipeline: raw.pipeline,
            status: raw.status,
            author: raw.author,
            params: raw
                .params
                .into_iter()
                .map(|param| (param.name, param.value_json))
                .collect(),
            metrics: raw.metrics.into_iter().map(Metric::from_raw).collect(),
            tags: raw
                .tags
                .into_iter()
                .map(|tag| (tag.key, tag.value))
                .collect(),
            steps: raw
                .steps
                .into_iter()
                .map(|step| StepSummary {
                    name: step.name,
                    status: step.status,
                    plugin_digest: step.plugin_digest,
                    cached: step.cached,
                })
                .collect(),
            input_datasets: raw
                .input_datasets
                .into_iter()
                .map(DatasetRef::from_raw)
                .collect(),
        }
    }
}

impl Severity {
    fn from_raw(raw: raw::Severity) -> Self {
        match raw {
            raw::Severity::Blocking => Self::Blocking,
            raw::Severity::Warning => Self::Warning,
        }
    }

    fn into_raw(self) -> raw::Severity {
        match self {
            Self::Blocking => raw::Severity::Blocking,
            Self::Warning => raw::Severity::Warning,
        }
    }
}

impl Check {
    fn from_raw(raw: raw::Check) -> Self {
        Self {
            name: raw.name,
            passed: raw.passed,
            severity: Severity::from_raw(raw.severity),
            message: raw.message,
        }
    }

    pub(crate) fn into_raw(self) -> raw::Check {
        raw::Check {
            name: self.name,
            passed: self.passed,
            severity: self.severity.into_raw(),
            message: self.message,
        }
    }
}

impl PromotionRequest {
    pub(crate) fn from_raw(raw: raw_policy::PromotionRequest) -> Self {
        Self {
            model: raw.model,
            version: raw.version,
            alias: raw.alias,
            requester: raw.requester,
            run: RunSummary::from_raw(raw.run),
            validations: raw
                .validations
                .into_iter()
                .map(|recorded| RecordedCheck {
                    validator: recorded.validator,
                    validator_digest: recorded.validator_digest,
                    check: Check::from_raw(recorded.check),
                })
                .collect(),
            lineage: LineageSummary {
                artifact_digest: raw.lineage.artifact_digest,
                datasets: raw
                    .lineage
                    .datasets
                    .into_iter()
                    .map(DatasetRef::from_raw)
                    .collect(),
            },
            approvals: raw
                .approvals
                .into_iter()
                .map(|approval| Approval {
                    approver: approval.approver,
                    role: approval.role,
                    approved_at_ms: approval.approved_at,
                    comment: approval.comment,
                })
                .collect(),
        }
    }
}

impl Decision {
    pub(crate) fn into_raw(self) -> raw_policy::Decision {
        match self {
            Self::Allow => raw_policy::Decision::Allow,
            Self::Deny(reason) => raw_policy::Decision::Deny(reason),
            Self::Pending {
                count,
                role,
                reason,
            } => raw_policy::Decision::Pending(raw_policy::PendingApprovals {
                count,
                role,
                reason,
            }),
        }
    }
}
