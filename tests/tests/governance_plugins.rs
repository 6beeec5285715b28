//! The shipped validator and policy plugins, called as real components through the runtime:
//! metric-threshold, finite-metrics and baseline-compare (metric validators) and
//! required-approvals, validations-passed and dataset-allowlist (policies).
//!
//! Needs the plugins built: `cargo xtask build-plugins`.

use runledger::runtime::{
    Approval, Check, DatasetRef, Decision, LineageSummary, PromotionRequest, RecordedCheck,
    RunData, RunDataError, RunSummary, Severity, SummaryMetric,
};
use runledger_tests::{plugin, runtime};
use serde_json::{Value, json};
use std::collections::BTreeMap;

/// SHA-256 of the wine quality CSV, as a lineage would record it.
const WINE_DIGEST: &str = "4f0a0c2a9b1f8e3d7c6b5a4938271605f4e3d2c1b0a99887766554433221100f";
/// SHA-256 of a dataset that is not on any allowlist.
const OTHER_DIGEST: &str = "0b1c2d3e4f5061728394a5b6c7d8e9f00112233445566778899aabbccddeeff0";

fn metric(key: &str, value: f64, step: i64) -> SummaryMetric {
    SummaryMetric {
        key: key.into(),
        value,
        step,
    }
}

/// Returns a run by `bob` with the given latest metric values, all at step 0.
fn run_with(run_id: &str, metrics: &[(&str, f64)]) -> RunSummary {
    RunSummary {
        run_id: run_id.into(),
        name: "wine-quality".into(),
        pipeline: "wine-quality".into(),
        status: "succeeded".into(),
        author: "bob".into(),
        metrics: metrics
            .iter()
            .map(|(key, value)| metric(key, *value, 0))
            .collect(),
        ..RunSummary::default()
    }
}

/// Recorded runs as a validator reads them: metric series of the run being validated and the
/// runs behind the aliases of registered models.
#[derive(Default)]
struct RecordedRuns {
    series: BTreeMap<String, Vec<SummaryMetric>>,
    /// Registered models, each with its aliases and the run behind each alias.
    models: BTreeMap<String, BTreeMap<String, RunSummary>>,
    /// When set, every read fails with this I/O error.
    io_error: Option<String>,
}

impl RunData for RecordedRuns {
    fn metric_series(&mut self, key: &str) -> Result<Vec<SummaryMetric>, RunDataError> {
        if let Some(error) = &self.io_error {
            return Err(RunDataError::Io(error.clone()));
        }
        self.series
            .get(key)
            .cloned()
            .ok_or_else(|| RunDataError::NotFound(format!("metric `{key}`")))
    }

    fn alias_run(&mut self, model: &str, alias: &str) -> Result<Option<RunSummary>, RunDataError> {
        if let Some(error) = &self.io_error {
            return Err(RunDataError::Io(error.clone()));
        }
        let aliases = self
            .models
            .get(model)
            .ok_or_else(|| RunDataError::NotFound(format!("registered model `{model}`")))?;
        Ok(aliases.get(alias).cloned())
    }
}

/// Calls validator `name` and returns its checks, failing the test on any error.
fn validate(name: &str, run: &RunSummary, config: Value, data: RecordedRuns) -> Vec<Check> {
    let report = runtime()
        .call_validator(&plugin(name), run, &config, Box::new(data))
        .unwrap_or_else(|error| panic!("{name} could not be called: {error}"));
    report
        .outcome
        .unwrap_or_else(|error| panic!("{name} failed: {error}; logs: {:?}", report.logs))
}

/// Calls validator `name` and returns the error the call ended with.
fn validate_error(name: &str, run: &RunSummary, config: Value, data: RecordedRuns) -> String {
    let report = runtime()
        .call_validator(&plugin(name), run, &config, Box::new(data))
        .unwrap_or_else(|error| panic!("{name} could not be called: {error}"));
    match report.outcome {
        Ok(checks) => panic!("{name} returned {checks:?}, expected an error"),
        Err(error) => error.to_string(),
    }
}

