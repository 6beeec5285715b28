//! runledger beside MLflow's own tracking server, over MLflow's REST protocol.
//!
//! It starts the dev build of `runledger serve` on SQLite and `mlflow server` (from the venv
//! `target/bench-venv`) twice, with its default worker count and with one worker, each on its
//! own SQLite database and artifact directory. One load generator then drives all three in
//! alternating rounds, so machine noise hits each alike. It sends single `runs/log-metric`
//! requests and 1,000-metric `runs/log-batch` requests from 1 and 16 keep-alive clients,
//! searches 10,000 and 100,000 seeded runs with `runs/search`, reads a 100,000-value series with
//! `metrics/get-history`, and moves a 1 GiB artifact through the artifact proxy. It samples each
//! server's resident memory, compares ingestion with rows inserted straight into SQLite and one
//! client's rate with an empty exchange, checks that every acknowledged metric is stored, and
//! writes the table into BENCHMARKS.md.
//!
//! Run it with `cargo xtask bench compare-mlflow`, which installs MLflow into the venv and
//! builds the binary first.

mod ceiling;
mod floor;
mod load;
mod memory;
mod probes;
mod report;
mod seed;
mod servers;
mod stored;
mod targets;

use anyhow::{Context as _, Result, bail, ensure};
use load::{Ingested, Phase, call, client};
use runledger::store::Store;
use runledger_tests::server::ServerProcess;
use runledger_tests::{Backend, Cli, workspace_root};
use servers::{MlflowProcess, MlflowSetup, Server};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Measured rounds of each phase on each server.
const ROUNDS: usize = 2;

/// The ingestion phases, in the order they run. The first is the single-client figure, and the
/// second repeats it with a client that sleeps from the start of each wait. Sixteen clients do
/// not spin, because on two cores they would take the CPU from the servers.
const PHASES: [Phase; 5] = [
    Phase {
        label: "runs/log-metric, 1 client",
        clients: 1,
        metrics_per_request: 1,
        spins: true,
        round: Duration::from_secs(4),
    },
    Phase {
        label: "runs/log-metric, 1 client with blocking reads",
        clients: 1,
        metrics_per_request: 1,
        spins: false,
        round: Duration::from_secs(4),
    },
    Phase {
        label: "runs/log-metric, 16 clients",
        clients: 16,
        metrics_per_request: 1,
        spins: false,
        round: Duration::from_secs(5),
    },
    Phase {
        label: "runs/log-batch of 1,000, 1 client",
        clients: 1,
        metrics_per_request: load::BATCH_SIZE,
        spins: true,
        round: Duration::from_secs(5),
    },
    Phase {
        label: "runs/log-batch of 1,000, 16 clients",
        clients: 16,
        metrics_per_request: load::BATCH_SIZE,
        spins: false,
        round: Duration::from_secs(5),
    },
];

/// Time of the empty exchanges that measure the single-client floor.
const FLOOR_ROUND: Duration = Duration::from_secs(4);

/// Time of the first-page searches per round, server and experiment.
const SEARCH_ROUND: Duration = Duration::from_secs(3);

/// Searches per round and server over each experiment of [`seed::SEARCH_SIZES`], even when
/// they take longer than [`SEARCH_ROUND`]. MLflow 3.17 on SQLite takes seconds per search over
/// 10,000 runs and tens of seconds over 100,000 here, so more would not end in 20 minutes.
const SEARCH_MINIMUM: [usize; 2] = [3, 1];

/// Reads of the whole history per server.
const HISTORY_READS: usize = 3;

/// Wait after the servers started before their idle memory is read, so start-up work ends.
const IDLE_SETTLE: Duration = Duration::from_secs(5);

/// Ids of the seeded data and the ingestion experiment on one server.
struct ServerData {
    search_experiments: Vec<String>,
    history_experiment: String,
    history_run: String,
    ingest_experiment: String,
}

