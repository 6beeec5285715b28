//! External pipeline steps: a step with `executor: external` waits until a client reports its
//! outputs with the step's token, and the run then continues with the reported outputs.
//!
//! The tests come in two groups. One drives the engine and the router in one process
//! ([`TestApp`]), where a report wakes the wait at once. The other runs `runledger run` and
//! `runledger serve` as two processes sharing a data directory and database, where the waiting
//! process finds the report by polling. Both run on SQLite and on a fresh PostgreSQL database.
//!
//! Needs `cargo xtask build-plugins`, `cargo build -p runledger --bin runledger` and
//! PostgreSQL at 127.0.0.1:5432 trusting user `postgres`; run with
//! `cargo test -p runledger-tests --test server_external`.

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use runledger::engine::plan::plan;
use runledger::engine::{ExternalStepToken, Plan, PlanContext, RunOptions, RunSummary};
use runledger::server::AccessMode;
use runledger::store::artifacts::ArtifactStore;
use runledger::store::{Node, NodeKind, RunStatus, StepStatus, TraverseDirection};
use runledger_tests::server::{ServerProcess, TestApp, TestResponse};
use runledger_tests::{Backend, Cli, parse_json};
use serde_json::{Map, Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use tokio::task::JoinHandle;

/// Defines a `_sqlite` and a `_postgres` test for each async scenario function.
macro_rules! on_both_backends {
    ($($scenario:ident => $sqlite:ident, $postgres:ident;)*) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $sqlite() {
                $scenario(Backend::Sqlite).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $postgres() {
                $scenario(Backend::Postgres).await;
            }
        )*
    };
}

on_both_backends! {
    in_process_report => in_process_report_sqlite, in_process_report_postgres;
    in_process_failed_report => failed_report_sqlite, failed_report_postgres;
    in_process_timeout => in_process_timeout_sqlite, in_process_timeout_postgres;
    cli_waits_for_server_report => cli_and_server_sqlite, cli_and_server_postgres;
    cli_timeout => cli_timeout_sqlite, cli_timeout_postgres;
    cli_sigint_while_waiting => cli_sigint_sqlite, cli_sigint_postgres;
}

/// A pipeline `prepare (copy) -> train (external) -> publish (copy)`; `TIMEOUT` is replaced by
/// the external step's timeout.
const PIPELINE: &str = "
name: external-demo
inputs:
  data: { path: data.txt, media-type: text/plain }
steps:
  - name: prepare
    plugin: copy
    inputs: { source: inputs.data }
  - name: train
    executor: external
    inputs: { dataset: prepare.copy }
    outputs: [model]
    params: { epochs: 3 }
    timeout: TIMEOUT
  - name: publish
    plugin: copy
    inputs: { source: train.model }
";

/// Content of the pipeline input.
const DATA: &[u8] = b"feature,label\n1.0,2.0\n2.0,4.1\n";

/// Content the test reports as the external step's `model` output.
const MODEL: &[u8] = b"weights: [1.98, 0.05]\n";

/// How long a step may take to start waiting, or a run to end. Generous, because tests share
/// a few cores with each other and with builds.
const PROCESS_TIMEOUT: Duration = Duration::from_secs(120);

/// How often the tests poll a background run.
const POLL_INTERVAL: Duration = Duration::from_millis(100);

/// Writes the pipeline with the external step's `timeout` and its input into `dir`, and
/// returns the pipeline's path.
fn write_pipeline(dir: &Path, timeout: &str) -> PathBuf {
    std::fs::write(dir.join("data.txt"), DATA).expect("write data.txt");
    let path = dir.join("pipeline.yaml");
    std::fs::write(&path, PIPELINE.replace("TIMEOUT", timeout)).expect("write pipeline.yaml");
    path
}

/// Lowercase hex SHA-256 of `bytes`.
fn sha256(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    hex::encode(sha2::Sha256::digest(bytes))
}

/// Builds the body of a successful report of `model`.
fn model_report(digest: &str) -> Value {
    json!({
        "status": "succeeded",
        "outputs": [{ "name": "model", "digest": digest, "media_type": "text/yaml" }],
        "metrics": [
            { "key": "loss", "value": 0.5, "step": 1 },
            { "key": "loss", "value": 0.25, "step": 2 }
        ],
        "logs": ["trained 2 epochs on the GPU box"]
    })
}

