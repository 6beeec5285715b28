//! Shared parts of the web UI's browser tests (`tests/tests/web_ui.rs`) and its load-time
//! benchmark (`tests/benches/ui_load.rs`): the prerequisite checks for Chromium and
//! playwright-core, API tokens made with the CLI, seeding of many runs and of one long metric
//! series through the native ingest API, and `node` runs of the scripts in `tests/browser`.

use crate::server::ServerProcess;
use crate::{Backend, Cli, workspace_root};
use anyhow::{Context as _, Result, bail};
use serde_json::{Value, json};
use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Debian's Chromium, which playwright-core drives; `cargo xtask setup` installs it.
pub const CHROMIUM: &str = "/usr/bin/chromium";

/// Name of the metric series of [`seed_long_series`].
pub const LONG_METRIC: &str = "loss";

/// Runs that [`LoadFixture`] seeds besides the long-series run.
pub const LOAD_RUNS: usize = 10_000;

/// Points of the long metric series that [`LoadFixture`] seeds.
pub const LONG_SERIES_POINTS: usize = 1_000_000;

/// Concurrent clients that seed runs. Each run is three write requests, which SQLite's single
/// writer serializes, so more clients do not seed faster: on two cores 8 clients took about as
/// long as the 1 ms per request that one client measured.
const SEED_CLIENTS: usize = 8;

/// Metric values per request of [`seed_long_series`]; about 0.7 MB of JSON, far below the
/// server's default 32 MiB body limit.
const SERIES_CHUNK: usize = 10_000;

/// Start time of the first seeded run, in milliseconds since the Unix epoch (2026-01-01).
const SEED_EPOCH_MS: i64 = 1_767_225_600_000;

/// Returns the directory of the browser scripts and their `package.json`.
pub fn browser_dir() -> PathBuf {
    workspace_root().join("tests/browser")
}

/// Returns the directory the browser scenarios save their screenshots in.
pub fn screenshot_dir() -> PathBuf {
    workspace_root().join("target/ui-screenshots")
}

/// Checks that Chromium, Node.js and playwright-core are installed, and returns what is
/// missing with the command that installs it.
pub fn check_browser_setup() -> Result<()> {
    if !std::path::Path::new(CHROMIUM).is_file() {
        bail!("{CHROMIUM} is missing: run `cargo xtask setup`, which installs Debian's chromium");
    }
    let playwright = browser_dir().join("node_modules/playwright-core/package.json");
    if !playwright.is_file() {
        bail!(
            "{} is missing: run `cargo xtask setup`, which runs `npm ci` in tests/browser",
            playwright.display()
        );
    }
    let version = Command::new("node").arg("--version").output();
    match version {
        Ok(output) if output.status.success() => Ok(()),
        _ => bail!("node is missing: install Node.js 20 or later (Debian: apt-get install nodejs)"),
    }
}

