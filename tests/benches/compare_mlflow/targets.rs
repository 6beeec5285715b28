//! The figures as table rows with their targets, printed and written into BENCHMARKS.md.

use crate::Measured;
use crate::probes::ARTIFACT_BYTES;
use crate::report::{self, Better, Context, Row};
use crate::seed::SEARCH_SIZES;
use anyhow::Result;
use std::path::Path;
use std::time::Duration;

/// runledger's single `runs/log-metric` requests per second over MLflow's best.
const SINGLE_RATIO: f64 = 100.0;
/// runledger's `runs/log-batch` metric values per second over MLflow's best.
const BATCH_RATIO: f64 = 20.0;
/// runledger's `runs/log-batch` metric values per second over the raw SQLite ceiling.
const BATCH_OF_CEILING: f64 = 0.5;
/// How many times faster than MLflow's best runledger's median search over 100,000 runs is.
const SEARCH_RATIO: f64 = 50.0;
/// runledger's idle memory over that of MLflow with one worker.
const IDLE_FRACTION: f64 = 0.1;
/// runledger's memory growth during the 1 GiB transfer, in MiB.
const TRANSFER_GROWTH_MIB: f64 = 64.0;

/// Builds the rows, prints the table, writes it into BENCHMARKS.md and prints the verdicts.
pub(crate) fn report(measured: &Measured, mlflow: &Path) -> Result<()> {
    let rows = rows(measured);
    let context = Context {
        labels: measured.labels.clone(),
        mlflow_version: report::run_output(&mlflow.to_string_lossy(), &["--version"]),
        remarks: measured.remarks.clone(),
        seconds: measured.seconds,
    };
    let generated = report::render(&rows, &context);
    println!("\n{generated}");
    let file = runledger_tests::workspace_root().join("BENCHMARKS.md");
    report::write_section(&file, &generated)?;
    println!("wrote the table into {}", file.display());
    for row in rows.iter().filter(|row| row.met.is_some()) {
        let verdict = if row.met == Some(true) {
            "met"
        } else {
            "MISSED"
        };
        println!("target {}: {} ... {verdict}", row.figure, row.target);
    }
    Ok(())
}

fn rows(measured: &Measured) -> Vec<Row> {
    let mut rows = ingest_rows(measured);
    rows.extend(search_rows(measured));
    rows.push(plain(
        "`metrics/get-history` of 100,000 values, median of 3 (ms)",
        per_server(&measured.history, |times| millis(median(times))),
        Better::Lower,
    ));
    rows.extend(transfer_rows(measured));
    rows.extend(memory_rows(measured));
    rows
}

fn ingest_rows(measured: &Measured) -> Vec<Row> {
    let mut rows = Vec::new();
    for (index, phase) in crate::PHASES.iter().enumerate() {
        let results: Vec<&crate::load::Ingested> = measured.ingested[index].iter().collect();
        let single = phase.metrics_per_request == 1;
        // With one value per request, acknowledged values per second are acknowledged requests
        // per second, so failed requests never raise a rate.
        let values = per_server(&results, |result| result.metrics_per_second());
        let unit = if single {
            "requests/s"
        } else {
            "metric values/s"
        };
        let mut row = plain(
            &format!("`{}` ({unit})", phase.label),
            values,
            Better::Higher,
        );
        let ratio = row.ratio().unwrap_or(0.0);
        if single && phase.clients == 1 && !phase.spins {
            row.target = "the row above with a client that sleeps while it waits".to_owned();
        } else if single {
            row.target = format!("≥ {SINGLE_RATIO:.0} times MLflow's best");
            row.met = Some(ratio >= SINGLE_RATIO);
        } else {
            let ceiling = mean(&measured.ceilings[index]);
            let own = row.values[0].unwrap_or(0.0);
            row.target = format!(
                "≥ {BATCH_RATIO:.0} times MLflow's best and ≥ {BATCH_OF_CEILING} of the \
                 ceiling (runledger at {:.2})",
                own / ceiling
            );
            row.met = Some(ratio >= BATCH_RATIO && own >= BATCH_OF_CEILING * ceiling);
        }
        rows.push(row);
    }
    rows.push(ceiling_row(measured));
    rows.push(floor_row(measured, &rows[0]));
    rows.push(loopback_row(measured, &rows[0]));
    rows
}

/// Builds the row of the raw SQLite ceiling with the mean of all measurements, listing each in
/// the target column. Each `runs/log-batch` row uses its own phase's mean instead.
fn ceiling_row(measured: &Measured) -> Row {
    let ceilings: Vec<f64> = measured.ceilings.iter().flatten().copied().collect();
    let mut row = plain(
        "Raw SQLite ceiling: one prepared `INSERT` in one transaction, mean (rows/s)",
        [Some(mean(&ceilings)), None, None],
        Better::None,
    );
    let measurements: Vec<String> = ceilings
        .iter()
        .map(|rows_per_second| report::format_number(*rows_per_second))
        .collect();
    row.target = format!(
        "measured before each `runs/log-batch` round of runledger: {}",
        measurements.join(", ")
    );
    row
}

/// Returns the mean of `values`, or NaN when there are none.
fn mean(values: &[f64]) -> f64 {
    values.iter().sum::<f64>() / values.len() as f64
}

/// Builds the row of the empty exchange from one client: the most runledger could reach in the
/// single-client `runs/log-metric` row `single`.
fn floor_row(measured: &Measured, single: &Row) -> Row {
    bound_row(
        "Empty exchange from 1 client, `GET /healthz` on runledger (requests/s)",
        measured.empty_exchanges_per_second,
        "upper bound of runledger's 1-client rows",
        single,
    )
}

