//! End-to-end tests of the model registry API: pipeline validators on a submitted wine-quality
//! run, model versions judged by attached validators, promotions that attached policies allow,
//! hold for approvals or deny, the approval rules, policies that fail, and the audit log.
//!
//! The main flow runs on SQLite and on a fresh PostgreSQL database through the router
//! in-process ([`TestApp`]) with bearer tokens, and a shorter one against the real
//! `runledger serve` on a port-0 socket. Every plugin is a real component from target/plugins
//! and target/test-plugins.
//!
//! Needs `cargo build -p runledger --bin runledger`, `cargo xtask build-plugins` and PostgreSQL
//! at 127.0.0.1:5432 trusting user `postgres`; run with
//! `cargo test -p runledger-tests --test server_governance`.

use axum::http::StatusCode;
use runledger::server::AccessMode;
use runledger_tests::server::{ServerProcess, TestApp, TestResponse};
use runledger_tests::{Backend, Cli, workspace_root};
use serde_json::{Value, json};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// How often the tests poll a run.
const POLL_INTERVAL: Duration = Duration::from_millis(100);

/// How long a submitted run may take to succeed and be validated. Generous, because the first
/// run compiles every plugin and the tests share a few cores with each other and with builds.
const RUN_TIMEOUT: Duration = Duration::from_secs(240);

/// The registered model of every scenario.
const MODEL: &str = "wine-quality";

/// Rules of the pipeline's metric-threshold validator, which the example's model meets.
const THRESHOLD_RULES: [&str; 2] = ["test_rmse <= 0.75", "test_r2 >= 0.25"];

/// A digest no dataset of these tests has.
const FOREIGN_DIGEST: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn governance_flow_sqlite() {
    governance_flow(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn governance_flow_postgres() {
    governance_flow(Backend::Postgres).await;
}

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

fn wine_csv_path() -> PathBuf {
    workspace_root().join("examples/wine-quality/data/winequality-red.csv")
}

/// Returns the example pipeline with this test's own `validate:` list in place of any it has,
/// and with its train step's epochs set to `epochs`. Fewer epochs give a worse model.
fn wine_pipeline(epochs: u32) -> String {
    let path = workspace_root().join("examples/wine-quality/pipeline.yaml");
    let text = std::fs::read_to_string(path).expect("read the wine pipeline");
    let steps = match text.find("\nvalidate:") {
        Some(index) => text[..index + 1].to_owned(),
        None => format!("{}\n", text.trim_end()),
    };
    assert!(
        steps.contains("epochs: 500"),
        "the example trains 500 epochs"
    );
    let steps = steps.replace("epochs: 500", &format!("epochs: {epochs}"));
    let rules = json!(THRESHOLD_RULES).to_string();
    format!(
        "{steps}validate:\n  - plugin: metric-threshold@0.1.0\n    config: {{ rules: {rules} }}\n  \
         - plugin: finite-metrics@0.1.0\n"
    )
}

/// Bearer tokens of the people in the scenario.
struct People {
    /// Admin: attaches validators and policies, and submits the runs, so it is their author.
    root: String,
    /// Approver.
    alice: String,
    /// Approver.
    bob: String,
    /// Viewer.
    carol: String,
    /// Editor: creates the model and versions, and requests promotions.
    dave: String,
    /// Approver who requests a promotion himself.
    frank: String,
}

impl People {
    async fn create(app: &TestApp) -> Self {
        Self {
            root: app.create_token("root", "admin").await,
            alice: app.create_token("alice", "approver").await,
            bob: app.create_token("bob", "approver").await,
            carol: app.create_token("carol", "viewer").await,
            dave: app.create_token("dave", "editor").await,
            frank: app.create_token("frank", "approver").await,
        }
    }
}

fn body_text(response: &TestResponse) -> String {
    String::from_utf8_lossy(&response.body).into_owned()
}

/// Asserts `response` has `status` and returns its JSON body.
fn expect_json(response: &TestResponse, status: StatusCode) -> Value {
    assert_eq!(response.status, status, "body: {}", body_text(response));
    response.json()
}

/// Asserts an error response's status and code, and returns its message.
fn expect_code(response: &TestResponse, status: StatusCode, code: &str) -> String {
    let error = response.expect_error(status);
    assert_eq!(error["code"], code, "error: {error}");
    error["message"].as_str().expect("message").to_owned()
}

fn text<'a>(value: &'a Value, pointer: &str) -> &'a str {
    value
        .pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("no string at {pointer} in {value}"))
}

