//! Governance: metric validators, promotion policies, the model registry and approvals.
//!
//! [`Gates`] ties the store and the plugin runtime together. Validators judge runs, and their
//! checks are recorded. The versions of a registered model point at artifacts of runs. Moving
//! an alias to a version is a promotion, which every policy attached to the alias must allow,
//! possibly after approvals. Every change lands in the store's append-only audit log.
//!
//! A broken policy never lets a model through: a policy that is missing, cannot be loaded,
//! traps, runs out of budget, returns an error or returns a malformed decision counts as a
//! deny that names the plugin and the cause.

mod error;
mod promote;
mod registry;
mod role;
mod run_data;
mod summary;
mod validate;
mod views;

pub use error::{GateError, GateErrorKind, SelfApprovalKind};
pub use promote::MAX_COMMENT_CHARS;
pub use registry::{ModelChange, NewModelRequest, NewVersion};
pub use role::Role;
pub use validate::ValidationOutcome;
pub use views::{
    ApprovalView, AuditEntry, CheckView, DecisionKind, ModelList, ModelView, NeededApprovals,
    PolicyDecisionView, PromotionStatus, PromotionView, ValidationRecord, VersionList, VersionView,
};

use crate::runtime::Runtime;
use crate::store::Store;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use utoipa::ToSchema;

/// The identity performing an operation, with its role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    /// User or API token name, recorded in the audit log.
    pub name: String,
    /// The role the actor holds.
    pub role: Role,
}

/// A validator or policy attached to a model, an alias or a pipeline, with its configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ValidatorSpec {
    /// The plugin as `name` (its highest version) or `name@version`. Attachments are stored as
    /// `name@version`, so a newer version of the plugin changes nothing until it is attached.
    pub plugin: String,
    /// Configuration, checked against the plugin's config schema.
    #[serde(default = "empty_config")]
    #[schema(value_type = Object)]
    pub config: serde_json::Value,
}

/// A policy attached to an alias; the same shape as a validator attachment.
pub type PolicySpec = ValidatorSpec;

fn empty_config() -> serde_json::Value {
    serde_json::Value::Object(serde_json::Map::new())
}

/// The cause of a validation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Trigger {
    /// The validators of a pipeline, after its run ended.
    Pipeline,
    /// The validators attached to a model, when a version was created.
    ModelVersion,
    /// A request to validate a run.
    Manual,
}

/// The governance operations over one store and one plugin runtime. Cloning is cheap.
#[derive(Clone)]
pub struct Gates {
    store: Store,
    runtime: Arc<Runtime>,
}

impl Gates {
    /// Combines the database and the plugin runtime.
    pub fn new(store: Store, runtime: Arc<Runtime>) -> Self {
        Self { store, runtime }
    }

    /// Returns the database.
    pub fn store(&self) -> &Store {
        &self.store
    }
}
