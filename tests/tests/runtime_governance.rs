//! Metric validators and promotion policies called through the runtime: values crossing into
//! the components and back, run-data reads, traps, budgets, wrong kinds, invalid
//! configurations and components importing outside their world. Each failure is followed by a
//! successful call, to show the host keeps working.

use runledger::runtime::{
    Approval, CallError, Check, DatasetRef, Decision, Limit, LineageSummary, MAX_CHECK_NAME_CHARS,
    MAX_CHECKS, MAX_MESSAGE_CHARS, PromotionRequest, RecordedCheck, RunData, RunDataError,
    RunSummary, RuntimeError, Severity, StepSummary, SummaryMetric,
};
use runledger_tests::{plugin, runtime, step_call, temp_store};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

fn metric(key: &str, value: f64, step: i64) -> SummaryMetric {
    SummaryMetric {
        key: key.into(),
        value,
        step,
    }
}

fn summary(run_id: &str) -> RunSummary {
    RunSummary {
        run_id: run_id.into(),
        name: "wine baseline".into(),
        pipeline: "wine-quality".into(),
        status: "succeeded".into(),
        author: "ana".into(),
        params: vec![
            ("alpha".into(), "0.5".into()),
            ("target".into(), "\"quality\"".into()),
        ],
        metrics: vec![metric("test_rmse", 0.64, 3), metric("test_r2", f64::NAN, 3)],
        tags: vec![("team".into(), "wine".into())],
        steps: vec![StepSummary {
            name: "train".into(),
            status: "succeeded".into(),
            plugin_digest: Some("ab".repeat(32)),
            cached: true,
        }],
        input_datasets: vec![DatasetRef {
            name: "wine".into(),
            digest: "cd".repeat(32),
        }],
    }
}

/// Run data held in memory: metric series by key, and alias runs by model and alias.
#[derive(Default)]
struct MemoryRunData {
    series: BTreeMap<String, Vec<SummaryMetric>>,
    models: BTreeMap<String, BTreeMap<String, RunSummary>>,
}

impl RunData for MemoryRunData {
    fn metric_series(&mut self, key: &str) -> Result<Vec<SummaryMetric>, RunDataError> {
        self.series
            .get(key)
            .cloned()
            .ok_or_else(|| RunDataError::NotFound(format!("the run has no metric `{key}`")))
    }

    fn alias_run(&mut self, model: &str, alias: &str) -> Result<Option<RunSummary>, RunDataError> {
        let Some(aliases) = self.models.get(model) else {
            return Err(RunDataError::NotFound(format!(
                "no registered model `{model}`"
            )));
        };
        Ok(aliases.get(alias).cloned())
    }
}

fn run_data() -> Box<MemoryRunData> {
    let mut data = MemoryRunData::default();
    let losses = vec![metric("train_loss", 0.9, 0), metric("train_loss", 0.5, 1)];
    data.series.insert("train_loss".into(), losses);
    let production = BTreeMap::from([("production".to_owned(), summary("baseline-run"))]);
    data.models.insert("wine-quality".into(), production);
    Box::new(data)
}

fn validate(config: Value) -> Result<Vec<Check>, CallError> {
    validate_with("validator-probe", config, run_data())
}

fn validate_with(
    spec: &str,
    config: Value,
    data: Box<dyn RunData>,
) -> Result<Vec<Check>, CallError> {
    runtime()
        .call_validator(&plugin(spec), &summary("run-1"), &config, data)
        .unwrap_or_else(|error| panic!("{spec} could not be called: {error}"))
        .outcome
}

fn find<'a>(checks: &'a [Check], name: &str) -> &'a Check {
    checks
        .iter()
        .find(|check| check.name == name)
        .unwrap_or_else(|| panic!("no check `{name}` in {checks:?}"))
}