/// Creates an API token with the CLI on `cli`'s database and returns it.
pub fn create_token(cli: &Cli, name: &str, role: &str) -> Result<String> {
    let output = cli.output(&["tokens", "create", "--name", name, "--role", role]);
    if !output.status.success() {
        bail!(
            "runledger tokens create --name {name} --role {role} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let token = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    if token.is_empty() {
        bail!("runledger tokens create --name {name} printed no token");
    }
    Ok(token)
}

/// Runs `node ARGS` in `tests/browser` with `env` added to this process's environment, and
/// returns its output once it exits.
pub fn run_node(args: &[String], env: &[(String, String)]) -> Result<Output> {
    Command::new("node")
        .current_dir(browser_dir())
        .args(args)
        .envs(env.iter().map(|(key, value)| (key, value)))
        .output()
        .with_context(|| format!("cannot start node {}", args.join(" ")))
}

/// A JSON client of the native API that sends one bearer token.
#[derive(Clone)]
pub struct ApiClient {
    client: reqwest::Client,
    base: Arc<str>,
    token: Arc<str>,
}

impl ApiClient {
    /// Builds a client of the server at `base` (such as `http://127.0.0.1:40123`).
    pub fn new(base: &str, token: &str) -> Result<Self> {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(120))
            .tcp_nodelay(true)
            .build()?;
        Ok(Self {
            client,
            base: base.into(),
            token: token.into(),
        })
    }

    /// Sends `method PATH` with a JSON body and returns the JSON response, failing with the
    /// status and body unless the status is 2xx.
    pub async fn send(&self, method: reqwest::Method, path: &str, body: &Value) -> Result<Value> {
        let response = self
            .client
            .request(method.clone(), format!("{}{path}", self.base))
            .bearer_auth(&*self.token)
            .json(body)
            .send()
            .await
            .with_context(|| format!("{method} {path} was not answered"))?;
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        if !status.is_success() {
            bail!("{method} {path} returned {status}: {text}");
        }
        serde_json::from_str(&text).with_context(|| format!("{method} {path} returned {text}"))
    }

    /// Sends a POST with a JSON body.
    pub async fn post(&self, path: &str, body: &Value) -> Result<Value> {
        self.send(reqwest::Method::POST, path, body).await
    }

    /// Creates an external run and returns its id.
    pub async fn create_run(&self, body: &Value) -> Result<String> {
        let created = self.post("/api/v1/external-runs", body).await?;
        created["id"]
            .as_str()
            .map(str::to_owned)
            .with_context(|| format!("the created run has no `id`: {created}"))
    }
}

/// Records `count` succeeded external runs with params `alpha` and `seed`, a tag `team` and
/// metrics `test_rmse` and `test_r2`, from [`SEED_CLIENTS`] concurrent clients. Run `i` starts
/// `i` minutes after 2026-01-01 and takes `i % 600` seconds.
pub async fn seed_runs(api: &ApiClient, count: usize) -> Result<()> {
    let next = Arc::new(AtomicUsize::new(0));
    let mut workers = Vec::new();
    for _ in 0..SEED_CLIENTS {
        let api = api.clone();
        let next = next.clone();
        workers.push(tokio::spawn(async move {
            loop {
                let index = next.fetch_add(1, Ordering::Relaxed);
                if index >= count {
                    return Ok::<(), anyhow::Error>(());
                }
                seed_one_run(&api, index).await?;
            }
        }));
    }
    for worker in workers {
        worker.await.context("a seeding client panicked")??;
    }
    Ok(())
}

/// Records run number `index` of [`seed_runs`]: three requests.
async fn seed_one_run(api: &ApiClient, index: usize) -> Result<()> {
    let started_at = SEED_EPOCH_MS + index as i64 * 60_000;
    let team = ["vision", "speech", "tabular"][index % 3];
    let run_id = api
        .create_run(&json!({
            "name": format!("load-{index:05}"),
            "params": { "alpha": format!("{:.1}", (index % 10) as f64 / 10.0), "seed": index },
            "tags": { "team": team },
            "started_at": started_at,
        }))
        .await?;

    // A deterministic spread of plausible values, so sorting by a metric column has work to do.
    let rmse = 0.5 + ((index * 7919) % 1000) as f64 / 2000.0;
    let batch = json!({
        "metrics": [
            { "key": "test_rmse", "value": rmse, "timestamp": started_at },
            { "key": "test_r2", "value": 1.0 - rmse, "timestamp": started_at },
        ],
    });
    api.post(&format!("/api/v1/runs/{run_id}/batch"), &batch)
        .await?;

    let ended_at = started_at + (index % 600) as i64 * 1000;
    let finish = json!({ "status": "succeeded", "ended_at": ended_at });
    api.post(&format!("/api/v1/runs/{run_id}/finish"), &finish)
        .await?;
    Ok(())
}

