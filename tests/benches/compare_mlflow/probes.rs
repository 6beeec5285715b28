//! Reads and transfers: `runs/search` latency, `metrics/get-history` of a long series, and a
//! 1 GiB artifact through the artifact proxy.

use crate::load::{call, client};
use crate::seed::{SEARCH_FILTER, SEARCH_ORDER};
use crate::servers::Server;
use anyhow::{Context as _, Result, ensure};
use futures_util::StreamExt as _;
use sha2::{Digest as _, Sha256};
use std::time::{Duration, Instant};

/// Runs one measured search returns, as MLflow's web UI asks for a page.
const SEARCH_PAGE: u64 = 100;

/// Page size of the searches that count every match: MLflow 3.17's maximum.
const COUNT_PAGE: u64 = 50_000;

/// Size of the transferred artifact.
pub(crate) const ARTIFACT_BYTES: u64 = 1 << 30;

/// Size of each chunk of the uploaded body.
const CHUNK_BYTES: usize = 1 << 20;

/// Sends one `runs/search` of the benchmark's query and returns the response.
async fn search_page(
    client: &reqwest::Client,
    server: &Server,
    experiment_id: &str,
    max_results: u64,
    page_token: Option<&str>,
) -> Result<serde_json::Value> {
    let mut body = serde_json::json!({
        "experiment_ids": [experiment_id],
        "filter": SEARCH_FILTER,
        "order_by": [SEARCH_ORDER],
        "max_results": max_results,
    });
    if let Some(token) = page_token {
        body["page_token"] = token.into();
    }
    call(
        client,
        client.post(server.endpoint("runs/search")).json(&body),
    )
    .await
}

/// What a full search found: the number of matching runs and the names of the first
/// [`SEARCH_PAGE`] in the requested order.
pub(crate) struct SearchMatches {
    /// Matching runs over every page.
    pub(crate) count: u64,
    /// Names of the first runs in order.
    pub(crate) first_names: Vec<String>,
}

/// Pages through every run the search selects.
pub(crate) async fn search_all(server: &Server, experiment_id: &str) -> Result<SearchMatches> {
    let client = client()?;
    let mut matches = SearchMatches {
        count: 0,
        first_names: Vec::new(),
    };
    let mut token: Option<String> = None;
    loop {
        let page =
            search_page(&client, server, experiment_id, COUNT_PAGE, token.as_deref()).await?;
        let runs = page["runs"].as_array().cloned().unwrap_or_default();
        matches.count += runs.len() as u64;
        let room = SEARCH_PAGE as usize - matches.first_names.len();
        for run in runs.iter().take(room) {
            let name = run["info"]["run_name"].as_str().unwrap_or_default();
            matches.first_names.push(name.to_owned());
        }
        match page["next_page_token"].as_str() {
            Some(next) if !next.is_empty() => token = Some(next.to_owned()),
            _ => return Ok(matches),
        }
    }
}

/// Times first-page searches for `budget`, at least `minimum` of them, and returns the
/// latencies.
pub(crate) async fn search_latencies(
    server: &Server,
    experiment_id: &str,
    budget: Duration,
    minimum: usize,
) -> Result<Vec<Duration>> {
    let client = client()?;
    let deadline = Instant::now() + budget;
    let mut latencies = Vec::new();
    while latencies.len() < minimum || Instant::now() < deadline {
        let sent = Instant::now();
        let page = search_page(&client, server, experiment_id, SEARCH_PAGE, None).await?;
        latencies.push(sent.elapsed());
        let returned = page["runs"].as_array().map_or(0, Vec::len);
        ensure!(
            returned as u64 == SEARCH_PAGE,
            "{}: a search returned {returned} runs, expected a full page of {SEARCH_PAGE}",
            server.label
        );
    }
    Ok(latencies)
}

