//! End-to-end tests of the lineage API on SQLite and PostgreSQL: graph queries upstream,
//! downstream and both ways with a depth limit, and the graph of one run. OpenLineage run events
//! are hand-written, and also sent by the real `openlineage-python` client to `runledger serve`.
//!
//! Needs `cargo build -p runledger --bin runledger`, `cargo xtask build-plugins` and the Python
//! venv from `cargo xtask setup` (which installs openlineage-python); run with
//! `cargo test -p runledger-tests --test server_lineage`.

use axum::http::StatusCode;
use runledger::server::AccessMode;
use runledger::store::{
    DEFAULT_PROJECT, Direction, NewEdge, NewRun, NewStepRun, Node, RunSource, RunStatus,
    StepStatus, Store,
};
use runledger_tests::server::{ServerProcess, TestApp};
use runledger_tests::{Backend, Cli, python_venv};
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::process::Command;

const RAW: &str = "s3://lake/raw/orders.csv";
const MID: &str = "s3://lake/clean/orders.parquet";
const FINAL: &str = "postgres://warehouse:5432/sales.orders";
const RUN_A: &str = "0190b6c2-0000-7000-8000-00000000000a";
const RUN_B: &str = "0190b6c2-0000-7000-8000-00000000000b";
const PARENT: &str = "0190b6c2-0000-7000-8000-0000000000ff";

/// Builds an OpenLineage 2-0-2 run event of job `name` reading `input` and writing `output`,
/// each given as `(namespace, name)`.
fn event(
    event_type: &str,
    run_id: &str,
    name: &str,
    input: (&str, &str),
    output: (&str, &str),
) -> Value {
    json!({
        "eventType": event_type,
        "eventTime": "2024-05-01T12:00:00Z",
        "producer": "https://example.com/lineage-test",
        "schemaURL": "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent",
        "run": {"runId": run_id, "facets": {}},
        "job": {"namespace": "etl", "name": name},
        "inputs": [{"namespace": input.0, "name": input.1}],
        "outputs": [{"namespace": output.0, "name": output.1}]
    })
}

fn set_time(mut event: Value, time: &str) -> Value {
    event["eventTime"] = time.into();
    event
}

async fn post_event(app: &TestApp, event: &Value) -> (StatusCode, Value) {
    let response = app.post_json("/api/v1/lineage", event).await;
    let status = response.status;
    (status, response.json())
}

/// Records the chain RAW -> job A -> MID -> job B -> FINAL, with job B's events out of order
/// and repeated, and job B a child of PARENT.
async fn record_chain(app: &TestApp) {
    let a_in = ("s3://lake", "raw/orders.csv");
    let a_out = ("s3://lake", "clean/orders.parquet");
    let b_out = ("postgres://warehouse:5432", "sales.orders");
    let (status, body) = post_event(app, &event("START", RUN_A, "clean", a_in, a_out)).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["run_id"], RUN_A);
    assert_eq!(body["status"], "running");
    let (status, body) = post_event(app, &event("COMPLETE", RUN_A, "clean", a_in, a_out)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "succeeded");

    let mut complete = event("COMPLETE", RUN_B, "load", a_out, b_out);
    complete["run"]["facets"]["parent"] = json!({
        "_producer": "https://example.com/lineage-test",
        "_schemaURL": "https://openlineage.io/spec/facets/1-1-0/ParentRunFacet.json",
        "run": {"runId": PARENT},
        "job": {"namespace": "etl", "name": "nightly"}
    });
    let complete = set_time(complete, "2024-05-01T12:10:00Z");
    let (status, body) = post_event(app, &complete).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["status"], "succeeded");
    let start = set_time(
        event("START", RUN_B, "load", a_out, b_out),
        "2024-05-01T12:05:00Z",
    );
    let (status, body) = post_event(app, &start).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "succeeded", "a late START reopened the run");
    let (status, body) = post_event(app, &complete).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "succeeded");
}

