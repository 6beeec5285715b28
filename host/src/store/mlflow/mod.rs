//! What the MLflow tracking protocol needs beyond runledger's own records: the lifecycle
//! (active or deleted) of experiments and runs, experiment tags, the datasets that runs
//! declare as inputs, writes to runs that have ended, which MLflow allows, and MLflow 3's
//! logged models with their params, tags, metric values, files and links to runs.
//!
//! An MLflow experiment is a runledger project and an MLflow run is a runledger run, so runs
//! logged over the MLflow protocol are ordinary runs. Params, tags, metrics and artifacts use
//! the same tables as every other run.

pub mod entity;

mod experiment_search;
mod experiments;
mod inputs;
mod logged_model_links;
mod logged_models;
mod registry_search;
mod runs;

pub use experiment_search::{ExperimentCondition, ExperimentKey, ExperimentSearch};
pub use experiments::Experiment;
pub use inputs::NewDatasetInput;
pub use logged_model_links::{
    MODEL_LINEAGE_NAMESPACE, ModelArtifact, NewModelMetric, RunModels, model_node,
};
pub use logged_models::{LoggedModel, LoggedModelError, LoggedModelStatus, NewLoggedModel};
pub use registry_search::{FoundVersion, RegistryCondition, RegistryKey, RegistrySearch};

/// Whether an MLflow experiment or run is in use or in the trash.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LifecycleStage {
    /// In use.
    Active,
    /// Deleted, and restorable.
    Deleted,
}

impl LifecycleStage {
    /// Returns the name MLflow uses: `active` or `deleted`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Deleted => "deleted",
        }
    }

    fn parse(text: &str) -> Self {
        if text == Self::Deleted.as_str() {
            Self::Deleted
        } else {
            Self::Active
        }
    }
}