/// Submits the wine pipeline as `token` and waits until the run succeeded and its two
/// pipeline validators are recorded; returns the run detail.
async fn run_wine(app: &TestApp, token: &str, digest: &str, epochs: u32) -> Value {
    let request = json!({ "pipeline": wine_pipeline(epochs), "inputs": { "wine": digest } });
    let response = app
        .send_as(token, "POST", "/api/v1/runs", Some(&request))
        .await;
    let accepted = expect_json(&response, StatusCode::ACCEPTED);
    let run_id = text(&accepted, "/run_id").to_owned();

    let deadline = Instant::now() + RUN_TIMEOUT;
    loop {
        let response = app
            .send_as(token, "GET", &format!("/api/v1/runs/{run_id}"), None)
            .await;
        let detail = expect_json(&response, StatusCode::OK);
        let status = text(&detail, "/run/status");
        let validated = detail["validations"].as_array().map(Vec::len) == Some(2);
        if status == "succeeded" && validated {
            return detail;
        }
        assert!(
            !matches!(status, "failed" | "cancelled" | "interrupted"),
            "run {run_id} ended {status}: {detail}"
        );
        assert!(
            Instant::now() < deadline,
            "run {run_id} is {status} with validations {} after {RUN_TIMEOUT:?}",
            detail["validations"]
        );
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

/// Returns the checks of the validation made by `plugin` (`name@version`).
fn checks_of<'a>(validations: &'a Value, plugin: &str) -> &'a Vec<Value> {
    let validation = validations
        .as_array()
        .expect("validations is an array")
        .iter()
        .find(|validation| validation["plugin"] == plugin)
        .unwrap_or_else(|| panic!("no validation by {plugin} in {validations}"));
    validation["checks"].as_array().expect("checks")
}

fn check_named<'a>(checks: &'a [Value], name: &str) -> &'a Value {
    checks
        .iter()
        .find(|check| check["name"] == name)
        .unwrap_or_else(|| panic!("no check {name} in {checks:?}"))
}

fn model_path(rest: &str) -> String {
    format!("/api/v1/models/{MODEL}{rest}")
}

async fn promote(app: &TestApp, token: &str, alias: &str, version: u64) -> TestResponse {
    let body = json!({ "version": version });
    app.send_as(
        token,
        "PUT",
        &model_path(&format!("/aliases/{alias}")),
        Some(&body),
    )
    .await
}

async fn approve(app: &TestApp, token: &str, version: u64, alias: &str) -> TestResponse {
    let body = json!({ "alias": alias, "comment": "metrics look right" });
    let path = model_path(&format!("/versions/{version}/approvals"));
    app.send_as(token, "POST", &path, Some(&body)).await
}

async fn set_policies(app: &TestApp, token: &str, alias: &str, policies: Value) -> TestResponse {
    let path = model_path(&format!("/policies/{alias}"));
    app.send_as(token, "PUT", &path, Some(&policies)).await
}

// ---------------------------------------------------------------------------------------------
// The whole flow
// ---------------------------------------------------------------------------------------------

async fn governance_flow(backend: Backend) {
    let app = TestApp::new(backend, AccessMode::Tokens).await;
    let people = People::create(&app).await;
    let (digest, _) = app
        .state
        .artifacts()
        .import_file(&wine_csv_path())
        .expect("import the wine CSV");

    let run = run_wine(&app, &people.root, &digest, 500).await;
    let run_id = text(&run, "/run/id").to_owned();
    pipeline_validators_pass(&app, &people, &run, &run_id).await;
    register_model(&app, &people).await;
    attach_rules(&app, &people, &digest).await;
    register_first_version(&app, &people, &run_id).await;
    staging_completes_at_once(&app, &people).await;
    production_needs_two_approvers(&app, &people).await;
    requester_cannot_approve(&app, &people).await;
    unlisted_dataset_is_denied(&app, &people, &digest).await;
    worse_model_fails_baseline(&app, &people, &digest, &run_id).await;
    failing_policies_deny(&app, &people).await;
    audit_lists_production_flow(&app, &people).await;
    promotions_are_listed(&app, &people).await;
}