/// Calls policy `name` and returns its decision, failing the test on any error.
fn decide(name: &str, request: &PromotionRequest, config: Value) -> Decision {
    let report = runtime()
        .call_policy(&plugin(name), request, &config)
        .unwrap_or_else(|error| panic!("{name} could not be called: {error}"));
    report
        .outcome
        .unwrap_or_else(|error| panic!("{name} failed: {error}; logs: {:?}", report.logs))
}

/// Returns the configuration error of plugin `name` for `config`.
fn config_error(name: &str, config: Value) -> String {
    match plugin(name).validate_config(&config) {
        Ok(()) => panic!("{name} accepted {config}"),
        Err(error) => error.to_string(),
    }
}

fn find<'a>(checks: &'a [Check], name: &str) -> &'a Check {
    checks
        .iter()
        .find(|check| check.name == name)
        .unwrap_or_else(|| panic!("no check `{name}` in {checks:?}"))
}

/// A promotion of version 3 of `wine-quality` to `production`, requested by `alice` for a run
/// by `bob`.
fn promotion() -> PromotionRequest {
    PromotionRequest {
        model: "wine-quality".into(),
        version: 3,
        alias: "production".into(),
        requester: "alice".into(),
        run: run_with("run-3", &[("test_rmse", 0.66)]),
        validations: Vec::new(),
        lineage: LineageSummary {
            artifact_digest: "a".repeat(64),
            datasets: vec![DatasetRef {
                name: "wine".into(),
                digest: WINE_DIGEST.into(),
            }],
        },
        approvals: Vec::new(),
    }
}

fn approval(approver: &str, role: &str) -> Approval {
    Approval {
        approver: approver.into(),
        role: role.into(),
        approved_at_ms: 1_700_000_000_000,
        comment: String::new(),
    }
}

fn recorded(validator: &str, name: &str, passed: bool, severity: Severity) -> RecordedCheck {
    RecordedCheck {
        validator: validator.into(),
        validator_digest: "b".repeat(64),
        check: Check {
            name: name.into(),
            passed,
            severity,
            message: format!("{name} measured"),
        },
    }
}

#[test]
fn threshold_fails_rmse_over_limit() {
    let run = run_with("run-1", &[("test_rmse", 0.81), ("test_r2", 0.31)]);
    let config = json!({"rules": ["test_rmse <= 0.75", "test_r2 >= 0.25"]});

    let checks = validate("metric-threshold", &run, config, RecordedRuns::default());

    assert_eq!(checks.len(), 2);
    let rmse = find(&checks, "test_rmse <= 0.75");
    assert!(!rmse.passed);
    assert_eq!(rmse.severity, Severity::Blocking);
    assert_eq!(
        rmse.message,
        "`test_rmse` is 0.81 at step 0, but the rule requires <= 0.75"
    );
    let r2 = find(&checks, "test_r2 >= 0.25");
    assert!(r2.passed);
    assert!(r2.message.contains("0.31"), "{}", r2.message);
}

#[test]
fn threshold_handles_nan_missing_and_warning() {
    let run = run_with("run-1", &[("test_rmse", f64::NAN), ("val loss", 0.2)]);
    let config = json!({
        "rules": ["test_rmse != 1", "`val loss`<0.5", "test_mae < 1"],
        "severity": "warning",
        "missing": "skip",
    });

    let checks = validate("metric-threshold", &run, config, RecordedRuns::default());

    let nan = find(&checks, "test_rmse != 1");
    assert!(!nan.passed);
    assert_eq!(nan.severity, Severity::Warning);
    assert_eq!(
        nan.message,
        "`test_rmse` is NaN at step 0, and NaN fails every rule"
    );
    assert!(find(&checks, "`val loss`<0.5").passed);
    let skipped = find(&checks, "test_mae < 1");
    assert!(skipped.passed);
    assert_eq!(skipped.message, "skipped: the run has no metric `test_mae`");
}

#[test]
fn threshold_missing_metric_fails_by_default() {
    let run = run_with("run-1", &[]);
    let checks = validate(
        "metric-threshold",
        &run,
        json!({"rules": ["test_r2 >= 0.25"]}),
        RecordedRuns::default(),
    );
    assert_eq!(checks.len(), 1);
    assert!(!checks[0].passed);
    assert_eq!(
        checks[0].message,
        "the run has no metric `test_r2` to compare with >= 0.25"
    );
}

