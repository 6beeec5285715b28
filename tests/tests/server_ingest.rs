//! The ingestion API for runs executed elsewhere. An external run reported over REST is
//! recorded like a pipeline run, and retried writes with an `Idempotency-Key` apply once. Bad
//! input gets a 4xx with the error shape, and concurrent metric writes are all committed. The router
//! is driven in-process, and one scenario runs the real `runledger serve` on a socket and reads
//! the run back with `runledger runs show` and `runledger lineage`. Every scenario runs on
//! SQLite and on a fresh PostgreSQL database.
//!
//! Needs `cargo build -p runledger --bin runledger`, `cargo xtask build-plugins` and PostgreSQL
//! at 127.0.0.1:5432 trusting user `postgres`; run with
//! `cargo test -p runledger-tests --test server_ingest`.

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use http_body_util::BodyExt as _;
use runledger::server::AccessMode;
use runledger::store::artifacts::ArtifactStore;
use runledger::store::{IdempotentRequest, KeyClaim, KeyLifetime, Node, TraverseDirection};
use runledger::store::{NewRun, RunSource};
use runledger_tests::http1::Connection;
use runledger_tests::server::{ServerProcess, TestApp, TestResponse};
use runledger_tests::{Backend, Cli};
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};
use std::collections::BTreeSet;
use std::time::Duration;
use tower::ServiceExt as _;

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
    external_run_record => external_run_record_sqlite, external_run_record_postgres;
    idempotent_retries => idempotent_retries_sqlite, idempotent_retries_postgres;
    malformed_requests => malformed_requests_sqlite, malformed_requests_postgres;
    ended_run_writes => ended_run_writes_sqlite, ended_run_writes_postgres;
    step_lifecycle => step_lifecycle_sqlite, step_lifecycle_postgres;
    concurrent_metric_writes => concurrent_metrics_sqlite, concurrent_metrics_postgres;
    served_run_in_cli => served_run_in_cli_sqlite, served_run_in_cli_postgres;
}

// ---------------------------------------------------------------------------------------------
// helpers

async fn app(backend: Backend) -> TestApp {
    TestApp::new(backend, AccessMode::Local).await
}

/// Creates an external run and returns its id.
async fn create_run(app: &TestApp, body: Value) -> String {
    let response = app.post_json("/api/v1/external-runs", &body).await;
    assert_eq!(
        response.status,
        StatusCode::CREATED,
        "{}",
        body_text(&response)
    );
    response.json()["id"]
        .as_str()
        .expect("the created run has an id")
        .to_owned()
}

/// Stores `bytes` in the app's artifact store and returns the digest.
fn put_artifact(app: &TestApp, bytes: &[u8]) -> String {
    app.state
        .artifacts()
        .put_bytes(bytes)
        .expect("store artifact")
        .0
}

/// Creates a step run and returns its id.
async fn create_step(app: &TestApp, run_id: &str, body: Value) -> String {
    let uri = format!("/api/v1/runs/{run_id}/steps");
    let response = app.post_json(&uri, &body).await;
    assert_eq!(
        response.status,
        StatusCode::CREATED,
        "{}",
        body_text(&response)
    );
    response.json()["id"]
        .as_str()
        .expect("the step run has an id")
        .to_owned()
}

async fn patch_step(app: &TestApp, run_id: &str, step_run_id: &str, body: Value) -> TestResponse {
    let uri = format!("/api/v1/runs/{run_id}/steps/{step_run_id}");
    app.send_json("PATCH", &uri, &body).await
}

/// Counts the stored values of a series, read from the store after the values the server has
/// staged are moved where readers see them.
async fn metric_count(app: &TestApp, run_id: &str, key: &str) -> usize {
    settle(app).await;
    app.state
        .store()
        .metric_history(run_id, key)
        .await
        .expect("metric history")
        .len()
}

/// Waits until the metric values the server staged are in the store's `metrics`. Requests over
/// HTTP wait for this themselves; a test that reads the store directly must ask.
async fn settle(app: &TestApp) {
    app.state
        .writer()
        .settle()
        .await
        .expect("the staged metric values move");
}

/// Sends `method uri` with a JSON body and an `Idempotency-Key`.
async fn send_keyed(
    app: &TestApp,
    method: &str,
    uri: &str,
    body: &Value,
    key: &str,
) -> TestResponse {
    let request = Request::builder()
        .method(method)
        .uri(uri)
        .header(header::CONTENT_TYPE, "application/json")
        .header("idempotency-key", key)
        .body(Body::from(body.to_string()))
        .expect("request");
    app.send(request).await
}

/// Sends a raw body, for malformed JSON.
async fn send_raw(app: &TestApp, method: &str, uri: &str, body: &str) -> TestResponse {
    let request = Request::builder()
        .method(method)
        .uri(uri)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body.to_owned()))
        .expect("request");
    app.send(request).await
}

fn body_text(response: &TestResponse) -> String {
    String::from_utf8_lossy(&response.body).into_owned()
}