async fn query(app: &TestApp, node: &str, direction: &str, depth: u32) -> Value {
    let uri = format!(
        "/api/v1/lineage?node={}&direction={direction}&depth={depth}",
        encode(node)
    );
    let response = app.get(&uri).await;
    assert_eq!(
        response.status,
        StatusCode::OK,
        "{uri}: {}",
        String::from_utf8_lossy(&response.body)
    );
    response.json()
}

/// Percent-encodes a query value.
fn encode(text: &str) -> String {
    text.bytes()
        .map(|byte| match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (byte as char).to_string()
            }
            other => format!("%{other:02X}"),
        })
        .collect()
}

/// Returns the nodes of a graph as `kind:id`.
fn node_keys(graph: &Value) -> BTreeSet<String> {
    graph["nodes"]
        .as_array()
        .expect("nodes")
        .iter()
        .map(|node| {
            format!(
                "{}:{}",
                node["kind"].as_str().unwrap(),
                node["id"].as_str().unwrap()
            )
        })
        .collect()
}

fn keys(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|item| (*item).to_owned()).collect()
}

fn node<'a>(graph: &'a Value, kind: &str, id: &str) -> &'a Value {
    graph["nodes"]
        .as_array()
        .expect("nodes")
        .iter()
        .find(|node| node["kind"] == kind && node["id"] == id)
        .unwrap_or_else(|| panic!("no node {kind}:{id} in {graph}"))
}

async fn queries_follow_depth(backend: Backend) {
    let app = TestApp::new(backend, AccessMode::Local).await;
    record_chain(&app).await;
    let raw = format!("named_dataset:{RAW}");
    let mid = format!("named_dataset:{MID}");
    let last = format!("named_dataset:{FINAL}");
    let run_a = format!("run:{RUN_A}");
    let run_b = format!("run:{RUN_B}");

    let one = query(&app, &last, "upstream", 1).await;
    assert_eq!(node_keys(&one), keys(&[&last, &run_b]));
    assert_eq!(one["edges"].as_array().map(Vec::len), Some(1));

    let two = query(&app, &last, "upstream", 2).await;
    assert_eq!(node_keys(&two), keys(&[&last, &run_b, &mid]));

    let all = query(&app, &last, "upstream", 10).await;
    assert_eq!(node_keys(&all), keys(&[&last, &run_b, &mid, &run_a, &raw]));
    assert_eq!(all["edges"].as_array().map(Vec::len), Some(4));
    assert_eq!(all["nodes"][0]["id"], FINAL, "the start node comes first");

    let down = query(&app, &raw, "downstream", 3).await;
    assert_eq!(node_keys(&down), keys(&[&raw, &run_a, &mid, &run_b]));
    let edge = &down["edges"][0];
    assert_eq!(edge["source"]["kind"], "named_dataset");
    assert_eq!(edge["source"]["id"], RAW);
    assert_eq!(edge["target"]["kind"], "run");
    assert_eq!(edge["run_id"], RUN_A);

    let both = query(&app, &mid, "both", 1).await;
    assert_eq!(node_keys(&both), keys(&[&mid, &run_a, &run_b]));

    let run_node = node(&all, "run", RUN_B);
    assert_eq!(run_node["label"], "load");
    assert_eq!(run_node["status"], "succeeded");
    assert_eq!(run_node["parent_run_id"], PARENT);
    let dataset = node(&all, "named_dataset", FINAL);
    assert_eq!(dataset["label"], "sales.orders");
    assert_eq!(dataset["namespace"], "postgres://warehouse:5432");

    let from_run = query(&app, &run_b, "upstream", 10).await;
    assert_eq!(node_keys(&from_run), keys(&[&run_b, &mid, &run_a, &raw]));

    let run_graph = app
        .get(&format!("/api/v1/runs/{RUN_B}/lineage"))
        .await
        .json();
    assert_eq!(node_keys(&run_graph), keys(&[&mid, &run_b, &last]));
    assert_eq!(run_graph["edges"].as_array().map(Vec::len), Some(2));
}