#[test]
fn threshold_schema_accepts_every_rule_form() {
    let rules = [
        "test_rmse <= 0.75",
        "a<1",
        "a>=-2",
        "a==+3",
        "a != .5",
        "a > 5.",
        "a < 1e-3",
        "a < 1E+3",
        "`val loss/epoch 3` > -1.5e-2",
        "metrics.acc@top5 >= 0.9",
    ];
    for rule in rules {
        let config = json!({"rules": [rule]});
        if let Err(error) = plugin("metric-threshold").validate_config(&config) {
            panic!("schema rejected `{rule}`: {error}");
        }
    }
}

#[test]
fn threshold_schema_rejects_bad_rules() {
    for rule in [
        "test_rmse =< 0.75",
        "test_rmse <= inf",
        "<= 1",
        "a < 1 b",
        "``< 1",
    ] {
        let message = config_error("metric-threshold", json!({"rules": [rule]}));
        assert!(message.contains(rule), "{rule}: {message}");
    }

    let message = config_error(
        "metric-threshold",
        json!({"rules": ["a < 1"], "colour": "red"}),
    );
    assert!(message.contains("colour"), "{message}");
}

#[test]
fn threshold_plugin_rejects_overflowing_number() {
    // The schema accepts the form; the plugin finds the number out of range.
    let run = run_with("run-1", &[("a", 1.0)]);
    let message = validate_error(
        "metric-threshold",
        &run,
        json!({"rules": ["a < 1e400"]}),
        RecordedRuns::default(),
    );
    assert!(message.contains("invalid-params"), "{message}");
    assert!(
        message.contains("rule `a < 1e400` is invalid: `1e400` is outside the range"),
        "{message}"
    );
}

#[test]
fn finite_metrics_reports_first_non_finite_step() {
    let run = run_with("run-1", &[("test_rmse", 0.7), ("loss", f64::NAN)]);
    let mut data = RecordedRuns::default();
    data.series.insert(
        "loss".into(),
        vec![
            metric("loss", 1.5, 0),
            metric("loss", 0.9, 1),
            metric("loss", f64::NAN, 3),
            metric("loss", f64::INFINITY, 4),
        ],
    );
    data.series
        .insert("test_rmse".into(), vec![metric("test_rmse", 0.7, 0)]);

    let checks = validate("finite-metrics", &run, json!({}), data);

    let names: Vec<&str> = checks.iter().map(|check| check.name.as_str()).collect();
    assert_eq!(names, ["loss", "test_rmse"]);
    assert!(!checks[0].passed);
    assert_eq!(
        checks[0].message,
        "`loss` has 2 non-finite points out of 4 (1 NaN, 1 inf, 0 -inf); the first is NaN at step 3"
    );
    assert!(checks[1].passed);
    assert_eq!(checks[1].message, "all 1 points of `test_rmse` are finite");
}

#[test]
fn finite_metrics_listed_key_must_exist() {
    let run = run_with("run-1", &[("loss", 0.1)]);
    let mut data = RecordedRuns::default();
    data.series
        .insert("loss".into(), vec![metric("loss", 0.1, 0)]);

    let config = json!({"keys": ["val_loss", "loss"], "severity": "warning"});
    let checks = validate("finite-metrics", &run, config, data);

    assert_eq!(checks.len(), 2);
    assert_eq!(checks[0].name, "val_loss");
    assert!(!checks[0].passed);
    assert_eq!(checks[0].severity, Severity::Warning);
    assert_eq!(checks[0].message, "the run has no metric `val_loss`");
    assert!(checks[1].passed);
}

#[test]
fn finite_metrics_read_failure_is_an_error() {
    let run = run_with("run-1", &[("loss", 0.1)]);
    let data = RecordedRuns {
        io_error: Some("database is locked".into()),
        ..RecordedRuns::default()
    };
    let message = validate_error("finite-metrics", &run, json!({}), data);
    assert!(
        message.contains("cannot read the series of metric `loss`"),
        "{message}"
    );
    assert!(message.contains("database is locked"), "{message}");
}