// ---------------------------------------------------------------------------------------------
// In-process: engine and router in one process
// ---------------------------------------------------------------------------------------------

/// A run of [`PIPELINE`] executing in a background task of the test's process.
struct InProcessRun {
    app: TestApp,
    run_id: String,
    token: ExternalStepToken,
    cancel: Arc<AtomicBool>,
    execution: JoinHandle<RunSummary>,
    _dir: tempfile::TempDir,
}

/// Plans [`PIPELINE`] with the external step's `timeout`, its input in `dir`.
fn plan_pipeline(app: &TestApp, dir: &Path, timeout: &str) -> Plan {
    let path = write_pipeline(dir, timeout);
    let text = std::fs::read_to_string(path).expect("read pipeline");
    let registry = app.state.registry();
    let context = PlanContext {
        registry: &registry,
        base_dir: dir,
        overrides: &Map::new(),
        artifacts: app.state.artifacts(),
        pinned_inputs: &BTreeMap::new(),
    };
    plan(&text, "pipeline.yaml", &context).expect("the pipeline plans")
}

impl InProcessRun {
    /// Plans, records and starts a run whose external step has `timeout`.
    async fn start(backend: Backend, mode: AccessMode, timeout: &str) -> Self {
        let app = TestApp::new(backend, mode).await;
        let dir = tempfile::tempdir().expect("temporary directory");
        let plan = plan_pipeline(&app, dir.path(), timeout);
        let engine = app.state.engine().clone();
        let options = RunOptions {
            parallelism: 2,
            ..RunOptions::default()
        };

        let run_id = engine
            .create_run(&plan, &options)
            .await
            .expect("run created");
        let tokens = engine.external_step_tokens(&run_id);
        assert_eq!(tokens.len(), 1, "one token per external step: {tokens:?}");
        let cancel = Arc::new(AtomicBool::new(false));
        let execution = tokio::spawn({
            let (run_id, cancel) = (run_id.clone(), cancel.clone());
            async move {
                engine
                    .execute(&run_id, &plan, &options, cancel, None)
                    .await
                    .expect("the run executes")
            }
        });
        Self {
            app,
            run_id,
            token: tokens[0].clone(),
            cancel,
            execution,
            _dir: dir,
        }
    }

    /// Sends a report for the external step with `token` as bearer, if any.
    async fn report(&self, token: Option<&str>, body: &Value) -> TestResponse {
        let mut request = Request::post(self.token.report_path())
            .header(header::CONTENT_TYPE, "application/json");
        if let Some(token) = token {
            request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        let request = request.body(Body::from(body.to_string())).expect("request");
        self.app.send(request).await
    }

    /// Lists the run's external steps through the API.
    async fn external_steps(&self) -> Value {
        let response = self
            .app
            .get(&format!("/api/v1/runs/{}/external-steps", self.run_id))
            .await;
        assert_eq!(response.status, StatusCode::OK, "{response:?}");
        response.json()
    }

    /// Polls the listing until the external step waits, and returns its entry.
    async fn wait_until_waiting(&self) -> Value {
        let deadline = Instant::now() + PROCESS_TIMEOUT;
        loop {
            let list = self.external_steps().await;
            let step = list["items"][0].clone();
            if step["wait_state"] == "waiting" {
                return step;
            }
            assert!(
                !self.execution.is_finished(),
                "the run ended before its external step waited: {list}"
            );
            assert!(
                Instant::now() < deadline,
                "the external step did not wait within {PROCESS_TIMEOUT:?}: {list}"
            );
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }

    /// Waits for the run's execution to end and returns its summary.
    async fn finish(self) -> (TestApp, RunSummary) {
        let summary = tokio::time::timeout(PROCESS_TIMEOUT, self.execution)
            .await
            .expect("the run ends in time")
            .expect("the run task does not panic");
        (self.app, summary)
    }
}

fn summary_step<'a>(summary: &'a RunSummary, name: &str) -> &'a runledger::engine::StepSummary {
    summary
        .steps
        .iter()
        .find(|step| step.name == name)
        .unwrap_or_else(|| panic!("the summary has no step `{name}`: {summary:?}"))
}

