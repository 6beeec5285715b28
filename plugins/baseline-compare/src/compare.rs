//! Comparing one metric of a run with the same metric of the baseline run.

use serde::Deserialize;

/// The direction in which a metric improves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Better {
    /// Smaller values are better, as for an error such as RMSE.
    Lower,
    /// Larger values are better, as for R-squared or accuracy.
    Higher,
}

/// The outcome of a comparison without a usable baseline value.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MissingBaseline {
    /// The check passes with a message that there was nothing to compare with.
    #[default]
    Pass,
    /// The check fails.
    Fail,
}

/// One configured metric comparison.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct MetricRule {
    /// The metric key.
    pub key: String,
    /// The direction in which the metric improves.
    pub better: Better,
    /// The largest regression allowed against the baseline: an absolute amount, or a fraction
    /// of the baseline value when `relative` is set.
    #[serde(default)]
    pub max_regression: f64,
    /// Whether `max_regression` is a fraction of the baseline's absolute value.
    #[serde(default)]
    pub relative: bool,
}

impl MetricRule {
    /// Returns the largest regression allowed against `baseline`.
    pub fn allowed_regression(&self, baseline: f64) -> f64 {
        if self.relative {
            self.max_regression * baseline.abs()
        } else {
            self.max_regression
        }
    }

    /// Describes the margin, such as `0.05` or `5% of the baseline (0.035)`.
    fn describe_margin(&self, baseline: f64) -> String {
        if self.relative {
            let percent = format_number(self.max_regression * 100.0);
            let allowed = format_number(self.allowed_regression(baseline));
            format!("{percent}% of the baseline ({allowed})")
        } else {
            format_number(self.max_regression)
        }
    }
}

/// The baseline a run is compared with, for messages.
#[derive(Debug, Clone, PartialEq)]
pub struct Baseline<'a> {
    /// The registered model.
    pub model: &'a str,
    /// The alias whose version is the baseline.
    pub alias: &'a str,
    /// The id of the run behind that version.
    pub run_id: &'a str,
}

impl Baseline<'_> {
    fn describe(&self) -> String {
        format!(
            "`{}` of model `{}` (run {})",
            self.alias, self.model, self.run_id
        )
    }
}

/// Compares the run's value of `rule.key` with the baseline's. `None` means the run has no
/// such metric. Returns whether the check passed and its message.
pub fn compare(
    rule: &MetricRule,
    candidate: Option<f64>,
    baseline_value: Option<f64>,
    baseline: &Baseline,
    missing: MissingBaseline,
) -> (bool, String) {
    let key = &rule.key;
    let candidate = match candidate {
        None => {
            return (
                false,
                format!("the run has no metric `{key}` to compare with the baseline"),
            );
        }
        Some(value) if value.is_nan() => return (false, format!("`{key}` is NaN in the run")),
        Some(value) => value,
    };
    let Some(baseline_value) = baseline_value.filter(|value| !value.is_nan()) else {
        let found = if baseline_value.is_some() {
            "NaN"
        } else {
            "missing"
        };
        let message = format!(
            "`{key}` is {candidate} in the run but {found} in the baseline {}, so there is nothing to compare with",
            baseline.describe()
        );
        return (missing == MissingBaseline::Pass, message);
    };

    let regression = regression(rule.better, candidate, baseline_value);
    let allowed = rule.allowed_regression(baseline_value);
    let passed = regression <= allowed;
    let message = format!(
        "`{key}` is {candidate} in the run and {baseline_value} in the baseline {}; {}, so the run is {}, {} the allowed regression of {}",
        baseline.describe(),
        match rule.better {
            Better::Lower => "lower is better",
            Better::Higher => "higher is better",
        },
        describe_change(regression),
        if passed { "within" } else { "more than" },
        rule.describe_margin(baseline_value),
    );
    (passed, message)
}

/// Returns how much worse `candidate` is than `baseline`: positive when worse, negative when
/// better.
fn regression(better: Better, candidate: f64, baseline: f64) -> f64 {
    if candidate == baseline {
        // Also covers two equal infinities, whose difference is NaN.
        return 0.0;
    }
    match better {
        Better::Lower => candidate - baseline,
        Better::Higher => baseline - candidate,
    }
}

fn describe_change(regression: f64) -> String {
    if regression > 0.0 {
        format!("worse by {}", format_number(regression))
    } else if regression < 0.0 {
        format!("better by {}", format_number(-regression))
    } else {
        "as good as the baseline".to_owned()
    }
}