fn error_fields(error: &Value) -> Vec<String> {
    error["details"]
        .as_array()
        .map(|details| {
            details
                .iter()
                .filter_map(|detail| detail["field"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// Asserts a 4xx with the error shape whose message contains every one of `words`, and
/// returns the error object.
fn expect_error_with(response: &TestResponse, status: StatusCode, words: &[&str]) -> Value {
    let error = response.expect_error(status);
    let message = error["message"].as_str().unwrap_or_default();
    for word in words {
        assert!(message.contains(word), "message lacks `{word}`: {message}");
    }
    error
}

// ---------------------------------------------------------------------------------------------
// 1. an external run recorded like a pipeline run

async fn external_run_record(backend: Backend) {
    let app = app(backend).await;
    let run_id = create_run(
        &app,
        json!({
            "name": "gpu-training",
            "project": "vision",
            "params": {"lr": 0.01, "optimizer": "adam", "layers": [64, 32]},
            "tags": {"team": "ml"},
            "started_at": 1_733_300_000_000_i64,
        }),
    )
    .await;

    let run = app.state.store().require_run(&run_id).await.expect("run");
    assert_eq!(
        run.status.to_string(),
        "running",
        "a new external run is running"
    );
    assert_eq!(run.source, RunSource::External, "source of a reported run");
    assert_eq!(run.user_name, "local", "the caller in local mode");
    assert_eq!(
        run.started_at,
        Some(1_733_300_000_000),
        "the reported start time"
    );

    // Params, a metric series with the values JSON cannot carry as numbers, and tags.
    let uri = format!("/api/v1/runs/{run_id}/params");
    let response = app.post_json(&uri, &json!({"params": {"epochs": 3}})).await;
    assert_eq!(response.status, StatusCode::OK, "{}", body_text(&response));
    let series = json!({"metrics": [
        {"key": "loss", "value": 0.9, "step": 1, "timestamp": 1_733_300_001_000_i64},
        {"key": "loss", "value": 0.5, "step": 2},
        {"key": "loss", "value": "NaN", "step": 3},
        {"key": "grad_norm", "value": "Infinity", "step": 3},
        {"key": "grad_min", "value": "-Infinity"},
    ]});
    let response = app
        .post_json(&format!("/api/v1/runs/{run_id}/metrics"), &series)
        .await;
    assert_eq!(response.status, StatusCode::OK, "{}", body_text(&response));
    assert_eq!(
        response.json()["accepted"],
        5,
        "every value is acknowledged"
    );
    let tags = json!({"tags": {"stage": "dev", "gpu": "a100"}});
    let response = app
        .post_json(&format!("/api/v1/runs/{run_id}/tags"), &tags)
        .await;
    assert_eq!(response.status, StatusCode::OK, "{}", body_text(&response));
    let request = Request::delete(format!("/api/v1/runs/{run_id}/tags/gpu"))
        .body(Body::empty())
        .expect("request");
    assert_eq!(app.send(request).await.status, StatusCode::NO_CONTENT);

    settle(&app).await;
    let history = app
        .state
        .store()
        .metric_history(&run_id, "loss")
        .await
        .expect("history");
    let values: Vec<f64> = history.iter().map(|point| point.value).collect();
    assert_eq!(values.len(), 3, "three loss values: {values:?}");
    assert_eq!(values[0], 0.9);
    assert_eq!(
        history[0].timestamp_ms, 1_733_300_001_000,
        "the reported timestamp"
    );
    assert!(values[2].is_nan(), "\"NaN\" is stored as NaN");
    let latest = app
        .state
        .store()
        .latest_metrics(&run_id)
        .await
        .expect("latest");
    let grad_norm = latest
        .iter()
        .find(|point| point.key == "grad_norm")
        .expect("grad_norm");
    assert_eq!(
        grad_norm.value,
        f64::INFINITY,
        "\"Infinity\" is stored as infinity"
    );
    let grad_min = latest
        .iter()
        .find(|point| point.key == "grad_min")
        .expect("grad_min");
    assert_eq!(grad_min.value, f64::NEG_INFINITY);

    // A batch is applied in one transaction.
    let batch = json!({
        "metrics": [{"key": "accuracy", "value": 0.8, "step": 3}],
        "params": {"batch_size": 32},
        "tags": {"stage": "final"},
    });
    let response = app
        .post_json(&format!("/api/v1/runs/{run_id}/batch"), &batch)
        .await;
    assert_eq!(response.status, StatusCode::OK, "{}", body_text(&response));
    assert_eq!(
        response.json(),
        json!({"metrics": 1, "params": 1, "tags": 1})
    );

    // A dataset input, a step that consumes it and one that consumes the first one's output.
    let raw = put_artifact(&app, b"a,b\n1,2\n");
    app.state
        .store()
        .record_dataset(&raw, "raw.csv", "s3://bucket/raw.csv")
        .await
        .expect("record dataset");
    let clean = put_artifact(&app, b"a,b\n1,2\n(clean)\n");
    let model = put_artifact(&app, b"model weights");

    let prepare = create_step(
        &app,
        &run_id,
        json!({"name": "prepare", "params": {"drop_na": true},
            "inputs": [{"name": "raw.csv", "digest": raw}]}),
    )
    .await;
    let response = patch_step(
        &app,
        &run_id,
        &prepare,
        json!({"status": "succeeded",
            "outputs": [{"name": "clean.csv", "digest": clean, "media_type": "text/csv"}]}),
    )
    .await;
    assert_eq!(response.status, StatusCode::OK, "{}", body_text(&response));
    let prepared = response.json();
    assert_eq!(prepared["status"], "succeeded");
    assert_eq!(prepared["outputs"][0]["media_type"], "text/csv");
    assert_eq!(prepared["inputs"][0]["digest"], raw.as_str());

    let train = create_step(
        &app,
        &run_id,
        json!({"name": "train", "status": "pending",
            "inputs": [{"name": "clean.csv", "digest": clean}]}),
    )
    .await;
    let response = patch_step(&app, &run_id, &train, json!({"status": "running"})).await;
    assert_eq!(
        response.json()["status"],
        "running",
        "{}",
        body_text(&response)
    );
    let step_metric =
        json!({"metrics": [{"key": "epoch_loss", "value": 0.3, "step_run_id": train}]});
    let response = app
        .post_json(&format!("/api/v1/runs/{run_id}/metrics"), &step_metric)
        .await;
    assert_eq!(response.status, StatusCode::OK, "{}", body_text(&response));
    let response = patch_step(
        &app,
        &run_id,
        &train,
        json!({"status": "succeeded", "outputs": [{"name": "model.bin", "digest": model}]}),
    )
    .await;
    assert_eq!(response.status, StatusCode::OK, "{}", body_text(&response));

    // A run-level output, the environment, and the end of the run.
    let output = json!({"direction": "output", "name": "model.bin", "digest": model});
    let response = app
        .post_json(&format!("/api/v1/runs/{run_id}/artifacts"), &output)
        .await;
    assert_eq!(
        response.status,
        StatusCode::CREATED,
        "{}",
        body_text(&response)
    );
    let again = app
        .post_json(&format!("/api/v1/runs/{run_id}/artifacts"), &output)
        .await;
    assert_eq!(
        again.status,
        StatusCode::OK,
        "linking the same artifact again is no change"
    );
    let environment = json!({
        "python": "3.11.7",
        "packages": ["numpy==2.1.0", "torch==2.5.1"],
        "platform": "Linux-6.1-x86_64",
        "os": "linux",
        "arch": "x86_64",
        "git": {"commit": "0123456789abcdef0123456789abcdef01234567", "dirty": true},
        "extra": {"gpu": "A100"},
    });
    let uri = format!("/api/v1/runs/{run_id}/environment");
    let response = app.send_json("PUT", &uri, &environment).await;
    assert_eq!(response.status, StatusCode::OK, "{}", body_text(&response));
    let finish = json!({"status": "succeeded", "ended_at": 1_733_300_100_000_i64});
    let response = app
        .post_json(&format!("/api/v1/runs/{run_id}/finish"), &finish)
        .await;
    assert_eq!(response.status, StatusCode::OK, "{}", body_text(&response));
    assert_eq!(response.json()["status"], "succeeded");
    assert_eq!(response.json()["ended_at"], 1_733_300_100_000_i64);

    check_recorded_run(&app, &run_id, &prepare, &train).await;
    check_lineage(&app, &[&raw, &clean, &model], &prepare, &train).await;
}

/// Checks the run's record as `runledger runs show` reads it.
async fn check_recorded_run(app: &TestApp, run_id: &str, prepare: &str, train: &str) {
    let detail = app
        .state
        .store()
        .get_run_detail(run_id)
        .await
        .expect("detail");
    assert_eq!(detail.run.status.to_string(), "succeeded");
    assert_eq!(detail.project.name, "vision");
    assert!(detail.pipeline.is_none(), "an external run has no pipeline");
    let params: Vec<(&str, &str)> = detail
        .params
        .iter()
        .map(|(key, value)| (key.as_str(), value.as_str()))
        .collect();
    assert_eq!(
        params,
        [
            ("batch_size", "32"),
            ("epochs", "3"),
            ("layers", "[64,32]"),
            ("lr", "0.01"),
            ("optimizer", "adam"),
        ],
        "params as text: strings as they are, other values as JSON"
    );
    assert_eq!(detail.tags.get("stage").map(String::as_str), Some("final"));
    assert_eq!(detail.tags.get("team").map(String::as_str), Some("ml"));
    assert!(!detail.tags.contains_key("gpu"), "the deleted tag is gone");

    let steps: Vec<(&str, &str, String)> = detail
        .steps
        .iter()
        .map(|step| {
            let record = &step.step_run;
            (
                record.id.as_str(),
                record.name.as_str(),
                record.status.to_string(),
            )
        })
        .collect();
    assert_eq!(
        steps,
        [
            (prepare, "prepare", "succeeded".to_owned()),
            (train, "train", "succeeded".to_owned()),
        ]
    );
    for step in &detail.steps {
        assert_eq!(step.step_run.executor, "external");
        assert!(
            step.step_run.started_at.is_some(),
            "{} has a start",
            step.step_run.name
        );
        assert!(
            step.step_run.ended_at.is_some(),
            "{} has an end",
            step.step_run.name
        );
        assert_eq!(step.inputs.len(), 1, "{} has its input", step.step_run.name);
        assert_eq!(
            step.outputs.len(),
            1,
            "{} has its output",
            step.step_run.name
        );
    }
    let step_metrics = app
        .state
        .store()
        .step_metrics(train)
        .await
        .expect("step metrics");
    assert_eq!(
        step_metrics.len(),
        1,
        "the step-level metric: {step_metrics:?}"
    );

    let environment = detail.environment.expect("environment snapshot");
    assert_eq!(environment.packages, ["numpy==2.1.0", "torch==2.5.1"]);
    assert_eq!(environment.os, "linux");
    assert!(environment.git.as_ref().is_some_and(|git| git.dirty));
    assert_eq!(environment.extra["python"], "3.11.7");
    assert_eq!(environment.extra["platform"], "Linux-6.1-x86_64");
    assert_eq!(environment.extra["extra"], json!({"gpu": "A100"}));
    assert!(environment.wasmtime_version.is_none(), "no wasm ran");

    let run_outputs: Vec<&str> = detail
        .artifacts
        .iter()
        .filter(|linked| linked.link.step_run_id.is_none())
        .map(|linked| linked.link.name.as_str())
        .collect();
    assert_eq!(run_outputs, ["model.bin"], "the run-level output");
}

/// Checks the lineage chain raw dataset -> prepare -> clean -> train -> model.
async fn check_lineage(app: &TestApp, digests: &[&str; 3], prepare: &str, train: &str) {
    let [raw, clean, model] = *digests;
    let graph = app
        .state
        .store()
        .traverse(Node::artifact(model), TraverseDirection::Upstream, None)
        .await
        .expect("traverse");
    let nodes: BTreeSet<Node> = graph.nodes.iter().cloned().collect();
    let expected = BTreeSet::from([
        Node::artifact(model),
        Node::step_run(train),
        Node::artifact(clean),
        Node::step_run(prepare),
        Node::dataset(raw),
    ]);
    assert_eq!(nodes, expected, "upstream of the model reaches the dataset");
    assert_eq!(graph.edges.len(), 4, "one edge per link: {:?}", graph.edges);
}

// ---------------------------------------------------------------------------------------------
// 2. idempotency keys

async fn idempotent_retries(backend: Backend) {
    let app = app(backend).await;
    let run_id = create_run(&app, json!({"name": "retries"})).await;
    let uri = format!("/api/v1/runs/{run_id}/metrics");
    let body = json!({"metrics": [{"key": "loss", "value": 1.5, "step": 1}]});

    let first = send_keyed(&app, "POST", &uri, &body, "retry-1").await;
    assert_eq!(first.status, StatusCode::OK, "{}", body_text(&first));
    assert!(
        first.headers.get("idempotent-replayed").is_none(),
        "the first request runs"
    );
    let retry = send_keyed(&app, "POST", &uri, &body, "retry-1").await;
    assert_eq!(retry.status, StatusCode::OK);
    assert_eq!(
        retry
            .headers
            .get("idempotent-replayed")
            .map(|v| v.as_bytes()),
        Some(&b"true"[..]),
        "a retry gets the stored response"
    );
    assert_eq!(retry.body, first.body, "the stored body is sent again");
    assert_eq!(
        retry.headers.get(header::CONTENT_TYPE),
        first.headers.get(header::CONTENT_TYPE),
        "the stored content type is sent again"
    );
    assert_eq!(
        metric_count(&app, &run_id, "loss").await,
        1,
        "the retry was not applied"
    );

    let other = json!({"metrics": [{"key": "loss", "value": 2.5, "step": 2}]});
    let reused = send_keyed(&app, "POST", &uri, &other, "retry-1").await;
    let error = expect_error_with(&reused, StatusCode::UNPROCESSABLE_ENTITY, &["retry-1"]);
    assert_eq!(error["code"], "idempotency_key_reused");
    assert_eq!(
        metric_count(&app, &run_id, "loss").await,
        1,
        "the reused key applied nothing"
    );

    let fresh = send_keyed(&app, "POST", &uri, &other, "retry-2").await;
    assert_eq!(fresh.status, StatusCode::OK, "a new key applies the write");
    assert_eq!(metric_count(&app, &run_id, "loss").await, 2);

    // The key of a run creation returns the same run.
    let create = json!({"name": "created-once"});
    let created = send_keyed(&app, "POST", "/api/v1/external-runs", &create, "create-1").await;
    let again = send_keyed(&app, "POST", "/api/v1/external-runs", &create, "create-1").await;
    assert_eq!(created.status, StatusCode::CREATED);
    assert_eq!(
        again.status,
        StatusCode::CREATED,
        "the stored status is sent again"
    );
    assert_eq!(created.json()["id"], again.json()["id"], "one run, not two");

    // A 4xx is a response too, and replays.
    let params_uri = format!("/api/v1/runs/{run_id}/params");
    let logged = app
        .post_json(&params_uri, &json!({"params": {"alpha": "0.1"}}))
        .await;
    assert_eq!(logged.status, StatusCode::OK);
    let change = json!({"params": {"alpha": "0.2"}});
    let conflict = send_keyed(&app, "POST", &params_uri, &change, "param-1").await;
    let replayed = send_keyed(&app, "POST", &params_uri, &change, "param-1").await;
    assert_eq!(conflict.status, StatusCode::CONFLICT);
    assert_eq!(replayed.status, StatusCode::CONFLICT);
    assert_eq!(replayed.body, conflict.body);
    assert!(replayed.headers.get("idempotent-replayed").is_some());

    // A key must be printable ASCII of at most 255 bytes.
    let long = "k".repeat(256);
    for bad in [long.as_str(), "tab\there"] {
        let response = send_keyed(&app, "POST", &uri, &body, bad).await;
        let error = response.expect_error(StatusCode::BAD_REQUEST);
        assert_eq!(error_fields(&error), ["Idempotency-Key"], "{bad:?}");
    }

    check_key_in_progress(&app, &uri, &body).await;
    check_key_expiry(&app).await;
}

/// Checks that a request whose key is in progress for another request gets 409 and is not
/// applied.
async fn check_key_in_progress(app: &TestApp, uri: &str, body: &Value) {
    let run_id = uri.split('/').nth(4).expect("run id in the path");
    let before = metric_count(app, run_id, "loss").await;
    let text = body.to_string();
    let hash = hex::encode(Sha256::digest(format!("POST\n{uri}\n{text}").as_bytes()));
    let holder = IdempotentRequest {
        caller: "local",
        key: "held-1",
        request_hash: &hash,
    };
    let lifetime = KeyLifetime {
        expires_after: Duration::from_secs(3600),
        abandoned_after: Duration::from_secs(600),
    };
    let claim = app
        .state
        .store()
        .claim_idempotency_key(&holder, &lifetime)
        .await;
    assert_eq!(claim.expect("claim"), KeyClaim::Claimed);

    let response = send_keyed(app, "POST", uri, body, "held-1").await;
    let error = expect_error_with(&response, StatusCode::CONFLICT, &["in progress"]);
    assert_eq!(error_fields(&error), ["Idempotency-Key"]);
    assert!(
        response.headers.get(header::RETRY_AFTER).is_some(),
        "409 says when to retry"
    );
    assert_eq!(
        metric_count(app, run_id, "loss").await,
        before,
        "nothing was applied"
    );

    app.state
        .store()
        .release_idempotency_key(&holder)
        .await
        .expect("release");
    let response = send_keyed(app, "POST", uri, body, "held-1").await;
    assert_eq!(
        response.status,
        StatusCode::OK,
        "a released key can be used"
    );
    assert_eq!(metric_count(app, run_id, "loss").await, before + 1);
}

/// Checks that an expired key counts as new, and that the same request takes over an abandoned
/// one.
async fn check_key_expiry(app: &TestApp) {
    let store = app.state.store();
    let request = IdempotentRequest {
        caller: "expiry",
        key: "k",
        request_hash: "first",
    };
    let long = KeyLifetime {
        expires_after: Duration::from_secs(3600),
        abandoned_after: Duration::from_secs(600),
    };
    assert_eq!(
        store.claim_idempotency_key(&request, &long).await.unwrap(),
        KeyClaim::Claimed
    );
    assert_eq!(
        store.claim_idempotency_key(&request, &long).await.unwrap(),
        KeyClaim::InProgress
    );
    tokio::time::sleep(Duration::from_millis(20)).await;

    let abandoned = KeyLifetime {
        expires_after: Duration::from_secs(3600),
        abandoned_after: Duration::from_millis(5),
    };
    let other = IdempotentRequest {
        request_hash: "second",
        ..request
    };
    assert_eq!(
        store
            .claim_idempotency_key(&other, &abandoned)
            .await
            .unwrap(),
        KeyClaim::OtherRequest,
        "only the same request takes over an abandoned key"
    );
    assert_eq!(
        store
            .claim_idempotency_key(&request, &abandoned)
            .await
            .unwrap(),
        KeyClaim::Claimed,
        "the same request takes over an abandoned key"
    );
    tokio::time::sleep(Duration::from_millis(20)).await;

    let expired = KeyLifetime {
        expires_after: Duration::from_millis(5),
        abandoned_after: Duration::from_millis(5),
    };
    assert_eq!(
        store.claim_idempotency_key(&other, &expired).await.unwrap(),
        KeyClaim::Claimed,
        "an expired key is new to any request"
    );
}

// ---------------------------------------------------------------------------------------------
// 3. malformed requests

async fn malformed_requests(backend: Backend) {
    let app = app(backend).await;
    let run_id = create_run(&app, json!({"name": "bad-input"})).await;
    let metrics_uri = format!("/api/v1/runs/{run_id}/metrics");

    let response = send_raw(
        &app,
        "POST",
        &metrics_uri,
        "{\"metrics\": [\n  {\"key\": }]}",
    )
    .await;
    expect_error_with(&response, StatusCode::BAD_REQUEST, &["line 2", "column"]);

    let wrong_type = json!({"metrics": [{"key": "a", "value": 1}, {"key": "b", "value": true}]});
    let response = app.post_json(&metrics_uri, &wrong_type).await;
    let error = expect_error_with(&response, StatusCode::BAD_REQUEST, &["metrics[1].value"]);
    assert_eq!(error_fields(&error), ["metrics[1].value"]);
    let bad_string = json!({"metrics": [{"key": "a", "value": "nan"}]});
    let response = app.post_json(&metrics_uri, &bad_string).await;
    expect_error_with(
        &response,
        StatusCode::BAD_REQUEST,
        &["metrics[0].value", "NaN"],
    );
    let step_text = json!({"metrics": [{"key": "a", "value": 1, "step": "one"}]});
    let response = app.post_json(&metrics_uri, &step_text).await;
    expect_error_with(&response, StatusCode::BAD_REQUEST, &["metrics[0].step"]);
    let unknown_field = json!({"metrics": [{"key": "a", "value": 1, "stpe": 2}]});
    let response = app.post_json(&metrics_uri, &unknown_field).await;
    expect_error_with(&response, StatusCode::BAD_REQUEST, &["stpe"]);

    let long_key = "k".repeat(251);
    for (key, field) in [
        ("", "metrics[3].key"),
        (long_key.as_str(), "metrics[3].key"),
    ] {
        let mut items: Vec<Value> = (0..3)
            .map(|i| json!({"key": format!("m{i}"), "value": i}))
            .collect();
        items.push(json!({"key": key, "value": 1}));
        let response = app
            .post_json(&metrics_uri, &json!({"metrics": items}))
            .await;
        let error = response.expect_error(StatusCode::BAD_REQUEST);
        assert_eq!(error_fields(&error), [field], "key {key:?}");
    }
    let control = json!({"metrics": [{"key": "a\u{1}b", "value": 1}]});
    let error = app
        .post_json(&metrics_uri, &control)
        .await
        .expect_error(StatusCode::BAD_REQUEST);
    assert_eq!(error_fields(&error), ["metrics[0].key"]);
    assert_eq!(
        metric_count(&app, &run_id, "m0").await,
        0,
        "a bad request logs nothing"
    );

    // Unknown ids.
    let unknown = "0190b8a0-0000-7000-8000-000000000000";
    let response = app
        .post_json(
            &format!("/api/v1/runs/{unknown}/metrics"),
            &json!({"metrics": []}),
        )
        .await;
    expect_error_with(&response, StatusCode::NOT_FOUND, &[unknown]);
    let response = app
        .post_json(
            &format!("/api/v1/runs/{unknown}/params"),
            &json!({"params": {"a": 1}}),
        )
        .await;
    response.expect_error(StatusCode::NOT_FOUND);
    let response = app
        .post_json("/api/v1/runs/not-a-uuid/tags", &json!({"tags": {"a": "b"}}))
        .await;
    let error = response.expect_error(StatusCode::BAD_REQUEST);
    assert_eq!(error_fields(&error), ["path.run_id"]);
    let foreign_step = json!({"metrics": [{"key": "a", "value": 1, "step_run_id": unknown}]});
    let response = app.post_json(&metrics_uri, &foreign_step).await;
    expect_error_with(&response, StatusCode::BAD_REQUEST, &[unknown]);

    // A param cannot change, and the 409 names both values.
    let params_uri = format!("/api/v1/runs/{run_id}/params");
    let response = app
        .post_json(&params_uri, &json!({"params": {"alpha": 0.1}}))
        .await;
    assert_eq!(response.status, StatusCode::OK);
    let response = app
        .post_json(&params_uri, &json!({"params": {"alpha": 0.1}}))
        .await;
    assert_eq!(
        response.status,
        StatusCode::OK,
        "logging the same value again is fine"
    );
    let response = app
        .post_json(&params_uri, &json!({"params": {"alpha": 0.2, "beta": 1}}))
        .await;
    let error = expect_error_with(&response, StatusCode::CONFLICT, &["alpha", "0.1", "0.2"]);
    assert_eq!(error_fields(&error), ["params.alpha"]);
    let params = app.state.store().get_params(&run_id).await.expect("params");
    assert!(
        !params.contains_key("beta"),
        "a conflict records none of the request"
    );
    let response = app
        .post_json(&params_uri, &json!({"params": {"gamma": null}}))
        .await;
    let error = response.expect_error(StatusCode::BAD_REQUEST);
    assert_eq!(error_fields(&error), ["params.gamma"]);

    let response = app
        .post_json("/api/v1/external-runs", &json!({"project": "p"}))
        .await;
    expect_error_with(&response, StatusCode::BAD_REQUEST, &["name"]);
    let response = app
        .post_json("/api/v1/external-runs", &json!({"name": ""}))
        .await;
    let error = response.expect_error(StatusCode::BAD_REQUEST);
    assert_eq!(error_fields(&error), ["name"]);
    let negative = json!({"name": "r", "started_at": -5});
    let error = app
        .post_json("/api/v1/external-runs", &negative)
        .await
        .expect_error(StatusCode::BAD_REQUEST);
    assert_eq!(error_fields(&error), ["started_at"]);

    check_artifact_names(&app, &run_id).await;
}

/// Artifact names that could escape a directory are rejected wherever a name is given.
async fn check_artifact_names(app: &TestApp, run_id: &str) {
    let digest = put_artifact(app, b"artifact");
    let step_uri = format!("/api/v1/runs/{run_id}/steps");
    let artifacts_uri = format!("/api/v1/runs/{run_id}/artifacts");
    for name in [
        "../etc/passwd",
        "a/../../b",
        "/etc/passwd",
        "a\u{0}b",
        "a\\b",
        "",
    ] {
        let step = json!({"name": "s", "inputs": [{"name": name, "digest": digest}]});
        let error = app
            .post_json(&step_uri, &step)
            .await
            .expect_error(StatusCode::BAD_REQUEST);
        assert_eq!(
            error_fields(&error),
            ["inputs[0].name"],
            "step input {name:?}"
        );

        let link = json!({"direction": "output", "name": name, "digest": digest});
        let error = app
            .post_json(&artifacts_uri, &link)
            .await
            .expect_error(StatusCode::BAD_REQUEST);
        assert_eq!(error_fields(&error), ["name"], "run output {name:?}");
    }

    let missing = "ab".repeat(32);
    let step = json!({"name": "s", "inputs": [{"name": "in", "digest": missing}]});
    let response = app.post_json(&step_uri, &step).await;
    let error = expect_error_with(&response, StatusCode::NOT_FOUND, &["upload it first"]);
    assert_eq!(error_fields(&error), ["inputs[0].digest"]);
    let step = json!({"name": "s", "inputs": [{"name": "in", "digest": "ABC"}]});
    let error = app
        .post_json(&step_uri, &step)
        .await
        .expect_error(StatusCode::BAD_REQUEST);
    assert_eq!(error_fields(&error), ["inputs[0].digest"]);
    let twice = json!({"name": "s", "inputs": [
        {"name": "in", "digest": digest}, {"name": "in", "digest": digest}]});
    let error = app
        .post_json(&step_uri, &twice)
        .await
        .expect_error(StatusCode::BAD_REQUEST);
    assert_eq!(error_fields(&error), ["inputs[1].name"]);
    let bad_media = json!({"direction": "output", "name": "x", "digest": digest,
        "media_type": "not a type"});
    let error = app
        .post_json(&artifacts_uri, &bad_media)
        .await
        .expect_error(StatusCode::BAD_REQUEST);
    assert_eq!(error_fields(&error), ["media_type"]);

    let steps = app
        .state
        .store()
        .list_step_runs(run_id)
        .await
        .expect("steps");
    assert!(steps.is_empty(), "no rejected step was recorded: {steps:?}");
}

// ---------------------------------------------------------------------------------------------
// 4. writes to ended runs and to runs runledger executes

async fn ended_run_writes(backend: Backend) {
    let app = app(backend).await;
    let run_id = create_run(&app, json!({"name": "ends"})).await;
    let digest = put_artifact(&app, b"late output");
    let step_run_id = create_step(&app, &run_id, json!({"name": "open-step"})).await;

    let error_finish = json!({"status": "succeeded", "error": "no"});
    let response = app
        .post_json(&format!("/api/v1/runs/{run_id}/finish"), &error_finish)
        .await;
    response.expect_error(StatusCode::BAD_REQUEST);
    let early = json!({"status": "failed", "ended_at": 1});
    let response = app
        .post_json(&format!("/api/v1/runs/{run_id}/finish"), &early)
        .await;
    let error = response.expect_error(StatusCode::BAD_REQUEST);
    assert_eq!(error_fields(&error), ["ended_at"]);

    let finish = json!({"status": "failed", "error": "out of memory"});
    let response = app
        .post_json(&format!("/api/v1/runs/{run_id}/finish"), &finish)
        .await;
    assert_eq!(response.status, StatusCode::OK, "{}", body_text(&response));
    assert_eq!(response.json()["error"], "out of memory");
    let step = app
        .state
        .store()
        .get_step_run(&step_run_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        step.status.to_string(),
        "cancelled",
        "an open step ends with its run"
    );

    let writes: Vec<(&str, String, Value)> = vec![
        (
            "POST",
            format!("/api/v1/runs/{run_id}/metrics"),
            json!({"metrics": [{"key": "a", "value": 1}]}),
        ),
        (
            "POST",
            format!("/api/v1/runs/{run_id}/params"),
            json!({"params": {"a": 1}}),
        ),
        (
            "POST",
            format!("/api/v1/runs/{run_id}/tags"),
            json!({"tags": {"a": 1}}),
        ),
        (
            "POST",
            format!("/api/v1/runs/{run_id}/batch"),
            json!({"tags": {"a": 1}}),
        ),
        (
            "POST",
            format!("/api/v1/runs/{run_id}/steps"),
            json!({"name": "late"}),
        ),
        (
            "PATCH",
            format!("/api/v1/runs/{run_id}/steps/{step_run_id}"),
            json!({"status": "running"}),
        ),
        (
            "POST",
            format!("/api/v1/runs/{run_id}/artifacts"),
            json!({"direction": "output", "name": "late", "digest": digest}),
        ),
        (
            "PUT",
            format!("/api/v1/runs/{run_id}/environment"),
            json!({"python": "3.12"}),
        ),
        (
            "POST",
            format!("/api/v1/runs/{run_id}/finish"),
            json!({"status": "succeeded"}),
        ),
    ];
    for (method, uri, body) in writes {
        let response = app.send_json(method, &uri, &body).await;
        expect_error_with(
            &response,
            StatusCode::CONFLICT,
            &["already ended as failed"],
        );
    }
    let request = Request::delete(format!("/api/v1/runs/{run_id}/tags/a"))
        .body(Body::empty())
        .expect("request");
    app.send(request).await.expect_error(StatusCode::CONFLICT);
    assert_eq!(metric_count(&app, &run_id, "a").await, 0);

    // A pipeline run takes metrics, params and tags, but its steps and end are runledger's.
    let pipeline_run = app
        .state
        .store()
        .create_run(NewRun {
            project: "default".into(),
            pipeline_id: None,
            name: "pipeline".into(),
            source: RunSource::Cli,
            user_name: "someone".into(),
            seed: None,
            owner: None,
        })
        .await
        .expect("create run");
    let uri = format!("/api/v1/runs/{}/metrics", pipeline_run.id);
    let response = app
        .post_json(&uri, &json!({"metrics": [{"key": "a", "value": 1}]}))
        .await;
    assert_eq!(response.status, StatusCode::OK, "{}", body_text(&response));
    let uri = format!("/api/v1/runs/{}/steps", pipeline_run.id);
    let response = app.post_json(&uri, &json!({"name": "intruder"})).await;
    expect_error_with(&response, StatusCode::CONFLICT, &["only external runs"]);
    let uri = format!("/api/v1/runs/{}/finish", pipeline_run.id);
    let response = app.post_json(&uri, &json!({"status": "succeeded"})).await;
    expect_error_with(&response, StatusCode::CONFLICT, &["only external runs"]);
}

// ---------------------------------------------------------------------------------------------
// 5. the step lifecycle

async fn step_lifecycle(backend: Backend) {
    let app = app(backend).await;
    let run_id = create_run(&app, json!({"name": "steps"})).await;
    let output = put_artifact(&app, b"step output");
    let step_run_id = create_step(&app, &run_id, json!({"name": "fit", "status": "pending"})).await;

    let response = app
        .post_json(
            &format!("/api/v1/runs/{run_id}/steps"),
            &json!({"name": "fit"}),
        )
        .await;
    expect_error_with(&response, StatusCode::CONFLICT, &["fit"]);

    let response = patch_step(&app, &run_id, &step_run_id, json!({"status": "succeeded"})).await;
    expect_error_with(
        &response,
        StatusCode::CONFLICT,
        &["is pending", "cannot become succeeded"],
    );
    let early_outputs = json!({"status": "running",
        "outputs": [{"name": "model", "digest": output}]});
    let response = patch_step(&app, &run_id, &step_run_id, early_outputs).await;
    let error = response.expect_error(StatusCode::BAD_REQUEST);
    assert_eq!(error_fields(&error), ["outputs"]);
    let response = patch_step(&app, &run_id, &step_run_id, json!({"status": "pending"})).await;
    let error = response.expect_error(StatusCode::BAD_REQUEST);
    assert!(
        error["message"]
            .as_str()
            .unwrap_or_default()
            .contains("status"),
        "{error}"
    );

    let response = patch_step(&app, &run_id, &step_run_id, json!({"status": "running"})).await;
    let running = response.json();
    assert_eq!(running["status"], "running");
    assert_eq!(running["attempts"], 1);
    assert!(running["started_at"].is_i64(), "{running}");
    let again = patch_step(&app, &run_id, &step_run_id, json!({"status": "running"})).await;
    assert_eq!(
        again.status,
        StatusCode::OK,
        "running again changes nothing"
    );
    assert_eq!(again.json()["started_at"], running["started_at"]);

    let response = patch_step(
        &app,
        &run_id,
        &step_run_id,
        json!({"status": "failed", "error": "diverged"}),
    )
    .await;
    assert_eq!(
        response.json()["error"],
        "diverged",
        "{}",
        body_text(&response)
    );
    let response = patch_step(&app, &run_id, &step_run_id, json!({"status": "running"})).await;
    expect_error_with(
        &response,
        StatusCode::CONFLICT,
        &["is failed", "cannot become running"],
    );

    // Step runs named in the URL must belong to the run.
    let other_run = create_run(&app, json!({"name": "other"})).await;
    let response = patch_step(&app, &other_run, &step_run_id, json!({"status": "running"})).await;
    expect_error_with(&response, StatusCode::NOT_FOUND, &[&step_run_id]);
    let response = patch_step(&app, &run_id, "nope", json!({"status": "running"})).await;
    let error = response.expect_error(StatusCode::BAD_REQUEST);
    assert_eq!(error_fields(&error), ["path.step_run_id"]);
}

// ---------------------------------------------------------------------------------------------
// 6. concurrent writes

/// Tasks writing concurrently.
const WRITERS: usize = 24;

/// Single-metric requests per task.
const WRITES_PER_TASK: usize = 40;

async fn concurrent_metric_writes(backend: Backend) {
    let app = app(backend).await;
    let runs = [
        create_run(&app, json!({"name": "concurrent-a"})).await,
        create_run(&app, json!({"name": "concurrent-b"})).await,
    ];
    let ended = create_run(&app, json!({"name": "ended"})).await;
    let response = app
        .post_json(
            &format!("/api/v1/runs/{ended}/finish"),
            &json!({"status": "cancelled"}),
        )
        .await;
    assert_eq!(response.status, StatusCode::OK);

    let mut tasks = Vec::new();
    for writer in 0..WRITERS {
        let router = app.router.clone();
        let run_id = runs[writer % 2].clone();
        tasks.push(tokio::spawn(async move {
            for step in 0..WRITES_PER_TASK {
                let body = json!({"metrics": [
                    {"key": format!("writer{writer}"), "value": step, "step": step}]});
                let status = post(&router, &format!("/api/v1/runs/{run_id}/metrics"), &body).await;
                assert_eq!(status, StatusCode::OK, "writer {writer} step {step}");
            }
        }));
    }
    // Writes to an ended run fail alone, while the others keep committing.
    let router = app.router.clone();
    let rejected = tokio::spawn(async move {
        let body = json!({"metrics": [{"key": "late", "value": 1}]});
        let mut statuses = Vec::new();
        for _ in 0..WRITES_PER_TASK {
            statuses.push(post(&router, &format!("/api/v1/runs/{ended}/metrics"), &body).await);
        }
        statuses
    });
    for task in tasks {
        task.await.expect("writer task");
    }
    let statuses = rejected.await.expect("rejected task");
    assert!(
        statuses
            .iter()
            .all(|status| *status == StatusCode::CONFLICT),
        "{statuses:?}"
    );

    settle(&app).await;
    for writer in 0..WRITERS {
        let run_id = &runs[writer % 2];
        let key = format!("writer{writer}");
        let history = app
            .state
            .store()
            .metric_history(run_id, &key)
            .await
            .expect("history");
        let steps: Vec<i64> = history.iter().map(|point| point.step).collect();
        let expected: Vec<i64> = (0..WRITES_PER_TASK as i64).collect();
        assert_eq!(steps, expected, "every value of {key} is stored once");
    }
    for run_id in &runs {
        let latest = app
            .state
            .store()
            .latest_metrics(run_id)
            .await
            .expect("latest");
        assert_eq!(
            latest.len(),
            WRITERS / 2,
            "one latest value per writer of the run"
        );
        for point in latest {
            assert_eq!(
                point.step,
                WRITES_PER_TASK as i64 - 1,
                "{} ends at the last step",
                point.key
            );
        }
    }
}

/// Posts JSON through a clone of the router and returns the status, reading the body.
async fn post(router: &axum::Router, uri: &str, body: &Value) -> StatusCode {
    let request = Request::post(uri)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body.to_string()))
        .expect("request");
    let response = router
        .clone()
        .oneshot(request)
        .await
        .expect("infallible router");
    let status = response.status();
    response.into_body().collect().await.expect("body");
    status
}

// ---------------------------------------------------------------------------------------------
// 7. the real server, read back with the CLI

async fn served_run_in_cli(backend: Backend) {
    let cli = Cli::new(backend);
    let server = ServerProcess::start(&cli, &[]);
    let base = server.url();
    let client = reqwest::Client::new();
    let artifacts = ArtifactStore::open(cli.data_dir().join("artifacts")).expect("artifact store");
    let put = |bytes: &[u8]| artifacts.put_bytes(bytes).expect("store artifact").0;
    let (raw, features, model) = (
        put(b"x,y\n1,2\n"),
        put(b"f1,f2\n0.5,0.7\n"),
        put(b"weights"),
    );

    let run = send(
        &client,
        "POST",
        &format!("{base}/api/v1/external-runs"),
        json!({
        "name": "notebook", "params": {"alpha": 0.5}, "tags": {"origin": "jupyter"}}),
        None,
    )
    .await;
    let run_id = run["id"].as_str().expect("run id").to_owned();
    let runs_uri = format!("{base}/api/v1/runs/{run_id}");

    let series = json!({"metrics": [
        {"key": "rmse", "value": 0.9, "step": 0}, {"key": "rmse", "value": 0.7, "step": 1}]});
    send(
        &client,
        "POST",
        &format!("{runs_uri}/metrics"),
        series.clone(),
        Some("series-1"),
    )
    .await;
    let replay = client
        .post(format!("{runs_uri}/metrics"))
        .header("idempotency-key", "series-1")
        .json(&series)
        .send()
        .await
        .expect("retry");
    assert_eq!(
        replay.headers()["idempotent-replayed"],
        "true",
        "the retry is a replay"
    );

    let featurize = send(
        &client,
        "POST",
        &format!("{runs_uri}/steps"),
        json!({
        "name": "featurize", "inputs": [{"name": "raw.csv", "digest": raw}]}),
        None,
    )
    .await;
    let featurize_id = featurize["id"].as_str().expect("step id").to_owned();
    send(
        &client,
        "PATCH",
        &format!("{runs_uri}/steps/{featurize_id}"),
        json!({
        "status": "succeeded",
        "outputs": [{"name": "features.csv", "digest": features, "media_type": "text/csv"}]}),
        None,
    )
    .await;
    let fit = send(
        &client,
        "POST",
        &format!("{runs_uri}/steps"),
        json!({
        "name": "fit", "params": {"epochs": 2},
        "inputs": [{"name": "features.csv", "digest": features}]}),
        None,
    )
    .await;
    let fit_id = fit["id"].as_str().expect("step id").to_owned();
    send(
        &client,
        "POST",
        &format!("{runs_uri}/metrics"),
        json!({"metrics": [
        {"key": "fit_loss", "value": 0.25, "step": 2, "step_run_id": fit_id}]}),
        None,
    )
    .await;
    send(
        &client,
        "PATCH",
        &format!("{runs_uri}/steps/{fit_id}"),
        json!({
        "status": "succeeded", "outputs": [{"name": "model.bin", "digest": model}]}),
        None,
    )
    .await;
    send(
        &client,
        "PUT",
        &format!("{runs_uri}/environment"),
        json!({
        "python": "3.11.7", "packages": ["scikit-learn==1.5.2"]}),
        None,
    )
    .await;
    send(
        &client,
        "POST",
        &format!("{runs_uri}/finish"),
        json!({"status": "succeeded"}),
        None,
    )
    .await;

    let status = server.stop();
    assert!(
        status.success(),
        "runledger serve exits cleanly on SIGTERM: {status}"
    );

    let detail = cli.json(&["runs", "show", &run_id, "--json"]);
    check_shown_run(&detail, &featurize_id, &fit_id);
    let rmse = cli.json(&["runs", "metric", &run_id, "rmse", "--json"]);
    assert_eq!(
        rmse.as_array().map(Vec::len),
        Some(2),
        "the retried series is stored once: {rmse}"
    );
    let graph = cli.json(&[
        "lineage",
        &model,
        "--upstream",
        "--run",
        &run_id,
        "--format",
        "json",
    ]);
    check_shown_lineage(
        &graph,
        &run_id,
        [&raw, &features, &model],
        [&featurize_id, &fit_id],
    );
}

/// Sends a JSON request that must succeed, with an optional idempotency key, and returns the
/// JSON response.
async fn send(
    client: &reqwest::Client,
    method: &str,
    url: &str,
    body: Value,
    key: Option<&str>,
) -> Value {
    let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
    let mut request = client.request(method.clone(), url).json(&body);
    if let Some(key) = key {
        request = request.header("idempotency-key", key);
    }
    let response = request.send().await.expect("request reaches the server");
    let status = response.status();
    let text = response.text().await.expect("response body");
    assert!(
        status.is_success(),
        "{method} {url} answered {status}: {text}"
    );
    serde_json::from_str(&text).expect("JSON response")
}

fn check_shown_run(detail: &Value, featurize_id: &str, fit_id: &str) {
    assert_eq!(detail["run"]["status"], "succeeded", "{detail}");
    assert_eq!(detail["run"]["source"], "external");
    assert_eq!(detail["run"]["user_name"], "local");
    assert_eq!(detail["params"], json!({"alpha": "0.5"}));
    assert_eq!(detail["tags"], json!({"origin": "jupyter"}));

    let steps = detail["steps"].as_array().expect("steps");
    let ids: Vec<&str> = steps
        .iter()
        .filter_map(|step| step["step_run"]["id"].as_str())
        .collect();
    assert_eq!(ids, [featurize_id, fit_id], "both steps, in creation order");
    for step in steps {
        assert_eq!(step["step_run"]["status"], "succeeded", "{step}");
        assert_eq!(step["inputs"].as_array().map(Vec::len), Some(1), "{step}");
        assert_eq!(step["outputs"].as_array().map(Vec::len), Some(1), "{step}");
    }
    assert_eq!(steps[1]["step_run"]["params_json"], json!({"epochs": 2}));

    let latest = detail["latest_metrics"].as_array().expect("latest metrics");
    let rmse = latest
        .iter()
        .find(|point| point["key"] == "rmse")
        .expect("rmse");
    assert_eq!(rmse["value"], 0.7, "the latest rmse");
    assert_eq!(rmse["step"], 1);
    assert_eq!(detail["step_metrics"]["fit"]["fit_loss"], 0.25);

    assert_eq!(detail["environment"]["python"], "3.11.7");
    assert_eq!(
        detail["environment"]["packages"],
        json!(["scikit-learn==1.5.2"])
    );
}

fn check_shown_lineage(graph: &Value, run_id: &str, digests: [&str; 3], steps: [&str; 2]) {
    let [raw, features, model] = digests;
    let [featurize, fit] = steps;
    let nodes: BTreeSet<(String, String)> = graph["nodes"]
        .as_array()
        .expect("nodes")
        .iter()
        .map(|node| {
            (
                node["kind"].as_str().unwrap().to_owned(),
                node["id"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let node = |kind: &str, id: &str| (kind.to_owned(), id.to_owned());
    let expected = BTreeSet::from([
        node("artifact", model),
        node("step_run", fit),
        node("artifact", features),
        node("step_run", featurize),
        node("artifact", raw),
    ]);
    assert_eq!(nodes, expected, "upstream of the model: {graph}");

    let edges: BTreeSet<((String, String), (String, String))> = graph["edges"]
        .as_array()
        .expect("edges")
        .iter()
        .map(|edge| {
            assert_eq!(edge["run_id"], run_id, "every edge belongs to the run");
            let end = |end: &Value| {
                (
                    end["kind"].as_str().unwrap().to_owned(),
                    end["id"].as_str().unwrap().to_owned(),
                )
            };
            (end(&edge["source"]), end(&edge["target"]))
        })
        .collect();
    let expected = BTreeSet::from([
        (node("artifact", raw), node("step_run", featurize)),
        (node("step_run", featurize), node("artifact", features)),
        (node("artifact", features), node("step_run", fit)),
        (node("step_run", fit), node("artifact", model)),
    ]);
    assert_eq!(edges, expected, "input -> step run -> output, twice");
}

// ---------------------------------------------------------------------------------------------
// 8. the OpenAPI document

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openapi_lists_ingest_routes() {
    let app = app(Backend::Sqlite).await;
    let document = app.get("/api/v1/openapi.json").await.json();
    let paths = &document["paths"];
    let routes = [
        ("/api/v1/external-runs", "post"),
        ("/api/v1/runs/{run_id}/metrics", "post"),
        ("/api/v1/runs/{run_id}/params", "post"),
        ("/api/v1/runs/{run_id}/tags", "post"),
        ("/api/v1/runs/{run_id}/tags/{key}", "delete"),
        ("/api/v1/runs/{run_id}/batch", "post"),
        ("/api/v1/runs/{run_id}/steps", "post"),
        ("/api/v1/runs/{run_id}/steps/{step_run_id}", "patch"),
        ("/api/v1/runs/{run_id}/artifacts", "post"),
        ("/api/v1/runs/{run_id}/environment", "put"),
        ("/api/v1/runs/{run_id}/finish", "post"),
    ];
    for (path, method) in routes {
        let operation = &paths[path][method];
        assert!(operation.is_object(), "{method} {path} is documented");
        let headers: Vec<&str> = operation["parameters"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|parameter| parameter["in"] == "header")
            .filter_map(|parameter| parameter["name"].as_str())
            .collect();
        assert_eq!(
            headers,
            ["Idempotency-Key"],
            "{method} {path} documents the key"
        );
    }
}

/// Clients that keep writing single metrics while the server receives SIGTERM.
const SHUTDOWN_CLIENTS: usize = 8;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_keeps_acknowledged_metrics_sqlite() {
    let cli = Cli::new(Backend::Sqlite);
    let server = ServerProcess::start(&cli, &[]);
    let client = reqwest::Client::new();
    let base = server.url();
    let created: Value = client
        .post(format!("{base}/api/v1/external-runs"))
        .json(&json!({ "name": "shutdown" }))
        .send()
        .await
        .expect("create run")
        .json()
        .await
        .expect("run JSON");
    let run_id = created["id"].as_str().expect("run id").to_owned();

    let writers: Vec<_> = (0..SHUTDOWN_CLIENTS)
        .map(|client_index| {
            let url = format!("{base}/api/v1/runs/{run_id}/metrics");
            tokio::spawn(write_until_stopped(url, client_index))
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(800)).await;
    let status = tokio::task::spawn_blocking(move || server.stop())
        .await
        .expect("stop the server");
    let mut acknowledged = 0;
    for writer in writers {
        acknowledged += writer.await.expect("writer task");
    }

    assert!(status.success(), "runledger serve exited with {status}");
    assert!(
        acknowledged > 0,
        "no write was acknowledged before shutdown"
    );
    let store = runledger::store::Store::open_sqlite(cli.data_dir())
        .await
        .expect("open the database");
    let stored = store.metric_history(&run_id, "loss").await.unwrap().len();
    // A write committed just before its connection closed may have lost only its response.
    assert!(
        stored >= acknowledged && stored <= acknowledged + SHUTDOWN_CLIENTS,
        "{stored} metrics stored, {acknowledged} acknowledged"
    );
}

/// Posts single metrics on one keep-alive connection until the server stops responding, and
/// returns how many it acknowledged.
async fn write_until_stopped(url: String, client_index: usize) -> usize {
    let client = reqwest::Client::new();
    let mut acknowledged = 0;
    for step in 0.. {
        let body = json!({ "metrics": [{ "key": "loss", "value": 0.5, "step": step }] });
        let Ok(response) = client.post(&url).json(&body).send().await else {
            return acknowledged;
        };
        if response.status() != reqwest::StatusCode::OK {
            return acknowledged;
        }
        acknowledged += 1;
        if step > 1_000_000 {
            panic!("client {client_index} wrote a million metrics without a shutdown");
        }
    }
    acknowledged
}

/// Metric writes sent on one connection as soon as each response arrives, with pauses longer
/// than the polling budget now and then, are all stored: with the default polling, with
/// polling off, and with an idle second connection open.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn back_to_back_metric_writes_are_stored() {
    for (poll_micros, idle_connection) in [("50", false), ("50", true), ("0", false)] {
        let cli = Cli::new(Backend::Sqlite);
        let server = ServerProcess::start(&cli, &["--poll-micros", poll_micros]);
        let address = server_address(&server);
        let run_id = tokio::task::spawn_blocking(move || {
            write_back_to_back(address, idle_connection, BACK_TO_BACK_WRITES)
        })
        .await
        .expect("writer thread");
        let status = tokio::task::spawn_blocking(move || server.stop())
            .await
            .expect("stop the server");

        assert!(status.success(), "runledger serve exited with {status}");
        let store = runledger::store::Store::open_sqlite(cli.data_dir())
            .await
            .expect("open the database");
        let steps: Vec<i64> = store
            .metric_history(&run_id, "loss")
            .await
            .unwrap()
            .iter()
            .map(|point| point.step)
            .collect();
        let expected: Vec<i64> = (0..BACK_TO_BACK_WRITES as i64).collect();
        assert_eq!(steps, expected, "--poll-micros {poll_micros}");
    }
}

/// Number of metric writes in [`back_to_back_metric_writes_are_stored`].
const BACK_TO_BACK_WRITES: usize = 2_000;

/// Returns the socket address `server` listens on.
fn server_address(server: &ServerProcess) -> std::net::SocketAddr {
    let url = server.url();
    let authority = url.trim_start_matches("http://");
    authority.parse().expect("server address")
}

/// Creates a run and writes `count` values of `loss` to it on one connection, each request
/// right after the previous response, pausing 2 ms after every 100th. Returns the run's id.
fn write_back_to_back(address: std::net::SocketAddr, idle: bool, count: usize) -> String {
    let timeout = Duration::from_secs(30);
    let _idle = idle.then(|| Connection::open(address, timeout).expect("idle connection"));
    let mut connection = Connection::open(address, timeout).expect("connection");
    let created = connection
        .post_json("/api/v1/external-runs", br#"{"name": "back-to-back"}"#)
        .expect("create run");
    assert!(created.is_success(), "{}", created.text());
    let created: Value = serde_json::from_slice(&created.body).expect("run JSON");
    let run_id = created["id"].as_str().expect("run id").to_owned();
    let path = format!("/api/v1/runs/{run_id}/metrics");
    for step in 0..count {
        let body = json!({ "metrics": [{ "key": "loss", "value": 0.5, "step": step }] });
        let response = connection
            .post_json(&path, body.to_string().as_bytes())
            .expect("metric write");
        assert!(response.is_success(), "step {step}: {}", response.text());
        if step % 100 == 99 {
            std::thread::sleep(Duration::from_millis(2));
        }
    }
    run_id
}
