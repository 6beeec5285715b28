//! `baseline-compare` metric validator: compares run metrics with those of the run behind a
//! registered model's alias, such as `production`, and fails a metric that regressed by more
//! than its margin. It reads the baseline through `run-data.alias-run`.
//!
//! Build the component with `cargo xtask build-plugins`; run the unit tests natively with
//! `cd plugins && cargo test --target x86_64-unknown-linux-gnu -p baseline-compare`.

pub mod compare;

use compare::{Baseline, MetricRule, MissingBaseline, compare};
use runledger_sdk::{Check, Error, Result, RunSummary, Severity, Validator, run_data};
use serde::Deserialize;
use std::collections::BTreeSet;

/// The validator's configuration, as described by `config-schema` in `plugin.toml`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
struct Config {
    model: String,
    alias: String,
    metrics: Vec<MetricRule>,
    #[serde(default)]
    severity: SeverityName,
    #[serde(default)]
    missing_baseline: MissingBaseline,
}

#[derive(Debug, Clone, Copy, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
enum SeverityName {
    #[default]
    Blocking,
    Warning,
}

impl From<SeverityName> for Severity {
    fn from(name: SeverityName) -> Self {
        match name {
            SeverityName::Blocking => Severity::Blocking,
            SeverityName::Warning => Severity::Warning,
        }
    }
}

impl Config {
    /// Checks what the schema cannot: unique keys and finite margins.
    fn check(&self) -> std::result::Result<(), String> {
        let mut keys = BTreeSet::new();
        for rule in &self.metrics {
            if !keys.insert(rule.key.as_str()) {
                return Err(format!(
                    "metric `{}` appears twice in `metrics`; keep one",
                    rule.key
                ));
            }
            if !rule.max_regression.is_finite() || rule.max_regression < 0.0 {
                return Err(format!(
                    "max-regression of metric `{}` is {}; give a finite number of at least 0",
                    rule.key, rule.max_regression
                ));
            }
        }
        Ok(())
    }
}

/// Returns the name of the check that compares metric `key` with `alias`.
pub fn check_name(key: &str, alias: &str) -> String {
    format!("{key} vs {alias}")
}

/// Returns the single check made when the model has no such alias yet.
fn no_baseline(config: &Config, severity: Severity) -> Check {
    let message = format!(
        "model `{}` has no alias `{}` yet, so there is no baseline to compare with",
        config.model, config.alias
    );
    match config.missing_baseline {
        MissingBaseline::Pass => Check::pass("baseline", severity, message),
        MissingBaseline::Fail => Check::fail("baseline", severity, message),
    }
}

/// Reads the run behind the alias. An unknown model is a configuration error.
fn read_baseline(config: &Config) -> Result<Option<RunSummary>> {
    match run_data::alias_run(&config.model, &config.alias) {
        Ok(run) => Ok(run),
        Err(Error::NotFound(_)) => Err(Error::invalid_params(format!(
            "registered model `{}` not found; set `model` to the name of a registered model",
            config.model
        ))),
        Err(error) => Err(Error::other(format!(
            "cannot read the run behind alias `{}` of model `{}`: {error}",
            config.alias, config.model
        ))),
    }
}

/// The `baseline-compare` validator.
pub struct BaselineCompare;

impl Validator for BaselineCompare {
    fn validate(run: RunSummary, config: serde_json::Value) -> Result<Vec<Check>> {
        let config: Config = runledger_sdk::config(config)?;
        config.check().map_err(Error::invalid_params)?;
        let severity: Severity = config.severity.into();

        let Some(baseline_run) = read_baseline(&config)? else {
            return Ok(vec![no_baseline(&config, severity)]);
        };
        let baseline = Baseline {
            model: &config.model,
            alias: &config.alias,
            run_id: &baseline_run.run_id,
        };

        let checks = config
            .metrics
            .iter()
            .map(|rule| {
                let candidate = run.metric(&rule.key);
                let baseline_value = baseline_run.metric(&rule.key);
                let (passed, message) = compare(
                    rule,
                    candidate,
                    baseline_value,
                    &baseline,
                    config.missing_baseline,
                );
                let name = check_name(&rule.key, &config.alias);
                if passed {
                    Check::pass(name, severity, message)
                } else {
                    Check::fail(name, severity, message)
                }
            })
            .collect();
        Ok(checks)
    }
}

// Only the component exports the validator, so that native test builds link no exports.
#[cfg(target_arch = "wasm32")]
runledger_sdk::export_validator!(BaselineCompare);

#[cfg(test)]
mod tests {
    use super::*;

    fn config(json: serde_json::Value) -> Config {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn config_defaults() {
        let config = config(serde_json::json!({
            "model": "m", "alias": "production",
            "metrics": [{"key": "test_rmse", "better": "lower"}],
        }));
        assert_eq!(config.missing_baseline, MissingBaseline::Pass);
        assert_eq!(config.metrics[0].max_regression, 0.0);
        assert!(!config.metrics[0].relative);
        assert!(config.check().is_ok());
    }

    #[test]
    fn config_rejects_duplicate_keys() {
        let config = config(serde_json::json!({
            "model": "m", "alias": "production",
            "metrics": [
                {"key": "test_rmse", "better": "lower"},
                {"key": "test_rmse", "better": "higher"},
            ],
        }));
        assert_eq!(
            config.check().unwrap_err(),
            "metric `test_rmse` appears twice in `metrics`; keep one"
        );
    }

    #[test]
    fn config_rejects_negative_margin() {
        let config = config(serde_json::json!({
            "model": "m", "alias": "production",
            "metrics": [{"key": "r2", "better": "higher", "max-regression": -0.5}],
        }));
        let message = config.check().unwrap_err();
        assert!(
            message.contains("max-regression of metric `r2` is -0.5"),
            "{message}"
        );
    }

    #[test]
    fn check_name_joins_key_and_alias() {
        assert_eq!(
            check_name("test_rmse", "production"),
            "test_rmse vs production"
        );
    }
}