/// Formats a computed number with 6 significant digits, so that a difference such as
/// `0.81 - 0.7` reads `0.11` rather than `0.11000000000000004`.
pub fn format_number(value: f64) -> String {
    if value == 0.0 || !value.is_finite() {
        return value.to_string();
    }
    let magnitude = value.abs().log10().floor();
    if !(-4.0..15.0).contains(&magnitude) {
        return format!("{value:.5e}");
    }
    let decimals = (5.0 - magnitude).max(0.0) as usize;
    let text = format!("{value:.decimals$}");
    if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.').to_owned()
    } else {
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASELINE: Baseline<'static> = Baseline {
        model: "wine-quality",
        alias: "production",
        run_id: "run-1",
    };

    fn rule(better: Better, max_regression: f64, relative: bool) -> MetricRule {
        MetricRule {
            key: "test_rmse".into(),
            better,
            max_regression,
            relative,
        }
    }

    #[test]
    fn lower_is_better_fails_beyond_absolute_margin() {
        let rule = rule(Better::Lower, 0.05, false);
        let (passed, message) = compare(
            &rule,
            Some(0.81),
            Some(0.7),
            &BASELINE,
            MissingBaseline::Pass,
        );
        assert!(!passed);
        assert_eq!(
            message,
            "`test_rmse` is 0.81 in the run and 0.7 in the baseline `production` of model \
             `wine-quality` (run run-1); lower is better, so the run is worse by 0.11, more than \
             the allowed regression of 0.05"
        );
    }

    #[test]
    fn lower_is_better_passes_within_margin() {
        let rule = rule(Better::Lower, 0.05, false);
        let (passed, message) = compare(
            &rule,
            Some(0.73),
            Some(0.7),
            &BASELINE,
            MissingBaseline::Pass,
        );
        assert!(passed);
        assert!(
            message.contains("worse by 0.03, within the allowed regression of 0.05"),
            "{message}"
        );
    }

    #[test]
    fn higher_is_better_passes_improvement() {
        let rule = rule(Better::Higher, 0.0, false);
        let (passed, message) = compare(
            &rule,
            Some(0.4),
            Some(0.3),
            &BASELINE,
            MissingBaseline::Pass,
        );
        assert!(passed);
        assert!(
            message.contains("higher is better, so the run is better by 0.1"),
            "{message}"
        );
    }

    #[test]
    fn higher_is_better_fails_drop() {
        let rule = rule(Better::Higher, 0.0, false);
        let (passed, message) = compare(
            &rule,
            Some(0.29),
            Some(0.3),
            &BASELINE,
            MissingBaseline::Pass,
        );
        assert!(!passed);
        assert!(
            message.contains("worse by 0.01, more than the allowed regression of 0"),
            "{message}"
        );
    }

    #[test]
    fn relative_margin_scales_with_baseline() {
        let rule = rule(Better::Lower, 0.05, true);
        let (passed, message) = compare(
            &rule,
            Some(0.74),
            Some(0.7),
            &BASELINE,
            MissingBaseline::Pass,
        );
        assert!(!passed);
        assert!(message.contains("5% of the baseline (0.035)"), "{message}");

        let (passed, _) = compare(
            &rule,
            Some(0.73),
            Some(0.7),
            &BASELINE,
            MissingBaseline::Pass,
        );
        assert!(passed);
    }

    #[test]
    fn equal_values_pass_with_zero_margin() {
        let rule = rule(Better::Lower, 0.0, false);
        let (passed, message) = compare(
            &rule,
            Some(0.7),
            Some(0.7),
            &BASELINE,
            MissingBaseline::Pass,
        );
        assert!(passed);
        assert!(message.contains("as good as the baseline"), "{message}");

        let infinite = compare(
            &rule,
            Some(f64::INFINITY),
            Some(f64::INFINITY),
            &BASELINE,
            MissingBaseline::Pass,
        );
        assert!(infinite.0);
    }

    #[test]
    fn missing_or_nan_candidate_fails() {
        let rule = rule(Better::Lower, 1.0, false);
        let (passed, message) = compare(&rule, None, Some(0.7), &BASELINE, MissingBaseline::Pass);
        assert!(!passed);
        assert_eq!(
            message,
            "the run has no metric `test_rmse` to compare with the baseline"
        );

        let (passed, message) = compare(
            &rule,
            Some(f64::NAN),
            Some(0.7),
            &BASELINE,
            MissingBaseline::Pass,
        );
        assert!(!passed);
        assert_eq!(message, "`test_rmse` is NaN in the run");
    }

    #[test]
    fn missing_baseline_value_follows_setting() {
        let rule = rule(Better::Lower, 0.0, false);
        let (passed, message) = compare(&rule, Some(0.7), None, &BASELINE, MissingBaseline::Pass);
        assert!(passed);
        assert!(
            message.contains("missing in the baseline `production`"),
            "{message}"
        );

        let (passed, message) = compare(
            &rule,
            Some(0.7),
            Some(f64::NAN),
            &BASELINE,
            MissingBaseline::Fail,
        );
        assert!(!passed);
        assert!(message.contains("NaN in the baseline"), "{message}");
    }

    #[test]
    fn format_number_rounds_to_six_digits() {
        assert_eq!(format_number(0.81 - 0.7), "0.11");
        assert_eq!(format_number(0.0), "0");
        assert_eq!(format_number(1234567.0), "1234567");
        assert_eq!(format_number(-0.0351234567), "-0.0351235");
        assert_eq!(format_number(0.00001234), "1.23400e-5");
        assert_eq!(format_number(f64::INFINITY), "inf");
    }
}
