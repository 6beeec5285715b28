//! End-to-end tests of the artifacts API: streaming upload and download over the real
//! `runledger serve` socket, digest checks that leave nothing behind, HTTP range requests, and
//! the listings of the artifacts of runs and step runs, on SQLite and PostgreSQL.
//!
//! Needs `cargo build -p runledger --bin runledger` and `cargo xtask build-plugins`; run with
//! `cargo test -p runledger-tests --test server_artifacts`.

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use futures_util::StreamExt as _;
use runledger::server::AccessMode;
use runledger::store::{DEFAULT_PROJECT, Direction, NewRun, NewStepRun, RunSource, StepStatus};
use runledger_tests::server::{ServerProcess, TestApp, TestResponse};
use runledger_tests::{Backend, Cli, sha256_file};
use serde_json::Value;
use sha2::{Digest as _, Sha256};
use std::collections::BTreeSet;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Writes `size` pseudo-random bytes (xorshift, so no two MiB repeat) to a new file in `dir`.
fn random_file(dir: &Path, name: &str, size: usize, seed: u64) -> PathBuf {
    let path = dir.join(name);
    let mut file = std::io::BufWriter::new(std::fs::File::create(&path).expect("create file"));
    let mut state = seed | 1;
    let mut written = 0;
    while written < size {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let bytes = state.to_le_bytes();
        let take = bytes.len().min(size - written);
        file.write_all(&bytes[..take]).expect("write file");
        written += take;
    }
    file.flush().expect("flush file");
    path
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Lists every file under `dir`, recursively, relative to it.
fn files_under(dir: &Path) -> BTreeSet<PathBuf> {
    let mut found = BTreeSet::new();
    let mut pending = vec![dir.to_owned()];
    while let Some(current) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&current) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                pending.push(path);
            } else {
                found.insert(path.strip_prefix(dir).unwrap_or(&path).to_owned());
            }
        }
    }
    found
}

fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(300))
        .build()
        .expect("http client")
}

/// Uploads a file with a streaming body and returns the status and the JSON body.
async fn put_file(url: &str, path: &Path, media_type: &str) -> (u16, Value) {
    let file = tokio::fs::File::open(path).await.expect("open upload");
    let response = http_client()
        .put(url)
        .header("content-type", media_type)
        .body(reqwest::Body::from(file))
        .send()
        .await
        .expect("the server answers the upload");
    let status = response.status().as_u16();
    let body = response.json().await.expect("JSON answer");
    (status, body)
}

/// Downloads with a streaming body and returns the status, the headers, the SHA-256 of the
/// body and its size.
async fn download(url: &str) -> (u16, reqwest::header::HeaderMap, String, u64) {
    let response = http_client()
        .get(url)
        .send()
        .await
        .expect("the server answers the download");
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let mut hasher = Sha256::new();
    let mut size = 0_u64;
    let mut chunks = response.bytes_stream();
    while let Some(chunk) = chunks.next().await {
        let chunk = chunk.expect("download chunk");
        hasher.update(&chunk);
        size += chunk.len() as u64;
    }
    (status, headers, hex::encode(hasher.finalize()), size)
}

/// Peak resident memory of a process, from /proc (Linux).
fn peak_rss_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kib| kib.parse::<u64>().ok())
        .expect("VmHWM line")
        * 1024
}

async fn upload_round_trip_over_socket(backend: Backend) {
    let cli = Cli::new(backend);
    let server = ServerProcess::start(&cli, &[]);
    let scratch = tempfile::tempdir().expect("scratch dir");
    let path = random_file(scratch.path(), "weights.bin", 12 << 20, 7);
    let digest = sha256_file(&path);
    let url = format!("{}/api/v1/artifacts/{digest}", server.url());

    let (status, body) = put_file(&url, &path, "application/x-weights").await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["digest"], digest.as_str());
    assert_eq!(body["size"], 12 << 20);
    assert_eq!(body["media_type"], "application/x-weights");

    let (status, body) = put_file(&url, &path, "text/plain").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["media_type"], "application/x-weights");

    let (status, headers, downloaded, size) = download(&url).await;
    assert_eq!(status, 200);
    assert_eq!(downloaded, digest);
    assert_eq!(size, 12 << 20);
    assert_eq!(headers["etag"], format!("\"{digest}\"").as_str());
    assert_eq!(headers["accept-ranges"], "bytes");
    assert_eq!(headers["content-type"], "application/x-weights");
    assert_eq!(headers["content-length"], (12 << 20).to_string().as_str());

    let head = http_client().head(&url).send().await.expect("HEAD answers");
    assert_eq!(head.status().as_u16(), 200);
    assert_eq!(
        head.headers()["content-length"],
        (12 << 20).to_string().as_str()
    );

    server.stop();
}