async fn in_process_report(backend: Backend) {
    let run = InProcessRun::start(backend, AccessMode::Local, "5m").await;
    let step_run_id = run.token.step_run_id.clone();
    let token = run.token.token.expose().to_owned();
    let (digest, _) = run
        .app
        .state
        .artifacts()
        .put_bytes(MODEL)
        .expect("store model");

    let waiting = run.wait_until_waiting().await;
    assert_eq!(waiting["name"], "train");
    assert_eq!(waiting["step_run_id"], step_run_id.as_str());
    assert_eq!(waiting["status"], "running");
    assert_eq!(waiting["outputs"], json!(["model"]));
    assert_eq!(waiting["params"], json!({ "epochs": 3 }));
    assert_eq!(waiting["inputs"][0]["name"], "dataset");
    assert_eq!(waiting["inputs"][0]["digest"], sha256(DATA).as_str());
    assert!(waiting["waiting_since"].is_i64(), "{waiting}");
    let listing_text = run.external_steps().await.to_string();
    assert!(
        !listing_text.contains(&token),
        "the listing shows no token: {listing_text}"
    );

    let missing = run.report(None, &model_report(&digest)).await;
    missing.expect_error(StatusCode::UNAUTHORIZED);
    let wrong = run.report(Some("rls_0000"), &model_report(&digest)).await;
    wrong.expect_error(StatusCode::UNAUTHORIZED);

    let undeclared = json!({
        "status": "succeeded",
        "outputs": [
            { "name": "model", "digest": digest },
            { "name": "weights", "digest": digest }
        ]
    });
    let error = run
        .report(Some(&token), &undeclared)
        .await
        .expect_error(StatusCode::BAD_REQUEST);
    let message = error["message"].as_str().unwrap_or_default();
    assert!(message.contains("`weights`"), "{error}");
    assert_eq!(error["details"][0]["field"], "outputs[1].name", "{error}");

    let incomplete = json!({ "status": "succeeded", "outputs": [] });
    let error = run
        .report(Some(&token), &incomplete)
        .await
        .expect_error(StatusCode::BAD_REQUEST);
    assert!(
        error["message"]
            .as_str()
            .unwrap_or_default()
            .contains("[model]"),
        "{error}"
    );

    let absent = model_report(&sha256(b"never uploaded"));
    let error = run
        .report(Some(&token), &absent)
        .await
        .expect_error(StatusCode::BAD_REQUEST);
    assert_eq!(error["details"][0]["field"], "outputs[0].digest", "{error}");

    let accepted = run.report(Some(&token), &model_report(&digest)).await;
    assert_eq!(accepted.status, StatusCode::OK, "{accepted:?}");
    assert_eq!(accepted.json()["status"], "succeeded");

    let again = run.report(Some(&token), &model_report(&digest)).await;
    again.expect_error(StatusCode::CONFLICT);

    let (app, summary) = run.finish().await;
    assert_eq!(summary.status, RunStatus::Succeeded, "{summary:?}");
    let train = summary_step(&summary, "train");
    assert_eq!(train.status, StepStatus::Succeeded);
    assert_eq!(train.outputs[0].digest, digest);
    assert_eq!(train.metrics.get("loss"), Some(&0.25), "latest loss");
    let publish = summary_step(&summary, "publish");
    assert_eq!(publish.status, StepStatus::Succeeded);
    assert_eq!(
        publish.outputs[0].digest, digest,
        "publish copied the reported model"
    );

    check_recorded_step(&app, &step_run_id).await;
    check_lineage(&app, &summary).await;
}