async fn pipeline_validators_pass(app: &TestApp, people: &People, run: &Value, run_id: &str) {
    let validations = &run["validations"];
    for validation in validations.as_array().expect("validations") {
        assert_eq!(validation["trigger"], "pipeline", "{validation}");
        assert_eq!(validation["error"], Value::Null, "{validation}");
        assert_eq!(validation["plugin_digest"].as_str().map(str::len), Some(64));
    }
    let thresholds = checks_of(validations, "metric-threshold@0.1.0");
    assert_eq!(thresholds.len(), THRESHOLD_RULES.len(), "{thresholds:?}");
    for rule in THRESHOLD_RULES {
        let check = check_named(thresholds, rule);
        assert_eq!(check["passed"], true, "{check}");
        assert_eq!(check["severity"], "blocking", "{check}");
    }
    let finite = checks_of(validations, "finite-metrics@0.1.0");
    assert!(!finite.is_empty(), "finite-metrics made no check");
    assert!(
        finite.iter().all(|check| check["passed"] == true),
        "{finite:?}"
    );

    let path = format!("/api/v1/runs/{run_id}/validations");
    let listed = app.send_as(&people.carol, "GET", &path, None).await;
    let listed = expect_json(&listed, StatusCode::OK);
    assert_eq!(&listed["validations"], validations, "the run's validations");
}

async fn register_model(app: &TestApp, people: &People) {
    let request = json!({
        "name": MODEL,
        "description": "ridge regression of wine quality",
        "tags": { "team": "forecasting" },
    });
    let denied = app
        .send_as(&people.carol, "POST", "/api/v1/models", Some(&request))
        .await;
    let message = expect_code(&denied, StatusCode::FORBIDDEN, "permission_denied");
    assert!(message.contains("carol"), "{message}");

    let created = app
        .send_as(&people.dave, "POST", "/api/v1/models", Some(&request))
        .await;
    let model = expect_json(&created, StatusCode::CREATED);
    assert_eq!(model["name"], MODEL);
    assert_eq!(model["created_by"], "dave");
    assert_eq!(model["tags"]["team"], "forecasting");
    assert_eq!(model["latest_version"], Value::Null);

    let again = app
        .send_as(&people.dave, "POST", "/api/v1/models", Some(&request))
        .await;
    expect_code(&again, StatusCode::CONFLICT, "conflict");
}

async fn attach_rules(app: &TestApp, people: &People, digest: &str) {
    let validators = json!([{
        "plugin": "baseline-compare@0.1.0",
        "config": {
            "model": MODEL,
            "alias": "production",
            "metrics": [{ "key": "test_rmse", "better": "lower", "max-regression": 0.05 }],
        },
    }]);
    let path = model_path("/validators");
    let by_editor = app
        .send_as(&people.dave, "PUT", &path, Some(&validators))
        .await;
    expect_code(&by_editor, StatusCode::FORBIDDEN, "permission_denied");
    let attached = app
        .send_as(&people.root, "PUT", &path, Some(&validators))
        .await;
    assert_eq!(expect_json(&attached, StatusCode::OK), validators);

    bad_attachments_are_rejected(app, people).await;

    let staging =
        json!([{ "plugin": "validations-passed@0.1.0", "config": { "require-checks": true } }]);
    let production = json!([
        { "plugin": "validations-passed@0.1.0", "config": { "require-checks": true } },
        { "plugin": "required-approvals@0.1.0", "config": { "count": 2, "role": "approver" } },
        { "plugin": "dataset-allowlist@0.1.0", "config": { "digests": [digest] } },
    ]);
    let restricted = json!([
        { "plugin": "dataset-allowlist@0.1.0", "config": { "digests": [FOREIGN_DIGEST] } },
    ]);
    let canary = json!([
        { "plugin": "required-approvals@0.1.0", "config": { "count": 1, "role": "approver" } },
    ]);
    for (alias, policies) in [
        ("staging", staging),
        ("production", production),
        ("restricted", restricted),
        ("canary", canary),
    ] {
        let response = set_policies(app, &people.root, alias, policies.clone()).await;
        assert_eq!(expect_json(&response, StatusCode::OK), policies, "{alias}");
    }
    let read = app
        .send_as(
            &people.carol,
            "GET",
            &model_path("/policies/production"),
            None,
        )
        .await;
    let read = expect_json(&read, StatusCode::OK);
    assert_eq!(read.as_array().map(Vec::len), Some(3), "{read}");
}

