//! The views of models, versions, validations, promotions and the audit log that the command
//! line and the HTTP API show.

use super::ValidatorSpec;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use utoipa::ToSchema;

/// A registered model with its tags, aliases and attachments.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ModelView {
    /// Unique name.
    pub name: String,
    /// Free-text description.
    pub description: String,
    /// Tags by key.
    pub tags: BTreeMap<String, String>,
    /// The version each alias points at, by alias.
    pub aliases: BTreeMap<String, u64>,
    /// Highest version number that exists, if any version does.
    pub latest_version: Option<u64>,
    /// Metric validators run on every new version, in order.
    pub validators: Vec<ValidatorSpec>,
    /// Policies that must allow a move of each alias, by alias.
    pub policies: BTreeMap<String, Vec<ValidatorSpec>>,
    /// User or API token name that created the model.
    pub created_by: String,
    /// Creation time, in milliseconds since the Unix epoch.
    pub created_at: i64,
    /// Time of the last change, in milliseconds since the Unix epoch.
    pub updated_at: i64,
}

/// One page of registered models.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ModelList {
    /// The models, by name.
    pub models: Vec<ModelView>,
    /// Token of the next page; `None` on the last page.
    pub next_page_token: Option<String>,
}

/// A version of a registered model with its tags, aliases and validations.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct VersionView {
    /// The registered model.
    pub model: String,
    /// Version number, counting up from 1.
    pub version: u64,
    /// The run that produced the artifact; `None` when that run is gone.
    pub run_id: Option<String>,
    /// Name of the artifact within its run, such as `train.model`.
    pub artifact_name: String,
    /// Lowercase hex SHA-256 of the artifact.
    pub artifact_digest: String,
    /// Origin of the artifact, as `runs:/RUN_ID/NAME`.
    pub source: String,
    /// Free-text description.
    pub description: String,
    /// Lifecycle state, such as `ready`.
    pub status: String,
    /// Tags by key.
    pub tags: BTreeMap<String, String>,
    /// Aliases that point at this version.
    pub aliases: Vec<String>,
    /// User or API token name that created the version.
    pub created_by: String,
    /// Creation time, in milliseconds since the Unix epoch.
    pub created_at: i64,
    /// Time of the last change, in milliseconds since the Unix epoch.
    pub updated_at: i64,
    /// Validations of the run that count for this version: those of the run itself and those
    /// made for this version, oldest first.
    pub validations: Vec<ValidationRecord>,
}

/// One page of model versions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct VersionList {
    /// The versions, newest first.
    pub versions: Vec<VersionView>,
    /// Token of the next page; `None` on the last page.
    pub next_page_token: Option<String>,
}

/// One validator call on a run and the checks it made.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ValidationRecord {
    /// Row id.
    pub id: i64,
    /// The run validated.
    pub run_id: String,
    /// Row id of the model version the validation was made for, if any.
    pub model_version_id: Option<i64>,
    /// Cause of the validation: `pipeline`, `model_version` or `manual`.
    pub trigger: String,
    /// The validator as `name@version`.
    pub plugin: String,
    /// SHA-256 of the validator's component; empty when the plugin was not found.
    pub plugin_digest: String,
    /// The configuration the validator got.
    #[schema(value_type = Object)]
    pub config: serde_json::Value,
    /// The reason the validator could not judge the run, if it could not.
    pub error: Option<String>,
    /// Creation time, in milliseconds since the Unix epoch.
    pub created_at: i64,
    /// The checks, in the order the validator returned them.
    pub checks: Vec<CheckView>,
}

/// One check of a validation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CheckView {
    /// Name, unique within its validation.
    pub name: String,
    /// Whether the run passed.
    pub passed: bool,
    /// `blocking` or `warning`.
    pub severity: String,
    /// The measured value and the expected one.
    pub message: String,
}

/// Lifecycle state of a promotion.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PromotionStatus {
    /// Waiting for approvals.
    Pending,
    /// Every policy allowed it and the alias moved.
    Completed,
    /// A policy denied it.
    Denied,
    /// A newer promotion of the same alias replaced it.
    Superseded,
}

/// The decision of one policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DecisionKind {
    /// The policy lets the promotion proceed.
    Allow,
    /// The policy stops the promotion.
    Deny,
    /// The policy waits for approvals.
    Pending,
}

/// The decision of one policy on a promotion.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PolicyDecisionView {
    /// The policy as `name@version`, or as attached when it could not be found.
    pub plugin: String,
    /// SHA-256 of the policy's component; empty when the plugin was not found.
    pub digest: String,
    /// The decision.
    pub decision: DecisionKind,
    /// Why, in the policy's words or the host's when the policy failed.
    pub reason: String,
}

/// Approvals a policy still waits for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct NeededApprovals {
    /// The policy as `name@version`.
    pub plugin: String,
    /// How many more approvals it needs.
    pub count: u32,
    /// The lowest role an approver must hold.
    pub role: String,
    /// The approvers that count and the reason.
    pub reason: String,
}

/// An approval given to a promotion.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ApprovalView {
    /// User or API token name of the approver.
    pub approver: String,
    /// The approver's role when approving.
    pub role: String,
    /// Free text the approver gave.
    pub comment: String,
    /// Time of the approval, in milliseconds since the Unix epoch.
    pub created_at: i64,
}

/// A request to point an alias at a version, with the decisions made on it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PromotionView {
    /// Row id.
    pub id: i64,
    /// The registered model.
    pub model: String,
    /// The version to promote.
    pub version: u64,
    /// The alias to move.
    pub alias: String,
    /// The user or API token name that requested the promotion.
    pub requester: String,
    /// Lifecycle state.
    pub status: PromotionStatus,
    /// The decisions of the latest evaluation, in attachment order. Empty when no policy is
    /// attached, and for promotions read back from a listing (the audit log has them).
    pub decisions: Vec<PolicyDecisionView>,
    /// Approvals still needed, one entry per policy that waits.
    pub needed: Vec<NeededApprovals>,
    /// Approvals given so far, oldest first.
    pub approvals: Vec<ApprovalView>,
    /// The reason the promotion was denied or superseded.
    pub reason: Option<String>,
    /// Creation time, in milliseconds since the Unix epoch.
    pub created_at: i64,
    /// Time the promotion completed, was denied or was superseded.
    pub decided_at: Option<i64>,
}

/// One entry of the append-only audit log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AuditEntry {
    /// Position in the log; later entries have higher numbers.
    pub seq: i64,
    /// Time of the entry, in milliseconds since the Unix epoch.
    pub at: i64,
    /// User or API token name that acted.
    pub actor: String,
    /// The action, such as `alias.moved`.
    pub action: String,
    /// Name of the registered model, if the entry concerns one.
    pub model: Option<String>,
    /// The version concerned, if any.
    pub version: Option<i64>,
    /// The alias concerned, if any.
    pub alias: Option<String>,
    /// The promotion concerned, if any.
    pub promotion_id: Option<i64>,
    /// Details of the action, such as the versions an alias moved between.
    #[schema(value_type = Object)]
    pub detail: serde_json::Value,
}