/// Checks the records of the reported step: status, attempts, logs, metrics and output.
async fn check_recorded_step(app: &TestApp, step_run_id: &str) {
    let store = app.state.store();
    let step = store
        .get_step_run(step_run_id)
        .await
        .expect("read step run")
        .expect("step run exists");
    assert_eq!(step.executor, "external");
    assert_eq!(step.plugin_name, None);
    assert_eq!(step.attempts, 1);
    assert!(step.started_at.is_some(), "{step:?}");
    assert!(step.ended_at.is_some(), "{step:?}");

    let logs = store
        .list_step_logs(step_run_id, None, None)
        .await
        .expect("read step logs");
    let messages: Vec<&str> = logs.iter().map(|line| line.message.as_str()).collect();
    assert_eq!(messages, ["trained 2 epochs on the GPU box"]);
    let metrics = store.step_metrics(step_run_id).await.expect("read metrics");
    assert_eq!(metrics.len(), 2, "{metrics:?}");

    let outputs = store
        .step_output_artifacts(step_run_id)
        .await
        .expect("read outputs");
    assert_eq!(outputs.len(), 1);
    assert_eq!(outputs[0].media_type, "text/yaml");
    assert_eq!(outputs[0].size, MODEL.len() as i64);
}

/// Checks that lineage runs dataset -> prepare -> artifact -> train -> model -> publish.
async fn check_lineage(app: &TestApp, summary: &RunSummary) {
    let id = |name: &str| summary_step(summary, name).step_run_id.clone();
    let graph = app
        .state
        .store()
        .traverse(
            Node::step_run(id("publish")),
            TraverseDirection::Upstream,
            None,
        )
        .await
        .expect("traverse lineage");
    let edges: BTreeSet<(Node, Node)> = graph
        .edges
        .iter()
        .map(|edge| {
            let source = node(edge.source_kind, &edge.source_id);
            (source, node(edge.target_kind, &edge.target_id))
        })
        .collect();
    let data = sha256(DATA);
    let model = sha256(MODEL);
    let expected = [
        (Node::dataset(&data), Node::step_run(id("prepare"))),
        (Node::step_run(id("prepare")), Node::artifact(&data)),
        (Node::artifact(&data), Node::step_run(id("train"))),
        (Node::step_run(id("train")), Node::artifact(&model)),
        (Node::artifact(&model), Node::step_run(id("publish"))),
    ];
    for edge in expected {
        assert!(edges.contains(&edge), "missing edge {edge:?} in {edges:?}");
    }
}

fn node(kind: NodeKind, id: &str) -> Node {
    Node {
        kind,
        id: id.to_owned(),
    }
}

async fn in_process_failed_report(backend: Backend) {
    let run = InProcessRun::start(backend, AccessMode::Local, "5m").await;
    let token = run.token.token.expose().to_owned();
    run.wait_until_waiting().await;

    let with_outputs = json!({
        "status": "failed",
        "error": "out of GPU memory",
        "outputs": [{ "name": "model", "digest": sha256(MODEL) }]
    });
    let error = run
        .report(Some(&token), &with_outputs)
        .await
        .expect_error(StatusCode::BAD_REQUEST);
    assert_eq!(error["details"][0]["field"], "outputs", "{error}");
    let failed = json!({ "status": "failed", "error": "out of GPU memory", "outputs": [] });
    let accepted = run.report(Some(&token), &failed).await;
    assert_eq!(accepted.status, StatusCode::OK, "{accepted:?}");
    assert_eq!(accepted.json()["status"], "failed");

    let (_app, summary) = run.finish().await;
    assert_eq!(summary.status, RunStatus::Failed);
    let train = summary_step(&summary, "train");
    assert_eq!(train.status, StepStatus::Failed);
    assert_eq!(train.error.as_deref(), Some("out of GPU memory"));
    assert_eq!(
        summary_step(&summary, "publish").status,
        StepStatus::Skipped
    );
}