/// Builds the row of the responder that does no work: the most any server that sleeps between
/// requests could reach in the row `single` on this machine.
fn loopback_row(measured: &Measured, single: &Row) -> Row {
    bound_row(
        "Exchange from 1 client with a responder that does no work (requests/s)",
        measured.loopback_floor_per_second,
        "upper bound of any server that sleeps between requests",
        single,
    )
}

/// Builds a row of runledger's column only, whose target column gives `rate` as a multiple of
/// MLflow's best single-client `runs/log-metric` rate in `single`.
fn bound_row(label: &str, rate: f64, bound: &str, single: &Row) -> Row {
    let mut row = plain(label, [Some(rate), None, None], Better::None);
    if let Some(times) = times_best_mlflow(rate, single) {
        row.target = format!("{bound}: {times:.0} times MLflow's best `runs/log-metric`");
    }
    row
}

/// Returns `rate` over MLflow's best value in `single`, or `None` when MLflow has none.
fn times_best_mlflow(rate: f64, single: &Row) -> Option<f64> {
    let best_mlflow = single.values[1..]
        .iter()
        .flatten()
        .fold(0.0_f64, |best, value| best.max(*value));
    (best_mlflow > 0.0).then(|| rate / best_mlflow)
}

fn search_rows(measured: &Measured) -> Vec<Row> {
    let mut rows = Vec::new();
    for (slot, size) in SEARCH_SIZES.iter().enumerate() {
        let latencies = &measured.search[slot];
        let size = report::format_number(*size as f64);
        let mut p50 = plain(
            &format!("`runs/search` over {size} runs, p50 (ms)"),
            per_server(latencies, |list| millis(percentile(list, 0.50))),
            Better::Lower,
        );
        if slot + 1 == SEARCH_SIZES.len() {
            p50.target = format!("≥ {SEARCH_RATIO:.0} times faster than MLflow's best");
            p50.met = Some(p50.ratio().unwrap_or(0.0) >= SEARCH_RATIO);
        }
        rows.push(p50);
        rows.push(plain(
            &format!("`runs/search` over {size} runs, p99 (ms)"),
            per_server(latencies, |list| millis(percentile(list, 0.99))),
            Better::Lower,
        ));
    }
    rows
}

fn transfer_rows(measured: &Measured) -> Vec<Row> {
    let megabytes_per_second = |time: &Duration| ARTIFACT_BYTES as f64 / 1e6 / time.as_secs_f64();
    let mut growth = plain(
        "Peak RSS growth during the 1 GiB upload and download (MiB)",
        per_server(&measured.transfer_growth_kib, |kib| *kib as f64 / 1024.0),
        Better::None,
    );
    let own_growth = growth.values[0].unwrap_or(f64::INFINITY);
    growth.target = format!("runledger < {TRANSFER_GROWTH_MIB:.0} MiB");
    growth.met = Some(own_growth < TRANSFER_GROWTH_MIB);
    vec![
        plain(
            "1 GiB artifact upload through the proxy (MB/s)",
            per_server(&measured.upload, megabytes_per_second),
            Better::Higher,
        ),
        plain(
            "1 GiB artifact download through the proxy (MB/s)",
            per_server(&measured.download, megabytes_per_second),
            Better::Higher,
        ),
        plain(
            "Peak RSS during the 1 GiB upload and download (MiB)",
            per_server(&measured.transfer_peak_kib, |kib| *kib as f64 / 1024.0),
            Better::Smaller,
        ),
        growth,
    ]
}

fn memory_rows(measured: &Measured) -> Vec<Row> {
    let mut idle = plain(
        "Idle RSS after start, server processes: runledger, MLflow's uvicorn (MiB)",
        per_server(&measured.idle_server_kib, |kib| *kib as f64 / 1024.0),
        Better::Smaller,
    );
    idle.target = format!("≤ {IDLE_FRACTION} of MLflow with 1 worker");
    idle.met = Some(idle.ratio().unwrap_or(f64::INFINITY) <= IDLE_FRACTION);
    let mut idle_tree = plain(
        "Idle RSS after start, whole process tree (MiB)",
        per_server(&measured.idle_kib, |kib| *kib as f64 / 1024.0),
        Better::Smaller,
    );
    idle_tree.target = idle.target.clone();
    idle_tree.met = Some(idle_tree.ratio().unwrap_or(f64::INFINITY) <= IDLE_FRACTION);
    let load = plain(
        "Peak RSS under the 16-client loads (MiB)",
        per_server(&measured.load_peak_kib, |kib| *kib as f64 / 1024.0),
        Better::Smaller,
    );
    vec![idle, idle_tree, load]
}

fn plain(figure: &str, values: [Option<f64>; 3], better: Better) -> Row {
    Row {
        figure: figure.to_owned(),
        values,
        better,
        target: String::new(),
        met: None,
    }
}

/// Applies `figure` to the first three entries, one per server.
fn per_server<T>(items: &[T], figure: impl Fn(&T) -> f64) -> [Option<f64>; 3] {
    [0, 1, 2].map(|index| items.get(index).map(&figure))
}

fn millis(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

fn median(sorted: &[Duration]) -> Duration {
    percentile(sorted, 0.5)
}

/// Returns the value at `fraction` of a sorted list, by nearest rank.
fn percentile(sorted: &[Duration], fraction: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let index = ((sorted.len() - 1) as f64 * fraction).round() as usize;
    sorted[index]
}