async fn bad_attachments_are_rejected(app: &TestApp, people: &People) {
    let path = model_path("/validators");
    let wrong_kind = json!([
        { "plugin": "finite-metrics@0.1.0", "config": {} },
        { "plugin": "required-approvals@0.1.0", "config": { "count": 2 } },
    ]);
    let response = app
        .send_as(&people.root, "PUT", &path, Some(&wrong_kind))
        .await;
    let message = expect_code(&response, StatusCode::BAD_REQUEST, "invalid_argument");
    assert!(message.contains("[1]"), "names the index: {message}");
    assert!(
        message.contains("required-approvals"),
        "names the plugin: {message}"
    );

    let bad_config = json!([{ "plugin": "metric-threshold@0.1.0", "config": { "rules": 5 } }]);
    let response = app
        .send_as(&people.root, "PUT", &path, Some(&bad_config))
        .await;
    let message = expect_code(&response, StatusCode::BAD_REQUEST, "invalid_argument");
    assert!(message.contains("[0]"), "names the index: {message}");
    assert!(
        message.contains("metric-threshold"),
        "names the plugin: {message}"
    );
    assert!(
        message.contains("rules"),
        "names the schema path: {message}"
    );

    let missing = json!([{ "plugin": "no-such-policy", "config": {} }]);
    let response = set_policies(app, &people.root, "production", missing).await;
    let message = expect_code(&response, StatusCode::BAD_REQUEST, "invalid_argument");
    assert!(message.contains("no-such-policy"), "{message}");

    let kept = app.send_as(&people.carol, "GET", &path, None).await;
    let kept = expect_json(&kept, StatusCode::OK);
    assert_eq!(
        kept[0]["plugin"], "baseline-compare@0.1.0",
        "rejected lists change nothing"
    );
}

async fn register_first_version(app: &TestApp, people: &People, run_id: &str) {
    let request = json!({ "run_id": run_id, "artifact": "train.nothing" });
    let path = model_path("/versions");
    let response = app
        .send_as(&people.dave, "POST", &path, Some(&request))
        .await;
    let message = expect_code(&response, StatusCode::BAD_REQUEST, "invalid_argument");
    assert!(
        message.contains("train.model"),
        "lists the run's outputs: {message}"
    );

    let request = json!({
        "run_id": run_id,
        "artifact": "train.model",
        "description": "first ridge model",
        "tags": { "stage": "candidate" },
    });
    let response = app
        .send_as(&people.dave, "POST", &path, Some(&request))
        .await;
    let version = expect_json(&response, StatusCode::CREATED);
    assert_eq!(version["version"], 1);
    assert_eq!(version["run_id"], run_id);
    assert_eq!(version["artifact_name"], "train.model");
    assert_eq!(version["tags"]["stage"], "candidate");

    let baseline = checks_of(&version["validations"], "baseline-compare@0.1.0");
    assert_eq!(baseline.len(), 1, "{baseline:?}");
    assert_eq!(baseline[0]["name"], "baseline");
    assert_eq!(
        baseline[0]["passed"], true,
        "no baseline yet passes: {}",
        baseline[0]
    );
}