async fn in_process_timeout(backend: Backend) {
    let run = InProcessRun::start(backend, AccessMode::Local, "1500ms").await;
    let token = run.token.token.expose().to_owned();
    let step_run_id = run.token.step_run_id.clone();
    run.wait_until_waiting().await;
    let (digest, _) = run
        .app
        .state
        .artifacts()
        .put_bytes(MODEL)
        .expect("store model");

    let (app, summary) = run.finish().await;

    assert_eq!(summary.status, RunStatus::Failed);
    let train = summary_step(&summary, "train");
    assert_eq!(train.status, StepStatus::Failed);
    let error = train.error.as_deref().unwrap_or_default();
    assert!(error.contains("timeout of 1500 ms"), "{error}");
    assert_eq!(
        summary_step(&summary, "publish").status,
        StepStatus::Skipped
    );
    let list = app
        .get(&format!("/api/v1/runs/{}/external-steps", summary.run_id))
        .await
        .json();
    assert_eq!(list["items"][0]["wait_state"], "timed_out", "{list}");

    let late = Request::post(format!("/api/v1/external-steps/{step_run_id}/report"))
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(model_report(&digest).to_string()))
        .expect("request");
    let error = app.send(late).await.expect_error(StatusCode::CONFLICT);
    assert!(
        error["message"]
            .as_str()
            .unwrap_or_default()
            .contains("timed out"),
        "{error}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn report_needs_no_api_token_sqlite() {
    let run = InProcessRun::start(Backend::Sqlite, AccessMode::Tokens, "5m").await;
    let listing = run
        .app
        .get(&format!("/api/v1/runs/{}/external-steps", run.run_id))
        .await;
    listing.expect_error(StatusCode::UNAUTHORIZED);
    wait_for_waiting_state(&run).await;
    let (digest, _) = run
        .app
        .state
        .artifacts()
        .put_bytes(MODEL)
        .expect("store model");

    let token = run.token.token.expose().to_owned();
    let accepted = run.report(Some(&token), &model_report(&digest)).await;

    assert_eq!(accepted.status, StatusCode::OK, "{accepted:?}");
    let (_app, summary) = run.finish().await;
    assert_eq!(summary.status, RunStatus::Succeeded);
}