#[tokio::test]
async fn upload_round_trip_over_socket_sqlite() {
    upload_round_trip_over_socket(Backend::Sqlite).await;
}

#[tokio::test]
async fn upload_round_trip_over_socket_postgres() {
    upload_round_trip_over_socket(Backend::Postgres).await;
}

#[tokio::test]
async fn large_upload_keeps_server_memory_flat() {
    let cli = Cli::new(Backend::Sqlite);
    let server = ServerProcess::start(&cli, &[]);
    let scratch = tempfile::tempdir().expect("scratch dir");
    let size = 256 << 20;
    let path = random_file(scratch.path(), "big.bin", size, 11);
    let digest = sha256_file(&path);
    let url = format!("{}/api/v1/artifacts/{digest}", server.url());
    let before = peak_rss_bytes(server.pid());

    let (status, body) = put_file(&url, &path, "application/octet-stream").await;
    let (_, _, downloaded, _) = download(&url).await;

    assert_eq!(status, 201, "{body}");
    assert_eq!(downloaded, digest);
    let growth = peak_rss_bytes(server.pid()).saturating_sub(before);
    assert!(
        growth < 64 << 20,
        "peak RSS grew by {} MiB for a {} MiB upload and download",
        growth >> 20,
        size >> 20
    );
    server.stop();
}

async fn wrong_digest_stores_nothing(backend: Backend) {
    let cli = Cli::new(backend);
    let server = ServerProcess::start(&cli, &[]);
    let scratch = tempfile::tempdir().expect("scratch dir");
    let path = random_file(scratch.path(), "data.bin", 3 << 20, 3);
    let actual = sha256_file(&path);
    let claimed = sha256_hex(b"something else");
    let artifacts_dir = cli.data_dir().join("artifacts");
    let before = files_under(&artifacts_dir);

    let url = format!("{}/api/v1/artifacts/{claimed}", server.url());
    let (status, body) = put_file(&url, &path, "application/octet-stream").await;

    assert_eq!(status, 400, "{body}");
    let message = body["error"]["message"].as_str().expect("message");
    assert!(message.contains(&actual), "{message}");
    assert!(message.contains(&claimed), "{message}");
    assert_eq!(body["error"]["details"][0]["field"], "digest");
    assert_eq!(files_under(&artifacts_dir), before);
    let (status, _, _, _) = download(&url).await;
    assert_eq!(status, 404);
    let metadata = format!("{url}/metadata");
    let response = http_client().get(&metadata).send().await.expect("answer");
    assert_eq!(response.status().as_u16(), 404);
    server.stop();
}

#[tokio::test]
async fn wrong_digest_stores_nothing_sqlite() {
    wrong_digest_stores_nothing(Backend::Sqlite).await;
}

#[tokio::test]
async fn wrong_digest_stores_nothing_postgres() {
    wrong_digest_stores_nothing(Backend::Postgres).await;
}

/// Uploads `bytes` in-process and returns the digest.
async fn put_bytes(app: &TestApp, bytes: &[u8], media_type: &str) -> String {
    let digest = sha256_hex(bytes);
    let request = Request::put(format!("/api/v1/artifacts/{digest}"))
        .header(header::CONTENT_TYPE, media_type)
        .body(Body::from(bytes.to_vec()))
        .expect("request");
    let response = app.send(request).await;
    assert_eq!(
        response.status,
        StatusCode::CREATED,
        "{}",
        String::from_utf8_lossy(&response.body)
    );
    digest
}

async fn get_with(app: &TestApp, uri: &str, name: header::HeaderName, value: &str) -> TestResponse {
    let request = Request::get(uri)
        .header(name, value)
        .body(Body::empty())
        .expect("request");
    app.send(request).await
}

#[tokio::test]
async fn range_requests_return_exact_parts() {
    let app = TestApp::new(Backend::Sqlite, AccessMode::Local).await;
    let content: Vec<u8> = (0..10_000_u32).map(|i| (i % 251) as u8).collect();
    let digest = put_bytes(&app, &content, "application/octet-stream").await;
    let uri = format!("/api/v1/artifacts/{digest}");

    let cases: [(&str, usize, usize); 5] = [
        ("bytes=0-99", 0, 99),
        ("bytes=9990-", 9_990, 9_999),
        ("bytes=-10", 9_990, 9_999),
        ("bytes=5000-20000", 5_000, 9_999),
        ("bytes=-20000", 0, 9_999),
    ];
    for (range, start, end) in cases {
        let response = get_with(&app, &uri, header::RANGE, range).await;

        assert_eq!(response.status, StatusCode::PARTIAL_CONTENT, "{range}");
        assert_eq!(response.body, &content[start..=end], "{range}");
        let content_range = format!("bytes {start}-{end}/10000");
        assert_eq!(
            response.headers[header::CONTENT_RANGE],
            content_range.as_str()
        );
        let length = (end - start + 1).to_string();
        assert_eq!(response.headers[header::CONTENT_LENGTH], length.as_str());
    }
}

