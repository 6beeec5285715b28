//! `runledger run PIPELINE.yaml`: plan, record and execute a run with a live progress display,
//! then run the pipeline's metric validators on it when it succeeded.

use super::context::{EngineContext, cli_actor, gates_of, open_engine, tokio_runtime};
use super::progress::Progress;
use super::validation::{EXIT_BLOCKED, Tally, print_tally, print_validations};
use crate::config::Config;
use crate::engine::plan::plan;
use crate::engine::{Engine, Plan, PlanContext, RunOptions, RunSummary};
use crate::gates::{Trigger, ValidationOutcome, ValidatorSpec};
use crate::store::{RunStatus, StepStatus};
use anyhow::Result;
use clap::Args;
use clap::builder::RangedI64ValueParser;
use serde_json::{Map, Value};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// Exit status of a run that was cancelled, as for a process stopped by SIGINT.
const EXIT_CANCELLED: u8 = 130;
/// Exit status of a definition rejected before anything ran.
pub(crate) const EXIT_INVALID: u8 = 2;

#[derive(Debug, Args)]
pub(crate) struct RunArgs {
    /// The pipeline definition (YAML).
    pipeline: PathBuf,
    /// Override a pipeline param: NAME=VALUE (VALUE parsed as YAML: 0.2, true, text).
    #[arg(long = "param", value_parser = parse_key_value)]
    params: Vec<(String, String)>,
    /// Tag the run: KEY=VALUE; repeat for several.
    #[arg(long = "tag", value_parser = parse_key_value)]
    tags: Vec<(String, String)>,
    /// Steps to run at once [default: number of cores].
    #[arg(long, allow_negative_numbers = true,
        value_parser = RangedI64ValueParser::<u64>::new().range(1..))]
    parallelism: Option<u64>,
    /// Execute every step even when an identical earlier step run could be reused.
    #[arg(long)]
    no_cache: bool,
    /// Seed of the run; every step's seed derives from it.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Give steps the real clock and unseeded randomness instead of deterministic ones; the
    /// cache is then off, since such outputs need not repeat.
    #[arg(long)]
    nondeterministic: bool,
    /// Print the summary as JSON on stdout.
    #[arg(long)]
    json: bool,
}

/// Parses `KEY=VALUE`.
pub(crate) fn parse_key_value(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok((key.to_owned(), value.to_owned())),
        _ => Err(format!("`{text}` is not KEY=VALUE")),
    }
}

/// Rejects a tag key given twice, which would otherwise keep only the last value.
fn unique_tags(tags: &[(String, String)]) -> Result<Vec<(String, String)>> {
    let mut seen = std::collections::BTreeSet::new();
    for (key, _) in tags {
        if !seen.insert(key) {
            anyhow::bail!("--tag {key} is given twice; give each tag key once");
        }
    }
    Ok(tags.to_vec())
}

/// Parses a `--param` value as a YAML scalar, so `0.2` is a number and `true` a boolean.
pub(crate) fn param_value(text: &str) -> Value {
    serde_yaml_ng::from_str::<Value>(text)
        .ok()
        .filter(|value| !value.is_object() && !value.is_array() && !value.is_null())
        .unwrap_or_else(|| Value::String(text.to_owned()))
}

pub(crate) fn run(config: &Config, args: RunArgs) -> Result<ExitCode> {
    tokio_runtime()?.block_on(run_async(config, args))
}

async fn run_async(config: &Config, args: RunArgs) -> Result<ExitCode> {
    let text = match std::fs::read_to_string(&args.pipeline) {
        Ok(text) => text,
        Err(error) => {
            eprintln!(
                "error: cannot read pipeline file {}: {error}",
                args.pipeline.display()
            );
            return Ok(ExitCode::from(EXIT_INVALID));
        }
    };
    let context = open_engine(config).await?;
    let base_dir = parent_dir(&args.pipeline);
    let overrides: Map<String, Value> = args
        .params
        .iter()
        .map(|(key, value)| (key.clone(), param_value(value)))
        .collect();
    let plan_context = PlanContext {
        registry: &context.registry,
        base_dir: &base_dir,
        overrides: &overrides,
        artifacts: context.engine.artifacts(),
        pinned_inputs: &Default::default(),
    };
    let plan = match plan(&text, &args.pipeline.display().to_string(), &plan_context) {
        Ok(plan) => plan,
        Err(error) => {
            eprintln!("error: {error}");
            return Ok(ExitCode::from(EXIT_INVALID));
        }
    };
    let options = RunOptions {
        parallelism: parallelism(args.parallelism, &context.engine),
        // Outputs of a nondeterministic run may differ every time, so none is reused.
        use_cache: !args.no_cache && !args.nondeterministic,
        deterministic: !args.nondeterministic,
        seed: args.seed,
        tags: unique_tags(&args.tags)?,
        pipeline_dir: Some(base_dir.clone()),
        ..RunOptions::default()
    };
    let summary = execute_with_progress(&context.engine, &plan, &options, !args.json).await?;
    let validation = validate(&context, &plan, &summary).await?;
    if args.json {
        let mut out = serde_json::to_value(&summary)?;
        out["validation"] = serde_json::to_value(&validation)?;
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        print_summary(&summary);
        if let Some(outcome) = &validation {
            println!();
            print_validations(&outcome.records);
            print_tally(Tally::of(&outcome.records));
        }
    }
    Ok(exit_code(summary.status, validation.as_ref()))
}

