//! Metric ingestion over MLflow's REST protocol: `runs/log-metric` with one value per request
//! and `runs/log-batch` with [`BATCH_SIZE`] values, from keep-alive clients.
//!
//! Each client is a thread with one blocking connection ([`Connection`]), so the load generator
//! adds no thread hand-off of its own to a round trip. In the phases of one client it spins for
//! each response for up to [`SPIN_BUDGET`] before its thread sleeps, so that a server that
//! responds within that time is measured without the wake-up of the client's thread. The set-up
//! calls, which are not timed, use reqwest.

use crate::floor;
use crate::servers::Server;
use anyhow::{Context as _, Result, bail};
use runledger_tests::http1::Connection;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Metric values per `runs/log-batch` request: MLflow 3.17's maximum.
pub(crate) const BATCH_SIZE: usize = 1_000;

/// Requests each server gets before a phase's first measured round, so connections, worker
/// processes and caches are warm.
const WARMUP_REQUESTS: u64 = 20;

/// How long a spinning client reads for a response without blocking before it sleeps. It is
/// several times runledger's single-value round trip and a small part of MLflow's, and a client
/// that waited longer than this for its last response sleeps at once (see [`Connection`]).
const SPIN_BUDGET: Duration = Duration::from_micros(200);

/// Time limit of one request; MLflow's SQLite store can wait long on its write lock.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);

/// Pause of a client after a failed connection attempt, before it tries again.
const RECONNECT_DELAY: Duration = Duration::from_millis(100);

/// Timestamp of every ingested value, in milliseconds since the Unix epoch (2026-01-01).
const INGEST_TIME_MS: i64 = 1_767_225_600_000;

/// One ingestion phase: its rounds alternate between the servers.
pub(crate) struct Phase {
    /// Row heading in the results.
    pub(crate) label: &'static str,
    /// Keep-alive clients that send at the same time.
    pub(crate) clients: usize,
    /// Metric values per request: 1 sends `runs/log-metric`, more send `runs/log-batch`.
    pub(crate) metrics_per_request: usize,
    /// Whether each client spins for its responses for up to [`SPIN_BUDGET`].
    pub(crate) spins: bool,
    /// Length of one round on one server.
    pub(crate) round: Duration,
}

/// What one server acknowledged in all rounds of a phase.
#[derive(Default)]
pub(crate) struct Ingested {
    /// The run the values went to.
    pub(crate) run_id: String,
    /// Requests sent in measured rounds.
    pub(crate) requests: u64,
    /// Values acknowledged in measured rounds.
    pub(crate) acknowledged: u64,
    /// Values acknowledged during the warm-up.
    pub(crate) warmup_acknowledged: u64,
    /// Requests that failed, warm-up included.
    pub(crate) failures: u64,
    /// Time spent in measured rounds.
    pub(crate) elapsed: Duration,
    /// Next step to send, shared by the clients so that no two values repeat a step.
    next_step: Arc<AtomicU64>,
}

impl Ingested {
    /// Requests per second of the measured rounds, failed ones included.
    pub(crate) fn requests_per_second(&self) -> f64 {
        self.requests as f64 / self.elapsed.as_secs_f64()
    }

    /// Acknowledged values per second of the measured rounds.
    pub(crate) fn metrics_per_second(&self) -> f64 {
        self.acknowledged as f64 / self.elapsed.as_secs_f64()
    }

    /// Every value the server acknowledged, warm-up included.
    pub(crate) fn acknowledged_total(&self) -> u64 {
        self.acknowledged + self.warmup_acknowledged
    }
}

/// Builds a client that keeps one connection alive.
pub(crate) fn client() -> Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .pool_max_idle_per_host(1)
        .tcp_nodelay(true)
        .timeout(REQUEST_TIMEOUT)
        .build()?)
}

