//! The data that the search and history figures read, generated from run indexes so both
//! servers hold the same runs.
//!
//! Each searched run has params `p0`..`p9` (values `v0`..`v9`) and metrics `m0`..`m9`
//! (values in [0, 1)), all derived from a hash of the run's set and index, and the name
//! `search<SET>-<INDEX>`, where SET is the number of runs in its experiment `search-<SET>`. The
//! history run holds one metric, `loss`, with [`HISTORY_POINTS`] values at steps 0, 1, 2, ...
//!
//! MLflow's database is written with SQL straight into its tables after `mlflow server` ran its
//! migrations, as rows equal to what its SQL store writes for a run created over REST: a
//! `runs` row, one `tags` row for `mlflow.runName`, ten `params` rows, and ten `metrics` and ten
//! `latest_metrics` rows. runledger's database is written through its `Store`, the functions
//! that its MLflow routes call.

use anyhow::{Context as _, Result};
use futures_util::{StreamExt as _, TryStreamExt as _};
use runledger::store::{NewExternalRun, NewMetric, Store};
use sea_orm::sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};
use sea_orm::sqlx::{Connection as _, QueryBuilder, Sqlite};
use std::path::Path;

/// Runs in each searched experiment.
pub(crate) const SEARCH_SIZES: [u64; 2] = [10_000, 100_000];

/// Params and metrics per searched run.
const KEYS_PER_RUN: u64 = 10;

/// Values of the history run's series.
pub(crate) const HISTORY_POINTS: u64 = 100_000;

/// Name of the history run's experiment.
pub(crate) const HISTORY_EXPERIMENT: &str = "history";

/// Metric key of the history series.
pub(crate) const HISTORY_KEY: &str = "loss";

/// The search filter: about half of the runs pass the metric test and a tenth the param test.
pub(crate) const SEARCH_FILTER: &str = "metrics.m0 > 0.5 and params.p1 = 'v3'";

/// The search order; metric values are distinct, so the order is total.
pub(crate) const SEARCH_ORDER: &str = "metrics.m1 DESC";

/// Start time of every seeded run, in milliseconds since the Unix epoch (2026-01-01).
const BASE_TIME_MS: i64 = 1_767_225_600_000;

/// Runs written per group of multi-row statements into MLflow's database.
const MLFLOW_RUNS_PER_STATEMENT: usize = 100;

/// Runs written to runledger's store at the same time.
const RUNLEDGER_CONCURRENT_RUNS: usize = 4;

/// Name of the searched experiment with `size` runs.
pub(crate) fn search_experiment(size: u64) -> String {
    format!("search-{size}")
}

/// One generated run.
pub(crate) struct SeedRun {
    /// MLflow run id: 32 lowercase hex digits.
    uuid: String,
    name: String,
    params: Vec<(String, String)>,
    metrics: Vec<(String, f64)>,
    start_ms: i64,
}