fn request() -> PromotionRequest {
    PromotionRequest {
        model: "wine-quality".into(),
        version: 3,
        alias: "production".into(),
        requester: "ana".into(),
        run: summary("run-1"),
        validations: vec![RecordedCheck {
            validator: "metric-threshold@0.1.0".into(),
            validator_digest: "ef".repeat(32),
            check: Check {
                name: "test_rmse <= 0.75".into(),
                passed: false,
                severity: Severity::Blocking,
                message: "test_rmse is 0.81".into(),
            },
        }],
        lineage: LineageSummary {
            artifact_digest: "12".repeat(32),
            datasets: vec![DatasetRef {
                name: "wine".into(),
                digest: "cd".repeat(32),
            }],
        },
        approvals: vec![Approval {
            approver: "bo".into(),
            role: "approver".into(),
            approved_at_ms: 1_764_806_400_000,
            comment: "looks good".into(),
        }],
    }
}

fn decide(spec: &str, config: Value) -> Result<Decision, CallError> {
    runtime()
        .call_policy(&plugin(spec), &request(), &config)
        .unwrap_or_else(|error| panic!("{spec} could not be called: {error}"))
        .outcome
}

/// Calls a validator and a policy that behave, to show a failure before left the host usable.
fn assert_host_still_works() {
    let checks = validate(json!({})).expect("validator-probe succeeds");
    assert_eq!(find(&checks, "test_rmse").message, "0.64 at step 3");
    assert_eq!(decide("policy-allow", json!({})), Ok(Decision::Allow));
}

#[test]
fn validator_gets_the_whole_summary() {
    let checks = validate(json!({})).unwrap();

    let rmse = find(&checks, "test_rmse");
    assert!(rmse.passed);
    assert_eq!(rmse.severity, Severity::Blocking);
    assert_eq!(rmse.message, "0.64 at step 3");
    let r2 = find(&checks, "test_r2");
    assert!(!r2.passed, "NaN crosses as NaN, so the probe fails it");
    assert_eq!(r2.message, "NaN at step 3");
    let echoed: Value = serde_json::from_str(&find(&checks, "summary").message).unwrap();
    assert_eq!(echoed["run_id"], "run-1");
    assert_eq!(echoed["name"], "wine baseline");
    assert_eq!(echoed["pipeline"], "wine-quality");
    assert_eq!(echoed["status"], "succeeded");
    assert_eq!(echoed["author"], "ana");
    assert_eq!(
        echoed["params"],
        json!([["alpha", "0.5"], ["target", "\"quality\""]])
    );
    assert_eq!(echoed["tags"], json!([["team", "wine"]]));
    assert_eq!(
        echoed["steps"],
        json!([["train", "succeeded", "ab".repeat(32), true]])
    );
    assert_eq!(echoed["input_datasets"], json!([["wine", "cd".repeat(32)]]));
}

#[test]
fn validator_config_reaches_the_plugin() {
    let checks = validate(json!({ "severity": "warning" })).unwrap();

    assert!(
        checks
            .iter()
            .all(|check| check.severity == Severity::Warning)
    );
}

#[test]
fn validator_logs_are_captured() {
    let report = runtime()
        .call_validator(
            &plugin("validator-probe"),
            &summary("run-logs"),
            &json!({}),
            run_data(),
        )
        .unwrap();

    assert!(report.outcome.is_ok());
    let line = report
        .logs
        .iter()
        .find(|line| line.message == "validating run run-logs")
        .unwrap_or_else(|| panic!("log line missing from {:?}", report.logs));
    assert_eq!(line.level, "info");
    assert!(report.usage.fuel_consumed > 0);
}

#[test]
fn validator_reads_metric_series() {
    let checks = validate(json!({ "series": "train_loss" })).unwrap();

    let series = find(&checks, "series train_loss");
    assert!(series.passed);
    assert_eq!(series.message, "2 points at steps [0, 1]");
}