/// Reads every page of a metric's history and returns the number of values and the time.
pub(crate) async fn read_history(
    server: &Server,
    run_id: &str,
    key: &str,
) -> Result<(u64, Duration)> {
    let client = client()?;
    let started = Instant::now();
    let mut count = 0;
    let mut token: Option<String> = None;
    loop {
        let mut query = vec![("run_id", run_id), ("metric_key", key)];
        if let Some(token) = &token {
            query.push(("page_token", token.as_str()));
        }
        let url = reqwest::Url::parse_with_params(&server.endpoint("metrics/get-history"), &query)?;
        let page = call(&client, client.get(url)).await?;
        count += page["metrics"].as_array().map_or(0, Vec::len) as u64;
        match page["next_page_token"].as_str() {
            Some(next) if !next.is_empty() => token = Some(next.to_owned()),
            _ => return Ok((count, started.elapsed())),
        }
    }
}

/// Returns chunk `index` of the artifact: a fixed pseudo-random block with the index in its
/// first eight bytes, so no two chunks are equal.
fn artifact_chunk(block: &[u8], index: u64) -> Vec<u8> {
    let mut chunk = block.to_vec();
    chunk[..8].copy_from_slice(&index.to_le_bytes());
    chunk
}

/// The artifact's pseudo-random block, and the SHA-256 of the whole artifact.
pub(crate) struct Artifact {
    block: Vec<u8>,
    /// Lowercase hex SHA-256 of the whole artifact.
    pub(crate) sha256: String,
}

impl Artifact {
    /// Generates the block and hashes the artifact once, before any transfer.
    pub(crate) fn generate() -> Self {
        let mut state = 0x5eed_u64;
        let block: Vec<u8> = (0..CHUNK_BYTES)
            .map(|_| {
                state = state
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1_442_695_040_888_963_407);
                (state >> 56) as u8
            })
            .collect();
        let mut hasher = Sha256::new();
        for index in 0..ARTIFACT_BYTES / CHUNK_BYTES as u64 {
            hasher.update(artifact_chunk(&block, index));
        }
        let sha256 = hex::encode(hasher.finalize());
        Self { block, sha256 }
    }
}

/// Proxy URL of the artifact `name` of a run.
pub(crate) fn artifact_url(
    server: &Server,
    experiment_id: &str,
    run_id: &str,
    name: &str,
) -> String {
    format!(
        "{}/api/2.0/mlflow-artifacts/artifacts/{experiment_id}/{run_id}/artifacts/{name}",
        server.base
    )
}

/// Uploads the artifact with a streamed body and returns the time.
pub(crate) async fn upload(artifact: &Artifact, url: &str) -> Result<Duration> {
    let block = artifact.block.clone();
    let chunks = ARTIFACT_BYTES / CHUNK_BYTES as u64;
    let stream = futures_util::stream::iter(0..chunks)
        .map(move |index| Ok::<_, std::io::Error>(artifact_chunk(&block, index)));
    let client = client()?;
    let started = Instant::now();
    let request = client
        .put(url)
        .header("content-type", "application/octet-stream")
        .header("content-length", ARTIFACT_BYTES)
        .body(reqwest::Body::wrap_stream(stream));
    call_raw(&client, request)
        .await
        .context("artifact upload")?;
    Ok(started.elapsed())
}

/// Downloads the artifact, checks its size and SHA-256, and returns the time.
pub(crate) async fn download(artifact: &Artifact, url: &str) -> Result<Duration> {
    let client = client()?;
    let started = Instant::now();
    let response = client.get(url).send().await?.error_for_status()?;
    let mut body = response.bytes_stream();
    let mut hasher = Sha256::new();
    let mut size = 0u64;
    while let Some(chunk) = body.next().await {
        let chunk = chunk?;
        size += chunk.len() as u64;
        hasher.update(&chunk);
    }
    let elapsed = started.elapsed();
    ensure!(
        size == ARTIFACT_BYTES,
        "downloaded {size} bytes, expected {ARTIFACT_BYTES}"
    );
    let sha256 = hex::encode(hasher.finalize());
    ensure!(
        sha256 == artifact.sha256,
        "the downloaded artifact's SHA-256 is {sha256}, expected {}",
        artifact.sha256
    );
    Ok(elapsed)
}

/// Sends a request whose response body is not JSON, failing on a status other than 2xx.
async fn call_raw(client: &reqwest::Client, request: reqwest::RequestBuilder) -> Result<()> {
    let response = client.execute(request.build()?).await?;
    let status = response.status();
    let text = response.text().await.unwrap_or_default();
    ensure!(status.is_success(), "returned {status}: {text}");
    Ok(())
}