/// Mixes a 64-bit value (SplitMix64's finalizer), so nearby indexes give unrelated values.
fn mix(value: u64) -> u64 {
    let mut z = value.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Builds run `index` of the experiment with `size` runs.
pub(crate) fn seed_run(size: u64, index: u64) -> SeedRun {
    let base = (size << 32) | index;
    let params = (0..KEYS_PER_RUN)
        .map(|key| (format!("p{key}"), format!("v{}", mix(base * 64 + key) % 10)))
        .collect();
    let metrics = (0..KEYS_PER_RUN)
        .map(|key| {
            let bits = mix(base * 64 + 32 + key) >> 11;
            (format!("m{key}"), bits as f64 / (1u64 << 53) as f64)
        })
        .collect();
    SeedRun {
        uuid: format!("{:016x}{:016x}", mix(base), mix(!base)),
        name: format!("search{size}-{index:06}"),
        params,
        metrics,
        start_ms: BASE_TIME_MS + index as i64,
    }
}

/// Counts the runs of the experiment with `size` runs that [`SEARCH_FILTER`] selects.
pub(crate) fn expected_matches(size: u64) -> u64 {
    (0..size)
        .map(|index| seed_run(size, index))
        .filter(|run| run.metrics[0].1 > 0.5 && run.params[1].1 == "v3")
        .count() as u64
}

/// Value of the history series at `step`.
fn history_value(step: u64) -> f64 {
    1.0 / (step + 1) as f64
}

/// MLflow run id of the history run.
pub(crate) const MLFLOW_HISTORY_RUN: &str = "00000000000000000000000000000a11";

/// Experiment ids that `mlflow server` gave the seeded experiments.
pub(crate) struct MlflowExperiments {
    /// Experiment id per entry of [`SEARCH_SIZES`].
    pub(crate) search: Vec<String>,
    /// Experiment id of the history run.
    pub(crate) history: String,
}

/// Writes the searched runs and the history run into MLflow's SQLite database, whose
/// experiments exist already.
pub(crate) async fn seed_mlflow(database: &Path, experiments: &MlflowExperiments) -> Result<()> {
    let options = SqliteConnectOptions::new().filename(database);
    let mut connection = SqliteConnection::connect_with(&options)
        .await
        .with_context(|| format!("cannot open MLflow's database {}", database.display()))?;
    let mut transaction = connection.begin().await?;
    for (size, experiment) in SEARCH_SIZES.iter().zip(&experiments.search) {
        let runs: Vec<SeedRun> = (0..*size).map(|index| seed_run(*size, index)).collect();
        for group in runs.chunks(MLFLOW_RUNS_PER_STATEMENT) {
            insert_mlflow_runs(&mut transaction, experiment, group).await?;
        }
    }
    insert_mlflow_history(&mut transaction, &experiments.history).await?;
    transaction.commit().await?;
    connection.close().await?;
    Ok(())
}

/// Inserts the rows of `runs` into MLflow's tables. A run without params, the history run,
/// gets only its `runs` and `tags` rows.
async fn insert_mlflow_runs(
    connection: &mut SqliteConnection,
    experiment: &str,
    runs: &[SeedRun],
) -> Result<()> {
    let experiment_id: i64 = experiment.parse()?;
    let mut insert = QueryBuilder::<Sqlite>::new(
        "INSERT INTO runs (run_uuid, name, source_type, source_name, entry_point_name, user_id, \
         status, start_time, end_time, source_version, lifecycle_stage, artifact_uri, \
         experiment_id, deleted_time) ",
    );
    insert.push_values(runs, |mut row, run| {
        row.push_bind(&run.uuid)
            .push_bind(&run.name)
            .push_bind("LOCAL")
            .push_bind("")
            .push_bind("")
            .push_bind("bench")
            .push_bind("RUNNING")
            .push_bind(run.start_ms)
            .push_bind(None::<i64>)
            .push_bind("")
            .push_bind("active")
            .push_bind(format!(
                "mlflow-artifacts:/{experiment}/{}/artifacts",
                run.uuid
            ))
            .push_bind(experiment_id)
            .push_bind(None::<i64>);
    });
    insert.build().execute(&mut *connection).await?;

    let mut tags = QueryBuilder::<Sqlite>::new("INSERT INTO tags (key, value, run_uuid) ");
    tags.push_values(runs, |mut row, run| {
        row.push_bind("mlflow.runName")
            .push_bind(&run.name)
            .push_bind(&run.uuid);
    });
    tags.build().execute(&mut *connection).await?;

    if runs.iter().all(|run| run.params.is_empty()) {
        return Ok(());
    }
    let params = runs.iter().flat_map(|run| {
        let uuid = &run.uuid;
        run.params.iter().map(move |param| (uuid, param))
    });
    let mut insert = QueryBuilder::<Sqlite>::new("INSERT INTO params (key, value, run_uuid) ");
    insert.push_values(params, |mut row, (uuid, (key, value))| {
        row.push_bind(key).push_bind(value).push_bind(uuid);
    });
    insert.build().execute(&mut *connection).await?;

    for table in ["metrics", "latest_metrics"] {
        let values = runs.iter().flat_map(|run| {
            let (uuid, time) = (&run.uuid, run.start_ms);
            run.metrics
                .iter()
                .map(move |(key, value)| (uuid, key, *value, time, 0))
        });
        insert_mlflow_metrics(connection, table, values).await?;
    }
    Ok(())
}

/// Inserts `(run_uuid, key, value, timestamp, step)` rows into `metrics` or `latest_metrics`.
async fn insert_mlflow_metrics<'a>(
    connection: &mut SqliteConnection,
    table: &str,
    values: impl Iterator<Item = (&'a String, &'a String, f64, i64, i64)>,
) -> Result<()> {
    let mut insert = QueryBuilder::<Sqlite>::new(format!(
        "INSERT INTO {table} (key, value, timestamp, step, is_nan, run_uuid) "
    ));
    insert.push_values(values, |mut row, (uuid, key, value, time, step)| {
        row.push_bind(key)
            .push_bind(value)
            .push_bind(time)
            .push_bind(step)
            .push_bind(false)
            .push_bind(uuid);
    });
    insert.build().execute(&mut *connection).await?;
    Ok(())
}