async fn staging_completes_at_once(app: &TestApp, people: &People) {
    let response = promote(app, &people.dave, "staging", 1).await;
    let promotion = expect_json(&response, StatusCode::OK);
    assert_eq!(promotion["status"], "completed");
    assert_eq!(promotion["requester"], "dave");
    assert_eq!(promotion["decisions"][0]["decision"], "allow");
    assert_eq!(
        promotion["decisions"][0]["plugin"],
        "validations-passed@0.1.0"
    );
}

async fn production_needs_two_approvers(app: &TestApp, people: &People) {
    let response = promote(app, &people.dave, "production", 1).await;
    let promotion = expect_json(&response, StatusCode::ACCEPTED);
    assert_eq!(promotion["status"], "pending");
    assert_eq!(promotion["needed"][0]["plugin"], "required-approvals@0.1.0");
    assert_eq!(promotion["needed"][0]["count"], 2);
    assert_eq!(promotion["needed"][0]["role"], "approver");

    let response = approve(app, &people.carol, 1, "production").await;
    let message = expect_code(&response, StatusCode::FORBIDDEN, "permission_denied");
    assert!(message.contains("carol"), "names the person: {message}");
    assert!(message.contains("viewer"), "names the role: {message}");
    assert!(
        message.contains("approver"),
        "names the role needed: {message}"
    );

    let response = approve(app, &people.root, 1, "production").await;
    let message = expect_code(&response, StatusCode::FORBIDDEN, "self_approval");
    assert!(message.contains("root"), "names the person: {message}");
    assert!(
        message.contains("started the run"),
        "names the rule: {message}"
    );

    let response = approve(app, &people.alice, 1, "production").await;
    let promotion = expect_json(&response, StatusCode::ACCEPTED);
    assert_eq!(promotion["needed"][0]["count"], 1, "{promotion}");
    assert_eq!(promotion["approvals"][0]["approver"], "alice");

    let response = approve(app, &people.alice, 1, "production").await;
    let message = expect_code(&response, StatusCode::CONFLICT, "duplicate_approval");
    assert!(message.contains("alice"), "names the person: {message}");

    let response = approve(app, &people.bob, 1, "production").await;
    let promotion = expect_json(&response, StatusCode::OK);
    assert_eq!(promotion["status"], "completed");
    assert_eq!(promotion["approvals"].as_array().map(Vec::len), Some(2));

    let aliases = app
        .send_as(&people.carol, "GET", &model_path("/aliases"), None)
        .await;
    let aliases = expect_json(&aliases, StatusCode::OK);
    assert_eq!(aliases["aliases"], json!({ "production": 1, "staging": 1 }));

    let response = approve(app, &people.alice, 1, "production").await;
    let message = expect_code(&response, StatusCode::NOT_FOUND, "no_pending_promotion");
    assert!(message.contains("production"), "{message}");
}

async fn requester_cannot_approve(app: &TestApp, people: &People) {
    let response = promote(app, &people.frank, "canary", 1).await;
    expect_json(&response, StatusCode::ACCEPTED);

    let response = approve(app, &people.frank, 1, "canary").await;
    let message = expect_code(&response, StatusCode::FORBIDDEN, "self_approval");
    assert!(message.contains("frank"), "names the person: {message}");
    assert!(
        message.contains("requested the promotion"),
        "names the rule: {message}"
    );
}

async fn unlisted_dataset_is_denied(app: &TestApp, people: &People, digest: &str) {
    let response = promote(app, &people.dave, "restricted", 1).await;
    let error = response.expect_error(StatusCode::CONFLICT);
    assert_eq!(error["code"], "promotion_denied", "{error}");
    let message = error["message"].as_str().expect("message");
    assert!(
        message.contains(digest),
        "names the dataset digest: {message}"
    );
    assert!(
        message.contains("dataset-allowlist@0.1.0"),
        "names the policy: {message}"
    );
    let detail = &error["details"][0];
    assert!(
        text(detail, "/field").contains("dataset-allowlist@0.1.0"),
        "{detail}"
    );
    assert!(text(detail, "/problem").contains(digest), "{detail}");

    let model = app
        .send_as(&people.carol, "GET", &model_path(""), None)
        .await;
    let model = expect_json(&model, StatusCode::OK);
    assert_eq!(model["aliases"].get("restricted"), None, "{model}");
}

