//! `finite-metrics` metric validator: reads the whole logged series of each metric through
//! `run-data` and fails every metric that has a NaN or infinite point, one check per key.
//!
//! Build the component with `cargo xtask build-plugins`; run the unit tests natively with
//! `cd plugins && cargo test --target x86_64-unknown-linux-gnu -p finite-metrics`.

use runledger_sdk::{Check, Error, Result, RunSummary, Severity, Validator, run_data};
use serde::Deserialize;

/// The maximum number of checks the host accepts from one validator call.
const MAX_CHECKS: usize = 1000;

/// The validator's configuration, as described by `config-schema` in `plugin.toml`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
struct Config {
    keys: Option<Vec<String>>,
    #[serde(default)]
    severity: SeverityName,
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

/// Counts of the non-finite points of one series.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SeriesSummary {
    /// Number of points.
    pub points: usize,
    /// Number of NaN points.
    pub nan: usize,
    /// Number of `+inf` points.
    pub positive_infinity: usize,
    /// Number of `-inf` points.
    pub negative_infinity: usize,
    /// The first non-finite point in series order: its value and step.
    pub first: Option<(f64, i64)>,
}

impl SeriesSummary {
    /// Summarizes the `(value, step)` points of a series, in series order.
    pub fn of(points: impl IntoIterator<Item = (f64, i64)>) -> Self {
        let mut summary = Self::default();
        for (value, step) in points {
            summary.points += 1;
            if value.is_finite() {
                continue;
            }
            if value.is_nan() {
                summary.nan += 1;
            } else if value > 0.0 {
                summary.positive_infinity += 1;
            } else {
                summary.negative_infinity += 1;
            }
            summary.first.get_or_insert((value, step));
        }
        summary
    }

    /// Number of NaN and infinite points.
    pub fn non_finite(&self) -> usize {
        self.nan + self.positive_infinity + self.negative_infinity
    }
}

/// Judges the series of metric `key`. Returns whether the check passed and its message.
pub fn judge(key: &str, summary: &SeriesSummary) -> (bool, String) {
    let Some((value, step)) = summary.first else {
        let points = summary.points;
        return (true, format!("all {points} points of `{key}` are finite"));
    };
    let message = format!(
        "`{key}` has {} non-finite points out of {} ({} NaN, {} inf, {} -inf); the first is {} at step {step}",
        summary.non_finite(),
        summary.points,
        summary.nan,
        summary.positive_infinity,
        summary.negative_infinity,
        value,
    );
    (false, message)
}

/// Returns the keys to check: the configured ones in their order, else every metric key of the
/// run, sorted and each once.
fn keys_to_check(run: &RunSummary, configured: Option<Vec<String>>) -> Vec<String> {
    if let Some(keys) = configured {
        return keys;
    }
    let mut keys: Vec<String> = run
        .metrics
        .iter()
        .map(|metric| metric.key.clone())
        .collect();
    keys.sort();
    keys.dedup();
    keys
}

/// Reads and judges the series of `key`; a key the run never logged fails.
fn check_key(key: &str) -> Result<(bool, String)> {
    match run_data::metric_series(key) {
        Ok(series) => {
            let summary = SeriesSummary::of(series.iter().map(|point| (point.value, point.step)));
            Ok(judge(key, &summary))
        }
        Err(Error::NotFound(_)) => Ok((false, format!("the run has no metric `{key}`"))),
        Err(error) => Err(Error::other(format!(
            "cannot read the series of metric `{key}`: {error}"
        ))),
    }
}

/// The `finite-metrics` validator.
pub struct FiniteMetrics;

impl Validator for FiniteMetrics {
    fn validate(run: RunSummary, config: serde_json::Value) -> Result<Vec<Check>> {
        let config: Config = runledger_sdk::config(config)?;
        let severity: Severity = config.severity.into();

        let keys = keys_to_check(&run, config.keys);
        if keys.len() > MAX_CHECKS {
            return Err(Error::invalid_params(format!(
                "the run has {} metric keys, more than the {MAX_CHECKS} checks a validator may \
                 return; list the keys to check in `keys`",
                keys.len()
            )));
        }
        if keys.is_empty() {
            let message = "the run logged no metrics, so there is nothing to check";
            return Ok(vec![Check::pass("metrics", severity, message)]);
        }

        let mut checks = Vec::with_capacity(keys.len());
        for key in &keys {
            let (passed, message) = check_key(key)?;
            checks.push(if passed {
                Check::pass(key, severity, message)
            } else {
                Check::fail(key, severity, message)
            });
        }
        Ok(checks)
    }
}

// Only the component exports the validator, so that native test builds link no exports.
#[cfg(target_arch = "wasm32")]
runledger_sdk::export_validator!(FiniteMetrics);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_counts_each_kind() {
        let points = [
            (1.0, 0),
            (f64::NAN, 3),
            (f64::INFINITY, 4),
            (f64::NAN, 5),
            (f64::NEG_INFINITY, 6),
            (0.5, 7),
        ];
        let summary = SeriesSummary::of(points);
        assert_eq!(summary.points, 6);
        assert_eq!(summary.nan, 2);
        assert_eq!(summary.positive_infinity, 1);
        assert_eq!(summary.negative_infinity, 1);
        assert_eq!(summary.non_finite(), 4);
        let (value, step) = summary.first.unwrap();
        assert!(value.is_nan());
        assert_eq!(step, 3);
    }

    #[test]
    fn judge_fails_with_first_step() {
        let summary = SeriesSummary::of([(0.9, 0), (f64::INFINITY, 12), (f64::NAN, 13)]);
        let (passed, message) = judge("loss", &summary);
        assert!(!passed);
        assert_eq!(
            message,
            "`loss` has 2 non-finite points out of 3 (1 NaN, 1 inf, 0 -inf); the first is inf at step 12"
        );
    }

    #[test]
    fn judge_passes_finite_series() {
        let summary = SeriesSummary::of([(0.9, 0), (f64::MAX, 1), (-0.0, 2)]);
        let (passed, message) = judge("loss", &summary);
        assert!(passed);
        assert_eq!(message, "all 3 points of `loss` are finite");
    }

    #[test]
    fn judge_passes_empty_series() {
        let (passed, message) = judge("loss", &SeriesSummary::of([]));
        assert!(passed);
        assert_eq!(message, "all 0 points of `loss` are finite");
    }
}
