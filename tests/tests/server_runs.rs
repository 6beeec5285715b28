//! End-to-end tests of the runs API: submitting the wine-quality pipeline and following it to
//! the end, listing runs with filters, sort keys and page tokens, rejected requests, and
//! cancelling runs one by one and at shutdown. The main paths run on SQLite and on a fresh
//! PostgreSQL database, partly through the router in-process ([`TestApp`]) and partly against
//! the real `runledger serve` on a port-0 socket.
//!
//! Needs `cargo build -p runledger --bin runledger`, `cargo xtask build-plugins` and PostgreSQL
//! at 127.0.0.1:5432 trusting user `postgres`; run with
//! `cargo test -p runledger-tests --test server_runs`.

use axum::http::StatusCode;
use runledger::server::AccessMode;
use runledger::store::{NewMetric, NewRun, RunFilter, RunSource, RunStatus, Store};
use runledger_tests::server::{ServerProcess, TestApp};
use runledger_tests::{Backend, Cli, workspace_root};
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::{Duration, Instant};

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
    wine_run_in_process => wine_run_in_process_sqlite, wine_run_in_process_postgres;
    wine_run_over_socket => wine_run_over_socket_sqlite, wine_run_over_socket_postgres;
    filters_select_runs => filters_select_runs_sqlite, filters_select_runs_postgres;
    sort_keys_order_runs => sort_keys_order_runs_sqlite, sort_keys_order_runs_postgres;
    pages_stay_stable => pages_stay_stable_sqlite, pages_stay_stable_postgres;
    cancel_long_run => cancel_long_run_sqlite, cancel_long_run_postgres;
    cancel_runs_of_others => cancel_runs_of_others_sqlite, cancel_runs_of_others_postgres;
}

/// Steps of the wine-quality example, in definition order.
const WINE_STEPS: [&str; 5] = ["ingest", "split", "standardize", "train", "evaluate"];

/// How often the tests poll a run.
const POLL_INTERVAL: Duration = Duration::from_millis(100);

/// How long a submitted run may take to reach a status. Generous, because the first run
/// compiles every plugin and the tests share a few cores with each other and with builds.
const RUN_TIMEOUT: Duration = Duration::from_secs(240);

fn wine_pipeline_path() -> PathBuf {
    workspace_root().join("examples/wine-quality/pipeline.yaml")
}

fn wine_csv_path() -> PathBuf {
    workspace_root().join("examples/wine-quality/data/winequality-red.csv")
}

fn wine_pipeline() -> String {
    std::fs::read_to_string(wine_pipeline_path()).expect("read the wine pipeline")
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Returns a pipeline of `steps` independent sleeper steps that each sleep `millis` of real
/// time when the run is not deterministic.
fn sleepy_pipeline(steps: usize, millis: u64) -> String {
    let mut text = String::from("name: sleepy\nsteps:\n");
    for index in 0..steps {
        text.push_str(&format!(
            "  - name: nap-{index}\n    plugin: sleeper@0.1.0\n    params: {{ millis: {millis} }}\n"
        ));
    }
    text
}

fn text<'a>(value: &'a Value, pointer: &str) -> &'a str {
    value
        .pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("no string at {pointer} in {value}"))
}

// ---------------------------------------------------------------------------------------------
// submitting the wine-quality pipeline

async fn wine_run_in_process(backend: Backend) {
    let app = TestApp::new(backend, AccessMode::Local).await;
    let (digest, _) = app
        .state
        .artifacts()
        .import_file(&wine_csv_path())
        .expect("import the wine CSV");
    let pipeline = wine_pipeline();
    let request = json!({
        "pipeline": pipeline,
        "params": { "alpha": 0.2 },
        "tags": { "team": "forecasting" },
        "seed": 3,
        "inputs": { "wine": digest },
    });

    let response = app.post_json("/api/v1/runs", &request).await;

    assert_eq!(
        response.status,
        StatusCode::ACCEPTED,
        "{}",
        String::from_utf8_lossy(&response.body)
    );
    let accepted = response.json();
    assert_eq!(accepted["status"], "queued", "status of a submitted run");
    let run_id = text(&accepted, "/run_id").to_owned();
    let location = response.headers["location"].to_str().expect("ASCII header");
    assert_eq!(
        location,
        format!("/api/v1/runs/{run_id}"),
        "Location header"
    );

    let detail = wait_in_process(&app, &run_id, |status| status == "succeeded").await;
    check_wine_detail(&detail, &pipeline, &digest);

    let listed = app
        .get("/api/v1/runs?filter=params.alpha%20%3D%20'0.2'")
        .await;
    let items = listed.json()["items"].clone();
    assert_eq!(items.as_array().map(Vec::len), Some(1), "listing: {items}");
    assert_eq!(items[0]["id"], run_id.as_str(), "the listed run");
    assert_eq!(items[0]["pipeline"], "wine-quality", "pipeline name");
    assert_eq!(items[0]["tags"]["team"], "forecasting", "listed tags");
    assert!(
        items[0]["metrics"]["test_rmse"].is_f64(),
        "listed metrics: {}",
        items[0]["metrics"]
    );
}

