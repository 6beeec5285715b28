//! `runledger runs list|show|logs|metric|diff|validate`.

use super::attachments::PluginArgs;
use super::context::{cli_actor, gates_of, open_engine, open_store, tokio_runtime};
use super::run::{format_metric, parse_key_value};
use super::validation::{EXIT_BLOCKED, Tally, print_tally, print_validations};
use crate::config::Config;
use crate::gates::Trigger;
use crate::runtime::PluginKind;
use crate::store::{Direction, RunDetail, RunFilter, RunStatus, Store};
use anyhow::{Result, bail};
use clap::Subcommand;
use std::collections::{BTreeMap, BTreeSet};
use std::process::ExitCode;

#[derive(Debug, Subcommand)]
#[command(defer = true)]
pub(crate) enum RunsCommand {
    /// List runs, newest first.
    List {
        /// Only runs of this pipeline.
        #[arg(long)]
        pipeline: Option<String>,
        /// Only runs with this status (queued, running, succeeded, failed, cancelled,
        /// interrupted).
        #[arg(long, value_parser = parse_status)]
        status: Option<RunStatus>,
        /// Only runs with this tag: KEY=VALUE; repeat to require several.
        #[arg(long = "tag", value_parser = parse_key_value)]
        tags: Vec<(String, String)>,
        /// Maximum number of runs to list.
        #[arg(long, default_value_t = 50)]
        limit: u64,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show everything recorded about a run, with the checks of its validations.
    Show {
        /// Run id.
        run: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Print the log of every step of a run, or of one step.
    Logs {
        /// Run id.
        run: String,
        /// Only this step.
        #[arg(long)]
        step: Option<String>,
        /// Print JSON lines.
        #[arg(long)]
        json: bool,
    },
    /// Print the history of one metric of a run, such as a training loss by epoch.
    Metric {
        /// Run id.
        run: String,
        /// Metric key.
        key: String,
        /// Only points logged by this step.
        #[arg(long)]
        step: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Compare two runs: params, metrics, artifact digests, plugin digests and environment.
    Diff {
        /// First run id.
        run_a: String,
        /// Second run id.
        run_b: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Run metric validators on a recorded run, such as an external one, and record the checks.
    ///
    /// Exits with status 3 when a blocking check failed or a validator could not judge the run.
    /// The validations are recorded as the OS user ($USER).
    Validate {
        /// Run id.
        run: String,
        /// The validators, each with its configuration.
        #[command(flatten)]
        plugins: PluginArgs,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

pub(crate) fn run(config: &Config, command: RunsCommand) -> Result<ExitCode> {
    tokio_runtime()?.block_on(dispatch(config, command))
}

async fn dispatch(config: &Config, command: RunsCommand) -> Result<ExitCode> {
    match command {
        RunsCommand::List {
            pipeline,
            status,
            tags,
            limit,
            json,
        } => {
            let store = open_store(config).await?;
            list(&store, pipeline, status, tags, limit, json).await
        }
        RunsCommand::Show { run, json } => show(config, &run, json).await,
        RunsCommand::Logs { run, step, json } => {
            let store = open_store(config).await?;
            logs(&store, &run, step.as_deref(), json).await
        }
        RunsCommand::Metric {
            run,
            key,
            step,
            json,
        } => {
            let store = open_store(config).await?;
            metric(&store, &run, &key, step.as_deref(), json).await
        }
        RunsCommand::Diff { run_a, run_b, json } => {
            let store = open_store(config).await?;
            diff(&store, &run_a, &run_b, json).await
        }
        RunsCommand::Validate { run, plugins, json } => validate(config, &run, plugins, json).await,
    }
}

/// Parses a run status for clap, so an unknown one is a usage error like any other.
fn parse_status(text: &str) -> Result<RunStatus, String> {
    let quoted = serde_json::Value::String(text.to_owned());
    serde_json::from_value::<RunStatus>(quoted).map_err(|_| {
        format!(
            "unknown status `{text}`: use queued, running, succeeded, failed, cancelled or \
             interrupted"
        )
    })
}

async fn list(
    store: &Store,
    pipeline: Option<String>,
    status: Option<RunStatus>,
    tags: Vec<(String, String)>,
    limit: u64,
    json: bool,
) -> Result<ExitCode> {
    let filter = RunFilter {
        pipeline_name: pipeline,
        status,
        tags,
        limit: Some(limit),
        ..RunFilter::default()
    };
    let runs = store.list_runs(&filter).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&runs)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{:<36}  {:<20} {:<11} {:<10} {:<19} DURATION",
        "RUN", "PIPELINE", "STATUS", "USER", "CREATED"
    );
    for run in &runs {
        println!(
            "{:<36}  {:<20} {:<11} {:<10} {:<19} {}",
            run.id,
            run.name,
            run.status.to_string(),
            run.user_name,
            time(run.created_at),
            duration(run.started_at, run.ended_at)
        );
    }
    if runs.is_empty() {
        println!("no runs match");
    }
    Ok(ExitCode::SUCCESS)
}

/// UTC time of a millisecond timestamp, to the second.
pub(crate) fn time(millis: i64) -> String {
    chrono::DateTime::from_timestamp_millis(millis)
        .map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
        .unwrap_or_else(|| millis.to_string())
}

fn duration(started: Option<i64>, ended: Option<i64>) -> String {
    match (started, ended) {
        (Some(start), Some(end)) => format!("{:.1}s", (end - start) as f64 / 1000.0),
        (Some(_), None) => "running".into(),
        _ => "-".into(),
    }
}

async fn show(config: &Config, run_id: &str, json: bool) -> Result<ExitCode> {
    let context = open_engine(config).await?;
    let store = context.engine.store();
    let detail = store.get_run_detail(run_id).await?;
    let step_metrics = step_metrics(store, &detail).await?;
    let validations = gates_of(&context.engine).run_validations(run_id).await?;
    if json {
        let mut out = serde_json::to_value(&detail)?;
        out["step_metrics"] = serde_json::to_value(&step_metrics)?;
        out["validations"] = serde_json::to_value(&validations)?;
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(ExitCode::SUCCESS);
    }
    print_identity(&detail);
    print_environment(&detail);
    print_map("params", &detail.params);
    print_map("tags", &detail.tags);
    print_steps(&detail, &step_metrics);
    print_metrics(&detail);
    print_artifacts(&detail);
    print_validations(&validations);
    Ok(ExitCode::SUCCESS)
}

async fn validate(
    config: &Config,
    run_id: &str,
    plugins: PluginArgs,
    json: bool,
) -> Result<ExitCode> {
    if plugins.specs.is_empty() {
        bail!("give at least one validator with --plugin NAME[@VERSION] [--config JSON]");
    }
    let context = open_engine(config).await?;
    let gates = gates_of(&context.engine);
    // A missing plugin or invalid config is a usage error, rejected before anything is recorded.
    gates.check_specs(
        &context.registry,
        PluginKind::MetricValidator,
        &plugins.specs,
    )?;
    let outcome = gates
        .validate_run(
            &context.registry,
            &cli_actor(),
            run_id,
            &plugins.specs,
            Trigger::Manual,
            None,
        )
        .await?;
    let tally = Tally::of(&outcome.records);
    if json {
        println!("{}", serde_json::to_string_pretty(&outcome)?);
    } else {
        print_validations(&outcome.records);
        print_tally(tally);
    }
    if tally.blocking > 0 {
        return Ok(ExitCode::from(EXIT_BLOCKED));
    }
    Ok(ExitCode::SUCCESS)
}

fn print_identity(detail: &RunDetail) {
    let run = &detail.run;
    println!("run {}", run.id);
    println!(
        "  pipeline     {} (project {})",
        run.name, detail.project.name
    );
    if let Some(pipeline) = &detail.pipeline {
        println!("  definition   sha256:{}", pipeline.definition_digest);
    }
    println!("  status       {}", run.status);
    if let Some(error) = &run.error {
        println!("  error        {error}");
    }
    println!("  started by   {} via {}", run.user_name, run.source);
    println!("  created      {} UTC", time(run.created_at));
    println!("  duration     {}", duration(run.started_at, run.ended_at));
    if let Some(seed) = run.seed {
        println!("  seed         {seed}");
    }
}

fn print_environment(detail: &RunDetail) {
    let Some(env) = &detail.environment else {
        return;
    };
    println!("environment");
    match &env.git {
        Some(git) => println!(
            "  git commit   {}{}",
            git.commit,
            if git.dirty { " (dirty)" } else { "" }
        ),
        None => println!("  git commit   none (pipeline file not in a git repository)"),
    }
    let wasmtime = env.wasmtime_version.as_deref().unwrap_or("-");
    println!(
        "  runledger    {}, wasmtime {wasmtime}",
        env.runledger_version
    );
    println!("  platform     {}/{}", env.os, env.arch);
    for plugin in &env.plugins {
        println!(
            "  plugin       {}@{} sha256:{}",
            plugin.name, plugin.version, plugin.digest
        );
    }
    if !env.packages.is_empty() {
        println!("  packages     {}", env.packages.join(", "));
    }
}

fn print_map(title: &str, map: &BTreeMap<String, String>) {
    if map.is_empty() {
        return;
    }
    println!("{title}");
    for (key, value) in map {
        println!("  {key:<24} {value}");
    }
}

/// Latest value of each metric per step, by step name and then key.
async fn step_metrics(
    store: &Store,
    detail: &RunDetail,
) -> Result<BTreeMap<String, BTreeMap<String, f64>>> {
    let mut by_step = BTreeMap::new();
    for step in &detail.steps {
        let mut latest: BTreeMap<String, (i64, i64, f64)> = BTreeMap::new();
        for point in store.step_metrics(&step.step_run.id).await? {
            let order = (point.step, point.timestamp_ms);
            let entry = latest
                .entry(point.key)
                .or_insert((order.0, order.1, point.value));
            if order >= (entry.0, entry.1) {
                *entry = (order.0, order.1, point.value);
            }
        }
        let values = latest.into_iter().map(|(key, (_, _, value))| (key, value));
        by_step.insert(step.step_run.name.clone(), values.collect());
    }
    Ok(by_step)
}

fn print_steps(detail: &RunDetail, metrics: &BTreeMap<String, BTreeMap<String, f64>>) {
    println!("steps");
    for step in &detail.steps {
        let record = &step.step_run;
        let plugin = match (&record.plugin_name, &record.plugin_version) {
            (Some(name), Some(version)) => format!("{name}@{version}"),
            _ => record.executor.clone(),
        };
        println!(
            "  {:<16} {:<10} {:>8} attempts {}  {plugin}",
            record.name,
            record.status.to_string(),
            duration(record.started_at, record.ended_at),
            record.attempts
        );
        if let Some(source) = &record.cached_from {
            println!("      cached from step run {source}");
        }
        if let Some(error) = &record.error {
            println!("      error: {error}");
        }
        println!("      params {}", record.params_json);
        for (arrow, links) in [("<-", &step.inputs), ("->", &step.outputs)] {
            for linked in links {
                println!(
                    "      {arrow} {:<12} sha256:{}",
                    linked.link.name, linked.link.digest
                );
            }
        }
        let values = metrics.get(&record.name).into_iter().flatten();
        let shown: Vec<String> = values
            .map(|(key, value)| format!("{key}={}", format_metric(*value)))
            .collect();
        if !shown.is_empty() {
            println!("      metrics {}", shown.join(" "));
        }
    }
}

fn print_metrics(detail: &RunDetail) {
    if detail.latest_metrics.is_empty() {
        return;
    }
    println!("metrics (latest)");
    for point in &detail.latest_metrics {
        println!(
            "  {:<32} {} (step {})",
            point.key,
            format_metric(point.value),
            point.step
        );
    }
}

fn print_artifacts(detail: &RunDetail) {
    println!("artifacts");
    for linked in &detail.artifacts {
        if linked.link.direction != Direction::Output && linked.link.step_run_id.is_some() {
            continue;
        }
        println!(
            "  {:<12} {:<6} {:>10} B  {:<22} sha256:{}",
            linked.link.name,
            linked.link.direction.to_string(),
            linked.size,
            linked.media_type,
            linked.link.digest
        );
    }
}

async fn logs(store: &Store, run_id: &str, step: Option<&str>, json: bool) -> Result<ExitCode> {
    store.require_run(run_id).await?;
    let steps = store.list_step_runs(run_id).await?;
    if let Some(name) = step
        && !steps.iter().any(|s| s.name == name)
    {
        let known: Vec<&str> = steps.iter().map(|s| s.name.as_str()).collect();
        bail!(
            "run {run_id} has no step `{name}`; its steps are [{}]",
            known.join(", ")
        );
    }
    for record in steps
        .iter()
        .filter(|s| step.is_none_or(|name| s.name == name))
    {
        for line in store.list_step_logs(&record.id, None, None).await? {
            if json {
                let out = serde_json::json!({
                    "step": record.name,
                    "level": line.level,
                    "message": line.message,
                    "fields": line.fields_json,
                    "timestamp_ms": line.timestamp_ms,
                });
                println!("{out}");
            } else {
                println!(
                    "{} {:<12} {:<6} {}",
                    time(line.timestamp_ms),
                    record.name,
                    line.level,
                    line.message
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn metric(
    store: &Store,
    run_id: &str,
    key: &str,
    step: Option<&str>,
    json: bool,
) -> Result<ExitCode> {
    store.require_run(run_id).await?;
    let steps = store.list_step_runs(run_id).await?;
    let step_id = match step {
        Some(name) => match steps.iter().find(|s| s.name == name) {
            Some(record) => Some(record.id.clone()),
            None => bail!("run {run_id} has no step `{name}`"),
        },
        None => None,
    };
    let points: Vec<_> = store
        .metric_history(run_id, key)
        .await?
        .into_iter()
        .filter(|p| step_id.is_none() || p.step_run_id == step_id)
        .collect();
    if points.is_empty() {
        bail!("run {run_id} has no metric `{key}`; `runs show {run_id}` lists its metrics");
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&points)?);
        return Ok(ExitCode::SUCCESS);
    }
    let step_name = |id: &Option<String>| {
        let record = steps.iter().find(|s| Some(&s.id) == id.as_ref());
        record.map_or("-".to_owned(), |s| s.name.clone())
    };
    println!("{:>8}  {:<16} {:<19}  VALUE", "STEP", "STEP RUN", "TIME");
    for point in &points {
        println!(
            "{:>8}  {:<16} {:<19}  {}",
            point.step,
            step_name(&point.step_run_id),
            time(point.timestamp_ms),
            format_metric(point.value)
        );
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(serde::Serialize)]
struct Difference {
    section: &'static str,
    key: String,
    a: Option<String>,
    b: Option<String>,
}

async fn diff(store: &Store, run_a: &str, run_b: &str, json: bool) -> Result<ExitCode> {
    let a = store.get_run_detail(run_a).await?;
    let b = store.get_run_detail(run_b).await?;
    let metrics_a = metric_map(&a, &step_metrics(store, &a).await?);
    let metrics_b = metric_map(&b, &step_metrics(store, &b).await?);
    let mut differences = Vec::new();
    compare("param", &a.params, &b.params, &mut differences);
    compare("tag", &a.tags, &b.tags, &mut differences);
    compare(
        "definition",
        &definition_map(&a),
        &definition_map(&b),
        &mut differences,
    );
    compare("metric", &metrics_a, &metrics_b, &mut differences);
    compare(
        "artifact",
        &artifact_map(&a),
        &artifact_map(&b),
        &mut differences,
    );
    compare("plugin", &plugin_map(&a), &plugin_map(&b), &mut differences);
    compare(
        "environment",
        &environment_map(&a),
        &environment_map(&b),
        &mut differences,
    );
    if json {
        println!("{}", serde_json::to_string_pretty(&differences)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!("{:<12} {:<32} {:<30} {}", "SECTION", "KEY", run_a, run_b);
    for d in &differences {
        let show = |v: &Option<String>| v.clone().unwrap_or_else(|| "(absent)".into());
        println!(
            "{:<12} {:<32} {:<30} {}",
            d.section,
            d.key,
            show(&d.a),
            show(&d.b)
        );
    }
    if differences.is_empty() {
        println!("the runs do not differ in params, metrics, artifacts, plugins or environment");
    }
    Ok(ExitCode::SUCCESS)
}

fn compare(
    section: &'static str,
    a: &BTreeMap<String, String>,
    b: &BTreeMap<String, String>,
    out: &mut Vec<Difference>,
) {
    let keys: BTreeSet<&String> = a.keys().chain(b.keys()).collect();
    for key in keys {
        let (left, right) = (a.get(key), b.get(key));
        if left != right {
            out.push(Difference {
                section,
                key: key.clone(),
                a: left.cloned(),
                b: right.cloned(),
            });
        }
    }
}

/// Collects each step's latest metrics as `STEP.KEY`, leaving out resource use (`STEP/...` keys), so two
/// steps logging the same key are compared step by step.
fn metric_map(
    detail: &RunDetail,
    by_step: &BTreeMap<String, BTreeMap<String, f64>>,
) -> BTreeMap<String, String> {
    let mut map = BTreeMap::new();
    for (step, values) in by_step {
        for (key, value) in values {
            if !key.starts_with(&format!("{step}/")) {
                map.insert(format!("{step}.{key}"), format_metric(*value));
            }
        }
    }
    if detail.steps.is_empty() {
        for point in &detail.latest_metrics {
            map.insert(point.key.clone(), format_metric(point.value));
        }
    }
    map
}

fn definition_map(detail: &RunDetail) -> BTreeMap<String, String> {
    let digest = detail
        .pipeline
        .as_ref()
        .map(|p| p.definition_digest.clone());
    digest
        .map(|d| ("digest".to_owned(), d))
        .into_iter()
        .collect()
}

fn artifact_map(detail: &RunDetail) -> BTreeMap<String, String> {
    detail
        .steps
        .iter()
        .flat_map(|step| {
            step.outputs.iter().map(move |linked| {
                let key = format!("{}.{}", step.step_run.name, linked.link.name);
                (key, linked.link.digest.clone())
            })
        })
        .collect()
}

fn plugin_map(detail: &RunDetail) -> BTreeMap<String, String> {
    detail
        .steps
        .iter()
        .filter_map(|step| {
            let record = &step.step_run;
            record
                .plugin_digest
                .clone()
                .map(|digest| (record.name.clone(), digest))
        })
        .collect()
}

fn environment_map(detail: &RunDetail) -> BTreeMap<String, String> {
    let mut map = BTreeMap::new();
    if let Some(env) = &detail.environment {
        if let Some(git) = &env.git {
            map.insert("git.commit".into(), git.commit.clone());
            map.insert("git.dirty".into(), git.dirty.to_string());
        }
        map.insert("runledger".into(), env.runledger_version.clone());
        map.insert(
            "wasmtime".into(),
            env.wasmtime_version.clone().unwrap_or_default(),
        );
        map.insert("platform".into(), format!("{}/{}", env.os, env.arch));
        map.insert("packages".into(), env.packages.join(","));
    }
    map
}