/// Sends a JSON request to an MLflow endpoint and returns the JSON response, failing on a
/// status other than 200 with the response body.
pub(crate) async fn call(
    client: &reqwest::Client,
    request: reqwest::RequestBuilder,
) -> Result<serde_json::Value> {
    let request = request.build()?;
    let line = format!("{} {}", request.method(), request.url().path());
    let response = client.execute(request).await?;
    let status = response.status();
    let text = response.text().await?;
    if !status.is_success() {
        bail!("{line} returned {status}: {text}");
    }
    serde_json::from_str(&text).with_context(|| format!("{line} returned invalid JSON: {text}"))
}

/// Creates an experiment named `name` and returns its id.
pub(crate) async fn create_experiment(server: &Server, name: &str) -> Result<String> {
    let client = client()?;
    let body = serde_json::json!({ "name": name });
    let request = client
        .post(server.endpoint("experiments/create"))
        .json(&body);
    let created = call(&client, request).await?;
    created["experiment_id"]
        .as_str()
        .map(str::to_owned)
        .with_context(|| format!("experiments/create returned no experiment_id: {created}"))
}

/// Creates a run named `name` in `experiment_id` and returns its id.
pub(crate) async fn create_run(server: &Server, experiment_id: &str, name: &str) -> Result<String> {
    let client = client()?;
    let body = serde_json::json!({
        "experiment_id": experiment_id,
        "run_name": name,
        "start_time": INGEST_TIME_MS,
    });
    let request = client.post(server.endpoint("runs/create")).json(&body);
    let created = call(&client, request).await?;
    created["run"]["info"]["run_id"]
        .as_str()
        .map(str::to_owned)
        .with_context(|| format!("runs/create returned no run id: {created}"))
}

/// Starts a phase on one server: creates its run and sends the warm-up requests.
pub(crate) async fn prepare(
    server: &Server,
    experiment_id: &str,
    phase: &Phase,
) -> Result<Ingested> {
    let run_id = create_run(server, experiment_id, phase.label).await?;
    let mut ingested = Ingested {
        run_id,
        ..Ingested::default()
    };
    let warmup = run_clients(server, &ingested, phase, 1, Limit::Count(WARMUP_REQUESTS)).await?;
    ingested.warmup_acknowledged = warmup.acknowledged;
    ingested.failures = warmup.failures;
    Ok(ingested)
}

/// Runs one measured round of `phase` on `server` and adds it to `ingested`.
pub(crate) async fn round(server: &Server, phase: &Phase, ingested: &mut Ingested) -> Result<()> {
    let started = Instant::now();
    let limit = Limit::Until(started + phase.round);
    let totals = run_clients(server, ingested, phase, phase.clients, limit).await?;
    ingested.elapsed += started.elapsed();
    ingested.requests += totals.requests;
    ingested.acknowledged += totals.acknowledged;
    ingested.failures += totals.failures;
    Ok(())
}

/// When a client stops sending.
#[derive(Clone, Copy)]
enum Limit {
    Count(u64),
    Until(Instant),
}

/// What some clients sent.
#[derive(Default)]
struct Totals {
    requests: u64,
    acknowledged: u64,
    failures: u64,
}

async fn run_clients(
    server: &Server,
    ingested: &Ingested,
    phase: &Phase,
    clients: usize,
    limit: Limit,
) -> Result<Totals> {
    let endpoint = if phase.metrics_per_request == 1 {
        "runs/log-metric"
    } else {
        "runs/log-batch"
    };
    let url = reqwest::Url::parse(&server.endpoint(endpoint))?;
    let address = socket_address(&url)?;
    let target = Arc::new(Target {
        address,
        path: url.path().to_owned(),
        body: BodyTemplate::new(&ingested.run_id, phase.metrics_per_request),
        metrics: phase.metrics_per_request,
        next_step: ingested.next_step.clone(),
        spin_budget: if phase.spins {
            SPIN_BUDGET
        } else {
            Duration::ZERO
        },
    });
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let target = target.clone();
        tasks.push(tokio::task::spawn_blocking(move || {
            client_loop(&target, limit)
        }));
    }
    let mut totals = Totals::default();
    for task in tasks {
        let client = task.await?;
        totals.requests += client.requests;
        totals.acknowledged += client.acknowledged;
        totals.failures += client.failures;
    }
    Ok(totals)
}