async fn worse_model_fails_baseline(app: &TestApp, people: &People, digest: &str, baseline: &str) {
    let worse = run_wine(app, &people.root, digest, 2).await;
    let worse_id = text(&worse, "/run/id");
    let request = json!({ "run_id": worse_id, "artifact": "train.model" });
    let response = app
        .send_as(
            &people.dave,
            "POST",
            &model_path("/versions"),
            Some(&request),
        )
        .await;
    let version = expect_json(&response, StatusCode::CREATED);
    assert_eq!(version["version"], 2);

    let checks = checks_of(&version["validations"], "baseline-compare@0.1.0");
    let check = check_named(checks, "test_rmse vs production");
    assert_eq!(check["passed"], false, "{check}");
    assert_eq!(check["severity"], "blocking", "{check}");
    assert!(
        text(check, "/message").contains(baseline),
        "names the baseline run: {check}"
    );

    let response = promote(app, &people.dave, "production", 2).await;
    let message = expect_code(&response, StatusCode::CONFLICT, "promotion_denied");
    assert!(message.contains("validations-passed@0.1.0"), "{message}");
    assert!(
        message.contains("baseline-compare"),
        "names the failed validator: {message}"
    );
}

async fn failing_policies_deny(app: &TestApp, people: &People) {
    for plugin in ["policy-panics", "policy-spin", "policy-garbage"] {
        let policies = json!([{ "plugin": plugin, "config": {} }]);
        let response = set_policies(app, &people.root, "chaos", policies).await;
        expect_json(&response, StatusCode::OK);

        let response = promote(app, &people.dave, "chaos", 1).await;
        let message = expect_code(&response, StatusCode::CONFLICT, "promotion_denied");
        assert!(message.contains(plugin), "names the plugin: {message}");

        let model = app
            .send_as(&people.carol, "GET", &model_path(""), None)
            .await;
        let model = expect_json(&model, StatusCode::OK);
        assert_eq!(
            model["aliases"].get("chaos"),
            None,
            "after {plugin}: {model}"
        );
    }

    let policies = json!([{ "plugin": "policy-wrong-imports", "config": {} }]);
    let response = set_policies(app, &people.root, "chaos", policies).await;
    let message = if response.status == StatusCode::OK {
        let response = promote(app, &people.dave, "chaos", 1).await;
        expect_code(&response, StatusCode::CONFLICT, "promotion_denied")
    } else {
        expect_code(&response, StatusCode::BAD_REQUEST, "invalid_argument")
    };
    assert!(message.contains("policy-wrong-imports"), "{message}");

    let response = promote(app, &people.dave, "staging", 1).await;
    let promotion = expect_json(&response, StatusCode::OK);
    assert_eq!(
        promotion["status"], "completed",
        "a normal promotion still works"
    );
}

