//! `runledger reproduce RUN`: re-executes a recorded run with its definition, plugin digests,
//! params, seed and input digests, then reports per artifact whether the new output is
//! bit-identical.

use super::context::{EngineContext, open_engine, tokio_runtime};
use super::run::{EXIT_INVALID, execute_with_progress};
use crate::config::Config;
use crate::engine::plan::plan;
use crate::engine::{Plan, PlanContext, RunOptions, RunSummary};
use crate::store::artifacts::StoredState;
use crate::store::{Direction, RunDetail, RunStatus};
use anyhow::{Context as _, Result, bail};
use clap::Args;
use clap::builder::RangedI64ValueParser;
use std::collections::BTreeMap;
use std::path::Path;
use std::process::ExitCode;

#[derive(Debug, Args)]
pub(crate) struct ReproduceArgs {
    /// Id of the run to reproduce.
    run: String,
    /// Steps to run at once [default: number of cores].
    #[arg(long, allow_negative_numbers = true,
        value_parser = RangedI64ValueParser::<u64>::new().range(1..))]
    parallelism: Option<u64>,
    /// Print the comparison as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(serde::Serialize)]
struct Comparison {
    step: String,
    artifact: String,
    original: String,
    reproduced: Option<String>,
    identical: bool,
    /// The state of the original's stored copy before the reproduction: `intact`, `missing`,
    /// or `corrupt` (the reproduction rewrites a damaged copy with verified bytes).
    stored_copy: String,
}

pub(crate) fn run(config: &Config, args: ReproduceArgs) -> Result<ExitCode> {
    tokio_runtime()?.block_on(reproduce(config, args))
}