/// Runs the pipeline's `validate:` list on a succeeded run. Returns `None` when the run did not
/// succeed or the pipeline lists no validators.
async fn validate(
    context: &EngineContext,
    plan: &Plan,
    summary: &RunSummary,
) -> Result<Option<ValidationOutcome>> {
    if summary.status != RunStatus::Succeeded || plan.validators.is_empty() {
        return Ok(None);
    }

    let specs: Vec<ValidatorSpec> = plan
        .validators
        .iter()
        .map(|validator| ValidatorSpec {
            plugin: validator.plugin.id(),
            config: validator.config.clone(),
        })
        .collect();
    // NOTE: `run` does not load components before the first step, so a validator component
    // that fails to load shows up only here, recorded as a blocking validator error.
    let outcome = gates_of(&context.engine)
        .validate_run(
            &context.registry,
            &cli_actor(),
            &summary.run_id,
            &specs,
            Trigger::Pipeline,
            None,
        )
        .await?;
    Ok(Some(outcome))
}

/// Returns the requested parallelism, or the number of cores, capped at what the runtime's
/// instance pool can hold.
pub(crate) fn parallelism(requested: Option<u64>, engine: &Engine) -> usize {
    let requested = requested.map(|n| usize::try_from(n).unwrap_or(usize::MAX));
    let wanted = requested
        .unwrap_or(RunOptions::default().parallelism)
        .max(1);
    let max = engine.max_parallelism();
    if wanted > max {
        eprintln!(
            "warning: --parallelism {wanted} lowered to {max}, the size of the instance pool"
        );
    }
    wanted.min(max)
}

fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_owned(),
        _ => PathBuf::from("."),
    }
}

/// Records and executes a run, cancelling it cleanly on Ctrl-C.
pub(crate) async fn execute_with_progress(
    engine: &Engine,
    plan: &Plan,
    options: &RunOptions,
    show_progress: bool,
) -> Result<RunSummary> {
    // Ctrl-C is caught from the start, so a run cancelled while its inputs are imported still
    // ends as cancelled.
    let cancel = Arc::new(AtomicBool::new(false));
    let flag = cancel.clone();
    let ctrl_c = tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            eprintln!("\ncancelling the run: stopping running steps");
            flag.store(true, Ordering::Relaxed);
        }
    });
    let run_id = engine.create_run(plan, options).await?;
    let (sender, receiver) = tokio::sync::mpsc::unbounded_channel();
    let display = Progress::start(&run_id, plan, receiver, show_progress);
    let result = engine
        .execute(&run_id, plan, options, cancel, Some(sender))
        .await;
    ctrl_c.abort();
    display.finish().await;
    Ok(result?)
}

fn exit_code(status: RunStatus, validation: Option<&ValidationOutcome>) -> ExitCode {
    let blocked = validation.is_some_and(|outcome| Tally::of(&outcome.records).blocking > 0);
    match status {
        RunStatus::Succeeded if blocked => ExitCode::from(EXIT_BLOCKED),
        RunStatus::Succeeded => ExitCode::SUCCESS,
        RunStatus::Cancelled => ExitCode::from(EXIT_CANCELLED),
        _ => ExitCode::FAILURE,
    }
}

fn print_summary(summary: &RunSummary) {
    println!();
    println!(
        "run {}  {}  {} in {:.1}s",
        summary.run_id,
        summary.pipeline,
        summary.status,
        summary.duration_ms as f64 / 1000.0
    );
    println!(
        "  {:<16} {:<10} {:>9} {:>8}  DETAILS",
        "STEP", "STATUS", "DURATION", "ATTEMPTS"
    );
    for step in &summary.steps {
        let details = match (&step.error, step.status) {
            (Some(error), _) => error.clone(),
            (None, StepStatus::Cached) => format!(
                "reused outputs of step run {}",
                step.cached_from.as_deref().unwrap_or("?")
            ),
            (None, _) => key_metrics(&step.metrics),
        };
        println!(
            "  {:<16} {:<10} {:>7}ms {:>8}  {}",
            step.name,
            step.status.to_string(),
            step.duration_ms,
            step.attempts,
            details
        );
    }
    println!(
        "show the whole record with: runledger runs show {}",
        summary.run_id
    );
}

/// `key=value` for the step's own metrics, leaving out resource use (`STEP/...`).
fn key_metrics(metrics: &std::collections::BTreeMap<String, f64>) -> String {
    metrics
        .iter()
        .filter(|(key, _)| !key.contains('/'))
        .take(4)
        .map(|(key, value)| format!("{key}={}", format_metric(*value)))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Formats a metric value with four decimals, or an integer without a fraction.
pub(crate) fn format_metric(value: f64) -> String {
    if value.fract() == 0.0 && value.abs() < 1e15 {
        format!("{value:.0}")
    } else {
        format!("{value:.4}")
    }
}
