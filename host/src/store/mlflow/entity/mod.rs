//! sea-orm entities of the MLflow tables, one module per table.

pub mod dataset_input;
pub mod experiment;
pub mod experiment_tag;
pub mod logged_model;
pub mod logged_model_artifact;
pub mod logged_model_metric;
pub mod logged_model_param;
pub mod logged_model_tag;
pub mod run_model_link;
pub mod run_state;