#[tokio::test]
async fn queries_follow_depth_sqlite() {
    queries_follow_depth(Backend::Sqlite).await;
}

#[tokio::test]
async fn queries_follow_depth_postgres() {
    queries_follow_depth(Backend::Postgres).await;
}

async fn failure_and_abort_end_runs(backend: Backend) {
    let app = TestApp::new(backend, AccessMode::Local).await;
    let input = ("s3://lake", "in.csv");
    let output = ("s3://lake", "out.csv");
    let failed = "0190b6c2-0000-7000-8000-000000000f01";
    let aborted = "0190b6c2-0000-7000-8000-000000000f02";

    let mut fail = event("FAIL", failed, "broken", input, output);
    fail["run"]["facets"]["errorMessage"] = json!({
        "_producer": "https://example.com/lineage-test",
        "_schemaURL": "https://openlineage.io/spec/facets/1-0-1/ErrorMessageRunFacet.json",
        "message": "table not found",
        "programmingLanguage": "python"
    });
    let (_, body) = post_event(&app, &fail).await;
    assert_eq!(body["status"], "failed");
    let (_, body) = post_event(&app, &event("COMPLETE", failed, "broken", input, output)).await;
    assert_eq!(
        body["status"], "failed",
        "a second final status replaced the first"
    );
    let (_, body) = post_event(&app, &event("ABORT", aborted, "stopped", input, output)).await;
    assert_eq!(body["status"], "cancelled");
    let (_, body) = post_event(&app, &event("OTHER", aborted, "stopped", input, output)).await;
    assert_eq!(body["status"], "cancelled");

    let run = app.state.store().require_run(failed).await.expect("run");
    assert_eq!(run.error.as_deref(), Some("table not found"));
    assert_eq!(run.source, RunSource::External);
    assert_eq!(run.ended_at, Some(1_714_564_800_000));
    let tags = app.state.store().get_tags(failed).await.expect("tags");
    assert_eq!(tags["openlineage.job.namespace"], "etl");
    assert_eq!(
        tags["openlineage.producer"],
        "https://example.com/lineage-test"
    );
}

#[tokio::test]
async fn failure_and_abort_end_runs_sqlite() {
    failure_and_abort_end_runs(Backend::Sqlite).await;
}

#[tokio::test]
async fn failure_and_abort_end_runs_postgres() {
    failure_and_abort_end_runs(Backend::Postgres).await;
}

