//! End-to-end tests of the metrics API: latest values, and histories downsampled on the server
//! so that a 200,000-point series fits a chart and keeps its extremes, on SQLite and
//! PostgreSQL.
//!
//! Run with `cargo test -p runledger-tests --test server_metric_history`.

use axum::http::StatusCode;
use runledger::server::AccessMode;
use runledger::store::{DEFAULT_PROJECT, NewMetric, NewRun, NewStepRun, RunSource, StepStatus};
use runledger_tests::Backend;
use runledger_tests::server::TestApp;
use serde_json::{Value, json};

/// Points in the long series.
const LONG_SERIES: i64 = 200_000;

/// Step of the series' single lowest value.
const MIN_STEP: i64 = 123_457;

/// Step of the series' single highest value.
const MAX_STEP: i64 = 31_416;

async fn new_run(app: &TestApp) -> String {
    let run = NewRun {
        project: DEFAULT_PROJECT.to_owned(),
        pipeline_id: None,
        name: "train".to_owned(),
        source: RunSource::External,
        user_name: "tester".to_owned(),
        seed: None,
        owner: None,
    };
    app.state.store().create_run(run).await.expect("run").id
}

fn metric(key: &str, step: i64, value: f64, step_run_id: Option<&str>) -> NewMetric {
    NewMetric {
        step_run_id: step_run_id.map(str::to_owned),
        key: key.to_owned(),
        value,
        step,
        timestamp_ms: 1_700_000_000_000 + step,
    }
}

/// Builds a noisy sine wave between -1 and 1 with one dip to -5 and one spike to 9.
fn long_series() -> Vec<NewMetric> {
    (0..LONG_SERIES)
        .map(|step| {
            let value = match step {
                MIN_STEP => -5.0,
                MAX_STEP => 9.0,
                _ => (step as f64 / 1000.0).sin() * 0.9 + ((step * 7919) % 13) as f64 / 130.0,
            };
            metric("loss", step, value, None)
        })
        .collect()
}

fn steps_of(points: &Value) -> Vec<i64> {
    points
        .as_array()
        .expect("points array")
        .iter()
        .map(|point| point["step"].as_i64().expect("step"))
        .collect()
}

async fn long_history_keeps_extremes(backend: Backend) {
    let app = TestApp::new(backend, AccessMode::Local).await;
    let run_id = new_run(&app).await;
    app.state
        .store()
        .log_metrics(&run_id, &long_series())
        .await
        .expect("log the series");

    let uri = format!("/api/v1/runs/{run_id}/metrics/loss/history?max_points=500");
    let response = app.get(&uri).await;

    assert_eq!(response.status, StatusCode::OK);
    let body = response.json();
    assert_eq!(body["key"], "loss");
    assert_eq!(body["total_points"], LONG_SERIES);
    assert_eq!(body["downsampled"], true);
    let steps = steps_of(&body["points"]);
    assert!(steps.len() <= 500, "{} points", steps.len());
    assert!(steps.len() >= 400, "only {} points", steps.len());
    assert!(
        steps.windows(2).all(|pair| pair[0] < pair[1]),
        "not in step order"
    );
    assert_eq!(steps.first(), Some(&0));
    assert_eq!(steps.last(), Some(&(LONG_SERIES - 1)));
    assert!(steps.contains(&MIN_STEP), "global minimum missing");
    assert!(steps.contains(&MAX_STEP), "global maximum missing");
    let values: Vec<f64> = body["points"]
        .as_array()
        .expect("points")
        .iter()
        .map(|point| point["value"].as_f64().expect("numeric value"))
        .collect();
    assert!(values.contains(&-5.0));
    assert!(values.contains(&9.0));

    // A budget close to the series' length takes the streaming path on every backend.
    let uri = format!("/api/v1/runs/{run_id}/metrics/loss/history?max_points=20000");
    let body = app.get(&uri).await.json();
    let steps = steps_of(&body["points"]);
    assert!(steps.len() <= 20_000, "{} points", steps.len());
    assert!(steps.len() >= 19_000, "only {} points", steps.len());
    assert!(
        steps.contains(&MIN_STEP),
        "global minimum missing when streaming"
    );
    assert!(
        steps.contains(&MAX_STEP),
        "global maximum missing when streaming"
    );
}

#[tokio::test]
async fn long_history_keeps_extremes_sqlite() {
    long_history_keeps_extremes(Backend::Sqlite).await;
}

