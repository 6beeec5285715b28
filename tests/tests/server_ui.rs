//! Tests of the web UI's server side and the API routes it reads: the embedded files and page
//! URLs, `GET /api/v1/whoami`, step run logs and metrics, metric history ranges and the
//! `duration` sort of run listings.
//!
//! Run with `cargo test -p runledger-tests --test server_ui`.

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use runledger::server::AccessMode;
use runledger::store::{
    DEFAULT_PROJECT, NewLogLine, NewMetric, NewRun, NewStepRun, RunSource, StepStatus,
};
use runledger_tests::Backend;
use runledger_tests::server::{TestApp, TestResponse};
use serde_json::Value;

async fn new_run(app: &TestApp) -> String {
    let run = NewRun {
        project: DEFAULT_PROJECT.to_owned(),
        pipeline_id: None,
        name: "ui".to_owned(),
        source: RunSource::External,
        user_name: "tester".to_owned(),
        seed: None,
        owner: None,
    };
    app.state.store().create_run(run).await.expect("run").id
}

async fn new_step(app: &TestApp, run_id: &str, name: &str) -> String {
    let step = NewStepRun {
        run_id: run_id.to_owned(),
        name: name.to_owned(),
        plugin: None,
        executor: "external".to_owned(),
        status: StepStatus::Running,
        params: serde_json::json!({}),
        cache_key: None,
        cached_from: None,
    };
    app.state
        .store()
        .create_step_run(step)
        .await
        .expect("step run")
        .id
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

async fn get_with(app: &TestApp, uri: &str, name: header::HeaderName, value: &str) -> TestResponse {
    let request = Request::builder()
        .uri(uri)
        .header(name, value)
        .body(Body::empty())
        .expect("request");
    app.send(request).await
}

fn header_text(response: &TestResponse, name: header::HeaderName) -> String {
    response
        .headers
        .get(name)
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test]
async fn page_urls_serve_index_without_token() {
    let app = TestApp::new(Backend::Sqlite, AccessMode::Tokens).await;
    let run_url = "/runs/01939a4e-5c1a-7c3e-9d2b-6f1e2a3b4c5d";

    for uri in ["/", "/runs", run_url, "/models", "/models/wine", "/compare"] {
        let response = app.get(uri).await;

        assert_eq!(response.status, StatusCode::OK, "{uri}");
        let content_type = header_text(&response, header::CONTENT_TYPE);
        assert!(
            content_type.starts_with("text/html"),
            "{uri}: {content_type}"
        );
        let html = String::from_utf8_lossy(&response.body);
        assert!(html.contains("/ui/app.js"), "{uri}: {html}");
        let policy = header_text(&response, header::CONTENT_SECURITY_POLICY);
        assert!(policy.contains("default-src 'self'"), "{uri}: {policy}");
    }
}

#[tokio::test]
async fn assets_have_types_and_revalidate() {
    let app = TestApp::new(Backend::Sqlite, AccessMode::Tokens).await;

    let script = app.get("/ui/app.js").await;
    let style = app.get("/ui/style.css").await;

    assert_eq!(script.status, StatusCode::OK);
    assert!(header_text(&script, header::CONTENT_TYPE).starts_with("text/javascript"));
    assert!(header_text(&style, header::CONTENT_TYPE).starts_with("text/css"));
    let etag = header_text(&script, header::ETAG);
    assert!(etag.starts_with('"'), "{etag}");
    let again = get_with(&app, "/ui/app.js", header::IF_NONE_MATCH, &etag).await;
    assert_eq!(again.status, StatusCode::NOT_MODIFIED);
    assert!(again.body.is_empty());
    let other = get_with(&app, "/ui/app.js", header::IF_NONE_MATCH, "\"other\"").await;
    assert_eq!(other.status, StatusCode::OK);
}

#[tokio::test]
async fn unknown_asset_is_404_with_message() {
    let app = TestApp::new(Backend::Sqlite, AccessMode::Local).await;

    let missing = app.get("/ui/no-such-file.js").await;
    let unknown_api = app.get("/api/v1/no-such-thing").await;

    let error = missing.expect_error(StatusCode::NOT_FOUND);
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .contains("/ui/no-such-file.js"),
        "{error}"
    );
    let error = unknown_api.expect_error(StatusCode::NOT_FOUND);
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .starts_with("no route for"),
        "{error}"
    );
}

#[tokio::test]
async fn whoami_names_caller_and_role() {
    let app = TestApp::new(Backend::Sqlite, AccessMode::Tokens).await;
    let token = app.create_token("carol", "viewer").await;

    let anonymous = app.get("/api/v1/whoami").await;
    let viewer = app.send_as(&token, "GET", "/api/v1/whoami", None).await;
    let runs = app.get("/api/v1/runs").await;

    anonymous.expect_error(StatusCode::UNAUTHORIZED);
    runs.expect_error(StatusCode::UNAUTHORIZED);
    assert_eq!(viewer.status, StatusCode::OK);
    let body = viewer.json();
    assert_eq!(body["name"], "carol");
    assert_eq!(body["role"], "viewer");
    assert_eq!(body["access_mode"], "tokens");
}