#[test]
fn missing_series_reaches_the_plugin_as_not_found() {
    let checks = validate(json!({ "series": "val_loss" })).unwrap();

    let series = find(&checks, "series val_loss");
    assert!(!series.passed);
    assert_eq!(
        series.message,
        "not found: the run has no metric `val_loss`"
    );
}

#[test]
fn oversized_series_is_refused_by_the_host() {
    let mut data = MemoryRunData::default();
    let points = (0..=runledger::runtime::MAX_SERIES_POINTS as i64)
        .map(|step| metric("x", 1.0, step))
        .collect();
    data.series.insert("x".into(), points);

    let checks =
        validate_with("validator-probe", json!({ "series": "x" }), Box::new(data)).unwrap();

    let series = find(&checks, "series x");
    assert!(!series.passed);
    assert!(
        series
            .message
            .starts_with("limit exceeded: metric `x` has 1000001 points"),
        "{}",
        series.message
    );
}

#[test]
fn validator_reads_alias_runs() {
    let config = |model: &str, alias: &str| json!({ "alias": { "model": model, "alias": alias } });

    let found = validate(config("wine-quality", "production")).unwrap();
    let no_alias = validate(config("wine-quality", "staging")).unwrap();
    let no_model = validate(config("beer-quality", "production")).unwrap();

    assert_eq!(
        find(&found, "alias wine-quality/production").message,
        "baseline-run"
    );
    assert_eq!(
        find(&no_alias, "alias wine-quality/staging").message,
        "none"
    );
    let missing = find(&no_model, "alias beer-quality/production");
    assert!(!missing.passed);
    assert_eq!(
        missing.message,
        "not found: no registered model `beer-quality`"
    );
}

#[test]
fn validator_error_value_is_reported() {
    let outcome = validate(json!({ "fail": "rule `rmse <<= 1` has no operator" }));

    assert_eq!(
        outcome,
        Err(CallError::Plugin {
            kind: "invalid-params".into(),
            message: "rule `rmse <<= 1` has no operator".into(),
        })
    );
    assert_host_still_works();
}

#[test]
fn validator_panic_is_a_trap_with_its_message() {
    let outcome = validate_with("validator-panics", json!({}), run_data());

    let Err(CallError::Panic { message }) = outcome else {
        panic!("expected a panic, got {outcome:?}");
    };
    assert!(
        message.contains("deliberate panic from the validator-panics"),
        "{message}"
    );
    assert_host_still_works();
}

#[test]
fn long_check_names_and_messages_are_capped() {
    let checks = validate(json!({ "extra-checks": 2, "message-chars": 5_000 })).unwrap();

    let extra: Vec<&Check> = checks.iter().filter(|c| c.name.starts_with('0')).collect();
    assert_eq!(extra.len(), 2);
    for check in extra {
        assert_eq!(check.name.chars().count(), MAX_CHECK_NAME_CHARS);
        assert!(check.name.ends_with('…'));
        assert_eq!(check.message.chars().count(), MAX_MESSAGE_CHARS);
        assert!(check.message.starts_with("éé"));
    }
}

#[test]
fn too_many_checks_fail_the_call() {
    let outcome = validate(json!({ "extra-checks": MAX_CHECKS }));

    let Err(CallError::LimitExceeded { limit }) = outcome else {
        panic!("expected the check limit, got {outcome:?}");
    };
    let Limit::Checks { checks, returned } = limit else {
        panic!("expected the check limit, got {limit:?}");
    };
    assert_eq!(checks, MAX_CHECKS);
    // The extra checks plus one per metric and the summary check.
    assert_eq!(returned, MAX_CHECKS + 3);
    assert_host_still_works();
}

#[test]
fn policy_returns_each_decision() {
    let deny = json!({ "decision": "deny", "reason": "dataset not allowed" });
    let pending = json!({
        "decision": "pending", "count": 2, "role": "approver", "reason": "needs two approvers"
    });

    assert_eq!(decide("policy-allow", json!({})), Ok(Decision::Allow));
    assert_eq!(
        decide("policy-allow", deny),
        Ok(Decision::Deny {
            reason: "dataset not allowed".into()
        })
    );
    assert_eq!(
        decide("policy-allow", pending),
        Ok(Decision::Pending {
            count: 2,
            role: "approver".into(),
            reason: "needs two approvers".into(),
        })
    );
}