/// Returns the socket address of `url`'s host and port.
fn socket_address(url: &reqwest::Url) -> Result<SocketAddr> {
    url.socket_addrs(|| None)?
        .into_iter()
        .next()
        .with_context(|| format!("{url} resolves to no address"))
}

/// Where a client sends and what.
struct Target {
    address: SocketAddr,
    path: String,
    body: BodyTemplate,
    metrics: usize,
    next_step: Arc<AtomicU64>,
    spin_budget: Duration,
}

/// Sends requests on one keep-alive connection until `limit`, on the calling thread. A failed
/// request counts and the client goes on, on a new connection when the old one broke or the
/// server closed it.
fn client_loop(target: &Target, limit: Limit) -> Totals {
    let mut totals = Totals::default();
    let mut connection = None;
    let mut body = String::new();
    loop {
        let done = match limit {
            Limit::Count(count) => totals.requests >= count,
            Limit::Until(deadline) => Instant::now() >= deadline,
        };
        if done {
            return totals;
        }
        let first_step = target
            .next_step
            .fetch_add(target.metrics as u64, Ordering::Relaxed);
        target.body.render(first_step, &mut body);
        totals.requests += 1;
        let mut open = match connection.take() {
            Some(open) => open,
            None => match Connection::open(target.address, REQUEST_TIMEOUT) {
                Ok(mut open) => {
                    open.spin_for(target.spin_budget);
                    open
                }
                Err(error) => {
                    let message = format!("cannot connect to {}: {error}", target.address);
                    report_failure(&target.path, &message, totals.failures);
                    totals.failures += 1;
                    std::thread::sleep(RECONNECT_DELAY);
                    continue;
                }
            },
        };
        match open.post_json(&target.path, body.as_bytes()) {
            Ok(response) if response.is_success() => {
                totals.acknowledged += target.metrics as u64;
            }
            Ok(response) => {
                let message = format!("{}: {}", response.status, response.text());
                report_failure(&target.path, &message, totals.failures);
                totals.failures += 1;
            }
            Err(error) => {
                report_failure(&target.path, &error.to_string(), totals.failures);
                totals.failures += 1;
                continue;
            }
        }
        if open.is_reusable() {
            connection = Some(open);
        }
    }
}

/// Measures empty exchanges per second from one spinning client: `GET /healthz`, which `server`
/// serves from memory, for `duration` after a warm-up. No request that does work goes faster on
/// this machine through this client, so the rate bounds the spinning single-client
/// `runs/log-metric` row.
pub(crate) async fn empty_exchange_rate(server: &Server, duration: Duration) -> Result<f64> {
    let url = reqwest::Url::parse(&format!("{}/healthz", server.base))?;
    let address = socket_address(&url)?;
    let path = url.path().to_owned();
    tokio::task::spawn_blocking(move || exchange_rate(address, &path, duration)).await?
}

/// Measures exchanges per second from one spinning client with [`floor::Responder`], which
/// replies without parsing HTTP or waking another thread. No server that sleeps between
/// requests reaches a higher rate here through this client.
pub(crate) async fn loopback_floor_rate(duration: Duration) -> Result<f64> {
    tokio::task::spawn_blocking(move || {
        let responder = floor::Responder::start()?;
        exchange_rate(responder.address(), "/healthz", duration)
    })
    .await?
}