async fn audit_lists_production_flow(app: &TestApp, people: &People) {
    let response = app
        .send_as(&people.carol, "GET", &model_path("/audit?limit=1000"), None)
        .await;
    let page = expect_json(&response, StatusCode::OK);
    let entries = page["entries"].as_array().expect("entries").clone();
    assert_eq!(page["next_after_seq"], Value::Null, "one page holds all");
    let seqs: Vec<i64> = entries
        .iter()
        .map(|e| e["seq"].as_i64().expect("seq"))
        .collect();
    assert!(
        seqs.windows(2).all(|pair| pair[0] < pair[1]),
        "oldest first: {seqs:?}"
    );
    assert_eq!(entries[0]["action"], "model.created");

    let production: Vec<&Value> = entries
        .iter()
        .filter(|entry| entry["alias"] == "production" && entry["version"] == 1)
        .collect();
    let actions: Vec<(&str, &str)> = production
        .iter()
        .map(|entry| (text(entry, "/action"), text(entry, "/actor")))
        .collect();
    let position = |wanted: (&str, &str)| {
        actions
            .iter()
            .position(|action| *action == wanted)
            .unwrap_or_else(|| panic!("no {wanted:?} in {actions:?}"))
    };
    let requested = position(("promotion.requested", "dave"));
    let by_alice = position(("approval.recorded", "alice"));
    let by_bob = position(("approval.recorded", "bob"));
    let completed = actions
        .iter()
        .position(|(action, _)| *action == "promotion.completed")
        .unwrap_or_else(|| panic!("no completion in {actions:?}"));
    let moved = actions
        .iter()
        .position(|(action, _)| *action == "alias.moved")
        .unwrap_or_else(|| panic!("no alias move in {actions:?}"));
    assert!(requested < by_alice, "{actions:?}");
    assert!(by_alice < by_bob, "{actions:?}");
    assert!(by_bob < completed, "{actions:?}");
    assert!(by_bob < moved, "{actions:?}");
    let decided_before_alice = actions[requested..by_alice]
        .iter()
        .filter(|(action, _)| *action == "policy.decided")
        .count();
    assert_eq!(
        decided_before_alice, 3,
        "one decision per policy: {actions:?}"
    );
    let decided_after_bob = actions[by_bob..]
        .iter()
        .filter(|(action, _)| *action == "policy.decided")
        .count();
    assert_eq!(
        decided_after_bob, 3,
        "every policy decides again: {actions:?}"
    );

    audit_pages_follow_on(app, people, &seqs).await;
    audit_cannot_change(app, people).await;
}

async fn audit_pages_follow_on(app: &TestApp, people: &People, seqs: &[i64]) {
    let first = app
        .send_as(&people.carol, "GET", &model_path("/audit?limit=2"), None)
        .await;
    let first = expect_json(&first, StatusCode::OK);
    assert_eq!(first["next_after_seq"], seqs[1], "{first}");
    let path = model_path(&format!("/audit?limit=2&after_seq={}", seqs[1]));
    let second = app.send_as(&people.carol, "GET", &path, None).await;
    let second = expect_json(&second, StatusCode::OK);
    assert_eq!(second["entries"][0]["seq"], seqs[2], "{second}");

    let path = model_path("/versions/2/audit?limit=1000");
    let version = app.send_as(&people.carol, "GET", &path, None).await;
    let version = expect_json(&version, StatusCode::OK);
    let entries = version["entries"].as_array().expect("entries");
    assert!(!entries.is_empty(), "version 2 has entries");
    assert!(
        entries.iter().all(|entry| entry["version"] == 2),
        "{version}"
    );
    assert!(
        entries
            .iter()
            .any(|entry| entry["action"] == "version.created"),
        "{version}"
    );
}

async fn audit_cannot_change(app: &TestApp, people: &People) {
    for method in ["PUT", "PATCH", "DELETE"] {
        let response = app
            .send_as(
                &people.root,
                method,
                &model_path("/audit"),
                Some(&json!({})),
            )
            .await;
        expect_code(
            &response,
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
        );
    }
}

async fn promotions_are_listed(app: &TestApp, people: &People) {
    let path = model_path("/promotions?status=pending");
    let response = app.send_as(&people.carol, "GET", &path, None).await;
    let listed = expect_json(&response, StatusCode::OK);
    let pending = listed["promotions"].as_array().expect("promotions");
    assert_eq!(pending.len(), 1, "{listed}");
    assert_eq!(pending[0]["alias"], "canary");
    assert_eq!(pending[0]["requester"], "frank");

    let id = pending[0]["id"].as_i64().expect("id");
    let response = app
        .send_as(
            &people.carol,
            "GET",
            &format!("/api/v1/promotions/{id}"),
            None,
        )
        .await;
    let promotion = expect_json(&response, StatusCode::OK);
    assert_eq!(promotion["status"], "pending");
    assert_eq!(promotion["alias"], "canary");

    let response = app
        .send_as(&people.carol, "GET", "/api/v1/promotions/999999", None)
        .await;
    expect_code(&response, StatusCode::NOT_FOUND, "not_found");
}

// ---------------------------------------------------------------------------------------------
// The real binary
// ---------------------------------------------------------------------------------------------