#[test]
fn policy_gets_the_whole_request() {
    let decision = decide("policy-allow", json!({ "decision": "echo" })).unwrap();

    let Decision::Deny { reason } = decision else {
        panic!("expected the echo as a deny, got {decision:?}");
    };
    let echoed: Value = serde_json::from_str(&reason).unwrap();
    assert_eq!(echoed["model"], "wine-quality");
    assert_eq!(echoed["version"], 3);
    assert_eq!(echoed["alias"], "production");
    assert_eq!(echoed["requester"], "ana");
    assert_eq!(echoed["run_id"], "run-1");
    assert_eq!(echoed["run_author"], "ana");
    assert_eq!(echoed["metrics"][0], json!(["test_rmse", 0.64, 3]));
    assert_eq!(
        echoed["validations"],
        json!([[
            "metric-threshold@0.1.0",
            "ef".repeat(32),
            "test_rmse <= 0.75",
            false,
            "Blocking",
            "test_rmse is 0.81"
        ]])
    );
    assert_eq!(echoed["artifact_digest"], "12".repeat(32));
    assert_eq!(echoed["datasets"], json!([["wine", "cd".repeat(32)]]));
    assert_eq!(
        echoed["approvals"],
        json!([["bo", "approver", 1_764_806_400_000_i64, "looks good"]])
    );
}

#[test]
fn policy_error_value_is_reported() {
    let outcome = decide(
        "policy-allow",
        json!({ "decision": "error", "reason": "no rules" }),
    );

    assert_eq!(
        outcome,
        Err(CallError::Plugin {
            kind: "other".into(),
            message: "no rules".into(),
        })
    );
}

#[test]
fn malformed_decision_is_returned_as_given() {
    let decision = decide("policy-garbage", json!({}));

    assert_eq!(
        decision,
        Ok(Decision::Pending {
            count: 0,
            role: String::new(),
            reason: String::new(),
        })
    );
}

#[test]
fn policy_panic_is_a_trap_with_its_message() {
    let outcome = decide("policy-panics", json!({}));

    let Err(CallError::Panic { message }) = outcome else {
        panic!("expected a panic, got {outcome:?}");
    };
    assert!(
        message.contains("deliberate panic from the policy-panics"),
        "{message}"
    );
    assert_host_still_works();
}