#[tokio::test]
async fn step_metrics_and_logs_of_one_step() {
    let app = TestApp::new(Backend::Sqlite, AccessMode::Local).await;
    let run_id = new_run(&app).await;
    let step_id = new_step(&app, &run_id, "train").await;
    let other_run = new_run(&app).await;
    let other_step = new_step(&app, &other_run, "train").await;
    let values: Vec<NewMetric> = (0..5)
        .map(|step| metric("loss", step, 1.0 / (step + 1) as f64, Some(&step_id)))
        .chain([metric("loss", 0, 7.0, None)])
        .collect();
    let store = app.state.store();
    store.log_metrics(&run_id, &values).await.expect("metrics");
    let lines: Vec<NewLogLine> = (0..3)
        .map(|index| NewLogLine {
            level: "info".to_owned(),
            message: format!("line {index}"),
            fields: None,
            timestamp_ms: 1_700_000_000_000 + index,
        })
        .collect();
    store
        .append_step_logs(&step_id, &lines)
        .await
        .expect("logs");
    let base = format!("/api/v1/runs/{run_id}/steps/{step_id}");

    let metrics = app.get(&format!("{base}/metrics")).await.json();
    let first_page = app.get(&format!("{base}/logs?limit=2")).await.json();
    let next = first_page["next_after_seq"].as_i64().expect("a next page");
    let second_page = app
        .get(&format!("{base}/logs?after_seq={next}"))
        .await
        .json();
    let foreign = app
        .get(&format!("/api/v1/runs/{run_id}/steps/{other_step}/logs"))
        .await;
    let bad_limit = app.get(&format!("{base}/logs?limit=0")).await;

    let items = metrics["items"].as_array().expect("items");
    assert_eq!(items.len(), 1, "{metrics}");
    assert_eq!(items[0]["key"], "loss");
    assert_eq!(items[0]["points"], 5);
    assert_eq!(items[0]["step"], 4);
    assert_eq!(items[0]["value"], values[4].value);
    let messages = |page: &Value| -> Vec<String> {
        let items = page["items"].as_array().expect("items");
        items
            .iter()
            .map(|line| line["message"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(
        messages(&first_page),
        [lines[0].message.as_str(), lines[1].message.as_str()]
    );
    assert_eq!(messages(&second_page), [lines[2].message.as_str()]);
    assert!(second_page["next_after_seq"].is_null());
    foreign.expect_error(StatusCode::NOT_FOUND);
    bad_limit.expect_error(StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn history_range_keeps_only_its_steps() {
    let app = TestApp::new(Backend::Sqlite, AccessMode::Local).await;
    let run_id = new_run(&app).await;
    let values: Vec<NewMetric> = (0..100)
        .map(|step| metric("acc", step, step as f64, None))
        .collect();
    app.state
        .store()
        .log_metrics(&run_id, &values)
        .await
        .expect("metrics");
    let uri = format!("/api/v1/runs/{run_id}/metrics/acc/history");

    let ranged = app
        .get(&format!("{uri}?start_step=10&end_step=19"))
        .await
        .json();
    let open_end = app.get(&format!("{uri}?start_step=95")).await.json();
    let reversed = app.get(&format!("{uri}?start_step=5&end_step=4")).await;

    let steps = |body: &Value| -> Vec<i64> {
        let points = body["points"].as_array().expect("points");
        points
            .iter()
            .map(|point| point["step"].as_i64().unwrap())
            .collect()
    };
    assert_eq!(steps(&ranged), (10..=19).collect::<Vec<_>>());
    assert_eq!(ranged["total_points"], 10);
    assert_eq!(steps(&open_end), (95..100).collect::<Vec<_>>());
    let error = reversed.expect_error(StatusCode::BAD_REQUEST);
    assert!(
        error["message"].as_str().unwrap().contains("start_step"),
        "{error}"
    );
}

#[tokio::test]
async fn runs_sort_by_duration() {
    let app = TestApp::new(Backend::Sqlite, AccessMode::Local).await;
    let started_at = 1_733_300_000_000_i64;
    let mut runs = Vec::new();
    for duration in [5_000_i64, 1_000, 3_000] {
        let create =
            serde_json::json!({"name": format!("took {duration}"), "started_at": started_at});
        let created = app.post_json("/api/v1/external-runs", &create).await.json();
        let run_id = created["id"].as_str().expect("run id").to_owned();
        let finish = serde_json::json!({"status": "succeeded", "ended_at": started_at + duration});
        let finished = app
            .post_json(&format!("/api/v1/runs/{run_id}/finish"), &finish)
            .await;
        assert_eq!(finished.status, StatusCode::OK, "{}", finished.json());
        runs.push((duration, run_id));
    }
    runs.sort();

    let ascending = app.get("/api/v1/runs?order_by=duration%20ASC").await.json();
    let filtered = app
        .get("/api/v1/runs?filter=duration%20%3E%202000")
        .await
        .json();

    let ids = |body: &Value| -> Vec<String> {
        let items = body["items"].as_array().expect("items");
        items
            .iter()
            .map(|run| run["id"].as_str().unwrap().to_owned())
            .collect()
    };
    let expected: Vec<String> = runs.iter().map(|(_, id)| id.clone()).collect();
    assert_eq!(ids(&ascending), expected);
    let mut longer = ids(&filtered);
    longer.sort();
    let mut expected_longer: Vec<String> = runs[1..].iter().map(|(_, id)| id.clone()).collect();
    expected_longer.sort();
    assert_eq!(longer, expected_longer);
}