/// Polls `GET /api/v1/runs/{id}` in-process until `done(status)` holds, and returns the detail.
async fn wait_in_process(app: &TestApp, run_id: &str, done: impl Fn(&str) -> bool) -> Value {
    let deadline = Instant::now() + RUN_TIMEOUT;
    loop {
        let response = app.get(&format!("/api/v1/runs/{run_id}")).await;
        assert_eq!(response.status, StatusCode::OK, "GET run {run_id}");
        let detail = response.json();
        let status = text(&detail, "/run/status");
        if done(status) {
            return detail;
        }
        assert!(
            Instant::now() < deadline,
            "run {run_id} is still {status} after {RUN_TIMEOUT:?}: {detail}"
        );
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

fn check_wine_detail(detail: &Value, pipeline: &str, input_digest: &str) {
    let run = &detail["run"];
    assert_eq!(run["status"], "succeeded", "run status");
    assert_eq!(run["source"], "api", "a submitted run's source");
    assert_eq!(run["user"], "local", "the caller in local mode");
    assert_eq!(run["seed"], 3, "the submitted seed");
    assert!(run["ended_at"].is_i64(), "end time: {run}");
    assert_eq!(
        detail["project"], "default",
        "project of a definition without one"
    );
    assert_eq!(detail["pipeline"]["name"], "wine-quality", "pipeline name");
    assert_eq!(
        detail["pipeline"]["digest"],
        sha256_hex(pipeline.as_bytes()).as_str(),
        "the pipeline digest is the SHA-256 of the submitted text"
    );
    assert_eq!(detail["params"]["alpha"], "0.2", "the overridden param");
    assert_eq!(detail["params"]["seed"], "42", "a default param");
    assert_eq!(detail["tags"]["team"], "forecasting", "the submitted tag");

    let steps = detail["steps"].as_array().expect("steps is an array");
    let names: Vec<&str> = steps.iter().map(|step| text(step, "/name")).collect();
    assert_eq!(names, WINE_STEPS, "steps in definition order");
    for step in steps {
        assert_eq!(step["status"], "succeeded", "step {}", step["name"]);
        assert!(
            step["plugin"]["digest"]
                .as_str()
                .is_some_and(|d| d.len() == 64),
            "plugin digest of step {}",
            step["name"]
        );
        assert!(step["attempts"].as_i64() >= Some(1), "attempts: {step}");
        assert!(
            !step["outputs"].as_array().expect("outputs").is_empty(),
            "outputs of step {}",
            step["name"]
        );
    }
    let ingest_input = &steps[0]["inputs"][0];
    assert_eq!(
        ingest_input["digest"], input_digest,
        "ingest reads the upload"
    );

    let metrics = detail["metrics"].as_array().expect("metrics is an array");
    let rmse = metrics
        .iter()
        .find(|metric| metric["key"] == "test_rmse")
        .and_then(|metric| metric["value"].as_f64())
        .expect("a test_rmse metric");
    assert!((0.55..0.75).contains(&rmse), "test_rmse {rmse}");
    let run_input = detail["artifacts"]
        .as_array()
        .expect("artifacts is an array")
        .iter()
        .find(|artifact| artifact["name"] == "wine" && artifact["step_run_id"].is_null());
    assert_eq!(
        run_input.map(|artifact| &artifact["digest"]),
        Some(&json!(input_digest)),
        "the run records its input: {}",
        detail["artifacts"]
    );
    assert!(
        detail["environment"]["runledger_version"].is_string(),
        "environment: {}",
        detail["environment"]
    );
}

async fn wine_run_over_socket(backend: Backend) {
    let cli = Cli::new(backend);
    let server = ServerProcess::start(&cli, &[]);
    let client = reqwest::Client::new();
    let base = server.url();

    let csv = std::fs::read(wine_csv_path()).expect("read the wine CSV");
    let upload = client
        .post(format!("{base}/api/v1/artifacts"))
        .header("content-type", "text/csv")
        .body(csv.clone())
        .send()
        .await
        .expect("upload the CSV");
    assert_eq!(upload.status().as_u16(), 201, "upload status");
    let uploaded: Value = upload.json().await.expect("upload JSON");
    let digest = text(&uploaded, "/digest").to_owned();
    assert_eq!(digest, sha256_hex(&csv), "digest of the uploaded CSV");

    let request = json!({ "pipeline": wine_pipeline(), "inputs": { "wine": digest } });
    let submitted = client
        .post(format!("{base}/api/v1/runs"))
        .json(&request)
        .send()
        .await
        .expect("submit the run");
    assert_eq!(submitted.status().as_u16(), 202, "submit status");
    let accepted: Value = submitted.json().await.expect("submit JSON");
    let run_id = text(&accepted, "/run_id").to_owned();

    let detail = wait_over_socket(&client, &base, &run_id, "succeeded").await;
    assert_eq!(detail["run"]["source"], "api", "source: {detail}");

    let shown = cli.json(&["runs", "show", &run_id, "--json"]);
    assert_eq!(shown["run"]["status"], "succeeded", "status in `runs show`");
    assert_eq!(shown["run"]["source"], "api", "source in `runs show`");
    let steps: Vec<(&str, &str)> = shown["steps"]
        .as_array()
        .expect("steps is an array")
        .iter()
        .map(|step| (text(step, "/step_run/name"), text(step, "/step_run/status")))
        .collect();
    let expected: Vec<(&str, &str)> = WINE_STEPS.iter().map(|name| (*name, "succeeded")).collect();
    assert_eq!(steps, expected, "steps in `runs show`");

    let status = server.stop();
    assert!(status.success(), "server exit status {status}");
}

/// Polls the real server until the run has `status`, and returns its detail.
async fn wait_over_socket(
    client: &reqwest::Client,
    base: &str,
    run_id: &str,
    status: &str,
) -> Value {
    let deadline = Instant::now() + RUN_TIMEOUT;
    loop {
        let response = client
            .get(format!("{base}/api/v1/runs/{run_id}"))
            .send()
            .await
            .expect("GET the run");
        assert_eq!(response.status().as_u16(), 200, "GET run {run_id}");
        let detail: Value = response.json().await.expect("run JSON");
        if detail["run"]["status"] == status {
            return detail;
        }
        assert!(
            Instant::now() < deadline,
            "run {run_id} did not reach {status} within {RUN_TIMEOUT:?}: {detail}"
        );
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

// ---------------------------------------------------------------------------------------------
// listing: filters and sort keys over runs with known values

/// A run to record straight through the store.
#[derive(Default)]
struct Seed {
    project: &'static str,
    pipeline: Option<&'static str>,
    params: &'static [(&'static str, &'static str)],
    tags: &'static [(&'static str, &'static str)],
    metrics: &'static [(&'static str, f64)],
    status: Option<RunStatus>,
}

/// Records `seed` as a run named `name` and returns its id.
async fn record_run(store: &Store, name: &str, seed: &Seed) -> String {
    let pipeline_id = match seed.pipeline {
        Some(pipeline) => {
            let text = format!("name: {pipeline}\nsteps: []\n");
            let row = store
                .ensure_pipeline(seed.project, pipeline, &text)
                .await
                .expect("record a pipeline");
            Some(row.id)
        }
        None => None,
    };
    let run = store
        .create_run(NewRun {
            project: seed.project.to_owned(),
            pipeline_id,
            name: name.to_owned(),
            source: RunSource::External,
            user_name: "seeder".to_owned(),
            seed: None,
            owner: None,
        })
        .await
        .expect("create a run");
    let pairs = |items: &[(&str, &str)]| -> Vec<(String, String)> {
        items
            .iter()
            .map(|(key, value)| ((*key).to_owned(), (*value).to_owned()))
            .collect()
    };
    store
        .log_params(&run.id, &pairs(seed.params))
        .await
        .expect("log params");
    store
        .set_tags(&run.id, &pairs(seed.tags))
        .await
        .expect("set tags");
    let metrics: Vec<NewMetric> = seed
        .metrics
        .iter()
        .map(|(key, value)| NewMetric {
            step_run_id: None,
            key: (*key).to_owned(),
            value: *value,
            step: 0,
            timestamp_ms: 0,
        })
        .collect();
    store
        .log_metrics(&run.id, &metrics)
        .await
        .expect("log metrics");
    if let Some(status) = seed.status {
        store
            .set_run_status(&run.id, status, None)
            .await
            .expect("set status");
    }
    // Creation times of consecutive runs differ, so each time filter has one expected result.
    tokio::time::sleep(Duration::from_millis(3)).await;
    run.id
}

/// Records the six runs the listing tests query, named r1 to r6, and returns their ids by
/// name.
async fn record_known_runs(store: &Store) -> BTreeMap<&'static str, String> {
    let seeds = [
        (
            "r1",
            Seed {
                project: "wine",
                pipeline: Some("p-a"),
                params: &[("alpha", "0.1"), ("model", "ridge")],
                tags: &[("team", "ml")],
                metrics: &[("rmse", 0.5), ("r2", 0.8)],
                status: Some(RunStatus::Succeeded),
            },
        ),
        (
            "r2",
            Seed {
                project: "wine",
                pipeline: Some("p-a"),
                params: &[("alpha", "0.2"), ("model", "Ridge-big")],
                tags: &[("team", "ML")],
                metrics: &[("rmse", 0.9)],
                status: Some(RunStatus::Running),
            },
        ),
        (
            "r3",
            Seed {
                project: "wine",
                pipeline: Some("p-b"),
                params: &[("alpha", "0.1"), ("model", "lasso")],
                tags: &[("team", "ops"), ("note", "100%_done")],
                metrics: &[("rmse", 0.6), ("val loss", 0.3)],
                status: Some(RunStatus::Failed),
            },
        ),
        (
            "r4",
            Seed {
                project: "other",
                params: &[("alpha", "0.3")],
                tags: &[("team", "ml")],
                metrics: &[("rmse", 0.5)],
                ..Seed::default()
            },
        ),
        (
            "r5",
            Seed {
                project: "other",
                ..Seed::default()
            },
        ),
        (
            "r6",
            Seed {
                project: "wine",
                pipeline: Some("p-a"),
                params: &[("alpha", "0.1")],
                tags: &[("team", "ml")],
                metrics: &[("rmse", f64::NAN)],
                ..Seed::default()
            },
        ),
    ];
    let mut ids = BTreeMap::new();
    for (name, seed) in &seeds {
        ids.insert(*name, record_run(store, name, seed).await);
    }
    ids
}

/// Encodes a query parameter value.
fn encode(value: &str) -> String {
    let mut encoded = String::new();
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || b"-_.~".contains(&byte) {
            encoded.push(byte as char);
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    encoded
}

/// Lists runs with `query` (already encoded) in one page and returns their names in order.
async fn listed_names(app: &TestApp, query: &str) -> Vec<String> {
    let response = app
        .get(&format!("/api/v1/runs?page_size=1000&{query}"))
        .await;
    assert_eq!(
        response.status,
        StatusCode::OK,
        "{query}: {}",
        String::from_utf8_lossy(&response.body)
    );
    let body = response.json();
    assert_eq!(body["next_page_token"], Value::Null, "{query}: one page");
    body["items"]
        .as_array()
        .expect("items is an array")
        .iter()
        .map(|item| text(item, "/name").to_owned())
        .collect()
}

async fn filters_select_runs(backend: Backend) {
    let app = TestApp::new(backend, AccessMode::Local).await;
    let ids = record_known_runs(app.state.store()).await;
    let r4_created = app
        .state
        .store()
        .require_run(&ids["r4"])
        .await
        .expect("r4")
        .created_at;

    let created_filter = format!("created_at >= {r4_created}");
    let cases: Vec<(&str, &[&str])> = vec![
        ("metrics.rmse < 0.7", &["r1", "r3", "r4"]),
        ("metrics.rmse = 0.5", &["r1", "r4"]),
        ("metrics.rmse != 0.5", &["r2", "r3"]),
        ("metrics.r2 >= 0.8", &["r1"]),
        ("metrics.`val loss` <= 0.3", &["r3"]),
        ("params.alpha = '0.1'", &["r1", "r3", "r6"]),
        ("params.alpha != '0.1'", &["r2", "r4"]),
        ("params.alpha IN ('0.2', '0.3')", &["r2", "r4"]),
        ("params.model LIKE 'Ridge%'", &["r2"]),
        ("params.model ILIKE 'ridge%'", &["r1", "r2"]),
        ("params.model LIKE '_asso'", &["r3"]),
        (r"tags.note LIKE '100\%\_%'", &["r3"]),
        (r"tags.note LIKE '100\'", &[]),
        ("tags.note LIKE '100*'", &[]),
        ("tags.team = 'ml'", &["r1", "r4", "r6"]),
        (
            "metrics.rmse < 0.7 and params.alpha = '0.1' AND tags.team = 'ml'",
            &["r1"],
        ),
        ("status = 'running'", &["r2"]),
        (
            "attributes.status IN ('succeeded', 'failed')",
            &["r1", "r3"],
        ),
        ("attributes.project = 'other'", &["r4", "r5"]),
        ("pipeline = 'p-a'", &["r1", "r2", "r6"]),
        ("pipeline != 'p-a'", &["r3"]),
        ("name LIKE 'r_'", &["r1", "r2", "r3", "r4", "r5", "r6"]),
        (
            "user = 'seeder' and source = 'external'",
            &["r1", "r2", "r3", "r4", "r5", "r6"],
        ),
        (&created_filter, &["r4", "r5", "r6"]),
        ("ended_at > 0", &["r1", "r3"]),
        ("metrics.missing > 0", &[]),
    ];
    for (filter, expected) in cases {
        let names = listed_names(&app, &format!("filter={}", encode(filter))).await;

        let names: BTreeSet<&str> = names.iter().map(String::as_str).collect();
        let expected: BTreeSet<&str> = expected.iter().copied().collect();
        assert_eq!(names, expected, "filter {filter}");
    }

    check_long_values(&app).await;

    let shortcuts = [
        ("project=wine&status=running", vec!["r2"]),
        ("pipeline=p-b", vec!["r3"]),
        ("project=other&filter=metrics.rmse%3E0", vec!["r4"]),
    ];
    for (query, expected) in shortcuts {
        let names = listed_names(&app, query).await;

        assert_eq!(names, expected, "query {query}");
    }
}

/// Checks that values longer than the indexed prefix of `run_params` and `run_tags` still
/// compare whole, with a multi-byte prefix, so the prefix is counted in characters alike by
/// the test, the server and the database.
async fn check_long_values(app: &TestApp) {
    let stem = "é".repeat(150);
    for (name, last) in [("long-a", 'a'), ("long-b", 'b')] {
        let value: &'static str = Box::leak(format!("{stem}{last}").into_boxed_str());
        let tags: &'static [(&'static str, &'static str)] =
            Box::leak(vec![("note", value)].into_boxed_slice());
        let seed = Seed {
            project: "long",
            tags,
            params: tags,
            ..Seed::default()
        };
        record_run(app.state.store(), name, &seed).await;
    }

    let cases = [
        (format!("tags.note = '{stem}a'"), vec!["long-a"]),
        (format!("params.note = '{stem}b'"), vec!["long-b"]),
        (format!("tags.note IN ('{stem}b', 'x')"), vec!["long-b"]),
        (format!("params.note = '{stem}'"), vec![]),
    ];
    for (filter, expected) in cases {
        let names = listed_names(app, &format!("project=long&filter={}", encode(&filter))).await;

        assert_eq!(
            names,
            expected,
            "filter on a {}-character value",
            filter.len()
        );
    }
}

async fn sort_keys_order_runs(backend: Backend) {
    let app = TestApp::new(backend, AccessMode::Local).await;
    record_known_runs(app.state.store()).await;

    let cases: [(&str, &[&str]); 7] = [
        ("", &["r6", "r5", "r4", "r3", "r2", "r1"]),
        ("metrics.rmse", &["r1", "r4", "r3", "r2", "r5", "r6"]),
        ("metrics.rmse DESC", &["r2", "r3", "r4", "r1", "r6", "r5"]),
        (
            "params.alpha desc, metrics.rmse",
            &["r4", "r2", "r1", "r3", "r6", "r5"],
        ),
        (
            "pipeline, created_at",
            &["r1", "r2", "r6", "r3", "r4", "r5"],
        ),
        (
            "tags.note, name DESC",
            &["r3", "r6", "r5", "r4", "r2", "r1"],
        ),
        (
            "ended_at desc, name desc",
            &["r3", "r1", "r6", "r5", "r4", "r2"],
        ),
    ];
    for (order_by, expected) in cases {
        let names = listed_names(&app, &format!("order_by={}", encode(order_by))).await;

        assert_eq!(names, expected, "order_by {order_by}");
    }
}

// ---------------------------------------------------------------------------------------------
// pagination

async fn pages_stay_stable(backend: Backend) {
    let app = TestApp::new(backend, AccessMode::Local).await;
    let store = app.state.store();
    for index in 0..23_u32 {
        let metrics: &'static [(&'static str, f64)] = match index % 6 {
            0 => &[],
            1 => &[("score", 1.0)],
            2 => &[("score", 2.0)],
            3 => &[("score", f64::INFINITY)],
            4 => &[("score", -3.5)],
            _ => &[("score", 2.0)],
        };
        let seed = Seed {
            project: "paging",
            metrics,
            ..Seed::default()
        };
        record_run(store, &format!("run-{index}"), &seed).await;
    }

    for order_by in ["metrics.score", "metrics.score DESC", "", "name"] {
        let filter = RunFilter {
            project: Some("paging".to_owned()),
            ..RunFilter::default()
        };
        let before: BTreeSet<String> = store
            .list_runs(&filter)
            .await
            .expect("list runs")
            .into_iter()
            .map(|run| run.id)
            .collect();

        let walked = walk_pages(&app, order_by, 4).await;

        let seen: BTreeSet<String> = walked.iter().map(|(id, _)| id.clone()).collect();
        assert_eq!(seen.len(), walked.len(), "{order_by}: no run twice");
        assert!(
            seen.is_superset(&before),
            "{order_by}: every earlier run appears; missing {:?}",
            before.difference(&seen).collect::<Vec<_>>()
        );
        if order_by.starts_with("metrics") {
            check_metric_order(&walked, order_by.ends_with("DESC"));
        }
        if order_by.is_empty() {
            assert_eq!(
                seen, before,
                "newest first: runs added meanwhile sort before"
            );
        }
    }
}