#[test]
fn spinning_policy_is_stopped_by_its_budget() {
    let started = Instant::now();

    let outcome = decide("policy-spin", json!({}));

    let Err(CallError::LimitExceeded { limit }) = &outcome else {
        panic!("expected a limit, got {outcome:?}");
    };
    assert!(
        matches!(
            limit,
            Limit::Fuel {
                budget: 100_000_000
            } | Limit::Timeout { millis: 2000 }
        ),
        "{limit:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_host_still_works();
}

#[test]
fn wrong_kind_is_refused_before_the_call() {
    let probe = plugin("validator-probe");
    let allow = plugin("policy-allow");
    let hello = plugin("hello");
    let (_dir, store) = temp_store();
    let io = Box::new(runledger::engine::StoreArtifactIo::new(store));

    let as_policy = runtime()
        .call_policy(&probe, &request(), &json!({}))
        .unwrap_err();
    let as_validator = runtime()
        .call_validator(&hello, &summary("r"), &json!({}), run_data())
        .unwrap_err();
    let as_step = runtime()
        .call_step(&allow, &step_call(json!({}), vec![], &[]), io)
        .unwrap_err();

    assert_eq!(
        as_policy.to_string(),
        "plugin validator-probe@0.1.0 is a metric-validator, not a policy"
    );
    assert_eq!(
        as_validator.to_string(),
        "plugin hello@0.1.0 is a step-executor, not a metric-validator"
    );
    assert_eq!(
        as_step.to_string(),
        "plugin policy-allow@0.1.0 is a policy, not a step-executor"
    );
    assert_host_still_works();
}

#[test]
fn invalid_config_is_refused_naming_the_path() {
    let allow = plugin("policy-allow");

    let error = runtime()
        .call_policy(
            &allow,
            &request(),
            &json!({ "decision": "maybe", "colour": 1 }),
        )
        .unwrap_err();

    let RuntimeError::InvalidConfig(invalid) = &error else {
        panic!("expected an invalid configuration, got {error}");
    };
    assert_eq!(invalid.plugin, "policy-allow@0.1.0");
    let paths: Vec<(&str, &str)> = invalid
        .violations
        .iter()
        .map(|v| (v.path.as_str(), v.rule.as_str()))
        .collect();
    assert!(paths.contains(&("/decision", "enum")), "{error}");
    assert!(paths.contains(&("/", "additionalProperties")), "{error}");
    assert!(
        error
            .to_string()
            .starts_with("configuration of plugin policy-allow@0.1.0")
    );
    assert_host_still_works();
}

#[test]
fn validate_config_checks_the_config_schema() {
    let probe = plugin("validator-probe");

    assert!(
        probe
            .validate_config(&json!({ "series": "train_loss" }))
            .is_ok()
    );
    let error = probe.validate_config(&json!({ "series": 3 })).unwrap_err();
    assert_eq!(error.violations[0].path, "/series");
    assert_eq!(error.violations[0].rule, "type");
}

#[test]
fn policy_importing_artifacts_is_rejected_at_load() {
    let wrong = plugin("policy-wrong-imports");

    let load_error = runtime().prepare(&wrong).unwrap_err();
    let call_error = runtime()
        .call_policy(&wrong, &request(), &json!({}))
        .unwrap_err();

    let RuntimeError::ForbiddenImport { world, import, .. } = &load_error else {
        panic!("expected a forbidden import, got {load_error}");
    };
    assert_eq!(world, "policy");
    assert_eq!(import, "runledger:plugin/artifacts@0.1.0");
    let message = load_error.to_string();
    assert!(
        message.contains("plugin policy-wrong-imports@0.1.0 is a policy"),
        "{message}"
    );
    assert!(
        message.contains("`policy` world does not provide"),
        "{message}"
    );
    assert!(
        matches!(call_error, RuntimeError::ForbiddenImport { .. }),
        "{call_error}"
    );
    assert_host_still_works();
}

#[test]
fn governance_components_import_only_their_world() {
    let validator = runtime().prepare(&plugin("validator-probe")).unwrap();
    let policy = runtime().prepare(&plugin("policy-allow")).unwrap();

    assert!(
        validator
            .imports
            .contains(&"runledger:plugin/run-data@0.1.0".to_owned())
    );
    assert!(
        validator
            .exports
            .contains(&"runledger:plugin/validator@0.1.0".to_owned())
    );
    assert!(
        policy
            .exports
            .contains(&"runledger:plugin/promotion-policy@0.1.0".to_owned())
    );
    let runledger_imports: Vec<&String> = policy
        .imports
        .iter()
        .filter(|name| name.starts_with("runledger:"))
        .collect();
    assert!(
        runledger_imports
            .iter()
            .all(|name| !name.contains("artifacts") && !name.contains("run-data")),
        "{runledger_imports:?}"
    );
}

#[test]
fn governance_calls_are_counted() {
    let stats = runtime().stats();
    let before = stats.started.load(std::sync::atomic::Ordering::Relaxed);

    decide("policy-allow", json!({})).unwrap();

    let after = stats.started.load(std::sync::atomic::Ordering::Relaxed);
    assert!(after > before, "started {before} -> {after}");
}
