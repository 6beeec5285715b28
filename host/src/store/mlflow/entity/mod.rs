//! sea-orm entities of the MLflow tables, one module per table.

pub mod dataset_input;
pub mod experiment;
pub mod experiment_tag;
pub mod run_state;