/// Walks every page of `order_by` with `page_size` runs per page, recording two new runs
/// between pages, and returns the listed runs with their score.
async fn walk_pages(app: &TestApp, order_by: &str, page_size: u32) -> Vec<(String, Option<f64>)> {
    let mut walked = Vec::new();
    let mut token: Option<String> = None;
    for page in 0.. {
        assert!(page < 100, "{order_by}: too many pages");
        let mut query = format!(
            "/api/v1/runs?project=paging&page_size={page_size}&order_by={}",
            encode(order_by)
        );
        if let Some(token) = &token {
            query.push_str(&format!("&page_token={}", encode(token)));
        }
        let response = app.get(&query).await;
        assert_eq!(
            response.status,
            StatusCode::OK,
            "{order_by} page {page}: {}",
            String::from_utf8_lossy(&response.body)
        );
        let body = response.json();
        let items = body["items"].as_array().expect("items is an array");
        assert!(items.len() <= page_size as usize, "page size");
        for item in items {
            let score = item["metrics"]["score"].as_f64();
            walked.push((text(item, "/id").to_owned(), score));
        }

        for extra in 0..2 {
            let seed = Seed {
                project: "paging",
                metrics: if extra == 0 { &[("score", 1.5)] } else { &[] },
                ..Seed::default()
            };
            record_run(app.state.store(), &format!("late-{page}-{extra}"), &seed).await;
        }
        match body["next_page_token"].as_str() {
            Some(next) => token = Some(next.to_owned()),
            None => return walked,
        }
    }
    unreachable!("the loop returns on the last page")
}

