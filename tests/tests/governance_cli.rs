//! Quality gates and the model registry through the `runledger` binary. The scenarios cover
//! the wine example's `validate:` list, a failing threshold and its exit status, definitions
//! whose validators are rejected before any step runs, and manual validation of a recorded run.
//! A model is then promoted to staging and production with policies, approvals by other users
//! and the audit log. Every scenario runs once on SQLite and once on a fresh PostgreSQL
//! database.
//!
//! Needs `cargo xtask build-plugins`, `cargo build -p runledger` and PostgreSQL at
//! 127.0.0.1:5432 trusting user `postgres`; run with
//! `cargo test -p runledger-tests --test governance_cli`.

use runledger_tests::{Backend, Cli, TEST_USER, parse_json, sha256_file, workspace_root};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::Output;

/// Defines a `_sqlite` and a `_postgres` test for each scenario function.
macro_rules! on_both_backends {
    ($($scenario:ident => $sqlite:ident, $postgres:ident;)*) => {
        $(
            #[test]
            fn $sqlite() {
                $scenario(Backend::Sqlite);
            }

            #[test]
            fn $postgres() {
                $scenario(Backend::Postgres);
            }
        )*
    };
}

on_both_backends! {
    wine_passes_validators => wine_validators_sqlite, wine_validators_postgres;
    failing_threshold_blocks => failing_threshold_sqlite, failing_threshold_postgres;
    warning_threshold_passes => warning_threshold_sqlite, warning_threshold_postgres;
    rejected_validators => rejected_validators_sqlite, rejected_validators_postgres;
    manual_validation => manual_validation_sqlite, manual_validation_postgres;
    promotion_flow => promotion_flow_sqlite, promotion_flow_postgres;
}

/// Exit status of `runledger run` and `runs validate` when a blocking check failed.
const EXIT_BLOCKED: i32 = 3;
/// Exit status of `models promote` and `approve` while a promotion waits for approvals.
const EXIT_PENDING: i32 = 4;
/// Exit status of `models promote` and `approve` when a policy denied the promotion.
const EXIT_DENIED: i32 = 5;
/// Exit status of a definition rejected before anything ran.
const EXIT_INVALID: i32 = 2;

/// Actor of the audit entries the host makes itself, such as policy decisions.
const SYSTEM_ACTOR: &str = "runledger";

/// The threshold rules of the wine example's `validate:` list.
const WINE_RULES: [&str; 2] = ["test_rmse <= 0.75", "test_r2 >= 0.25"];

// ---------------------------------------------------------------------------------------------
// the wine example's validators

