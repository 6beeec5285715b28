//! Benchmark of metric ingestion over HTTP: the dev build of `runledger serve` on SQLite in a
//! fresh data directory, driven over loopback by keep-alive clients. It measures single-metric
//! requests per second with 1 and 16 clients, metrics per second in 1,000-metric batches, the
//! p50 and p99 latency of each, and the server's peak resident memory. Afterwards it stops the
//! server and counts the stored metrics of each run, which must equal the acknowledged ones.
//!
//! Run it with `cargo xtask bench ingest` (which builds the binary first).

use anyhow::{Context as _, Result, bail, ensure};
use runledger::store::Store;
use runledger::store::entity::metric;
use runledger_tests::server::ServerProcess;
use runledger_tests::{Backend, Cli};
use sea_orm::{ColumnTrait as _, EntityTrait as _, PaginatorTrait as _, QueryFilter as _};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Requests each phase sends before it is measured, so connections and caches are warm.
const WARMUP_REQUESTS: u64 = 200;
/// Metrics per batch request.
const BATCH_SIZE: usize = 1_000;
/// Upper bound on the requests of one client in one phase, so a phase ends even if the clock
/// misbehaves.
const MAX_REQUESTS_PER_CLIENT: u64 = 2_000_000;

const TARGET_SINGLE_RPS: f64 = 10_000.0;
const TARGET_BATCH_METRICS_PER_S: f64 = 300_000.0;
const TARGET_PEAK_RSS_MIB: f64 = 100.0;

/// One measured phase.
struct Phase {
    label: &'static str,
    clients: usize,
    metrics_per_request: usize,
    duration: Duration,
}

const PHASES: [Phase; 4] = [
    Phase {
        label: "single metric, 1 client",
        clients: 1,
        metrics_per_request: 1,
        duration: Duration::from_secs(8),
    },
    Phase {
        label: "single metric, 16 clients",
        clients: 16,
        metrics_per_request: 1,
        duration: Duration::from_secs(15),
    },
    Phase {
        label: "1,000-metric batches, 1 client",
        clients: 1,
        metrics_per_request: BATCH_SIZE,
        duration: Duration::from_secs(8),
    },
    Phase {
        label: "1,000-metric batches, 16 clients",
        clients: 16,
        metrics_per_request: BATCH_SIZE,
        duration: Duration::from_secs(15),
    },
];

/// What one phase measured.
struct Outcome {
    run_id: String,
    /// Requests sent while measuring.
    requests: u64,
    /// Metrics acknowledged while measuring.
    acknowledged: u64,
    /// Metrics acknowledged during the warm-up.
    warmup_acknowledged: u64,
    /// Requests that failed, warm-up included.
    failures: u64,
    elapsed: Duration,
    latencies: Vec<Duration>,
}

impl Outcome {
    fn requests_per_second(&self) -> f64 {
        self.requests as f64 / self.elapsed.as_secs_f64()
    }

    fn acknowledged_total(&self) -> u64 {
        self.acknowledged + self.warmup_acknowledged
    }

    fn metrics_per_second(&self) -> f64 {
        self.acknowledged as f64 / self.elapsed.as_secs_f64()
    }

    fn percentile(&self, fraction: f64) -> Duration {
        if self.latencies.is_empty() {
            return Duration::ZERO;
        }
        let index = ((self.latencies.len() - 1) as f64 * fraction).round() as usize;
        self.latencies[index]
    }
}

fn main() -> Result<()> {
    let started = Instant::now();
    let cli = Cli::new(Backend::Sqlite);
    let server = ServerProcess::start(&cli, &[]);
    let pid = server.pid();
    println!(
        "ingest benchmark: runledger serve (dev build, SQLite) at {}, {} cores",
        server.url(),
        std::thread::available_parallelism()?.get()
    );

    let tokio = tokio::runtime::Runtime::new()?;
    let outcomes = tokio.block_on(run_phases(&server.url()))?;
    let peak_rss_mib = peak_rss_kib(pid)? as f64 / 1024.0;
    let status = server.stop();
    ensure!(status.success(), "runledger serve exited with {status}");

    let stored = tokio.block_on(count_stored(&cli, &outcomes))?;
    print_table(&outcomes, &stored, peak_rss_mib);
    check_stored(&outcomes, &stored)?;
    report_targets(&outcomes, peak_rss_mib);
    println!("whole benchmark: {:.0} s", started.elapsed().as_secs_f64());
    Ok(())
}