#[test]
fn finite_metrics_reads_long_series() {
    let points = 100_000;
    let run = run_with("run-1", &[("loss", 0.0)]);
    let mut data = RecordedRuns::default();
    let mut series: Vec<SummaryMetric> =
        (0..points).map(|step| metric("loss", 1.0, step)).collect();
    series[points as usize - 1].value = f64::NEG_INFINITY;
    data.series.insert("loss".into(), series);

    let checks = validate("finite-metrics", &run, json!({}), data);

    assert_eq!(
        checks[0].message,
        format!(
            "`loss` has 1 non-finite points out of {points} (0 NaN, 0 inf, 1 -inf); the first is -inf at step {}",
            points - 1
        )
    );
}

#[test]
fn finite_metrics_without_metrics() {
    let run = run_with("run-1", &[]);

    let checks = validate("finite-metrics", &run, json!({}), RecordedRuns::default());

    assert_eq!(checks.len(), 1);
    assert_eq!(checks[0].name, "metrics");
    assert!(checks[0].passed);
    assert_eq!(
        checks[0].message,
        "the run logged no metrics, so there is nothing to check"
    );
}

#[test]
fn finite_metrics_rejects_too_many_keys() {
    let keys: Vec<String> = (0..1001).map(|index| format!("m{index}")).collect();
    let mut run = run_with("run-1", &[]);
    run.metrics = keys.iter().map(|key| metric(key, 1.0, 0)).collect();

    let message = validate_error("finite-metrics", &run, json!({}), RecordedRuns::default());

    assert!(message.contains("invalid-params"), "{message}");
    assert!(
        message.contains("the run has 1001 metric keys, more than the 1000 checks"),
        "{message}"
    );
}

#[test]
fn finite_metrics_reads_the_longest_series_the_host_serves() {
    // The host returns at most 1,000,000 points per series; the plugin's memory must hold them.
    let run = run_with("run-1", &[("loss", 0.0)]);
    let mut data = RecordedRuns::default();
    let mut series: Vec<_> = (0..1_000_000)
        .map(|step| metric("loss", 1.0, step))
        .collect();
    series[999_999].value = f64::INFINITY;
    data.series.insert("loss".into(), series);

    let checks = validate("finite-metrics", &run, json!({}), data);

    let loss = find(&checks, "loss");
    assert!(!loss.passed, "{loss:?}");
    assert!(loss.message.contains("999999"), "{}", loss.message);
}

/// Recorded runs where `wine-quality`'s `production` alias points at a run with the given
/// metrics.
fn with_production(metrics: &[(&str, f64)]) -> RecordedRuns {
    let mut data = RecordedRuns::default();
    let aliases = BTreeMap::from([("production".to_owned(), run_with("run-baseline", metrics))]);
    data.models.insert("wine-quality".into(), aliases);
    data
}

fn baseline_config() -> Value {
    json!({
        "model": "wine-quality",
        "alias": "production",
        "metrics": [
            {"key": "test_rmse", "better": "lower", "max-regression": 0.05},
            {"key": "test_r2", "better": "higher", "max-regression": 0.1, "relative": true},
        ],
    })
}

#[test]
fn baseline_compare_fails_regressed_metric() {
    let run = run_with("run-2", &[("test_rmse", 0.81), ("test_r2", 0.33)]);
    let data = with_production(&[("test_rmse", 0.7), ("test_r2", 0.35)]);

    let checks = validate("baseline-compare", &run, baseline_config(), data);

    assert_eq!(checks.len(), 2);
    let rmse = find(&checks, "test_rmse vs production");
    assert!(!rmse.passed);
    assert_eq!(
        rmse.message,
        "`test_rmse` is 0.81 in the run and 0.7 in the baseline `production` of model \
         `wine-quality` (run run-baseline); lower is better, so the run is worse by 0.11, more \
         than the allowed regression of 0.05"
    );
    let r2 = find(&checks, "test_r2 vs production");
    assert!(r2.passed, "{}", r2.message);
    assert!(
        r2.message.contains(
            "worse by 0.02, within the allowed regression of 10% of the baseline (0.035)"
        ),
        "{}",
        r2.message
    );
}