async fn reproduce(config: &Config, args: ReproduceArgs) -> Result<ExitCode> {
    let context = open_engine(config).await?;
    let original = context.engine.store().get_run_detail(&args.run).await?;
    let checked = recorded_plan(&context, &original).and_then(|plan| {
        context.engine.check_plugins(&plan)?;
        Ok(plan)
    });
    let plan = match checked {
        Ok(plan) => plan,
        Err(error) => {
            eprintln!("error: {error:#}");
            return Ok(ExitCode::from(EXIT_INVALID));
        }
    };
    let options = RunOptions {
        parallelism: super::run::parallelism(args.parallelism, &context.engine),
        use_cache: false,
        deterministic: true,
        seed: original.run.seed.unwrap_or(0) as u64,
        tags: vec![("reproduces".to_owned(), original.run.id.clone())],
        ..RunOptions::default()
    };
    let stored = stored_states(context.engine.artifacts(), &original)?;
    let summary = execute_with_progress(&context.engine, &plan, &options, !args.json).await?;
    if summary.status == RunStatus::Cancelled {
        eprintln!("reproduction of run {} cancelled", original.run.id);
        return Ok(ExitCode::from(130));
    }
    let comparisons = compare(&original, &summary, &stored);
    let identical =
        summary.status == RunStatus::Succeeded && comparisons.iter().all(|c| c.identical);
    if args.json {
        let out = serde_json::json!({
            "original_run": original.run.id,
            "reproduced_run": summary.run_id,
            "status": summary.status,
            "identical": identical,
            "artifacts": comparisons,
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        print_comparison(&original.run.id, &summary, &comparisons, identical);
    }
    Ok(if identical {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Plans the recorded definition with the recorded inputs, then pins every step to the
/// recorded plugin digest and params.
fn recorded_plan(context: &EngineContext, original: &RunDetail) -> Result<Plan> {
    let Some(pipeline) = &original.pipeline else {
        bail!(
            "run {} has no pipeline definition (it was reported by an external client), so it cannot be re-executed",
            original.run.id
        );
    };
    let pinned_inputs: BTreeMap<String, String> = original
        .artifacts
        .iter()
        .filter(|a| a.link.step_run_id.is_none() && a.link.direction == Direction::Input)
        .map(|a| (a.link.name.clone(), a.link.digest.clone()))
        .collect();
    let plan_context = PlanContext {
        registry: &context.registry,
        base_dir: Path::new("."),
        overrides: &Default::default(),
        artifacts: context.engine.artifacts(),
        pinned_inputs: &pinned_inputs,
    };
    let origin = format!("definition of run {}", original.run.id);
    let mut plan = plan(&pipeline.definition_text, &origin, &plan_context)?;
    for step in &mut plan.steps {
        let record = original
            .steps
            .iter()
            .find(|s| s.step_run.name == step.name)
            .with_context(|| {
                format!(
                    "run {} has no record of step `{}`",
                    original.run.id, step.name
                )
            })?;
        let record = &record.step_run;
        if let serde_json::Value::Object(params) = &record.params_json {
            step.params = params.clone();
        }
        // An external step has no plugin: its client reports it again in the new run.
        if step.is_external() {
            continue;
        }
        let digest = record.plugin_digest.clone().unwrap_or_default();
        let plugin = context.registry.by_digest(&digest).with_context(|| {
            format!(
                "step `{}` ran plugin {}@{} with digest {digest}, which is not installed; install that exact component to reproduce the run",
                step.name,
                record.plugin_name.as_deref().unwrap_or("?"),
                record.plugin_version.as_deref().unwrap_or("?"),
            )
        })?;
        step.plugin = Some(plugin);
    }
    // The run records the original's params, whatever the definition's defaults were.
    plan.params = original
        .params
        .iter()
        .map(|(key, value)| (key.clone(), super::run::param_value(value)))
        .collect();
    Ok(plan)
}

/// The state of every stored output of the original run, checked before re-executing it.
fn stored_states(
    artifacts: &crate::store::ArtifactStore,
    original: &RunDetail,
) -> Result<BTreeMap<String, String>> {
    let mut states = BTreeMap::new();
    for step in &original.steps {
        for output in &step.outputs {
            let digest = &output.link.digest;
            let state = match artifacts.verify(digest)? {
                StoredState::Intact => "intact".to_owned(),
                StoredState::Missing => "missing".to_owned(),
                StoredState::Corrupt { actual } => format!("corrupt (hashed to {actual})"),
            };
            states.insert(digest.clone(), state);
        }
    }
    Ok(states)
}

fn compare(
    original: &RunDetail,
    reproduced: &RunSummary,
    stored: &BTreeMap<String, String>,
) -> Vec<Comparison> {
    let mut comparisons = Vec::new();
    for step in &original.steps {
        let new_step = reproduced
            .steps
            .iter()
            .find(|s| s.name == step.step_run.name);
        for output in &step.outputs {
            let new_digest = new_step
                .and_then(|s| s.outputs.iter().find(|o| o.name == output.link.name))
                .map(|o| o.digest.clone());
            comparisons.push(Comparison {
                step: step.step_run.name.clone(),
                artifact: output.link.name.clone(),
                identical: new_digest.as_deref() == Some(output.link.digest.as_str()),
                original: output.link.digest.clone(),
                reproduced: new_digest,
                stored_copy: stored.get(&output.link.digest).cloned().unwrap_or_default(),
            });
        }
    }
    comparisons
}

fn print_comparison(
    original: &str,
    summary: &RunSummary,
    comparisons: &[Comparison],
    identical: bool,
) {
    println!();
    println!(
        "reproduction of run {original} as run {} ({})",
        summary.run_id, summary.status
    );
    println!(
        "  {:<14} {:<10} {:<10} DIGEST",
        "STEP", "ARTIFACT", "RESULT"
    );
    for c in comparisons {
        let result = if c.identical {
            "identical"
        } else {
            "DIFFERENT"
        };
        let digest = match (&c.reproduced, c.identical) {
            (Some(new), false) => format!("{} -> {new}", c.original),
            (None, _) => format!("{} -> (not produced)", c.original),
            _ => c.original.clone(),
        };
        println!(
            "  {:<14} {:<10} {:<10} {digest}",
            c.step, c.artifact, result
        );
        if c.stored_copy != "intact" {
            println!(
                "      the stored copy was {} before the reproduction",
                c.stored_copy
            );
        }
    }
    for step in summary.steps.iter().filter(|s| s.error.is_some()) {
        let error = step.error.as_deref().unwrap_or_default();
        println!("  step {} {}: {error}", step.name, step.status);
    }
    if identical {
        println!("all {} artifacts are bit-identical", comparisons.len());
    } else {
        println!("the reproduction differs from the original");
    }
}