/// Records an external run named `long-series` with `points` values of [`LONG_METRIC`] at
/// steps 0 to `points - 1`, finishes it as succeeded, and returns its id.
pub async fn seed_long_series(api: &ApiClient, points: usize) -> Result<String> {
    let run_id = api
        .create_run(&json!({ "name": "long-series", "params": { "points": points } }))
        .await?;
    let chunks: Vec<usize> = (0..points).step_by(SERIES_CHUNK).collect();
    let next = Arc::new(AtomicUsize::new(0));
    let chunks = Arc::new(chunks);
    let mut workers = Vec::new();
    for _ in 0..4 {
        let (api, next, chunks, run_id) =
            (api.clone(), next.clone(), chunks.clone(), run_id.clone());
        workers.push(tokio::spawn(async move {
            while let Some(first) = chunks.get(next.fetch_add(1, Ordering::Relaxed)) {
                let last = (*first + SERIES_CHUNK).min(points);
                let body = series_chunk(*first, last);
                api.post(&format!("/api/v1/runs/{run_id}/metrics"), &body)
                    .await?;
            }
            Ok::<(), anyhow::Error>(())
        }));
    }
    for worker in workers {
        worker.await.context("a series client panicked")??;
    }
    let finish = json!({ "status": "succeeded" });
    api.post(&format!("/api/v1/runs/{run_id}/finish"), &finish)
        .await?;
    Ok(run_id)
}

/// Builds a metrics body with the values of steps `first..last`: a decaying curve with a
/// ripple, so a downsampled chart has minima and maxima to keep.
fn series_chunk(first: usize, last: usize) -> Value {
    let metrics: Vec<Value> = (first..last)
        .map(|step| {
            let x = step as f64;
            let value = 2.0 / (1.0 + x / 10_000.0) + 0.05 * (x / 500.0).sin();
            json!({ "key": LONG_METRIC, "value": value, "step": step, "timestamp": SEED_EPOCH_MS + step as i64 })
        })
        .collect();
    json!({ "metrics": metrics })
}

/// `runledger serve` with access control on, over a fresh SQLite store seeded with
/// [`LOAD_RUNS`] runs and one run with a [`LONG_SERIES_POINTS`]-point series of
/// [`LONG_METRIC`].
pub struct LoadFixture {
    /// The server; declared before `cli`, so it stops before the data directory is removed.
    pub server: ServerProcess,
    /// Admin token of the server.
    pub token: String,
    /// The run with the long series.
    pub long_run_id: String,
    /// Time the seeding took.
    pub seeding: Duration,
    _cli: Cli,
}

impl LoadFixture {
    /// Creates the store and a token, starts the server and seeds it through the ingest API.
    pub fn start() -> Result<Self> {
        let cli = Cli::new(Backend::Sqlite);
        let token = create_token(&cli, "loader", "admin")?;
        let server = ServerProcess::start(&cli, &[]);
        let api = ApiClient::new(&server.url(), &token)?;
        let started = Instant::now();
        let tokio = tokio::runtime::Runtime::new()?;
        tokio
            .block_on(seed_runs(&api, LOAD_RUNS))
            .with_context(|| format!("seeding {LOAD_RUNS} runs failed"))?;
        let long_run_id = tokio
            .block_on(seed_long_series(&api, LONG_SERIES_POINTS))
            .context("seeding the long series failed")?;
        Ok(Self {
            server,
            token,
            long_run_id,
            seeding: started.elapsed(),
            _cli: cli,
        })
    }

    /// Returns the `RUNLEDGER_UI_*` variables of `load-times.mjs`.
    pub fn env(&self) -> Vec<(String, String)> {
        [
            ("RUNLEDGER_UI_BASE_URL", self.server.url()),
            (
                "RUNLEDGER_UI_SCREENSHOT_DIR",
                screenshot_dir().display().to_string(),
            ),
            ("RUNLEDGER_UI_ADMIN_TOKEN", self.token.clone()),
            ("RUNLEDGER_UI_LONG_RUN_ID", self.long_run_id.clone()),
            ("RUNLEDGER_UI_LONG_METRIC", LONG_METRIC.to_owned()),
            ("RUNLEDGER_UI_LONG_POINTS", LONG_SERIES_POINTS.to_string()),
            ("RUNLEDGER_UI_RUN_COUNT", (LOAD_RUNS + 1).to_string()),
        ]
        .into_iter()
        .map(|(key, value)| (key.to_owned(), value))
        .collect()
    }
}
