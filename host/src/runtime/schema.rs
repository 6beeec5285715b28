//! Validation of step params and of validator and policy configurations against a plugin's JSON
//! Schema.

use serde_json::Value;
use std::fmt;

/// One way params break their schema.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SchemaViolation {
    /// JSON pointer to the offending value, `/` for the params object itself.
    pub path: String,
    /// The schema keyword the value breaks, such as `minimum` or `required`.
    pub rule: String,
    /// What is wrong, in the validator's words.
    pub message: String,
}

impl fmt::Display for SchemaViolation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "at {}: {} (rule `{}`)",
            self.path, self.message, self.rule
        )
    }
}

/// Params that fail a plugin's schema, with every violation found.
#[derive(Debug, Clone, thiserror::Error)]
#[error("params of plugin {plugin} are invalid: {}", join(.violations))]
pub struct InvalidParams {
    /// `name@version` of the plugin.
    pub plugin: String,
    /// Every violation, in the validator's order.
    pub violations: Vec<SchemaViolation>,
}

/// A validator's or policy's configuration that fails the plugin's config schema, with every
/// violation found.
#[derive(Debug, Clone, thiserror::Error)]
#[error("configuration of plugin {plugin} is invalid: {}", join(.violations))]
pub struct InvalidConfig {
    /// `name@version` of the plugin.
    pub plugin: String,
    /// Every violation, in the validator's order.
    pub violations: Vec<SchemaViolation>,
}

impl From<InvalidParams> for InvalidConfig {
    fn from(invalid: InvalidParams) -> Self {
        Self {
            plugin: invalid.plugin,
            violations: invalid.violations,
        }
    }
}

fn join(violations: &[SchemaViolation]) -> String {
    violations
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// Compiles a JSON Schema, rejecting documents that are not valid schemas.
pub(crate) fn compile_schema(schema: &Value) -> Result<jsonschema::Validator, String> {
    jsonschema::validator_for(schema).map_err(|error| error.to_string())
}

/// Checks `params` against a compiled schema.
pub(crate) fn check_params(
    plugin: &str,
    validator: &jsonschema::Validator,
    params: &Value,
) -> Result<(), InvalidParams> {
    let violations: Vec<SchemaViolation> = validator
        .iter_errors(params)
        .map(|error| {
            let path = error.instance_path().to_string();
            SchemaViolation {
                path: if path.is_empty() { "/".into() } else { path },
                rule: error.kind().keyword().to_owned(),
                message: error.to_string(),
            }
        })
        .collect();
    if violations.is_empty() {
        Ok(())
    } else {
        Err(InvalidParams {
            plugin: plugin.to_owned(),
            violations,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn schema() -> jsonschema::Validator {
        compile_schema(&json!({
            "type": "object",
            "required": ["alpha"],
            "additionalProperties": false,
            "properties": {
                "alpha": { "type": "number", "minimum": 0 },
                "name": { "type": "string" }
            }
        }))
        .unwrap()
    }

    #[test]
    fn accepts_valid_params() {
        assert!(check_params("p@1.0.0", &schema(), &json!({ "alpha": 0.5 })).is_ok());
    }

    #[test]
    fn names_path_and_rule_of_each_violation() {
        let error =
            check_params("p@1.0.0", &schema(), &json!({ "alpha": -1, "name": 3 })).unwrap_err();

        let rules: Vec<(&str, &str)> = error
            .violations
            .iter()
            .map(|v| (v.path.as_str(), v.rule.as_str()))
            .collect();
        assert!(rules.contains(&("/alpha", "minimum")), "{error}");
        assert!(rules.contains(&("/name", "type")), "{error}");
    }

    #[test]
    fn reports_missing_required_at_root() {
        let error = check_params("p@1.0.0", &schema(), &json!({})).unwrap_err();

        assert_eq!(error.violations[0].path, "/");
        assert_eq!(error.violations[0].rule, "required");
        assert!(error.to_string().contains("alpha"), "{error}");
    }
}