async fn run_phases(base: &str) -> Result<Vec<Outcome>> {
    let mut outcomes = Vec::new();
    for phase in &PHASES {
        let run_id = create_run(base, phase.label).await?;
        let outcome = run_phase(base, phase, run_id).await?;
        outcomes.push(outcome);
    }
    Ok(outcomes)
}

/// Builds a client that keeps one connection alive.
fn client() -> Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .pool_max_idle_per_host(1)
        .tcp_nodelay(true)
        .timeout(Duration::from_secs(60))
        .build()?)
}

async fn create_run(base: &str, label: &str) -> Result<String> {
    let response = client()?
        .post(format!("{base}/api/v1/external-runs"))
        .json(&serde_json::json!({ "name": format!("ingest benchmark: {label}") }))
        .send()
        .await?;
    let status = response.status();
    let body: serde_json::Value = response.json().await.context("run creation response")?;
    if status != reqwest::StatusCode::CREATED {
        bail!("POST /api/v1/external-runs returned {status}: {body}");
    }
    body["id"]
        .as_str()
        .map(str::to_owned)
        .with_context(|| format!("the created run has no `id`: {body}"))
}

/// Runs `phase.clients` clients in parallel until the phase's time is up, after a warm-up.
async fn run_phase(base: &str, phase: &Phase, run_id: String) -> Result<Outcome> {
    let url: Arc<str> = format!("{base}/api/v1/runs/{run_id}/metrics").into();
    let next_step = Arc::new(AtomicU64::new(0));
    let warmup_limit = Limit::Count(WARMUP_REQUESTS);
    let warmup = client_loop(
        client()?,
        url.clone(),
        phase.metrics_per_request,
        next_step.clone(),
        warmup_limit,
    )
    .await?;

    let deadline = Limit::Until(Instant::now() + phase.duration);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..phase.clients {
        let task = client_loop(
            client()?,
            url.clone(),
            phase.metrics_per_request,
            next_step.clone(),
            deadline,
        );
        tasks.push(tokio::spawn(task));
    }
    let mut outcome = Outcome {
        run_id,
        requests: 0,
        acknowledged: 0,
        warmup_acknowledged: warmup.acknowledged,
        failures: warmup.failures,
        elapsed: Duration::ZERO,
        latencies: Vec::new(),
    };
    for task in tasks {
        let result = task.await??;
        outcome.requests += result.requests;
        outcome.acknowledged += result.acknowledged;
        outcome.failures += result.failures;
        outcome.latencies.extend(result.latencies);
    }
    outcome.elapsed = started.elapsed();
    outcome.latencies.sort_unstable();
    println!(
        "{:<34} {:>9} requests in {:.1} s",
        phase.label,
        outcome.requests,
        outcome.elapsed.as_secs_f64()
    );
    Ok(outcome)
}

/// When a client loop stops.
#[derive(Clone, Copy)]
enum Limit {
    Count(u64),
    Until(Instant),
}

/// What one client measured.
struct ClientResult {
    requests: u64,
    acknowledged: u64,
    failures: u64,
    latencies: Vec<Duration>,
}

async fn client_loop(
    client: reqwest::Client,
    url: Arc<str>,
    metrics: usize,
    next_step: Arc<AtomicU64>,
    limit: Limit,
) -> Result<ClientResult> {
    let mut result = ClientResult {
        requests: 0,
        acknowledged: 0,
        failures: 0,
        latencies: Vec::new(),
    };
    loop {
        let done = match limit {
            Limit::Count(count) => result.requests >= count,
            Limit::Until(deadline) => Instant::now() >= deadline,
        };
        if done || result.requests >= MAX_REQUESTS_PER_CLIENT {
            return Ok(result);
        }
        // Steps increase across the clients of a phase, as in a training loop. Repeating steps
        // would measure a different write pattern: it was 2 to 3 times slower in this benchmark.
        let first_step = next_step.fetch_add(metrics as u64, Ordering::Relaxed);
        let body = metrics_body(first_step, metrics);
        let sent = Instant::now();
        let response = client
            .post(&*url)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await;
        let accepted = match response {
            Ok(response) if response.status().is_success() => accepted_count(response).await,
            Ok(response) => {
                let status = response.status();
                let text = response.text().await.unwrap_or_default();
                eprintln!("request failed with {status}: {text}");
                None
            }
            Err(error) => {
                eprintln!("request failed: {error}");
                None
            }
        };
        result.latencies.push(sent.elapsed());
        result.requests += 1;
        match accepted {
            Some(count) => result.acknowledged += count,
            None => result.failures += 1,
        }
    }
}