/// Sends `method` to the real server and returns the status and JSON body.
async fn call(
    client: &reqwest::Client,
    method: reqwest::Method,
    url: String,
    body: Option<Value>,
) -> (u16, Value) {
    let request = client.request(method, url);
    let request = match body {
        Some(body) => request.json(&body),
        None => request,
    };
    let response = request.send().await.expect("the server answers");
    let status = response.status().as_u16();
    let text = response.text().await.expect("response body");
    let body = serde_json::from_str(&text).unwrap_or(Value::Null);
    (status, body)
}

/// Policies that trap, spin or return garbage deny a promotion on the real server, which keeps
/// serving requests afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_policies_keep_server_serving() {
    let cli = Cli::new(Backend::Sqlite);
    let server = ServerProcess::start(&cli, &[]);
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(120))
        .build()
        .expect("http client");
    let base = server.url();

    let csv = std::fs::read(wine_csv_path()).expect("read the wine CSV");
    let upload = client
        .post(format!("{base}/api/v1/artifacts"))
        .header("content-type", "text/csv")
        .body(csv)
        .send()
        .await
        .expect("upload the CSV");
    assert_eq!(upload.status().as_u16(), 201, "upload status");
    let uploaded: Value = upload.json().await.expect("upload JSON");
    let run_id = run_over_socket(&client, &base, text(&uploaded, "/digest")).await;

    let model = json!({ "name": MODEL });
    let (status, _) = call(
        &client,
        reqwest::Method::POST,
        format!("{base}/api/v1/models"),
        Some(model),
    )
    .await;
    assert_eq!(status, 201);
    let version = json!({ "run_id": run_id, "artifact": "train.model" });
    let url = format!("{base}/api/v1/models/{MODEL}/versions");
    let (status, body) = call(&client, reqwest::Method::POST, url, Some(version)).await;
    assert_eq!(status, 201, "{body}");

    for plugin in ["policy-panics", "policy-spin", "policy-garbage"] {
        let policies = json!([{ "plugin": plugin, "config": {} }]);
        let url = format!("{base}/api/v1/models/{MODEL}/policies/production");
        let (status, body) = call(&client, reqwest::Method::PUT, url, Some(policies)).await;
        assert_eq!(status, 200, "{body}");

        let url = format!("{base}/api/v1/models/{MODEL}/aliases/production");
        let promotion = json!({ "version": 1 });
        let (status, body) = call(&client, reqwest::Method::PUT, url, Some(promotion)).await;
        assert_eq!(status, 409, "{body}");
        assert_eq!(body["error"]["code"], "promotion_denied", "{body}");
        let message = text(&body, "/error/message");
        assert!(message.contains(plugin), "names the plugin: {message}");

        let url = format!("{base}/api/v1/models/{MODEL}");
        let (status, body) = call(&client, reqwest::Method::GET, url, None).await;
        assert_eq!(
            status, 200,
            "the server still serves after {plugin}: {body}"
        );
        assert_eq!(body["aliases"], json!({}), "{body}");
    }

    let status = server.stop();
    assert!(status.success(), "server exit status {status}");
}

/// Submits the wine pipeline to the real server, waits until it succeeded, and returns its id.
async fn run_over_socket(client: &reqwest::Client, base: &str, digest: &str) -> String {
    let request = json!({ "pipeline": wine_pipeline(500), "inputs": { "wine": digest } });
    let url = format!("{base}/api/v1/runs");
    let (status, accepted) = call(client, reqwest::Method::POST, url, Some(request)).await;
    assert_eq!(status, 202, "{accepted}");
    let run_id = text(&accepted, "/run_id").to_owned();

    let deadline = Instant::now() + RUN_TIMEOUT;
    loop {
        let url = format!("{base}/api/v1/runs/{run_id}");
        let (_, detail) = call(client, reqwest::Method::GET, url, None).await;
        if detail["run"]["status"] == "succeeded" {
            return run_id;
        }
        assert!(
            Instant::now() < deadline,
            "run {run_id} did not succeed: {detail}"
        );
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}