/// Waits until the external step waits, reading the store, since listing needs an API token
/// in token mode.
async fn wait_for_waiting_state(run: &InProcessRun) {
    let deadline = Instant::now() + PROCESS_TIMEOUT;
    loop {
        let row = run
            .app
            .state
            .store()
            .get_external_step(&run.token.step_run_id)
            .await
            .expect("read external step")
            .expect("external step exists");
        if row.state == runledger::store::ExternalState::Waiting {
            return;
        }
        assert!(Instant::now() < deadline, "the step did not wait: {row:?}");
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_ends_wait_sqlite() {
    let run = InProcessRun::start(Backend::Sqlite, AccessMode::Local, "5m").await;
    run.wait_until_waiting().await;

    run.cancel.store(true, Ordering::Relaxed);
    let (_app, summary) = run.finish().await;

    assert_eq!(summary.status, RunStatus::Cancelled);
    let train = summary_step(&summary, "train");
    assert_eq!(train.status, StepStatus::Cancelled);
    // The scheduler skips the dependents of a step that did not succeed.
    assert_eq!(
        summary_step(&summary, "publish").status,
        StepStatus::Skipped
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn report_before_wait_conflicts_sqlite() {
    let app = TestApp::new(Backend::Sqlite, AccessMode::Local).await;
    let dir = tempfile::tempdir().expect("temporary directory");
    let plan = plan_pipeline(&app, dir.path(), "5m");
    let engine = app.state.engine();
    let run_id = engine
        .create_run(&plan, &RunOptions::default())
        .await
        .expect("run created");
    let token = engine.external_step_tokens(&run_id)[0].clone();
    let (digest, _) = app.state.artifacts().put_bytes(MODEL).expect("store model");

    let request = Request::post(token.report_path())
        .header(
            header::AUTHORIZATION,
            format!("Bearer {}", token.token.expose()),
        )
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(model_report(&digest).to_string()))
        .expect("request");
    let response = app.send(request).await;

    let error = response.expect_error(StatusCode::CONFLICT);
    let message = error["message"].as_str().unwrap_or_default();
    assert!(message.contains("inputs are not ready"), "{error}");
    let listing = app
        .get(&format!("/api/v1/runs/{run_id}/external-steps"))
        .await
        .json();
    assert_eq!(listing["items"][0]["wait_state"], "pending", "{listing}");
    assert_eq!(listing["items"][0]["status"], "pending", "{listing}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_step_run_is_not_found_sqlite() {
    let app = TestApp::new(Backend::Sqlite, AccessMode::Local).await;

    let report = Request::post("/api/v1/external-steps/no-such-step/report")
        .header(header::AUTHORIZATION, "Bearer rls_1234")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(model_report(&sha256(MODEL)).to_string()))
        .expect("request");
    let listing = app.get("/api/v1/runs/no-such-run/external-steps").await;

    app.send(report).await.expect_error(StatusCode::NOT_FOUND);
    listing.expect_error(StatusCode::NOT_FOUND);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plan_rejects_misdeclared_steps() {
    let app = TestApp::new(Backend::Sqlite, AccessMode::Local).await;
    let registry = app.state.registry();
    let dir = tempfile::tempdir().expect("temporary directory");
    let context = PlanContext {
        registry: &registry,
        base_dir: dir.path(),
        overrides: &Map::new(),
        artifacts: app.state.artifacts(),
        pinned_inputs: &BTreeMap::new(),
    };
    let text = "
name: wrong
steps:
  - name: train
    executor: external
    plugin: copy
    outputs: [model]
    retries: 2
  - name: prepare
    plugin: noop
    outputs: [table]
  - name: publish
    plugin: copy
    inputs: { source: train.modle }
";

    let error = plan(text, "wrong.yaml", &context).expect_err("the plan is rejected");

    let problems: BTreeMap<&str, &str> = error
        .problems
        .iter()
        .map(|p| (p.place.as_str(), p.message.as_str()))
        .collect();
    let message = |place: &str| {
        problems
            .get(place)
            .copied()
            .unwrap_or_else(|| panic!("no problem at {place}: {error}"))
    };
    assert!(message("/steps/0/plugin (step train)").contains("runs no plugin"));
    assert!(message("/steps/0/retries (step train)").contains("not retried"));
    assert!(message("/steps/1/outputs (step prepare)").contains("only an external step"));
    let unknown = message("/steps/2/inputs/source (step publish)");
    assert!(unknown.contains("did you mean `model`"), "{unknown}");
}

// ---------------------------------------------------------------------------------------------
// Two processes: `runledger run` waits while `runledger serve` receives the report
// ---------------------------------------------------------------------------------------------

/// A background `runledger run` of [`PIPELINE`], its stdout and stderr going to files. It is
/// killed on drop if still running.
struct CliRun {
    child: Child,
    dir: tempfile::TempDir,
}

/// What `runledger run` printed when its external step started waiting.
struct WaitNotice {
    run_id: String,
    step_run_id: String,
    token: String,
}

impl CliRun {
    fn start(cli: &Cli, timeout: &str) -> Self {
        let dir = tempfile::tempdir().expect("temporary directory");
        let pipeline = write_pipeline(dir.path(), timeout);
        let stdout = File::create(dir.path().join("stdout")).expect("stdout file");
        let stderr = File::create(dir.path().join("stderr")).expect("stderr file");
        let pipeline = pipeline.to_str().expect("UTF-8 path");
        let child = cli
            .command(&["run", pipeline])
            .stdout(stdout)
            .stderr(stderr)
            .spawn()
            .expect("start runledger run");
        Self { child, dir }
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("stderr")).unwrap_or_default()
    }

    fn stdout(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("stdout")).unwrap_or_default()
    }

    /// Polls stderr until the external step's notice appears, and parses it.
    async fn wait_for_notice(&mut self) -> WaitNotice {
        let deadline = Instant::now() + PROCESS_TIMEOUT;
        loop {
            let stderr = self.stderr();
            if let Some(notice) = parse_notice(&stderr) {
                return notice;
            }
            if let Some(status) = self.child.try_wait().expect("poll runledger run") {
                panic!("runledger run exited with {status} before the step waited: {stderr}");
            }
            assert!(
                Instant::now() < deadline,
                "no wait notice within {PROCESS_TIMEOUT:?}: {stderr}"
            );
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }

    /// Waits for the process to exit and returns its status.
    async fn wait(&mut self) -> ExitStatus {
        let deadline = Instant::now() + PROCESS_TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait().expect("poll runledger run") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "runledger run did not exit within {PROCESS_TIMEOUT:?}: {}",
                self.stderr()
            );
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }
}

impl Drop for CliRun {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Parses `run RUN_ID: ...` and `step train waits for an external report: POST
/// /api/v1/external-steps/ID/report with token TOKEN` from the CLI's stderr.
fn parse_notice(stderr: &str) -> Option<WaitNotice> {
    let run_id = stderr
        .lines()
        .find_map(|line| line.strip_prefix("run ")?.split(':').next())?;
    let notice = stderr
        .lines()
        .find_map(|line| line.strip_prefix("step train waits for an external report: POST "))?;
    let (path, token) = notice.split_once(" with token ")?;
    let step_run_id = path
        .strip_prefix("/api/v1/external-steps/")?
        .strip_suffix("/report")?;
    Some(WaitNotice {
        run_id: run_id.to_owned(),
        step_run_id: step_run_id.to_owned(),
        token: token.trim().to_owned(),
    })
}

/// Sends requests to the real server.
struct Api {
    client: reqwest::Client,
    base: String,
}

impl Api {
    fn new(server: &ServerProcess) -> Self {
        let client = reqwest::Client::builder()
            .timeout(PROCESS_TIMEOUT)
            .build()
            .expect("http client");
        Self {
            client,
            base: server.url(),
        }
    }

    /// Posts a report of `step_run_id` and returns the status and JSON body.
    async fn report(&self, step_run_id: &str, token: &str, body: &Value) -> (u16, Value) {
        let url = format!("{}/api/v1/external-steps/{step_run_id}/report", self.base);
        let response = self
            .client
            .post(url)
            .bearer_auth(token)
            .json(body)
            .send()
            .await
            .expect("the server answers");
        let status = response.status().as_u16();
        (status, response.json().await.expect("a JSON body"))
    }

    async fn external_steps(&self, run_id: &str) -> Value {
        let url = format!("{}/api/v1/runs/{run_id}/external-steps", self.base);
        let response = self
            .client
            .get(url)
            .send()
            .await
            .expect("the server answers");
        assert_eq!(response.status().as_u16(), 200);
        response.json().await.expect("a JSON body")
    }
}

/// Stores `bytes` in the data directory shared by both processes, as an upload would.
fn store_artifact(cli: &Cli, bytes: &[u8]) -> String {
    let artifacts = ArtifactStore::open(cli.data_dir().join("artifacts")).expect("artifact store");
    artifacts.put_bytes(bytes).expect("store artifact").0
}

fn show_run(cli: &Cli, run_id: &str) -> Value {
    cli.json(&["runs", "show", run_id, "--json"])
}

fn recorded_step<'a>(detail: &'a Value, name: &str) -> &'a Value {
    let steps = detail["steps"].as_array().expect("steps is an array");
    steps
        .iter()
        .map(|step| &step["step_run"])
        .find(|step| step["name"] == name)
        .unwrap_or_else(|| panic!("run has no step `{name}`: {detail}"))
}

async fn cli_waits_for_server_report(backend: Backend) {
    let cli = Cli::new(backend);
    let server = ServerProcess::start(&cli, &[]);
    let api = Api::new(&server);
    let mut run = CliRun::start(&cli, "5m");
    let notice = run.wait_for_notice().await;

    let listing = api.external_steps(&notice.run_id).await;
    assert_eq!(listing["items"][0]["wait_state"], "waiting", "{listing}");
    assert!(!listing.to_string().contains(&notice.token), "{listing}");
    let digest = store_artifact(&cli, MODEL);
    let body = model_report(&digest);
    let (status, wrong) = api
        .report(&notice.step_run_id, "rls_not-the-token", &body)
        .await;
    assert_eq!(status, 401, "{wrong}");
    let undeclared = json!({
        "status": "succeeded",
        "outputs": [{ "name": "weights", "digest": digest }]
    });
    let (status, error) = api
        .report(&notice.step_run_id, &notice.token, &undeclared)
        .await;
    assert_eq!(status, 400, "{error}");
    assert!(
        error["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("`weights`"),
        "{error}"
    );
    let (status, accepted) = api.report(&notice.step_run_id, &notice.token, &body).await;
    assert_eq!(status, 200, "{accepted}");

    let exit = run.wait().await;
    assert!(exit.success(), "runledger run failed: {}", run.stderr());
    let (status, again) = api.report(&notice.step_run_id, &notice.token, &body).await;
    assert_eq!(status, 409, "{again}");
    let log = server.log_containing(&[&notice.step_run_id]);
    assert!(
        !log.contains(&notice.token) && !log.contains("rls_not-the-token"),
        "the server log shows no token: {log}"
    );
    assert!(
        log.contains(&notice.step_run_id),
        "the log names the step run: {log}"
    );

    let detail = show_run(&cli, &notice.run_id);
    assert_eq!(detail["run"]["status"], "succeeded", "{}", run.stdout());
    for name in ["prepare", "train", "publish"] {
        assert_eq!(
            recorded_step(&detail, name)["status"],
            "succeeded",
            "step {name}"
        );
    }
    assert_eq!(recorded_step(&detail, "train")["executor"], "external");
    check_cli_lineage(&cli, &detail, &digest);
}

/// Checks through `runledger lineage` that the publish step consumed the reported model,
/// which the external step produced from the prepared data.
fn check_cli_lineage(cli: &Cli, detail: &Value, model: &str) {
    let id = |name: &str| {
        recorded_step(detail, name)["id"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    };
    let output = cli.output(&["lineage", &id("publish"), "--upstream", "--format", "json"]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let graph = parse_json(&output.stdout, &["lineage"]);
    let edges: BTreeSet<(String, String)> = graph["edges"]
        .as_array()
        .expect("edges is an array")
        .iter()
        .map(|edge| {
            let end = |side: &str| {
                format!(
                    "{}:{}",
                    edge[side]["kind"].as_str().unwrap_or_default(),
                    edge[side]["id"].as_str().unwrap_or_default()
                )
            };
            (end("source"), end("target"))
        })
        .collect();
    let data = sha256(DATA);
    let expected = [
        (
            format!("step_run:{}", id("prepare")),
            format!("artifact:{data}"),
        ),
        (
            format!("artifact:{data}"),
            format!("step_run:{}", id("train")),
        ),
        (
            format!("step_run:{}", id("train")),
            format!("artifact:{model}"),
        ),
        (
            format!("artifact:{model}"),
            format!("step_run:{}", id("publish")),
        ),
    ];
    for edge in expected {
        assert!(edges.contains(&edge), "missing edge {edge:?} in {edges:?}");
    }
}

async fn cli_timeout(backend: Backend) {
    let cli = Cli::new(backend);
    let mut run = CliRun::start(&cli, "1s");
    let notice = run.wait_for_notice().await;

    let exit = run.wait().await;

    assert_eq!(exit.code(), Some(1), "exit status: {}", run.stderr());
    let detail = show_run(&cli, &notice.run_id);
    assert_eq!(detail["run"]["status"], "failed");
    let train = recorded_step(&detail, "train");
    assert_eq!(train["status"], "failed");
    let error = train["error"].as_str().unwrap_or_default();
    assert!(error.contains("timeout of 1000 ms"), "{error}");
    assert_eq!(recorded_step(&detail, "publish")["status"], "skipped");
}

async fn cli_sigint_while_waiting(backend: Backend) {
    let cli = Cli::new(backend);
    let mut run = CliRun::start(&cli, "5m");
    let notice = run.wait_for_notice().await;

    let pid = run.child.id().to_string();
    let kill = Command::new("kill").args(["-INT", &pid]).status();
    assert!(
        kill.expect("start kill").success(),
        "kill -INT {pid} failed"
    );
    let exit = run.wait().await;

    assert_eq!(exit.code(), Some(130), "exit status: {}", run.stderr());
    let detail = show_run(&cli, &notice.run_id);
    assert_eq!(detail["run"]["status"], "cancelled");
    assert_eq!(recorded_step(&detail, "train")["status"], "cancelled");
    assert_eq!(recorded_step(&detail, "publish")["status"], "skipped");
}
