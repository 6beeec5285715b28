//! The error type of the governance operations.

use super::Role;
use crate::store::StoreError;

/// The relation of a rejected approver to the promotion.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SelfApprovalKind {
    /// The approver asked for the promotion.
    Requester,
    /// The approver started the run that produced the version.
    RunAuthor,
}

impl std::fmt::Display for SelfApprovalKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Requester => "requested the promotion",
            Self::RunAuthor => "started the run that produced the version",
        })
    }
}

/// The class of a [`GateError`], which fixes the HTTP status of the server's response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GateErrorKind {
    /// The request is invalid (400).
    Invalid,
    /// The actor may not do this (403).
    Forbidden,
    /// A model, version, run, alias or promotion does not exist (404).
    NotFound,
    /// The request contradicts recorded state (409).
    Conflict,
    /// The database or the host failed (500).
    Internal,
}

/// Errors of [`Gates`](super::Gates) operations.
#[derive(Debug, thiserror::Error)]
pub enum GateError {
    /// The database failed, or a model, version, run or alias was not found.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A validator or policy attachment names a plugin that is missing, of the wrong kind or
    /// configured against its schema.
    #[error("{list}[{index}] (plugin `{plugin}`): {message}")]
    InvalidSpec {
        /// `validators` or `policies`.
        list: &'static str,
        /// Position of the attachment in the list, from 0.
        index: usize,
        /// The plugin as given.
        plugin: String,
        /// The problem and how to fix it.
        message: String,
    },
    /// A value of the request is unusable, such as an empty alias.
    #[error("invalid {field} `{value}`: {message}")]
    InvalidInput {
        /// The field, such as `alias`.
        field: &'static str,
        /// The value given.
        value: String,
        /// The expected form.
        message: String,
    },
    /// The artifact a version is to be created from is not among the run's outputs.
    #[error(
        "run {run_id} has no output artifact `{artifact}`; give `STEP.OUTPUT`, a run-level \
         output name or a digest the run produced; the run's outputs are: {}",
        available_names(.available)
    )]
    ArtifactNotFound {
        /// The run.
        run_id: String,
        /// The name or digest given.
        artifact: String,
        /// The names the run's outputs can be given by.
        available: Vec<String>,
    },
    /// The actor's role is below the one the operation needs.
    #[error("{actor} has role {role}, but {action} needs role {needed} or higher")]
    RoleTooLow {
        /// Who tried.
        actor: String,
        /// The actor's role.
        role: Role,
        /// The lowest role allowed.
        needed: Role,
        /// The attempted action, such as `approving a promotion`.
        action: &'static str,
    },
    /// The approver is the requester of the promotion or the author of the run.
    #[error(
        "{approver} {kind}, so {approver} cannot approve the promotion of {model} version \
         {version} to `{alias}`; ask another approver"
    )]
    SelfApproval {
        /// The rejected approver.
        approver: String,
        /// The reason for the rejection.
        kind: SelfApprovalKind,
        /// The registered model.
        model: String,
        /// The version.
        version: u64,
        /// The alias.
        alias: String,
    },
    /// The approver already approved this promotion.
    #[error(
        "{approver} already approved the promotion of {model} version {version} to `{alias}`; \
         each approver counts once"
    )]
    DuplicateApproval {
        /// The approver who approved twice.
        approver: String,
        /// The registered model.
        model: String,
        /// The version.
        version: u64,
        /// The alias.
        alias: String,
    },
    /// No pending promotion exists to approve.
    #[error(
        "no pending promotion of {model} version {version} to `{alias}`; request one first \
         (it may also have completed, been denied or been superseded)"
    )]
    NoPendingPromotion {
        /// The registered model.
        model: String,
        /// The version.
        version: u64,
        /// The alias.
        alias: String,
    },
    /// A blocking task of the host failed, such as a plugin call thread that panicked.
    #[error("{0}")]
    Host(String),
}

impl GateError {
    /// Returns the class of the error, from which the server picks the HTTP status.
    pub fn kind(&self) -> GateErrorKind {
        match self {
            Self::Store(error) => store_error_kind(error),
            Self::InvalidSpec { .. } | Self::InvalidInput { .. } => GateErrorKind::Invalid,
            Self::ArtifactNotFound { .. } => GateErrorKind::Invalid,
            Self::RoleTooLow { .. } | Self::SelfApproval { .. } => GateErrorKind::Forbidden,
            Self::DuplicateApproval { .. } | Self::NoPendingPromotion { .. } => {
                GateErrorKind::Conflict
            }
            Self::Host(_) => GateErrorKind::Internal,
        }
    }

    /// Builds an [`GateError::InvalidInput`].
    pub(crate) fn invalid(field: &'static str, value: &str, message: impl Into<String>) -> Self {
        Self::InvalidInput {
            field,
            value: value.to_owned(),
            message: message.into(),
        }
    }
}

fn store_error_kind(error: &StoreError) -> GateErrorKind {
    match error {
        StoreError::RunNotFound(_)
        | StoreError::ModelNotFound { .. }
        | StoreError::ModelVersionNotFound { .. }
        | StoreError::PromotionNotFound { .. }
        | StoreError::AliasNotFound { .. } => GateErrorKind::NotFound,
        StoreError::ModelNameTaken { .. }
        | StoreError::ApprovalTaken { .. }
        | StoreError::PromotionNotPending { .. } => GateErrorKind::Conflict,
        StoreError::InvalidDigest(_)
        | StoreError::InvalidName { .. }
        | StoreError::InvalidPageToken(_) => GateErrorKind::Invalid,
        _ => GateErrorKind::Internal,
    }
}

fn available_names(names: &[String]) -> String {
    if names.is_empty() {
        return "none".to_owned();
    }
    names.join(", ")
}