/// Sends `GET path` to `address` on one connection that spins for [`SPIN_BUDGET`], first
/// [`WARMUP_REQUESTS`] times untimed and then for `duration`, and returns the timed exchanges
/// per second.
fn exchange_rate(address: SocketAddr, path: &str, duration: Duration) -> Result<f64> {
    let mut connection = Connection::open(address, REQUEST_TIMEOUT)?;
    connection.spin_for(SPIN_BUDGET);
    for _ in 0..WARMUP_REQUESTS {
        connection.get(path)?;
    }
    let started = Instant::now();
    let mut exchanges = 0u64;
    while started.elapsed() < duration {
        let response = connection.get(path)?;
        if !response.is_success() {
            bail!(
                "GET {path} returned {}: {}",
                response.status,
                response.text()
            );
        }
        exchanges += 1;
    }
    Ok(exchanges as f64 / started.elapsed().as_secs_f64())
}

/// Prints the first few failures of a client, so a failing server does not flood the output.
fn report_failure(url: &str, message: &str, earlier_failures: u64) {
    if earlier_failures < 3 {
        let message: String = message.chars().take(300).collect();
        eprintln!("request to {url} failed: {message}");
    }
}

/// The JSON body of a phase's requests, rendered once except for the step numbers. One value
/// per request makes a `runs/log-metric` body, more make a `runs/log-batch` body.
struct BodyTemplate {
    head: String,
    /// The fields of each value of a request up to its step number, in order.
    values: Vec<String>,
    tail: &'static str,
}

impl BodyTemplate {
    fn new(run_id: &str, count: usize) -> Self {
        if count == 1 {
            return Self {
                head: format!("{{\"run_id\":\"{run_id}\","),
                values: vec![metric_fields(0)],
                tail: "}",
            };
        }
        Self {
            head: format!("{{\"run_id\":\"{run_id}\",\"metrics\":["),
            values: (0..count)
                .map(|offset| format!("{{{}", metric_fields(offset)))
                .collect(),
            tail: "]}",
        }
    }

    /// Writes the body whose values have consecutive steps from `first_step` into `body`.
    /// Formatting only the steps keeps the generator's share of one client's round trip small.
    fn render(&self, first_step: u64, body: &mut String) {
        body.clear();
        body.push_str(&self.head);
        let batch = self.values.len() > 1;
        for (offset, fields) in self.values.iter().enumerate() {
            if offset > 0 {
                body.push(',');
            }
            body.push_str(fields);
            let _ = write!(body, "{}", first_step + offset as u64);
            if batch {
                body.push('}');
            }
        }
        body.push_str(self.tail);
    }
}

/// Returns the fields of the value at `offset` in a request, ending with the name of its step.
fn metric_fields(offset: usize) -> String {
    let value = 1.0 / (offset + 1) as f64;
    format!("\"key\":\"loss\",\"value\":{value},\"timestamp\":{INGEST_TIME_MS},\"step\":")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_bodies_carry_consecutive_steps() {
        let template = BodyTemplate::new("r1", 3);
        let mut body = String::from("left from the last request");

        template.render(41, &mut body);

        let parsed: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(parsed["run_id"], "r1");
        let steps: Vec<i64> = parsed["metrics"]
            .as_array()
            .unwrap()
            .iter()
            .map(|metric| metric["step"].as_i64().unwrap())
            .collect();
        assert_eq!(steps, [41, 42, 43]);
        assert_eq!(parsed["metrics"][1]["value"], 0.5);
        assert_eq!(parsed["metrics"][2]["timestamp"], INGEST_TIME_MS);
    }

    #[test]
    fn single_value_bodies_are_log_metric_messages() {
        let template = BodyTemplate::new("r1", 1);
        let mut body = String::new();

        template.render(7, &mut body);

        let parsed: serde_json::Value = serde_json::from_str(&body).unwrap();
        let expected = serde_json::json!({
            "run_id": "r1", "key": "loss", "value": 1, "timestamp": INGEST_TIME_MS, "step": 7
        });
        assert_eq!(parsed, expected);
    }
}
