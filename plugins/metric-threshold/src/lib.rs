//! `metric-threshold` metric validator: compares the latest value of run metrics with fixed
//! thresholds, one check per rule such as `test_rmse <= 0.75` (grammar in [`rule`]).
//!
//! Build the component with `cargo xtask build-plugins`; run the unit tests natively with
//! `cd plugins && cargo test --target x86_64-unknown-linux-gnu -p metric-threshold`.

pub mod rule;

use rule::{Rule, parse_rule};
use runledger_sdk::{Check, Error, Result, RunSummary, Severity, Validator};
use serde::Deserialize;
use std::collections::BTreeSet;

/// The validator's configuration, as described by `config-schema` in `plugin.toml`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
struct Config {
    rules: Vec<String>,
    #[serde(default)]
    severity: SeverityName,
    #[serde(default)]
    missing: Missing,
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

/// The outcome of a rule on a metric that the run never logged.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Missing {
    /// The rule's check fails.
    #[default]
    Fail,
    /// The rule's check passes with a message that it was skipped.
    Skip,
}

/// The latest value of a metric and the step it was logged at.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Observation {
    /// The metric value; may be NaN or infinite.
    pub value: f64,
    /// The step the value was logged at.
    pub step: i64,
}

/// Parses every rule and rejects duplicates, because a check name must be unique within a
/// call. The error names the offending rule.
pub fn parse_rules(texts: &[String]) -> std::result::Result<Vec<Rule>, String> {
    if texts.is_empty() {
        return Err("`rules` is empty; give at least one rule such as `test_rmse <= 0.75`".into());
    }
    let mut seen = BTreeSet::new();
    let mut rules = Vec::with_capacity(texts.len());
    for text in texts {
        let rule = parse_rule(text)?;
        if !seen.insert(rule.text.clone()) {
            return Err(format!(
                "rule `{}` appears twice in `rules`; keep one",
                rule.text
            ));
        }
        rules.push(rule);
    }
    Ok(rules)
}

/// Judges `rule` against the run's latest value of its metric, or `None` when the run has no
/// such metric. Returns whether the check passed and its message.
pub fn judge(rule: &Rule, observation: Option<Observation>, missing: Missing) -> (bool, String) {
    let key = &rule.key;
    let symbol = rule.operator.symbol();
    let threshold = rule.threshold;
    let Some(Observation { value, step }) = observation else {
        return match missing {
            Missing::Fail => (
                false,
                format!("the run has no metric `{key}` to compare with {symbol} {threshold}"),
            ),
            Missing::Skip => (true, format!("skipped: the run has no metric `{key}`")),
        };
    };

    if value.is_nan() {
        return (
            false,
            format!("`{key}` is NaN at step {step}, and NaN fails every rule"),
        );
    }
    if rule.operator.holds(value, threshold) {
        (
            true,
            format!("`{key}` is {value} at step {step}, which is {symbol} {threshold}"),
        )
    } else {
        (
            false,
            format!(
                "`{key}` is {value} at step {step}, but the rule requires {symbol} {threshold}"
            ),
        )
    }
}

/// The `metric-threshold` validator.
pub struct MetricThreshold;

impl Validator for MetricThreshold {
    fn validate(run: RunSummary, config: serde_json::Value) -> Result<Vec<Check>> {
        let config: Config = runledger_sdk::config(config)?;
        let rules = parse_rules(&config.rules).map_err(Error::invalid_params)?;

        let checks = rules
            .iter()
            .map(|rule| {
                let observation = latest(&run, &rule.key);
                let (passed, message) = judge(rule, observation, config.missing);
                let severity = config.severity.into();
                if passed {
                    Check::pass(&rule.text, severity, message)
                } else {
                    Check::fail(&rule.text, severity, message)
                }
            })
            .collect();
        Ok(checks)
    }
}

fn latest(run: &RunSummary, key: &str) -> Option<Observation> {
    run.metrics
        .iter()
        .find(|metric| metric.key == key)
        .map(|metric| Observation {
            value: metric.value,
            step: metric.step,
        })
}

// Only the component exports the validator, so that native test builds link no exports.
#[cfg(target_arch = "wasm32")]
runledger_sdk::export_validator!(MetricThreshold);

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(text: &str) -> Rule {
        parse_rule(text).unwrap()
    }

    fn at_step(value: f64, step: i64) -> Option<Observation> {
        Some(Observation { value, step })
    }

    #[test]
    fn judge_fails_value_over_threshold() {
        let (passed, message) = judge(&rule("test_rmse <= 0.75"), at_step(0.81, 0), Missing::Fail);
        assert!(!passed);
        assert_eq!(
            message,
            "`test_rmse` is 0.81 at step 0, but the rule requires <= 0.75"
        );
    }

    #[test]
    fn judge_passes_value_within_threshold() {
        let (passed, message) = judge(&rule("test_r2 >= 0.25"), at_step(0.3173, 4), Missing::Fail);
        assert!(passed);
        assert_eq!(message, "`test_r2` is 0.3173 at step 4, which is >= 0.25");
    }

    #[test]
    fn judge_fails_nan_even_for_not_equal() {
        let (passed, message) = judge(&rule("loss != 0"), at_step(f64::NAN, 7), Missing::Fail);
        assert!(!passed);
        assert_eq!(message, "`loss` is NaN at step 7, and NaN fails every rule");
    }

    #[test]
    fn judge_compares_infinity() {
        let (passed, message) = judge(&rule("loss < 10"), at_step(f64::INFINITY, 2), Missing::Fail);
        assert!(!passed);
        assert!(message.contains("is inf at step 2"), "{message}");
    }

    #[test]
    fn judge_missing_metric_per_setting() {
        let rule = rule("`val loss` < 1");

        let (failed, message) = judge(&rule, None, Missing::Fail);
        assert!(!failed);
        assert_eq!(
            message,
            "the run has no metric `val loss` to compare with < 1"
        );

        let (skipped, message) = judge(&rule, None, Missing::Skip);
        assert!(skipped);
        assert_eq!(message, "skipped: the run has no metric `val loss`");
    }

    #[test]
    fn parse_rules_rejects_duplicates_and_empty_list() {
        let duplicate = vec!["a < 1".to_owned(), " a < 1".to_owned()];
        let message = parse_rules(&duplicate).unwrap_err();
        assert_eq!(message, "rule `a < 1` appears twice in `rules`; keep one");

        let message = parse_rules(&[]).unwrap_err();
        assert!(message.contains("`rules` is empty"), "{message}");
    }

    #[test]
    fn parse_rules_names_the_bad_rule() {
        let rules = vec!["a < 1".to_owned(), "b ~ 2".to_owned()];
        let message = parse_rules(&rules).unwrap_err();
        assert!(message.starts_with("rule `b ~ 2` is invalid"), "{message}");
    }
}