#[tokio::test]
async fn invalid_events_name_their_fields() {
    let app = TestApp::new(Backend::Sqlite, AccessMode::Local).await;

    let (status, body) = post_event(&app, &json!({"eventType": "START"})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let fields: Vec<&str> = body["error"]["details"]
        .as_array()
        .expect("details")
        .iter()
        .map(|detail| detail["field"].as_str().expect("field"))
        .collect();
    assert_eq!(fields, ["eventTime", "producer", "schemaURL", "run", "job"]);

    let mut bad = event("FINISH", "not-a-uuid", "job", ("a", "b"), ("c", ""));
    bad["eventTime"] = "soon".into();
    let (status, body) = post_event(&app, &bad).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let message = body["error"]["message"].as_str().expect("message");
    for field in ["eventType", "eventTime", "run.runId", "outputs[0].name"] {
        assert!(message.contains(field), "{field} missing from: {message}");
    }

    let mut wrong_type = event("START", RUN_A, "job", ("a", "b"), ("c", "d"));
    wrong_type["inputs"] = json!({"namespace": "a"});
    let (status, body) = post_event(&app, &wrong_type).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"]["details"][0]["field"], "inputs");
}

async fn run_id_of_native_run_conflicts(backend: Backend) {
    let app = TestApp::new(backend, AccessMode::Local).await;
    let run = app
        .state
        .store()
        .create_run(new_run("native"))
        .await
        .expect("run");

    let event = event("START", &run.id, "job", ("a", "b"), ("c", "d"));
    let (status, body) = post_event(&app, &event).await;

    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    let after = app.state.store().require_run(&run.id).await.expect("run");
    assert_eq!(after.name, "native");
    assert_eq!(after.status, RunStatus::Queued);
}

#[tokio::test]
async fn run_id_of_native_run_conflicts_sqlite() {
    run_id_of_native_run_conflicts(Backend::Sqlite).await;
}

#[tokio::test]
async fn run_id_of_native_run_conflicts_postgres() {
    run_id_of_native_run_conflicts(Backend::Postgres).await;
}

#[tokio::test]
async fn bad_lineage_queries_are_rejected() {
    let app = TestApp::new(Backend::Sqlite, AccessMode::Local).await;
    record_chain(&app).await;
    let node = format!("named_dataset:{}", encode(RAW));

    let cases = [
        ("node=nothing".to_owned(), StatusCode::BAD_REQUEST),
        ("node=table:x".to_owned(), StatusCode::BAD_REQUEST),
        ("node=artifact:abc".to_owned(), StatusCode::BAD_REQUEST),
        (format!("node={node}&depth=0"), StatusCode::BAD_REQUEST),
        (format!("node={node}&depth=101"), StatusCode::BAD_REQUEST),
        (
            format!("node={node}&direction=sideways"),
            StatusCode::BAD_REQUEST,
        ),
        ("direction=upstream".to_owned(), StatusCode::BAD_REQUEST),
        (
            "node=named_dataset:s3%3A%2F%2Fnowhere%2Fx".to_owned(),
            StatusCode::NOT_FOUND,
        ),
        (format!("node=run:{PARENT}"), StatusCode::NOT_FOUND),
    ];
    for (query, expected) in cases {
        let response = app.get(&format!("/api/v1/lineage?{query}")).await;
        response.expect_error(expected);
    }
    app.get("/api/v1/runs/nope/lineage")
        .await
        .expect_error(StatusCode::NOT_FOUND);
}

fn new_run(name: &str) -> NewRun {
    NewRun {
        project: DEFAULT_PROJECT.to_owned(),
        pipeline_id: None,
        name: name.to_owned(),
        source: RunSource::Cli,
        user_name: "tester".to_owned(),
        seed: None,
        owner: None,
    }
}

async fn native_graph_has_labels(backend: Backend) {
    let app = TestApp::new(backend, AccessMode::Local).await;
    let store = app.state.store();
    let run = store.create_run(new_run("pipeline")).await.expect("run");
    let step = NewStepRun {
        run_id: run.id.clone(),
        name: "train".to_owned(),
        plugin: None,
        executor: "wasm".to_owned(),
        status: StepStatus::Pending,
        params: json!({}),
        cache_key: None,
        cached_from: None,
    };
    let step = store.create_step_run(step).await.expect("step");
    let (data, _) = app
        .state
        .artifacts()
        .put_bytes(b"rows")
        .expect("store data");
    let (model, _) = app
        .state
        .artifacts()
        .put_bytes(b"weights")
        .expect("store model");
    store
        .record_artifact(&model, 7, "application/x-model")
        .await
        .expect("record model");
    store
        .record_dataset(&data, "orders", "file:///data/orders.csv")
        .await
        .expect("dataset");
    store
        .link_artifact(
            &run.id,
            Some(&step.id),
            "model.bin",
            &model,
            Direction::Output,
        )
        .await
        .expect("link");
    let edges = [
        NewEdge {
            run_id: run.id.clone(),
            source: Node::dataset(data.clone()),
            target: Node::step_run(step.id.clone()),
        },
        NewEdge {
            run_id: run.id.clone(),
            source: Node::step_run(step.id.clone()),
            target: Node::artifact(model.clone()),
        },
    ];
    store.add_edges(&edges).await.expect("edges");

    let graph = query(&app, &format!("artifact:{model}"), "upstream", 10).await;

    let step_key = format!("step_run:{}", step.id);
    let expected = [
        format!("artifact:{model}"),
        step_key,
        format!("dataset:{data}"),
    ];
    assert_eq!(node_keys(&graph), expected.into_iter().collect());
    assert_eq!(node(&graph, "artifact", &model)["label"], "model.bin");
    let step_node = node(&graph, "step_run", &step.id);
    assert_eq!(step_node["label"], "train");
    assert_eq!(step_node["run_id"], run.id.as_str());
    assert_eq!(step_node["status"], "pending");
    assert_eq!(node(&graph, "dataset", &data)["label"], "orders");

    let from_run = query(&app, &format!("run:{}", run.id), "downstream", 10).await;
    assert!(
        node_keys(&from_run).contains(&format!("artifact:{model}")),
        "a run query does not start at its step runs: {from_run}"
    );
}

#[tokio::test]
async fn native_graph_has_labels_sqlite() {
    native_graph_has_labels(Backend::Sqlite).await;
}

#[tokio::test]
async fn native_graph_has_labels_postgres() {
    native_graph_has_labels(Backend::Postgres).await;
}

/// Emits a parent run and a child run that reads one dataset and writes another, with the
/// child's COMPLETE before its START and sent twice, through the client's HTTP transport.
/// Prints the two run ids as JSON.
const CLIENT_SCRIPT: &str = r#"
import json
import sys
from datetime import datetime, timezone

from openlineage.client import OpenLineageClient
from openlineage.client.event_v2 import InputDataset, Job, OutputDataset, Run, RunEvent, RunState
from openlineage.client.facet_v2 import parent_run, schema_dataset, source_code_location_job
from openlineage.client.transport.http import HttpConfig, HttpTransport
from openlineage.client.uuid import generate_new_uuid

client = OpenLineageClient(
    transport=HttpTransport(HttpConfig(url=sys.argv[1], endpoint="api/v1/lineage"))
)
producer = "https://example.com/runledger-lineage-test"
parent_id = str(generate_new_uuid())
child_id = str(generate_new_uuid())
parent_job = Job(namespace="scheduler", name="nightly_dag")
location = source_code_location_job.SourceCodeLocationJobFacet(
    type="git", url="https://git.example.com/etl.git", version="abc123"
)
child_job = Job(
    namespace="scheduler",
    name="nightly_dag.clean_orders",
    facets={"sourceCodeLocation": location},
)
parent = parent_run.ParentRunFacet(
    run=parent_run.Run(runId=parent_id),
    job=parent_run.Job(namespace="scheduler", name="nightly_dag"),
)
schema = schema_dataset.SchemaDatasetFacet(
    fields=[schema_dataset.SchemaDatasetFacetFields(name="id", type="int")]
)
inputs = [InputDataset(namespace="s3://lake", name="raw/orders.csv")]
outputs = [
    OutputDataset(namespace="s3://lake", name="clean/orders.parquet", facets={"schema": schema})
]


def now():
    return datetime.now(timezone.utc).isoformat()


def parent_event(state):
    return RunEvent(
        eventType=state, eventTime=now(), run=Run(runId=parent_id), job=parent_job,
        producer=producer,
    )


def child_event(state):
    return RunEvent(
        eventType=state,
        eventTime=now(),
        run=Run(runId=child_id, facets={"parent": parent}),
        job=child_job,
        inputs=inputs,
        outputs=outputs,
        producer=producer,
    )


client.emit(parent_event(RunState.START))
client.emit(child_event(RunState.COMPLETE))
client.emit(child_event(RunState.START))
client.emit(child_event(RunState.COMPLETE))
client.emit(parent_event(RunState.COMPLETE))
print(json.dumps({"parent": parent_id, "child": child_id}))
"#;

/// Runs the client script against `url` and returns the parent and child run ids.
fn emit_with_python_client(url: &str) -> (String, String) {
    let scratch = tempfile::tempdir().expect("scratch dir");
    let script = scratch.path().join("emit.py");
    std::fs::write(&script, CLIENT_SCRIPT).expect("write script");
    let output = Command::new(python_venv().join("bin/python"))
        .arg(&script)
        .arg(url)
        .current_dir(scratch.path())
        .env_remove("OPENLINEAGE_URL")
        .env_remove("OPENLINEAGE_CONFIG")
        .env_remove("OPENLINEAGE_DISABLED")
        .output()
        .expect("python starts");
    assert!(
        output.status.success(),
        "the openlineage client failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let ids: Value = serde_json::from_slice(&output.stdout).unwrap_or_else(|error| {
        panic!(
            "the script printed no ids ({error}): {}",
            String::from_utf8_lossy(&output.stdout)
        )
    });
    let id = |name: &str| ids[name].as_str().expect("run id").to_owned();
    (id("parent"), id("child"))
}