#[test]
fn baseline_compare_passes_improvement() {
    let run = run_with("run-2", &[("test_rmse", 0.6), ("test_r2", 0.4)]);
    let data = with_production(&[("test_rmse", 0.7), ("test_r2", 0.35)]);

    let checks = validate("baseline-compare", &run, baseline_config(), data);

    assert!(checks.iter().all(|check| check.passed), "{checks:?}");
    let rmse = find(&checks, "test_rmse vs production");
    assert!(rmse.message.contains("better by 0.1"), "{}", rmse.message);
}

#[test]
fn baseline_compare_without_alias() {
    let run = run_with("run-1", &[("test_rmse", 0.81)]);
    let mut data = RecordedRuns::default();
    data.models.insert("wine-quality".into(), BTreeMap::new());

    let checks = validate("baseline-compare", &run, baseline_config(), data);

    assert_eq!(checks.len(), 1);
    assert_eq!(checks[0].name, "baseline");
    assert!(checks[0].passed);
    assert_eq!(
        checks[0].message,
        "model `wine-quality` has no alias `production` yet, so there is no baseline to compare with"
    );

    let mut config = baseline_config();
    config["missing-baseline"] = json!("fail");
    let mut data = RecordedRuns::default();
    data.models.insert("wine-quality".into(), BTreeMap::new());
    let checks = validate("baseline-compare", &run, config, data);
    assert!(!checks[0].passed);
}

#[test]
fn baseline_compare_unknown_model_is_an_error() {
    let run = run_with("run-1", &[("test_rmse", 0.81)]);
    let message = validate_error(
        "baseline-compare",
        &run,
        baseline_config(),
        RecordedRuns::default(),
    );
    assert!(
        message.contains("registered model `wine-quality` not found"),
        "{message}"
    );
}

#[test]
fn baseline_compare_schema_rejects_bad_metric() {
    let mut config = baseline_config();
    config["metrics"][0]["better"] = json!("smaller");
    let message = config_error("baseline-compare", config);
    assert!(message.contains("smaller"), "{message}");

    let mut config = baseline_config();
    config["metrics"][0]["max-regression"] = json!(-0.1);
    let message = config_error("baseline-compare", config);
    assert!(message.contains("-0.1"), "{message}");
}

#[test]
fn required_approvals_ignores_non_qualifying_approvals() {
    let mut request = promotion();
    request.approvals = vec![
        approval("alice", "admin"),
        approval("bob", "approver"),
        approval("dave", "viewer"),
        approval("carol", "approver"),
        approval("carol", "approver"),
    ];

    let decision = decide("required-approvals", &request, json!({"count": 2}));

    let Decision::Pending {
        count,
        role,
        reason,
    } = decision
    else {
        panic!("expected pending, got {decision:?}");
    };
    assert_eq!(count, 1);
    assert_eq!(role, "approver");
    assert_eq!(
        reason,
        "1 more approval needed: 2 required from distinct users with role approver or higher \
         other than the requester `alice` and the run's author `bob`; counted: `carol`; not \
         counted: `alice` (requested the promotion), `bob` (authored the run), `dave` (holds \
         role viewer, below the required approver)"
    );
}

#[test]
fn required_approvals_allows_two_distinct_approvers() {
    let mut request = promotion();
    request.approvals = vec![approval("carol", "approver"), approval("erin", "admin")];

    let decision = decide("required-approvals", &request, json!({"count": 2}));

    assert_eq!(decision, Decision::Allow);
}

#[test]
fn required_approvals_role_setting() {
    let mut request = promotion();
    request.approvals = vec![approval("erin", "editor")];

    let strict = decide("required-approvals", &request, json!({"count": 1}));
    assert!(
        matches!(strict, Decision::Pending { count: 1, .. }),
        "{strict:?}"
    );

    let lenient = decide(
        "required-approvals",
        &request,
        json!({"count": 1, "role": "editor"}),
    );
    assert_eq!(lenient, Decision::Allow);
}

#[test]
fn required_approvals_schema_rejects_zero_count() {
    let message = config_error("required-approvals", json!({"count": 0}));
    assert!(message.contains("count"), "{message}");
    assert!(message.contains('0'), "{message}");

    let message = config_error("required-approvals", json!({"count": 1, "role": "owner"}));
    assert!(message.contains("owner"), "{message}");
}