#[tokio::test]
async fn long_history_keeps_extremes_postgres() {
    long_history_keeps_extremes(Backend::Postgres).await;
}

async fn short_history_is_whole(backend: Backend) {
    let app = TestApp::new(backend, AccessMode::Local).await;
    let run_id = new_run(&app).await;
    let step = NewStepRun {
        run_id: run_id.clone(),
        name: "fit".to_owned(),
        plugin: None,
        executor: "external".to_owned(),
        status: StepStatus::Pending,
        params: json!({}),
        cache_key: None,
        cached_from: None,
    };
    let step = app.state.store().create_step_run(step).await.expect("step");
    let values = [
        metric("acc", 0, 0.5, None),
        metric("acc", 1, f64::NAN, Some(&step.id)),
        metric("acc", 2, f64::INFINITY, Some(&step.id)),
        metric("acc", 3, f64::NEG_INFINITY, None),
        metric("lr", 0, 0.1, None),
    ];
    app.state
        .store()
        .log_metrics(&run_id, &values)
        .await
        .expect("log values");

    let body = app
        .get(&format!("/api/v1/runs/{run_id}/metrics/acc/history"))
        .await
        .json();

    assert_eq!(body["total_points"], 4);
    assert_eq!(body["downsampled"], false);
    let points = &body["points"];
    assert_eq!(points[0]["value"], 0.5);
    assert_eq!(points[1]["value"], "NaN");
    assert_eq!(points[2]["value"], "Infinity");
    assert_eq!(points[3]["value"], "-Infinity");
    assert_eq!(points[1]["step_run_id"], step.id.as_str());
    assert_eq!(points[0]["timestamp"], 1_700_000_000_000_i64);

    let only_step = format!(
        "/api/v1/runs/{run_id}/metrics/acc/history?step_run_id={}",
        step.id
    );
    let body = app.get(&only_step).await.json();
    assert_eq!(steps_of(&body["points"]), [1, 2]);

    let latest = app
        .get(&format!("/api/v1/runs/{run_id}/metrics"))
        .await
        .json();
    assert_eq!(latest["items"][0]["key"], "acc");
    assert_eq!(latest["items"][0]["value"], "-Infinity");
    assert_eq!(latest["items"][0]["step"], 3);
    assert_eq!(latest["items"][1]["key"], "lr");
}

#[tokio::test]
async fn short_history_is_whole_sqlite() {
    short_history_is_whole(Backend::Sqlite).await;
}

#[tokio::test]
async fn short_history_is_whole_postgres() {
    short_history_is_whole(Backend::Postgres).await;
}

#[tokio::test]
async fn history_rejects_bad_queries() {
    let app = TestApp::new(Backend::Sqlite, AccessMode::Local).await;
    let run_id = new_run(&app).await;

    for max_points in ["3", "100001", "0"] {
        let uri = format!("/api/v1/runs/{run_id}/metrics/loss/history?max_points={max_points}");
        let error = app.get(&uri).await.expect_error(StatusCode::BAD_REQUEST);
        assert_eq!(
            error["details"][0]["field"], "query.max_points",
            "{max_points}"
        );
    }
    let unknown_field = format!("/api/v1/runs/{run_id}/metrics/loss/history?points=5");
    app.get(&unknown_field)
        .await
        .expect_error(StatusCode::BAD_REQUEST);
    let unknown_step = format!("/api/v1/runs/{run_id}/metrics/loss/history?step_run_id=nope");
    app.get(&unknown_step)
        .await
        .expect_error(StatusCode::NOT_FOUND);
    app.get("/api/v1/runs/nope/metrics/loss/history")
        .await
        .expect_error(StatusCode::NOT_FOUND);
    app.get("/api/v1/runs/nope/metrics")
        .await
        .expect_error(StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn history_key_may_contain_slash() {
    let app = TestApp::new(Backend::Sqlite, AccessMode::Local).await;
    let run_id = new_run(&app).await;
    let values = [metric("train/loss", 0, 1.0, None)];
    app.state
        .store()
        .log_metrics(&run_id, &values)
        .await
        .expect("log value");

    let body = app
        .get(&format!(
            "/api/v1/runs/{run_id}/metrics/train%2Floss/history"
        ))
        .await
        .json();

    assert_eq!(body["key"], "train/loss");
    assert_eq!(body["total_points"], 1);
}