async fn python_client_builds_graph(backend: Backend) {
    let cli = Cli::new(backend);
    let server = ServerProcess::start(&cli, &[]);
    let (parent, child) = emit_with_python_client(&server.url());
    let output = format!("named_dataset:{}", encode("s3://lake/clean/orders.parquet"));
    let uri = format!(
        "{}/api/v1/lineage?node={output}&direction=upstream",
        server.url()
    );

    let response = reqwest::get(&uri).await.expect("the server answers");
    assert_eq!(response.status().as_u16(), 200);
    let graph: Value = response.json().await.expect("JSON graph");

    let expected = [
        "named_dataset:s3://lake/clean/orders.parquet".to_owned(),
        format!("run:{child}"),
        "named_dataset:s3://lake/raw/orders.csv".to_owned(),
    ];
    assert_eq!(node_keys(&graph), expected.into_iter().collect());
    let child_node = node(&graph, "run", &child);
    assert_eq!(child_node["label"], "nightly_dag.clean_orders");
    assert_eq!(child_node["status"], "succeeded");
    assert_eq!(child_node["parent_run_id"], parent.as_str());
    assert_eq!(graph["edges"].as_array().map(Vec::len), Some(2));

    let parent_uri = format!("{}/api/v1/runs/{parent}/lineage", server.url());
    let parent_graph: Value = reqwest::get(&parent_uri)
        .await
        .expect("the server answers")
        .json()
        .await
        .expect("JSON graph");
    assert_eq!(parent_graph["edges"], json!([]));
    let log = server.log_containing(&["openlineage event recorded"]);
    server.stop();
    assert!(log.contains("openlineage event recorded"), "{log}");

    // The database of a PostgreSQL test is not reachable from here, so the tags are read on
    // SQLite only.
    if backend == Backend::Sqlite {
        let store = Store::open_sqlite(cli.data_dir())
            .await
            .expect("open store");
        let tags = store.get_tags(&child).await.expect("tags");
        assert_eq!(tags["openlineage.parent.run_id"], parent);
        assert_eq!(tags["openlineage.parent.job.name"], "nightly_dag");
        assert_eq!(tags["openlineage.job.namespace"], "scheduler");
        let url = "https://git.example.com/etl.git";
        assert_eq!(tags["openlineage.source_code_location.url"], url);
        assert_eq!(tags["openlineage.source_code_location.version"], "abc123");
        let run = store.require_run(&child).await.expect("child run");
        assert!(run.started_at.is_some(), "the late START set no start time");
        assert!(run.ended_at.is_some());
        let dataset = store
            .get_named_dataset("s3://lake/clean/orders.parquet")
            .await
            .expect("dataset")
            .expect("recorded dataset");
        let facets = dataset.facets_json.expect("facets");
        assert_eq!(facets["schema"]["fields"][0]["name"], "id");
    }
}

#[tokio::test]
async fn python_client_builds_graph_sqlite() {
    python_client_builds_graph(Backend::Sqlite).await;
}

#[tokio::test]
async fn python_client_builds_graph_postgres() {
    python_client_builds_graph(Backend::Postgres).await;
}