#[tokio::test]
async fn unsatisfiable_range_is_416() {
    let app = TestApp::new(Backend::Sqlite, AccessMode::Local).await;
    let digest = put_bytes(&app, &[7_u8; 100], "application/octet-stream").await;
    let uri = format!("/api/v1/artifacts/{digest}");

    for range in ["bytes=100-", "bytes=500-600", "bytes=-0"] {
        let response = get_with(&app, &uri, header::RANGE, range).await;

        let error = response.expect_error(StatusCode::RANGE_NOT_SATISFIABLE);
        assert_eq!(error["code"], "range_not_satisfiable", "{range}");
        assert_eq!(
            response.headers[header::CONTENT_RANGE],
            "bytes */100",
            "{range}"
        );
    }
}

#[tokio::test]
async fn multiple_ranges_return_whole_body() {
    let app = TestApp::new(Backend::Sqlite, AccessMode::Local).await;
    let content = b"0123456789".repeat(10);
    let digest = put_bytes(&app, &content, "text/plain").await;
    let uri = format!("/api/v1/artifacts/{digest}");

    let response = get_with(&app, &uri, header::RANGE, "bytes=0-1,5-6").await;

    assert_eq!(response.status, StatusCode::OK);
    assert_eq!(response.body, content);
    assert_eq!(response.headers[header::CONTENT_TYPE], "text/plain");
}

#[tokio::test]
async fn stale_if_range_returns_whole_body() {
    let app = TestApp::new(Backend::Sqlite, AccessMode::Local).await;
    let content = b"abcdefghij".repeat(10);
    let digest = put_bytes(&app, &content, "text/plain").await;
    let uri = format!("/api/v1/artifacts/{digest}");
    let request = Request::get(&uri)
        .header(header::RANGE, "bytes=0-4")
        .header(header::IF_RANGE, "\"another-etag\"")
        .body(Body::empty())
        .expect("request");

    let response = app.send(request).await;

    assert_eq!(response.status, StatusCode::OK);
    assert_eq!(response.body, content);
}

#[tokio::test]
async fn matching_etag_is_not_modified() {
    let app = TestApp::new(Backend::Sqlite, AccessMode::Local).await;
    let digest = put_bytes(&app, b"cached", "text/plain").await;
    let uri = format!("/api/v1/artifacts/{digest}");

    let response = get_with(&app, &uri, header::IF_NONE_MATCH, &format!("\"{digest}\"")).await;

    assert_eq!(response.status, StatusCode::NOT_MODIFIED);
    assert!(response.body.is_empty());
}

#[tokio::test]
async fn post_computes_the_digest() {
    let app = TestApp::new(Backend::Sqlite, AccessMode::Local).await;
    let request = Request::post("/api/v1/artifacts")
        .header(header::CONTENT_TYPE, "text/csv")
        .body(Body::from("a,b\n1,2\n"))
        .expect("request");

    let response = app.send(request).await;

    assert_eq!(response.status, StatusCode::CREATED);
    let body = response.json();
    let digest = sha256_hex(b"a,b\n1,2\n");
    assert_eq!(body["digest"], digest.as_str());
    assert_eq!(body["size"], 8);
    assert_eq!(body["media_type"], "text/csv");
    let location = format!("/api/v1/artifacts/{digest}");
    assert_eq!(response.headers[header::LOCATION], location.as_str());
    assert_eq!(app.get(&location).await.body, b"a,b\n1,2\n");
}

#[tokio::test]
async fn rejects_bad_digest_and_media_type() {
    let app = TestApp::new(Backend::Sqlite, AccessMode::Local).await;

    let bad_digest = Request::put("/api/v1/artifacts/ABC")
        .body(Body::from("x"))
        .expect("request");
    let error = app
        .send(bad_digest)
        .await
        .expect_error(StatusCode::BAD_REQUEST);
    assert_eq!(error["details"][0]["field"], "digest");

    let digest = sha256_hex(b"x");
    let bad_type = Request::put(format!("/api/v1/artifacts/{digest}"))
        .header(header::CONTENT_TYPE, "not a media type")
        .body(Body::from("x"))
        .expect("request");
    let error = app
        .send(bad_type)
        .await
        .expect_error(StatusCode::BAD_REQUEST);
    assert_eq!(error["details"][0]["field"], "header.content-type");

    let unknown = app
        .get(&format!("/api/v1/artifacts/{}", "0".repeat(64)))
        .await;
    unknown.expect_error(StatusCode::NOT_FOUND);
    let malformed = app.get("/api/v1/artifacts/..%2Fetc%2Fpasswd").await;
    malformed.expect_error(StatusCode::BAD_REQUEST);
}