fn wine_passes_validators(backend: Backend) {
    let cli = Cli::new(backend);

    let summary = run_json(&cli, &wine_pipeline(), Some(0));

    assert_eq!(summary["status"], "succeeded", "run status");
    let validation = &summary["validation"];
    assert_eq!(validation["blocking_failures"], 0, "{validation}");
    assert_eq!(validation["warnings"], 0, "{validation}");
    let records = array(&validation["records"]);
    assert_eq!(records.len(), 2, "one record per validator: {validation}");
    assert_eq!(records[0]["plugin"], "metric-threshold@0.1.0");
    assert_eq!(records[1]["plugin"], "finite-metrics@0.1.0");

    let run_id = text(&summary, "/run_id");
    let detail = cli.json(&["runs", "show", run_id, "--json"]);
    let shown = array(&detail["validations"]);
    assert_eq!(shown.len(), 2, "runs show lists both validations");
    for record in shown {
        assert_eq!(record["trigger"], "pipeline", "{record}");
        assert_eq!(record["error"], Value::Null, "{record}");
        assert_eq!(
            record["plugin_digest"].as_str().map(str::len),
            Some(64),
            "{record}"
        );
    }
    let threshold_checks = array(&shown[0]["checks"]);
    let names: Vec<&str> = threshold_checks
        .iter()
        .map(|check| check["name"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(names, WINE_RULES, "one check per rule, named by the rule");
    for check in threshold_checks {
        assert_eq!(check["passed"], true, "{check}");
        assert_eq!(check["severity"], "blocking", "{check}");
    }
    let finite_checks = array(&shown[1]["checks"]);
    assert!(
        finite_checks
            .iter()
            .any(|check| check["name"] == "train_loss"),
        "finite-metrics checks the train_loss series: {}",
        shown[1]
    );
    assert!(
        finite_checks.iter().all(|check| check["passed"] == true),
        "every wine metric is finite: {}",
        shown[1]
    );

    let text_output = stdout_of(&cli.output(&["runs", "show", run_id]));
    assert!(text_output.contains("validations"), "{text_output}");
    assert!(
        text_output.contains("PASS  blocking  test_rmse <= 0.75"),
        "{text_output}"
    );
}

fn failing_threshold_blocks(backend: Backend) {
    let cli = Cli::new(backend);
    let dir = tempfile::tempdir().expect("temporary directory");
    let pipeline = wine_variant(dir.path(), "test_rmse <= 0.75", "test_rmse <= 0.5");

    let output = cli.output(&["run", path_text(&pipeline)]);

    let stdout = stdout_of(&output);
    assert_eq!(
        output.status.code(),
        Some(EXIT_BLOCKED),
        "exit status, stdout: {stdout}, stderr: {}",
        stderr_of(&output)
    );
    assert!(
        stdout.contains("FAIL  blocking  test_rmse <= 0.5: "),
        "{stdout}"
    );
    assert!(
        stdout.contains("PASS  blocking  test_r2 >= 0.25"),
        "{stdout}"
    );
    assert!(stdout.contains("validation blocked"), "{stdout}");

    let runs = cli.json(&["runs", "list", "--json"]);
    let run_id = text(&runs, "/0/id");
    assert_eq!(runs[0]["status"], "succeeded", "the run itself succeeded");
    let detail = cli.json(&["runs", "show", run_id, "--json"]);
    let check = &detail["validations"][0]["checks"][0];
    assert_eq!(check["name"], "test_rmse <= 0.5");
    assert_eq!(check["passed"], false);
    let rmse = latest_metric(&detail, "test_rmse");
    let message = check["message"].as_str().unwrap_or_default();
    assert!(
        message.contains(&format!("`test_rmse` is {rmse} ")),
        "the message gives the actual value {rmse}: {message}"
    );
}

fn warning_threshold_passes(backend: Backend) {
    let cli = Cli::new(backend);
    let dir = tempfile::tempdir().expect("temporary directory");
    let pipeline = wine_variant(
        dir.path(),
        r#"rules: ["test_rmse <= 0.75", "test_r2 >= 0.25"]"#,
        r#"rules: ["test_rmse <= 0.5"]
      severity: warning"#,
    );

    let summary = run_json(&cli, &pipeline, Some(0));

    let validation = &summary["validation"];
    assert_eq!(validation["blocking_failures"], 0, "{validation}");
    assert_eq!(validation["warnings"], 1, "{validation}");
    let output = cli.output(&["runs", "show", text(&summary, "/run_id")]);
    let stdout = stdout_of(&output);
    assert!(
        stdout.contains("WARN  warning   test_rmse <= 0.5: "),
        "a failed warning is shown apart from a failure: {stdout}"
    );
}

// ---------------------------------------------------------------------------------------------
// definitions rejected before any step runs

/// A definition with a broken `validate:` list and what its error must contain.
struct Rejected {
    label: &'static str,
    validate: &'static str,
    expected: &'static [&'static str],
}

const REJECTED: &[Rejected] = &[
    Rejected {
        label: "unknown plugin",
        validate: "  - plugin: no-such-validator@0.1.0\n",
        expected: &["/validate/0/plugin", "no-such-validator"],
    },
    Rejected {
        label: "step executor",
        validate: "  - plugin: finite-metrics@0.1.0\n  - plugin: linreg@0.1.0\n",
        expected: &[
            "/validate/1/plugin",
            "linreg@0.1.0 is a step-executor",
            "not a metric-validator",
        ],
    },
    Rejected {
        label: "policy",
        validate: "  - plugin: required-approvals@0.1.0\n    config: { count: 2 }\n",
        expected: &["/validate/0/plugin", "not a metric-validator"],
    },
    Rejected {
        label: "bad rule",
        validate: "  - plugin: finite-metrics@0.1.0\n  - plugin: metric-threshold@0.1.0\n    config: { rules: [\"test_rmse <=< 1\"] }\n",
        expected: &[
            "/validate/1/config/rules/0",
            "metric-threshold@0.1.0",
            "pattern",
        ],
    },
    Rejected {
        label: "unknown config key",
        validate: "  - plugin: metric-threshold@0.1.0\n    config: { rules: [\"a < 1\"], colour: red }\n",
        expected: &["/validate/0/config", "colour"],
    },
    Rejected {
        label: "config not an object",
        validate: "  - plugin: metric-threshold@0.1.0\n    config: [1]\n",
        expected: &["/validate/0/config"],
    },
];

fn rejected_validators(backend: Backend) {
    let cli = Cli::new(backend);
    let dir = tempfile::tempdir().expect("temporary directory");
    let csv = wine_csv();
    let head = format!(
        "name: rejected\ninputs:\n  wine: {{ path: {}, media-type: text/csv }}\nsteps:\n  - \
         name: ingest\n    plugin: csv-ingest@0.1.0\n    inputs: {{ source: inputs.wine }}\n\
         validate:\n",
        csv.display()
    );

    for case in REJECTED {
        let pipeline = write_file(dir.path(), "rejected.yaml", &(head.clone() + case.validate));

        let output = cli.output(&["run", path_text(&pipeline)]);

        let stderr = stderr_of(&output);
        assert_eq!(
            output.status.code(),
            Some(EXIT_INVALID),
            "{}: exit status, stderr: {stderr}",
            case.label
        );
        for fragment in case.expected {
            assert!(
                stderr.contains(fragment),
                "{}: error lacks `{fragment}`: {stderr}",
                case.label
            );
        }
    }

    let runs = cli.json(&["runs", "list", "--json"]);
    assert_eq!(runs, json!([]), "rejected definitions record no run");
}

// ---------------------------------------------------------------------------------------------
// validation of a recorded run

fn manual_validation(backend: Backend) {
    let cli = Cli::new(backend);
    let summary = run_json(&cli, &wine_pipeline(), Some(0));
    let run_id = text(&summary, "/run_id");

    let output = cli.output(&[
        "runs",
        "validate",
        run_id,
        "--plugin",
        "metric-threshold",
        "--config",
        r#"{"rules": ["test_r2 >= 0.9", "test_mae < 1"]}"#,
        "--json",
    ]);

    assert_eq!(
        output.status.code(),
        Some(EXIT_BLOCKED),
        "stderr: {}",
        stderr_of(&output)
    );
    let outcome = parse_json(&output.stdout, &["runs", "validate"]);
    assert_eq!(outcome["blocking_failures"], 1, "{outcome}");
    let record = &outcome["records"][0];
    assert_eq!(record["trigger"], "manual");
    assert_eq!(
        record["plugin"], "metric-threshold@0.1.0",
        "a plugin given by name is recorded with its version"
    );
    assert_eq!(record["checks"][0]["passed"], false);
    assert_eq!(record["checks"][1]["passed"], true);

    let detail = cli.json(&["runs", "show", run_id, "--json"]);
    let triggers: Vec<&str> = array(&detail["validations"])
        .iter()
        .map(|record| record["trigger"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(triggers, ["pipeline", "pipeline", "manual"]);

    let bad = cli.output(&[
        "runs",
        "validate",
        run_id,
        "--plugin",
        "metric-threshold",
        "--config",
        r#"{"rules": []}"#,
    ]);
    let stderr = stderr_of(&bad);
    assert_eq!(bad.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("metric-threshold"), "{stderr}");
    assert!(
        stderr.contains("/rules"),
        "the error names the path: {stderr}"
    );
    let after = cli.json(&["runs", "show", run_id, "--json"]);
    assert_eq!(
        array(&after["validations"]).len(),
        3,
        "an invalid config records no validation"
    );
}

// ---------------------------------------------------------------------------------------------
// the model registry and promotions

fn promotion_flow(backend: Backend) {
    let cli = Cli::new(backend);
    let summary = run_json(&cli, &wine_pipeline(), Some(0));
    let run_id = text(&summary, "/run_id").to_owned();

    register_wine(&cli, &run_id);
    attach_policies(&cli);

    promote_to_staging(&cli);
    promote_to_production(&cli);
    deny_canary(&cli);
    check_audit(&cli);
}

fn register_wine(cli: &Cli, run_id: &str) {
    let model = cli.json(&[
        "models",
        "create",
        "wine-quality",
        "--description",
        "red wine quality",
        "--tag",
        "team=wine",
        "--json",
    ]);
    assert_eq!(model["name"], "wine-quality");
    assert_eq!(model["tags"], json!({ "team": "wine" }));

    cli.json(&[
        "models",
        "validators",
        "wine-quality",
        "--plugin",
        "metric-threshold",
        "--config",
        r#"{"rules": ["test_rmse <= 0.75"]}"#,
        "--json",
    ]);

    let version = cli.json(&[
        "models",
        "register",
        "wine-quality",
        "--run",
        run_id,
        "--artifact",
        "train.model",
        "--json",
    ]);
    assert_eq!(version["version"], 1);
    assert_eq!(version["artifact_name"], "train.model");
    let triggers: Vec<&str> = array(&version["validations"])
        .iter()
        .map(|record| record["trigger"].as_str().unwrap_or_default())
        .collect();
    assert!(
        triggers.contains(&"model_version"),
        "registering runs the model's validators: {version}"
    );

    let listed = cli.json(&["models", "list", "--json"]);
    assert_eq!(listed["models"][0]["latest_version"], 1, "{listed}");
}

fn attach_policies(cli: &Cli) {
    cli.json(&[
        "models",
        "policies",
        "wine-quality",
        "--alias",
        "staging",
        "--plugin",
        "validations-passed",
        "--json",
    ]);
    let dir = tempfile::tempdir().expect("temporary directory");
    let file = write_file(
        dir.path(),
        "production.yaml",
        "- plugin: validations-passed@0.1.0\n  config: { require-checks: true }\n\
         - plugin: required-approvals@0.1.0\n  config: { count: 2, role: approver }\n",
    );
    let model = cli.json(&[
        "models",
        "policies",
        "wine-quality",
        "--alias",
        "production",
        "--file",
        path_text(&file),
        "--json",
    ]);
    let production = array(&model["policies"]["production"]);
    assert_eq!(production.len(), 2, "{model}");
    assert_eq!(production[1]["plugin"], "required-approvals@0.1.0");
    assert_eq!(production[1]["config"]["count"], 2);
}

fn promote_to_staging(cli: &Cli) {
    let output = cli.output(&[
        "models",
        "promote",
        "wine-quality",
        "1",
        "--alias",
        "staging",
    ]);

    let stdout = stdout_of(&output);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{stdout}{}",
        stderr_of(&output)
    );
    assert!(stdout.contains("completed"), "{stdout}");
    assert!(stdout.contains("validations-passed@0.1.0"), "{stdout}");
    let model = cli.json(&["models", "show", "wine-quality", "--json"]);
    assert_eq!(model["model"]["aliases"], json!({ "staging": 1 }));
}

fn promote_to_production(cli: &Cli) {
    let promote = [
        "models",
        "promote",
        "wine-quality",
        "1",
        "--alias",
        "production",
        "--json",
    ];
    let output = cli.output(&promote);
    assert_eq!(
        output.status.code(),
        Some(EXIT_PENDING),
        "{}",
        stderr_of(&output)
    );
    let pending = parse_json(&output.stdout, &promote);
    assert_eq!(pending["status"], "pending");
    assert_eq!(pending["needed"][0]["count"], 2, "{pending}");
    assert_eq!(pending["needed"][0]["role"], "approver", "{pending}");

    let author = approve_as(cli, TEST_USER);
    assert_eq!(author.status.code(), Some(1), "{}", stdout_of(&author));
    assert!(
        stderr_of(&author).contains("cannot approve"),
        "the requester and run author may not approve: {}",
        stderr_of(&author)
    );

    let first = approve_as(cli, "alice");
    assert_eq!(
        first.status.code(),
        Some(EXIT_PENDING),
        "{}",
        stderr_of(&first)
    );
    let after_alice = parse_json(&first.stdout, &["models", "approve"]);
    assert_eq!(after_alice["needed"][0]["count"], 1, "{after_alice}");

    let repeated = approve_as(cli, "alice");
    assert_eq!(repeated.status.code(), Some(1), "{}", stdout_of(&repeated));
    assert!(
        stderr_of(&repeated).contains("alice already approved"),
        "{}",
        stderr_of(&repeated)
    );

    let second = approve_as(cli, "bob");
    assert_eq!(second.status.code(), Some(0), "{}", stderr_of(&second));
    let completed = parse_json(&second.stdout, &["models", "approve"]);
    assert_eq!(completed["status"], "completed", "{completed}");
    let approvers: Vec<&str> = array(&completed["approvals"])
        .iter()
        .map(|approval| approval["approver"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(approvers, ["alice", "bob"]);

    let model = cli.json(&["models", "show", "wine-quality", "--json"]);
    assert_eq!(
        model["model"]["aliases"],
        json!({ "production": 1, "staging": 1 })
    );
}

/// Approves version 1 of wine-quality for production as `user`, printing JSON.
fn approve_as(cli: &Cli, user: &str) -> Output {
    let args = [
        "models",
        "approve",
        "wine-quality",
        "1",
        "--alias",
        "production",
        "--comment",
        "metrics look right",
        "--json",
    ];
    cli.command(&args)
        .env("USER", user)
        .output()
        .unwrap_or_else(|error| panic!("cannot start runledger models approve: {error}"))
}

fn deny_canary(cli: &Cli) {
    let wrong = "0".repeat(64);
    let config = format!(r#"{{"digests": ["{wrong}"]}}"#);
    cli.json(&[
        "models",
        "policies",
        "wine-quality",
        "--alias",
        "canary",
        "--plugin",
        "dataset-allowlist@0.1.0",
        "--config",
        &config,
        "--json",
    ]);

    let output = cli.output(&[
        "models",
        "promote",
        "wine-quality",
        "1",
        "--alias",
        "canary",
    ]);

    let stdout = stdout_of(&output);
    assert_eq!(
        output.status.code(),
        Some(EXIT_DENIED),
        "{stdout}{}",
        stderr_of(&output)
    );
    assert!(stdout.contains("denied"), "{stdout}");
    let digest = sha256_file(&wine_csv());
    assert!(
        stdout.contains(&digest),
        "the denial names the wine CSV by digest {digest}: {stdout}"
    );
    let model = cli.json(&["models", "show", "wine-quality", "--json"]);
    assert_eq!(
        model["model"]["aliases"].get("canary"),
        None,
        "a denied promotion moves no alias"
    );
}

fn check_audit(cli: &Cli) {
    let entries = cli.json(&["models", "audit", "wine-quality", "--json"]);
    let entries = array(&entries);
    let seqs: Vec<i64> = entries
        .iter()
        .map(|entry| entry["seq"].as_i64().unwrap_or_default())
        .collect();
    assert!(
        seqs.windows(2).all(|pair| pair[0] < pair[1]),
        "entries are oldest first: {seqs:?}"
    );
    let actions: Vec<(String, String)> = entries
        .iter()
        .map(|entry| {
            let field = |name: &str| entry[name].as_str().unwrap_or_default().to_owned();
            (field("action"), field("actor"))
        })
        .collect();
    // Policy decisions, alias moves and outcomes are the host's own entries, made by
    // `runledger` after the call of the user who triggered them.
    let expected = [
        ("model.created", TEST_USER),
        ("validators.set", TEST_USER),
        ("version.created", TEST_USER),
        ("validation.recorded", TEST_USER),
        ("policies.set", TEST_USER),
        ("policies.set", TEST_USER),
        ("promotion.requested", TEST_USER),
        ("policy.decided", SYSTEM_ACTOR),
        ("alias.moved", SYSTEM_ACTOR),
        ("promotion.completed", SYSTEM_ACTOR),
        ("promotion.requested", TEST_USER),
        ("policy.decided", SYSTEM_ACTOR),
        ("policy.decided", SYSTEM_ACTOR),
        ("promotion.pending", SYSTEM_ACTOR),
        ("approval.recorded", "alice"),
        ("promotion.pending", SYSTEM_ACTOR),
        ("approval.recorded", "bob"),
        ("alias.moved", SYSTEM_ACTOR),
        ("promotion.completed", SYSTEM_ACTOR),
        ("policies.set", TEST_USER),
        ("promotion.requested", TEST_USER),
        ("policy.decided", SYSTEM_ACTOR),
        ("promotion.denied", SYSTEM_ACTOR),
    ];
    let mut rest = actions.iter();
    for (action, actor) in expected {
        let found = rest.any(|(a, b)| a == action && b == actor);
        assert!(
            found,
            "the audit log lacks `{action}` by {actor} in order: {actions:?}"
        );
    }

    let text_output = stdout_of(&cli.output(&["models", "audit", "wine-quality"]));
    assert!(text_output.contains("alias.moved"), "{text_output}");
}

// ---------------------------------------------------------------------------------------------
// helpers

fn wine_pipeline() -> PathBuf {
    workspace_root().join("examples/wine-quality/pipeline.yaml")
}

fn wine_csv() -> PathBuf {
    workspace_root().join("examples/wine-quality/data/winequality-red.csv")
}

/// Writes the wine pipeline to `dir` with `from` replaced by `to` and the CSV path made
/// absolute, and returns its path.
fn wine_variant(dir: &Path, from: &str, to: &str) -> PathBuf {
    let text = std::fs::read_to_string(wine_pipeline()).expect("read the wine pipeline");
    assert!(text.contains(from), "the wine pipeline contains `{from}`");
    let csv = wine_csv();
    let text = text.replace(from, to).replace(
        "path: data/winequality-red.csv",
        &format!("path: {}", csv.display()),
    );
    write_file(dir, "pipeline.yaml", &text)
}

/// Runs `pipeline` with `--json`, checks the exit status and returns the summary.
fn run_json(cli: &Cli, pipeline: &Path, status: Option<i32>) -> Value {
    let args = ["run", path_text(pipeline), "--json"];
    let output = cli.output(&args);
    assert_eq!(
        output.status.code(),
        status,
        "runledger run exit status, stderr: {}",
        stderr_of(&output)
    );
    parse_json(&output.stdout, &args)
}

/// Returns the latest value of metric `key` in a `runs show --json` record.
fn latest_metric(detail: &Value, key: &str) -> f64 {
    array(&detail["latest_metrics"])
        .iter()
        .find(|point| point["key"] == key)
        .and_then(|point| point["value"].as_f64())
        .unwrap_or_else(|| panic!("the run has no metric `{key}`"))
}

fn array(value: &Value) -> &Vec<Value> {
    value
        .as_array()
        .unwrap_or_else(|| panic!("expected an array, got {value}"))
}

fn text<'a>(value: &'a Value, pointer: &str) -> &'a str {
    value
        .pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("no string at {pointer} in {value}"))
}

fn write_file(dir: &Path, name: &str, content: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, content).unwrap_or_else(|error| panic!("write {name}: {error}"));
    path
}

fn path_text(path: &Path) -> &str {
    path.to_str().expect("test paths are UTF-8")
}

fn stdout_of(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr_of(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}