#[test]
fn validations_passed_denies_failed_blocking_check() {
    let mut request = promotion();
    request.validations = vec![
        recorded(
            "metric-threshold@0.1.0",
            "test_rmse <= 0.75",
            false,
            Severity::Blocking,
        ),
        recorded(
            "metric-threshold@0.1.0",
            "test_r2 >= 0.25",
            true,
            Severity::Blocking,
        ),
        recorded("finite-metrics@0.1.0", "loss", false, Severity::Warning),
    ];

    let decision = decide("validations-passed", &request, json!({}));

    let Decision::Deny { reason } = decision else {
        panic!("expected deny, got {decision:?}");
    };
    assert_eq!(
        reason,
        "1 blocking check failed for version 3 of model `wine-quality` (run run-3): \
         `test_rmse <= 0.75` from metric-threshold@0.1.0: test_rmse <= 0.75 measured"
    );
}

#[test]
fn validations_passed_allows_failed_warnings() {
    let mut request = promotion();
    request.validations = vec![
        recorded(
            "metric-threshold@0.1.0",
            "test_rmse <= 0.75",
            true,
            Severity::Blocking,
        ),
        recorded("finite-metrics@0.1.0", "loss", false, Severity::Warning),
    ];

    let decision = decide(
        "validations-passed",
        &request,
        json!({"require-checks": true}),
    );

    assert_eq!(decision, Decision::Allow);
}

#[test]
fn validations_passed_without_checks() {
    let request = promotion();

    let decision = decide("validations-passed", &request, json!({}));
    let Decision::Deny { reason } = decision else {
        panic!("expected deny, got {decision:?}");
    };
    assert!(
        reason
            .starts_with("no validation checks are recorded for version 3 of model `wine-quality`"),
        "{reason}"
    );

    let lenient = decide(
        "validations-passed",
        &request,
        json!({"require-checks": false}),
    );
    assert_eq!(lenient, Decision::Allow);
}

#[test]
fn dataset_allowlist_denial_names_full_digest() {
    let mut request = promotion();
    request.lineage.datasets.push(DatasetRef {
        name: "extra".into(),
        digest: OTHER_DIGEST.into(),
    });

    let decision = decide(
        "dataset-allowlist",
        &request,
        json!({"digests": [WINE_DIGEST]}),
    );

    let Decision::Deny { reason } = decision else {
        panic!("expected deny, got {decision:?}");
    };
    assert_eq!(
        reason,
        format!(
            "1 dataset in the lineage of version 3 of model `wine-quality` not allowed: `extra` \
             {OTHER_DIGEST} (digest not on the allowlist)"
        )
    );
}

#[test]
fn dataset_allowlist_allows_listed_datasets() {
    let request = promotion();
    let config = json!({"digests": [OTHER_DIGEST, WINE_DIGEST], "names": ["wine"]});

    let decision = decide("dataset-allowlist", &request, config);

    assert_eq!(decision, Decision::Allow);
}

#[test]
fn dataset_allowlist_denies_unlisted_name_and_empty_lineage() {
    let request = promotion();
    let config = json!({"digests": [WINE_DIGEST], "names": ["wine-2019"]});
    let decision = decide("dataset-allowlist", &request, config);
    let Decision::Deny { reason } = decision else {
        panic!("expected deny, got {decision:?}");
    };
    assert!(
        reason.ends_with(&format!("`wine` {WINE_DIGEST} (name not on the allowlist)")),
        "{reason}"
    );

    let mut request = promotion();
    request.lineage.datasets.clear();
    let decision = decide(
        "dataset-allowlist",
        &request,
        json!({"digests": [WINE_DIGEST]}),
    );
    let Decision::Deny { reason } = decision else {
        panic!("expected deny, got {decision:?}");
    };
    assert!(reason.starts_with("no training data recorded"), "{reason}");
}

#[test]
fn dataset_allowlist_schema_rejects_prefixed_digest() {
    let prefixed = format!("sha256:{WINE_DIGEST}");
    let message = config_error("dataset-allowlist", json!({"digests": [prefixed]}));
    assert!(message.contains(&prefixed), "{message}");
}