async fn accepted_count(response: reqwest::Response) -> Option<u64> {
    let body: serde_json::Value = response.json().await.ok()?;
    body["accepted"].as_u64()
}

/// Builds a request body of `count` metrics with consecutive steps from `first_step`.
fn metrics_body(first_step: u64, count: usize) -> String {
    let mut body = String::with_capacity(24 + count * 48);
    body.push_str("{\"metrics\":[");
    for offset in 0..count as u64 {
        if offset > 0 {
            body.push(',');
        }
        let step = first_step + offset;
        body.push_str(&format!(
            "{{\"key\":\"loss\",\"value\":{},\"step\":{step}}}",
            1.0 / (step + 1) as f64
        ));
    }
    body.push_str("]}");
    body
}

/// Peak resident set size of process `pid`, in KiB, from /proc (Linux).
fn peak_rss_kib(pid: u32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("cannot read /proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kib| kib.parse().ok())
        .context("/proc/PID/status has no VmHWM line")
}

/// Counts the metrics stored for each phase's run, with the server stopped.
async fn count_stored(cli: &Cli, outcomes: &[Outcome]) -> Result<Vec<u64>> {
    let store = Store::open_sqlite(cli.data_dir()).await?;
    let mut counts = Vec::new();
    for outcome in outcomes {
        let count = metric::Entity::find()
            .filter(metric::Column::RunId.eq(outcome.run_id.as_str()))
            .count(store.connection())
            .await?;
        counts.push(count);
    }
    Ok(counts)
}

fn print_table(outcomes: &[Outcome], stored: &[u64], peak_rss_mib: f64) {
    println!();
    println!(
        "{:<34} {:>10} {:>12} {:>9} {:>9} {:>10} {:>10}",
        "phase", "requests/s", "metrics/s", "p50 ms", "p99 ms", "acked", "stored"
    );
    for ((phase, outcome), stored) in PHASES.iter().zip(outcomes).zip(stored) {
        println!(
            "{:<34} {:>10.0} {:>12.0} {:>9.2} {:>9.2} {:>10} {:>10}",
            phase.label,
            outcome.requests_per_second(),
            outcome.metrics_per_second(),
            outcome.percentile(0.50).as_secs_f64() * 1000.0,
            outcome.percentile(0.99).as_secs_f64() * 1000.0,
            outcome.acknowledged_total(),
            stored
        );
    }
    println!("server peak RSS (VmHWM): {peak_rss_mib:.1} MiB");
}

/// Fails unless every run contains exactly the metrics the server acknowledged for it. A failed
/// request may still have been committed, so with failures the count may be higher.
fn check_stored(outcomes: &[Outcome], stored: &[u64]) -> Result<()> {
    for ((phase, outcome), &stored) in PHASES.iter().zip(outcomes).zip(stored) {
        let acknowledged = outcome.acknowledged_total();
        if outcome.failures == 0 {
            ensure!(
                stored == acknowledged,
                "{}: {acknowledged} metrics acknowledged but {stored} stored",
                phase.label
            );
        } else {
            ensure!(
                stored >= acknowledged,
                "{}: {acknowledged} metrics acknowledged but only {stored} stored",
                phase.label
            );
            println!("{}: {} requests failed", phase.label, outcome.failures);
        }
    }
    println!("every acknowledged metric is stored");
    Ok(())
}

fn report_targets(outcomes: &[Outcome], peak_rss_mib: f64) {
    let single = outcomes[1].requests_per_second();
    let batches = outcomes[2..]
        .iter()
        .map(Outcome::metrics_per_second)
        .fold(0.0, f64::max);
    check(
        "single-metric requests with 16 clients",
        &format!("{single:.0}/s >= {TARGET_SINGLE_RPS:.0}/s"),
        single >= TARGET_SINGLE_RPS,
    );
    check(
        "metrics in 1,000-metric batches",
        &format!("{batches:.0}/s >= {TARGET_BATCH_METRICS_PER_S:.0}/s"),
        batches >= TARGET_BATCH_METRICS_PER_S,
    );
    check(
        "server peak RSS",
        &format!("{peak_rss_mib:.1} MiB < {TARGET_PEAK_RSS_MIB:.0} MiB"),
        peak_rss_mib < TARGET_PEAK_RSS_MIB,
    );
}

fn check(name: &str, detail: &str, met: bool) {
    let verdict = if met { "met" } else { "MISSED" };
    println!("target {name}: {detail} ... {verdict}");
}