/// Everything measured, per server in the order runledger, MLflow default, MLflow one worker.
pub(crate) struct Measured {
    /// Column headings.
    pub(crate) labels: [String; 3],
    /// Rows per second of the raw SQLite insert per phase of [`PHASES`], measured before each of
    /// runledger's `runs/log-batch` rounds. The phases of single values have none.
    pub(crate) ceilings: Vec<Vec<f64>>,
    /// Empty exchanges per second from one client to runledger: the single-client floor.
    pub(crate) empty_exchanges_per_second: f64,
    /// Exchanges per second from one client with a responder that does no work: the floor of
    /// this machine's loopback round trip.
    pub(crate) loopback_floor_per_second: f64,
    /// Resident memory of the whole process tree after start, in KiB.
    pub(crate) idle_kib: Vec<u64>,
    /// Resident memory after start of the HTTP server processes alone, in KiB: for MLflow its
    /// uvicorn processes, without the `mlflow server` launcher and the job runner.
    pub(crate) idle_server_kib: Vec<u64>,
    /// Peak resident memory during the 16-client rounds, in KiB.
    pub(crate) load_peak_kib: Vec<u64>,
    /// Ingestion results per phase of [`PHASES`], then per server.
    pub(crate) ingested: Vec<Vec<Ingested>>,
    /// Sorted search latencies per entry of [`seed::SEARCH_SIZES`], then per server.
    pub(crate) search: Vec<Vec<Vec<Duration>>>,
    /// Sorted times of the whole history read, per server.
    pub(crate) history: Vec<Vec<Duration>>,
    /// Time of the 1 GiB upload, per server.
    pub(crate) upload: Vec<Duration>,
    /// Time of the 1 GiB download, per server.
    pub(crate) download: Vec<Duration>,
    /// Peak minus starting resident memory during the transfer, in KiB.
    pub(crate) transfer_growth_kib: Vec<u64>,
    /// Peak resident memory during the transfer, in KiB.
    pub(crate) transfer_peak_kib: Vec<u64>,
    /// Notes for the report, such as failed requests.
    pub(crate) remarks: Vec<String>,
    /// Wall time of the whole benchmark, in seconds.
    pub(crate) seconds: f64,
}

fn main() -> Result<()> {
    let started = Instant::now();
    let mlflow = mlflow_executable()?;
    let scratch = tempfile::Builder::new()
        .prefix("compare-mlflow-")
        .tempdir_in(workspace_root().join("target"))
        .context("cannot create a scratch directory under target/")?;
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(run(&mlflow, scratch.path(), started))
}

/// Returns the `mlflow` executable of the benchmark's venv, or `RUNLEDGER_BENCH_MLFLOW` when set.
fn mlflow_executable() -> Result<PathBuf> {
    let path = std::env::var_os("RUNLEDGER_BENCH_MLFLOW")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target/bench-venv/bin/mlflow"));
    ensure!(
        path.is_file(),
        "{} is missing: run `cargo xtask bench compare-mlflow`, which installs MLflow",
        path.display()
    );
    Ok(path)
}

