//! Test validator that reports what it was given. It returns one check per metric of the
//! summary (passed when the value is finite) and a `summary` check whose message is the rest of
//! the summary as JSON. On request it adds checks built from `run_data` calls or extra checks,
//! or returns an error value.
//!
//! Configuration, every key optional:
//! `{"series": KEY, "alias": {"model": M, "alias": A}, "severity": "warning", "extra-checks": N,
//! "message-chars": N, "fail": MESSAGE}`.
//!
//! Build it with `cargo build --release --target wasm32-wasip2 -p validator-probe` in `plugins/`.
use runledger_sdk::{Check, Error, Result, RunSummary, Severity, Validator, export_validator};
use serde_json::{Value, json};

struct Probe;

impl Validator for Probe {
    fn validate(run: RunSummary, config: Value) -> Result<Vec<Check>> {
        if let Some(message) = config.get("fail").and_then(Value::as_str) {
            return Err(Error::invalid_params(message));
        }
        let severity = match config.get("severity").and_then(Value::as_str) {
            Some("warning") => Severity::Warning,
            _ => Severity::Blocking,
        };
        runledger_sdk::log::info(format!("validating run {}", run.run_id));

        let mut checks = metric_checks(&run, severity);
        checks.push(Check::pass(
            "summary",
            severity,
            summary_json(&run).to_string(),
        ));
        if let Some(key) = config.get("series").and_then(Value::as_str) {
            checks.push(series_check(key, severity));
        }
        if let Some(alias) = config.get("alias") {
            checks.push(alias_check(alias, severity));
        }
        checks.extend(extra_checks(&config, severity));
        Ok(checks)
    }
}

fn metric_checks(run: &RunSummary, severity: Severity) -> Vec<Check> {
    run.metrics
        .iter()
        .map(|metric| {
            let message = format!("{} at step {}", metric.value, metric.step);
            if metric.value.is_finite() {
                Check::pass(&metric.key, severity, message)
            } else {
                Check::fail(&metric.key, severity, message)
            }
        })
        .collect()
}

fn summary_json(run: &RunSummary) -> Value {
    let steps: Vec<Value> = run
        .steps
        .iter()
        .map(|step| json!([step.name, step.status, step.plugin_digest, step.cached]))
        .collect();
    let datasets: Vec<Value> = run
        .input_datasets
        .iter()
        .map(|dataset| json!([dataset.name, dataset.digest]))
        .collect();
    json!({
        "run_id": run.run_id,
        "name": run.name,
        "pipeline": run.pipeline,
        "status": run.status,
        "author": run.author,
        "params": run.params,
        "tags": run.tags,
        "steps": steps,
        "input_datasets": datasets,
    })
}

/// Reports the length of a whole series, or the error `metric_series` returned.
fn series_check(key: &str, severity: Severity) -> Check {
    let name = format!("series {key}");
    match runledger_sdk::run_data::metric_series(key) {
        Ok(points) => {
            let steps: Vec<i64> = points.iter().map(|point| point.step).collect();
            let message = format!("{} points at steps {steps:?}", points.len());
            Check::pass(name, severity, message)
        }
        Err(error) => Check::fail(name, severity, error.to_string()),
    }
}

/// Reports the run id behind an alias, `none`, or the error `alias_run` returned.
fn alias_check(alias: &Value, severity: Severity) -> Check {
    let model = alias
        .get("model")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let name = alias
        .get("alias")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let check_name = format!("alias {model}/{name}");
    match runledger_sdk::run_data::alias_run(model, name) {
        Ok(Some(run)) => Check::pass(check_name, severity, run.run_id),
        Ok(None) => Check::pass(check_name, severity, "none"),
        Err(error) => Check::fail(check_name, severity, error.to_string()),
    }
}

/// Builds `extra-checks` passing checks whose names and messages are `message-chars` long, to
/// test the host's caps.
fn extra_checks(config: &Value, severity: Severity) -> Vec<Check> {
    let count = config
        .get("extra-checks")
        .and_then(Value::as_u64)
        .unwrap_or(0);
    let chars = config
        .get("message-chars")
        .and_then(Value::as_u64)
        .unwrap_or(1) as usize;
    (0..count)
        .map(|index| {
            let name = format!("{index:0>chars$}");
            Check::pass(name, severity, "é".repeat(chars))
        })
        .collect()
}

export_validator!(Probe);
