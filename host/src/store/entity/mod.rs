//! sea-orm entities, one module per table.
//!
//! Timestamps are `i64` milliseconds since the Unix epoch (UTC) in every table, so they compare
//! and sort the same way on SQLite and PostgreSQL. Run and step-run ids are UUIDv7 strings,
//! which sort by creation time.

pub mod alias_policy;
pub mod api_token;
pub mod approval;
pub mod artifact;
pub mod audit_entry;
pub mod dataset;
pub mod environment;
pub mod external_step;
pub mod idempotency_key;
pub mod latest_metric;
pub mod lineage_edge;
pub mod metric;
pub mod model_alias;
pub mod model_tag;
pub mod model_validator;
pub mod model_version;
pub mod model_version_tag;
pub mod openlineage_dataset;
pub mod openlineage_run;
pub mod pipeline;
pub mod plugin;
pub mod project;
pub mod promotion;
pub mod registered_model;
pub mod run;
pub mod run_artifact;
pub mod run_param;
pub mod run_tag;
pub mod step_log;
pub mod step_run;
pub mod validation;
pub mod validation_check;

/// Error of parsing one of the text enums (statuses, kinds, directions) from a string.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {kind} `{value}`: expected one of {expected}")]
pub struct ParseEnumError {
    /// Name of the expected type, such as `run status`.
    pub kind: &'static str,
    /// The rejected text.
    pub value: String,
    /// The accepted values, comma separated.
    pub expected: String,
}

/// Implements `Display` and `FromStr` for an enum stored as text, using its database value.
macro_rules! text_enum {
    ($enum:ty, $kind:literal) => {
        impl std::fmt::Display for $enum {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&sea_orm::ActiveEnum::to_value(self))
            }
        }

        impl std::str::FromStr for $enum {
            type Err = $crate::store::entity::ParseEnumError;

            fn from_str(text: &str) -> Result<Self, Self::Err> {
                let values = || {
                    <Self as sea_orm::Iterable>::iter().map(|v| sea_orm::ActiveEnum::to_value(&v))
                };
                <Self as sea_orm::Iterable>::iter()
                    .find(|v| sea_orm::ActiveEnum::to_value(v) == text)
                    .ok_or_else(|| $crate::store::entity::ParseEnumError {
                        kind: $kind,
                        value: text.to_owned(),
                        expected: values().collect::<Vec<_>>().join(", "),
                    })
            }
        }
    };
}

use text_enum;