/// Checks that scores come in order with the runs lacking one last. Infinity is `null` in JSON,
/// so this checks the finite ones and that `null`s are not followed by finite scores other
/// than the infinity's neighbours.
fn check_metric_order(walked: &[(String, Option<f64>)], descending: bool) {
    let finite: Vec<f64> = walked.iter().filter_map(|(_, score)| *score).collect();
    let mut sorted = finite.clone();
    sorted.sort_by(|a, b| a.total_cmp(b));
    if descending {
        sorted.reverse();
    }
    assert_eq!(
        finite, sorted,
        "finite scores in order (descending {descending})"
    );
}

// ---------------------------------------------------------------------------------------------
// rejected requests

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_listings_rejected_sqlite() {
    let app = TestApp::new(Backend::Sqlite, AccessMode::Local).await;
    record_known_runs(app.state.store()).await;

    let cases = [
        (
            "filter=metrics.rmse%200.7",
            "filter: expected a comparison operator after `metrics.rmse` at column 14",
        ),
        (
            "filter=params.alpha%20%3C%20'1'",
            "filter: `params.alpha` is text",
        ),
        ("filter=status%20%3D%20'done'", "invalid run status `done`"),
        ("order_by=metrics.rmse%20up", "order_by: expected `ASC`"),
        ("page_size=0", "page_size: 0 is out of range"),
        ("page_size=1001", "page_size: 1001 is out of range"),
        ("page_size=many", "the query string is not valid"),
        (
            "page_token=not-a-token",
            "page_token: `not-a-token` is not a page token",
        ),
        ("status=done", "status: invalid run status `done`"),
        ("colour=red", "the query string is not valid"),
        ("project=a%00b", "project: contains a NUL character"),
        (
            "filter=tags.t%20%3D%20'a%00b'",
            "cannot contain a NUL character",
        ),
    ];
    for (query, fragment) in cases {
        let response = app.get(&format!("/api/v1/runs?{query}")).await;

        let error = response.expect_error(StatusCode::BAD_REQUEST);
        assert_eq!(error["code"], "invalid_argument", "{query}");
        let message = text(&error, "/message");
        assert!(
            message.contains(fragment),
            "{query}: `{message}` lacks `{fragment}`"
        );
    }

    let first = app
        .get("/api/v1/runs?page_size=2&order_by=metrics.rmse")
        .await;
    let token = first.json()["next_page_token"]
        .as_str()
        .expect("a second page")
        .to_owned();
    let other_order = app
        .get(&format!(
            "/api/v1/runs?page_size=2&order_by=name&page_token={token}"
        ))
        .await;
    let error = other_order.expect_error(StatusCode::BAD_REQUEST);
    assert!(
        text(&error, "/message").contains("different filter or order_by"),
        "{error}"
    );
    let same_order = app
        .get(&format!(
            "/api/v1/runs?page_size=2&order_by=metrics.rmse&page_token={token}"
        ))
        .await;
    assert_eq!(
        same_order.status,
        StatusCode::OK,
        "the token works for its own listing"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_run_ids_rejected_sqlite() {
    let app = TestApp::new(Backend::Sqlite, AccessMode::Local).await;

    let malformed = app.get("/api/v1/runs/not-a-uuid").await;
    let error = malformed.expect_error(StatusCode::BAD_REQUEST);
    assert!(
        text(&error, "/message").contains("is not a run id"),
        "{error}"
    );

    let unknown = app
        .get("/api/v1/runs/01939a4e-5c1a-7c3e-9d2b-6f1e2a3b4c5d")
        .await;
    unknown.expect_error(StatusCode::NOT_FOUND);

    let cancel_unknown = app
        .post_json(
            "/api/v1/runs/01939a4e-5c1a-7c3e-9d2b-6f1e2a3b4c5d/cancel",
            &json!({}),
        )
        .await;
    cancel_unknown.expect_error(StatusCode::NOT_FOUND);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_submissions_rejected_sqlite() {
    let app = TestApp::new(Backend::Sqlite, AccessMode::Local).await;
    let (digest, _) = app
        .state
        .artifacts()
        .import_file(&wine_csv_path())
        .expect("import the wine CSV");
    let wine = wine_pipeline();
    let absent = "0".repeat(64);
    let nul = json!(["\u{0}"]);
    let negative_sleep =
        "name: x\nsteps:\n  - name: a\n    plugin: sleeper@0.1.0\n    params: { millis: -1 }\n";

    let cases = [
        (
            json!({ "pipeline": wine }),
            "inputs.wine",
            "upload the file with POST /api/v1/artifacts",
        ),
        (
            json!({ "pipeline": wine, "inputs": { "wine": digest, "grapes": digest } }),
            "inputs.grapes",
            "the pipeline has no input `grapes`",
        ),
        (
            json!({ "pipeline": wine, "inputs": { "wine": absent } }),
            "inputs.wine",
            "no artifact with digest",
        ),
        (
            json!({ "pipeline": wine, "inputs": { "wine": "abc" } }),
            "inputs.wine",
            "abc",
        ),
        (
            json!({ "pipeline": wine, "inputs": { "wine": digest }, "params": { "alpah": 1 } }),
            "params.alpah",
            "did you mean `alpha`",
        ),
        (
            json!({ "pipeline": "name: [unclosed" }),
            "/",
            "invalid YAML",
        ),
        (
            json!({ "pipeline": "name: x\nsteps:\n  - name: a\n    plugin: no-such-plugin\n" }),
            "/steps/0/plugin (step a)",
            "no-such-plugin",
        ),
        (
            json!({ "pipeline": negative_sleep }),
            "/steps/0/params/millis (step a)",
            "minimum",
        ),
        (json!({ "pipeline": "" }), "pipeline", "is empty"),
        (
            json!({ "pipeline": wine, "inputs": { "wine": digest }, "tags": { "": "x" } }),
            "tags",
            "a tag key is empty",
        ),
        (
            json!({ "pipeline": wine, "inputs": { "wine": digest }, "tags": { "team": "\u{0}" } }),
            "tags.team",
            "NUL character",
        ),
        (
            json!({ "pipeline": wine, "inputs": { "wine": digest }, "params": { "alpha": nul } }),
            "params.alpha",
            "NUL character",
        ),
        (
            json!({ "pipeline": wine, "inputs": { "wine": digest }, "priority": 1 }),
            "priority",
            "unknown field `priority`",
        ),
    ];
    for (body, field, fragment) in cases {
        let response = app.post_json("/api/v1/runs", &body).await;

        let error = response.expect_error(StatusCode::BAD_REQUEST);
        let details = error["details"].as_array().cloned().unwrap_or_default();
        let fields: Vec<&str> = details.iter().map(|d| text(d, "/field")).collect();
        assert!(fields.contains(&field), "{field} not in {error}");
        assert!(
            error.to_string().contains(fragment),
            "{field}: `{fragment}` missing from {error}"
        );
    }

    let runs = app.get("/api/v1/runs").await.json();
    assert_eq!(
        runs["items"],
        json!([]),
        "no rejected submission recorded a run"
    );
}

#[test]
fn openapi_documents_runs_routes() {
    let document = runledger::server::openapi_document();

    let operations = [
        ("/api/v1/runs", "post"),
        ("/api/v1/runs", "get"),
        ("/api/v1/runs/{run_id}", "get"),
        ("/api/v1/runs/{run_id}/cancel", "post"),
    ];
    for (path, method) in operations {
        let operation = &document["paths"][path][method];
        assert!(operation.is_object(), "{method} {path} is documented");
        assert_eq!(operation["tags"], json!(["runs"]), "tag of {method} {path}");
    }
    let schemas = [
        "SubmitRun",
        "RunAccepted",
        "RunList",
        "RunSummary",
        "RunDetail",
    ];
    for schema in schemas {
        assert!(
            document["components"]["schemas"][schema].is_object(),
            "schema {schema} is documented"
        );
    }
    let parameters: Vec<&str> = document["paths"]["/api/v1/runs"]["get"]["parameters"]
        .as_array()
        .expect("the listing has parameters")
        .iter()
        .map(|parameter| text(parameter, "/name"))
        .collect();
    let expected = [
        "filter",
        "order_by",
        "page_size",
        "page_token",
        "project",
        "pipeline",
        "status",
    ];
    assert_eq!(parameters, expected, "query parameters of the listing");
}

// ---------------------------------------------------------------------------------------------
// cancellation

async fn cancel_long_run(backend: Backend) {
    let app = TestApp::new(backend, AccessMode::Local).await;
    let request = json!({ "pipeline": sleepy_pipeline(12, 1500), "deterministic": false });
    let accepted = app.post_json("/api/v1/runs", &request).await;
    assert_eq!(
        accepted.status,
        StatusCode::ACCEPTED,
        "{}",
        String::from_utf8_lossy(&accepted.body)
    );
    let run_id = text(&accepted.json(), "/run_id").to_owned();
    wait_in_process(&app, &run_id, |status| status == "running").await;

    let cancelled = app
        .post_json(&format!("/api/v1/runs/{run_id}/cancel"), &json!({}))
        .await;

    assert_eq!(
        cancelled.status,
        StatusCode::ACCEPTED,
        "{}",
        String::from_utf8_lossy(&cancelled.body)
    );
    assert_eq!(
        cancelled.json()["run_id"],
        run_id.as_str(),
        "cancelled run id"
    );
    let started = Instant::now();
    let detail = wait_in_process(&app, &run_id, |status| status != "running").await;
    assert_eq!(detail["run"]["status"], "cancelled", "status after cancel");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "the run took {:?} to stop; twelve 1.5 s steps two at a time would take 9 s",
        started.elapsed()
    );
    assert!(detail["run"]["ended_at"].is_i64(), "a cancelled run ends");
    let steps = detail["steps"].as_array().expect("steps is an array");
    assert!(
        steps.iter().any(|step| step["status"] == "cancelled"),
        "unstarted steps are cancelled: {steps:?}"
    );
    for step in steps {
        let status = text(step, "/status");
        assert!(
            ["cancelled", "succeeded"].contains(&status),
            "step {} ended as {status}",
            step["name"]
        );
    }
    let again = app
        .post_json(&format!("/api/v1/runs/{run_id}/cancel"), &json!({}))
        .await;
    let error = again.expect_error(StatusCode::CONFLICT);
    assert!(
        text(&error, "/message").contains("already ended as cancelled"),
        "{error}"
    );
}

async fn cancel_runs_of_others(backend: Backend) {
    let app = TestApp::new(backend, AccessMode::Local).await;
    let store = app.state.store();
    let external = record_run(
        store,
        "external",
        &Seed {
            project: "default",
            status: Some(RunStatus::Running),
            ..Seed::default()
        },
    )
    .await;
    let foreign = store
        .create_run(NewRun {
            project: "default".to_owned(),
            pipeline_id: None,
            name: "cli-run".to_owned(),
            source: RunSource::Cli,
            user_name: "someone".to_owned(),
            seed: None,
            owner: Some(runledger::store::RunOwner {
                pid: 4_000_000,
                hostname: "elsewhere".to_owned(),
            }),
        })
        .await
        .expect("create a CLI run")
        .id;

    let response = app
        .post_json(&format!("/api/v1/runs/{external}/cancel"), &json!({}))
        .await;
    assert_eq!(
        response.status,
        StatusCode::OK,
        "{}",
        String::from_utf8_lossy(&response.body)
    );
    assert_eq!(
        response.json()["status"],
        "cancelled",
        "external run status"
    );
    let run = store.require_run(&external).await.expect("external run");
    assert_eq!(run.status, RunStatus::Cancelled, "recorded status");
    assert!(run.ended_at.is_some(), "recorded end");

    let response = app
        .post_json(&format!("/api/v1/runs/{foreign}/cancel"), &json!({}))
        .await;
    let error = response.expect_error(StatusCode::CONFLICT);
    assert!(
        text(&error, "/message").contains("process 4000000 on elsewhere"),
        "{error}"
    );
    let run = store.require_run(&foreign).await.expect("CLI run");
    assert_eq!(
        run.status,
        RunStatus::Queued,
        "a run of another process is left alone"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_cancels_running_runs_sqlite() {
    let cli = Cli::new(Backend::Sqlite);
    let server = ServerProcess::start(&cli, &[]);
    let client = reqwest::Client::new();
    let base = server.url();
    let request = json!({ "pipeline": sleepy_pipeline(12, 1500), "deterministic": false });
    let submitted = client
        .post(format!("{base}/api/v1/runs"))
        .json(&request)
        .send()
        .await
        .expect("submit the run");
    assert_eq!(submitted.status().as_u16(), 202, "submit status");
    let accepted: Value = submitted.json().await.expect("submit JSON");
    let run_id = text(&accepted, "/run_id").to_owned();
    wait_over_socket(&client, &base, &run_id, "running").await;

    let status = tokio::task::spawn_blocking(move || server.stop())
        .await
        .expect("stop the server");

    assert!(status.success(), "server exit status {status}");
    let shown = cli.json(&["runs", "show", &run_id, "--json"]);
    assert_eq!(shown["run"]["status"], "cancelled", "status after shutdown");
    let steps = shown["steps"].as_array().expect("steps is an array");
    for step in steps {
        let status = text(step, "/step_run/status");
        assert!(
            ["cancelled", "succeeded"].contains(&status),
            "step {} ended as {status}",
            step["step_run"]["name"]
        );
    }
}

// ---------------------------------------------------------------------------------------------
// external steps of submitted runs

/// A pipeline whose `train` step runs outside the sandbox, between two copies.
const EXTERNAL_PIPELINE: &str = "\
name: submitted-external
inputs:
  data: { digest: DATA_DIGEST }
steps:
  - name: train
    executor: external
    inputs: { dataset: inputs.data }
    outputs: [model]
    timeout: 120s
  - name: publish
    plugin: copy@0.1.0
    inputs: { source: train.model }
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn submitted_external_step_gets_token_sqlite() {
    let app = TestApp::new(Backend::Sqlite, AccessMode::Local).await;
    let (data, _) = app
        .state
        .artifacts()
        .put_bytes(b"x,y\n1,2\n")
        .expect("data");
    let (model, _) = app
        .state
        .artifacts()
        .put_bytes(b"{\"w\": 2}")
        .expect("model");
    let pipeline = EXTERNAL_PIPELINE.replace("DATA_DIGEST", &data);
    let request = json!({ "pipeline": pipeline });

    let response = app.post_json("/api/v1/runs", &request).await;

    assert_eq!(response.status, StatusCode::ACCEPTED, "{response:?}");
    let accepted = response.json();
    let run_id = text(&accepted, "/run_id").to_owned();
    let step = &accepted["external_steps"][0];
    assert_eq!(step["step"], "train", "external steps: {accepted}");
    let token = text(step, "/token").to_owned();
    let report_path = text(step, "/report_path").to_owned();
    wait_until_step_waits(&app, &run_id).await;

    let report = json!({
        "status": "succeeded",
        "outputs": [{ "name": "model", "digest": model }],
    });
    let reported = app
        .send(
            axum::http::Request::post(&report_path)
                .header("content-type", "application/json")
                .header("authorization", format!("Bearer {token}"))
                .body(axum::body::Body::from(report.to_string()))
                .expect("request"),
        )
        .await;
    assert_eq!(reported.status, StatusCode::OK, "{reported:?}");

    let detail = wait_in_process(&app, &run_id, |status| {
        status != "running" && status != "queued"
    })
    .await;
    assert_eq!(text(&detail, "/run/status"), "succeeded", "{detail}");
    let listed = app.get(&format!("/api/v1/runs/{run_id}")).await.json();
    assert!(
        !listed.to_string().contains(&token),
        "the run detail must not show the step token"
    );
}

/// Polls the run's external steps until `train` waits for its report.
async fn wait_until_step_waits(app: &TestApp, run_id: &str) {
    let deadline = Instant::now() + RUN_TIMEOUT;
    loop {
        let steps = app
            .get(&format!("/api/v1/runs/{run_id}/external-steps"))
            .await
            .json();
        if steps.to_string().contains("\"waiting\"") {
            return;
        }
        assert!(Instant::now() < deadline, "step never waited: {steps}");
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}