async fn run(mlflow: &Path, scratch: &Path, started: Instant) -> Result<()> {
    let setups = mlflow_setups(mlflow, scratch);
    // The server loads the first-party plugins, as a deployment would. The test corpus, with
    // its deliberately broken and probing plugins, is for the tests.
    let cli = Cli::new(Backend::Sqlite).with_plugin_dirs(vec![runledger_tests::plugins_dir()]);
    seed_databases(&setups, &cli).await?;

    let servers = start_servers(&cli, &setups).await?;
    tokio::time::sleep(IDLE_SETTLE).await;
    let idle_kib = servers
        .iter()
        .map(|server| server.memory.current_kib())
        .collect();
    let idle_server_kib = servers
        .iter()
        // NOTE: uvicorn starts the workers of `--workers 4` through multiprocessing, whose
        // command lines do not name uvicorn, so for MLflow's default this sums the supervisor
        // alone. The one-worker figure, which the target uses, is the serving process.
        .map(|server| server.memory.current_kib_of("uvicorn"))
        .collect();
    let mut data = Vec::new();
    for server in &servers {
        data.push(server_data(server).await?);
    }
    let mut measured = Measured {
        labels: labels(&servers),
        ceilings: Vec::new(),
        empty_exchanges_per_second: 0.0,
        loopback_floor_per_second: 0.0,
        idle_kib,
        idle_server_kib,
        load_peak_kib: vec![0; 3],
        ingested: Vec::new(),
        search: Vec::new(),
        history: Vec::new(),
        upload: Vec::new(),
        download: Vec::new(),
        transfer_growth_kib: Vec::new(),
        transfer_peak_kib: Vec::new(),
        remarks: Vec::new(),
        seconds: 0.0,
    };
    ingest(&servers, &data, scratch, &mut measured).await?;
    measured.loopback_floor_per_second = load::loopback_floor_rate(FLOOR_ROUND).await?;
    println!(
        "exchanges from 1 client with a responder that does no work: {:.0}/s",
        measured.loopback_floor_per_second
    );
    measured.empty_exchanges_per_second =
        load::empty_exchange_rate(&servers[0], FLOOR_ROUND).await?;
    println!(
        "empty exchanges from 1 client (GET /healthz on runledger): {:.0}/s",
        measured.empty_exchanges_per_second
    );
    search(&servers, &data, &mut measured).await?;
    history(&servers, &data, &mut measured).await?;
    transfer(&servers, &data, &mut measured).await?;
    for server in servers {
        server.stop()?;
    }

    let stored = stored::count(&cli, &setups, &measured.ingested).await?;
    stored::check(&mut measured, &stored)?;
    measured.seconds = started.elapsed().as_secs_f64();
    targets::report(&measured, setups[0].executable)
}

/// Returns the column headings, in the order of `servers`.
fn labels(servers: &[Server]) -> [String; 3] {
    [0, 1, 2].map(|index| servers[index].label.to_owned())
}

/// MLflow with its default worker count, and with one worker.
fn mlflow_setups<'a>(mlflow: &'a Path, scratch: &Path) -> [MlflowSetup<'a>; 2] {
    let setup = |name: &str, workers| MlflowSetup {
        executable: mlflow,
        database: scratch.join(format!("{name}.db")),
        artifacts: scratch.join(format!("{name}-artifacts")),
        workers,
        log: scratch.join(format!("{name}.log")),
    };
    [
        setup("mlflow-default", None),
        setup("mlflow-one-worker", Some(1)),
    ]
}