async fn insert_mlflow_history(connection: &mut SqliteConnection, experiment: &str) -> Result<()> {
    let uuid = MLFLOW_HISTORY_RUN.to_owned();
    let mut run = seed_run(0, 0);
    run.uuid = uuid.clone();
    run.name = "history".to_owned();
    run.params.clear();
    run.metrics.clear();
    insert_mlflow_runs(connection, experiment, std::slice::from_ref(&run)).await?;

    let key = HISTORY_KEY.to_owned();
    let steps: Vec<u64> = (0..HISTORY_POINTS).collect();
    for chunk in steps.chunks(5_000) {
        let values = chunk.iter().map(|&step| {
            let time = BASE_TIME_MS + step as i64;
            (&uuid, &key, history_value(step), time, step as i64)
        });
        insert_mlflow_metrics(connection, "metrics", values).await?;
    }
    let last = HISTORY_POINTS - 1;
    let latest = (
        &uuid,
        &key,
        history_value(last),
        BASE_TIME_MS + last as i64,
        last as i64,
    );
    insert_mlflow_metrics(connection, "latest_metrics", std::iter::once(latest)).await
}

/// Writes the searched runs and the history run through runledger's store, and returns the
/// id of the history run.
pub(crate) async fn seed_runledger(store: &Store) -> Result<String> {
    for size in SEARCH_SIZES {
        let experiment = search_experiment(size);
        store
            .mlflow_create_experiment(&experiment, None, &[])
            .await?;
        futures_util::stream::iter((0..size).map(|index| seed_run(size, index)))
            .map(|run| write_runledger_run(store, &experiment, run))
            .buffer_unordered(RUNLEDGER_CONCURRENT_RUNS)
            .try_collect::<()>()
            .await?;
    }
    store
        .mlflow_create_experiment(HISTORY_EXPERIMENT, None, &[])
        .await?;
    let history = create_runledger_run(
        store,
        HISTORY_EXPERIMENT,
        "history",
        BASE_TIME_MS,
        Vec::new(),
    )
    .await?;
    let steps: Vec<u64> = (0..HISTORY_POINTS).collect();
    for chunk in steps.chunks(1_000) {
        let values: Vec<NewMetric> = chunk
            .iter()
            .map(|&step| {
                let time = BASE_TIME_MS + step as i64;
                new_metric(HISTORY_KEY, history_value(step), step as i64, time)
            })
            .collect();
        store.log_metrics(&history, &values).await?;
    }
    Ok(history)
}

async fn write_runledger_run(store: &Store, experiment: &str, run: SeedRun) -> Result<()> {
    let id = create_runledger_run(store, experiment, &run.name, run.start_ms, run.params).await?;
    let metrics: Vec<NewMetric> = run
        .metrics
        .iter()
        .map(|(key, value)| new_metric(key, *value, 0, run.start_ms))
        .collect();
    store.log_metrics(&id, &metrics).await?;
    Ok(())
}

async fn create_runledger_run(
    store: &Store,
    experiment: &str,
    name: &str,
    start_ms: i64,
    params: Vec<(String, String)>,
) -> Result<String> {
    let new = NewExternalRun {
        project: experiment.to_owned(),
        name: name.to_owned(),
        user_name: "bench".to_owned(),
        started_at: Some(start_ms),
        params,
        tags: vec![("mlflow.runName".to_owned(), name.to_owned())],
    };
    Ok(store.create_external_run(new).await?.run.id)
}

fn new_metric(key: &str, value: f64, step: i64, timestamp_ms: i64) -> NewMetric {
    NewMetric {
        step_run_id: None,
        key: key.to_owned(),
        value,
        step,
        timestamp_ms,
    }
}