async fn run_listings_name_steps(backend: Backend) {
    let app = TestApp::new(backend, AccessMode::Local).await;
    let store = app.state.store();
    let new_run = |name: &str| NewRun {
        project: DEFAULT_PROJECT.to_owned(),
        pipeline_id: None,
        name: name.to_owned(),
        source: RunSource::External,
        user_name: "tester".to_owned(),
        seed: None,
        owner: None,
    };
    let run = store.create_run(new_run("train")).await.expect("run");
    let other = store.create_run(new_run("other")).await.expect("run");
    let new_step = |run_id: &str| NewStepRun {
        run_id: run_id.to_owned(),
        name: "fit".to_owned(),
        plugin: None,
        executor: "external".to_owned(),
        status: StepStatus::Pending,
        params: serde_json::json!({}),
        cache_key: None,
        cached_from: None,
    };
    let step = store
        .create_step_run(new_step(&run.id))
        .await
        .expect("step");
    let foreign_step = store
        .create_step_run(new_step(&other.id))
        .await
        .expect("step");
    let data = put_bytes(&app, b"rows", "text/csv").await;
    let model = put_bytes(&app, b"weights", "application/x-model").await;
    store
        .link_artifact(&run.id, None, "dataset", &data, Direction::Input)
        .await
        .expect("link input");
    store
        .link_artifact(&run.id, Some(&step.id), "model", &model, Direction::Output)
        .await
        .expect("link output");

    let listing = app.get(&format!("/api/v1/runs/{}/artifacts", run.id)).await;
    assert_eq!(listing.status, StatusCode::OK);
    let items = listing.json()["items"].clone();
    assert_eq!(items.as_array().map(Vec::len), Some(2), "{items}");
    assert_eq!(items[0]["name"], "dataset");
    assert_eq!(items[0]["direction"], "input");
    assert_eq!(items[0]["step_run_id"], Value::Null);
    assert_eq!(items[0]["media_type"], "text/csv");
    assert_eq!(items[1]["name"], "model");
    assert_eq!(items[1]["direction"], "output");
    assert_eq!(items[1]["step_name"], "fit");
    assert_eq!(items[1]["size"], 7);

    let step_uri = format!("/api/v1/runs/{}/steps/{}/artifacts", run.id, step.id);
    let step_items = app.get(&step_uri).await.json()["items"].clone();
    assert_eq!(step_items.as_array().map(Vec::len), Some(1), "{step_items}");
    assert_eq!(step_items[0]["digest"], model.as_str());

    let metadata = app
        .get(&format!("/api/v1/artifacts/{model}/metadata"))
        .await
        .json();
    assert_eq!(metadata["size"], 7);
    assert_eq!(metadata["media_type"], "application/x-model");
    assert_eq!(metadata["stored"], true);
    assert!(metadata["created_at"].as_i64().is_some_and(|at| at > 0));
    assert_eq!(metadata["links"][0]["run_id"], run.id.as_str());
    assert_eq!(metadata["links"][0]["step_name"], "fit");

    let foreign = format!(
        "/api/v1/runs/{}/steps/{}/artifacts",
        run.id, foreign_step.id
    );
    app.get(&foreign)
        .await
        .expect_error(StatusCode::BAD_REQUEST);
    let unknown = format!("/api/v1/runs/{}/artifacts", "no-such-run");
    app.get(&unknown).await.expect_error(StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn run_listings_name_steps_sqlite() {
    run_listings_name_steps(Backend::Sqlite).await;
}

#[tokio::test]
async fn run_listings_name_steps_postgres() {
    run_listings_name_steps(Backend::Postgres).await;
}

#[tokio::test]
async fn corrupt_download_ends_with_error() {
    let cli = Cli::new(Backend::Sqlite);
    let server = ServerProcess::start(&cli, &[]);
    let scratch = tempfile::tempdir().expect("scratch dir");
    let path = random_file(scratch.path(), "blob.bin", 1 << 20, 5);
    let digest = sha256_file(&path);
    let url = format!("{}/api/v1/artifacts/{digest}", server.url());
    let (status, _) = put_file(&url, &path, "application/octet-stream").await;
    assert_eq!(status, 201);
    let stored = cli
        .data_dir()
        .join("artifacts")
        .join(&digest[..2])
        .join(&digest[2..]);
    let mut damaged = std::fs::read(&stored).expect("read stored file");
    damaged[1000] ^= 0xff;
    std::fs::write(&stored, damaged).expect("damage stored file");

    let response = http_client().get(&url).send().await.expect("answer");
    let mut chunks = response.bytes_stream();
    let mut failed = false;
    while let Some(chunk) = chunks.next().await {
        if chunk.is_err() {
            failed = true;
            break;
        }
    }

    assert!(failed, "the download of a corrupt artifact ended cleanly");
    server.stop();
}