/// Seeds MLflow's first database, copies it to the second, and seeds runledger's.
async fn seed_databases(setups: &[MlflowSetup<'_>; 2], cli: &Cli) -> Result<()> {
    let started = Instant::now();
    let first = &setups[0];
    let process = MlflowProcess::start(first).await?;
    let server = Server::mlflow("seed", process);
    let mut search = Vec::new();
    for size in seed::SEARCH_SIZES {
        search.push(load::create_experiment(&server, &seed::search_experiment(size)).await?);
    }
    let history = load::create_experiment(&server, seed::HISTORY_EXPERIMENT).await?;
    server.stop()?;
    let experiments = seed::MlflowExperiments { search, history };
    seed::seed_mlflow(&first.database, &experiments).await?;
    std::fs::copy(&first.database, &setups[1].database)?;
    println!(
        "seeded MLflow's database in {:.0} s",
        started.elapsed().as_secs_f64()
    );

    let started = Instant::now();
    let store = Store::open_sqlite(cli.data_dir()).await?;
    seed::seed_runledger(&store).await?;
    store.close().await?;
    println!(
        "seeded runledger's database in {:.0} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

async fn start_servers(cli: &Cli, setups: &[MlflowSetup<'_>; 2]) -> Result<Vec<Server>> {
    let runledger = Server::runledger("runledger", ServerProcess::start(cli, &[]));
    let default = MlflowProcess::start(&setups[0]).await?;
    let one = MlflowProcess::start(&setups[1]).await?;
    let servers = vec![
        runledger,
        Server::mlflow("MLflow, 4 workers (default)", default),
        Server::mlflow("MLflow, 1 worker", one),
    ];
    for server in &servers {
        println!("{} at {}", server.label, server.base);
    }
    Ok(servers)
}

/// Looks the seeded experiments up by name and creates the ingestion experiment.
async fn server_data(server: &Server) -> Result<ServerData> {
    let mut search_experiments = Vec::new();
    for size in seed::SEARCH_SIZES {
        search_experiments.push(experiment_id(server, &seed::search_experiment(size)).await?);
    }
    let history_experiment = experiment_id(server, seed::HISTORY_EXPERIMENT).await?;
    let history_run = history_run(server, &history_experiment).await?;
    let ingest_experiment = load::create_experiment(server, "ingest").await?;
    Ok(ServerData {
        search_experiments,
        history_experiment,
        history_run,
        ingest_experiment,
    })
}

async fn experiment_id(server: &Server, name: &str) -> Result<String> {
    let client = client()?;
    let endpoint = server.endpoint("experiments/get-by-name");
    let url = reqwest::Url::parse_with_params(&endpoint, [("experiment_name", name)])?;
    let found = call(&client, client.get(url)).await?;
    found["experiment"]["experiment_id"]
        .as_str()
        .map(str::to_owned)
        .with_context(|| format!("{}: experiment {name} has no id: {found}", server.label))
}

/// Finds the id of the one run of the history experiment.
async fn history_run(server: &Server, experiment: &str) -> Result<String> {
    let client = client()?;
    let body = serde_json::json!({ "experiment_ids": [experiment], "max_results": 10 });
    let found = call(
        &client,
        client.post(server.endpoint("runs/search")).json(&body),
    )
    .await?;
    let runs = found["runs"].as_array().cloned().unwrap_or_default();
    if runs.len() != 1 {
        bail!(
            "{}: the history experiment has {} runs, expected 1",
            server.label,
            runs.len()
        );
    }
    runs[0]["info"]["run_id"]
        .as_str()
        .map(str::to_owned)
        .context("the history run has no id")
}

/// Runs the rounds of every ingestion phase. The raw SQLite ceiling is measured again before
/// each of runledger's `runs/log-batch` rounds, so the host's drift moves both sides of the ratio.
async fn ingest(
    servers: &[Server],
    data: &[ServerData],
    scratch: &Path,
    measured: &mut Measured,
) -> Result<()> {
    for (phase_index, phase) in PHASES.iter().enumerate() {
        let mut results = Vec::new();
        for (server, data) in servers.iter().zip(data) {
            results.push(load::prepare(server, &data.ingest_experiment, phase).await?);
        }
        let mut ceilings = Vec::new();
        for round in 0..ROUNDS {
            for (index, server) in servers.iter().enumerate() {
                // runledger is the first server.
                if index == 0 && phase.metrics_per_request > 1 {
                    let dir = scratch.join(format!("ceiling-{phase_index}-{round}"));
                    ceilings.push(ceiling::rows_per_second(&dir).await?);
                }
                server.memory.reset();
                load::round(server, phase, &mut results[index]).await?;
                if phase.clients == 16 {
                    let peak = server.memory.peak_kib();
                    measured.load_peak_kib[index] = measured.load_peak_kib[index].max(peak);
                }
            }
        }
        for (server, result) in servers.iter().zip(&results) {
            println!(
                "{:<46} {:<26} {:>10.0} requests/s {:>12.0} metrics/s {:>6} failed",
                phase.label,
                server.label,
                result.requests_per_second(),
                result.metrics_per_second(),
                result.failures
            );
        }
        for rows_per_second in &ceilings {
            println!(
                "{:<38} raw SQLite ceiling {rows_per_second:>24.0} rows/s",
                phase.label
            );
        }
        measured.ingested.push(results);
        measured.ceilings.push(ceilings);
    }
    Ok(())
}

async fn search(servers: &[Server], data: &[ServerData], measured: &mut Measured) -> Result<()> {
    for slot in 0..seed::SEARCH_SIZES.len() {
        check_search(servers, data, slot, measured).await?;
    }
    for (slot, minimum) in SEARCH_MINIMUM.iter().enumerate() {
        let mut latencies = vec![Vec::new(); servers.len()];
        for _ in 0..ROUNDS {
            for (index, (server, data)) in servers.iter().zip(data).enumerate() {
                let experiment = &data.search_experiments[slot];
                let round =
                    probes::search_latencies(server, experiment, SEARCH_ROUND, *minimum).await?;
                latencies[index].extend(round);
            }
        }
        for list in &mut latencies {
            list.sort_unstable();
        }
        let counts: Vec<String> = latencies
            .iter()
            .map(|list| list.len().to_string())
            .collect();
        measured.remarks.push(format!(
            "Searches timed over {} runs: {} (runledger, MLflow default, MLflow 1 worker).",
            report::format_number(seed::SEARCH_SIZES[slot] as f64),
            counts.join(", ")
        ));
        measured.search.push(latencies);
    }
    Ok(())
}

/// Fails unless every server's search over the experiment of `slot` matches the expected
/// number of runs, and notes a first page ordered differently from runledger's.
async fn check_search(
    servers: &[Server],
    data: &[ServerData],
    slot: usize,
    measured: &mut Measured,
) -> Result<()> {
    let size = seed::SEARCH_SIZES[slot];
    let expected = seed::expected_matches(size);
    let mut reference: Option<Vec<String>> = None;
    for (server, data) in servers.iter().zip(data) {
        let found = probes::search_all(server, &data.search_experiments[slot]).await?;
        ensure!(
            found.count == expected,
            "{}: the search over {size} runs matched {} runs, expected {expected}",
            server.label,
            found.count
        );
        match &reference {
            None => reference = Some(found.first_names),
            Some(names) if *names != found.first_names => measured.remarks.push(format!(
                "{} orders the first page of the search over {size} runs differently from \
                 runledger.",
                server.label
            )),
            Some(_) => {}
        }
    }
    println!("search over {size} runs: every server matched {expected} runs");
    Ok(())
}

async fn history(servers: &[Server], data: &[ServerData], measured: &mut Measured) -> Result<()> {
    let mut times = vec![Vec::new(); servers.len()];
    for _ in 0..HISTORY_READS {
        for (index, (server, data)) in servers.iter().zip(data).enumerate() {
            let (count, elapsed) =
                probes::read_history(server, &data.history_run, seed::HISTORY_KEY).await?;
            ensure!(
                count == seed::HISTORY_POINTS,
                "{}: get-history returned {count} values, expected {}",
                server.label,
                seed::HISTORY_POINTS
            );
            times[index].push(elapsed);
        }
    }
    for list in &mut times {
        list.sort_unstable();
    }
    measured.history = times;
    Ok(())
}

async fn transfer(servers: &[Server], data: &[ServerData], measured: &mut Measured) -> Result<()> {
    let artifact = probes::Artifact::generate();
    for (server, data) in servers.iter().zip(data) {
        let run = load::create_run(server, &data.history_experiment, "artifact").await?;
        let url = probes::artifact_url(server, &data.history_experiment, &run, "one-gib.bin");
        let before = server.memory.reset();
        let upload = probes::upload(&artifact, &url).await?;
        let download = probes::download(&artifact, &url).await?;
        let peak = server.memory.peak_kib();
        println!(
            "{:<26} 1 GiB upload {:.1} s, download {:.1} s, peak RSS {} MiB",
            server.label,
            upload.as_secs_f64(),
            download.as_secs_f64(),
            peak / 1024
        );
        measured.upload.push(upload);
        measured.download.push(download);
        measured.transfer_peak_kib.push(peak);
        measured
            .transfer_growth_kib
            .push(peak.saturating_sub(before));
    }
    Ok(())
}
