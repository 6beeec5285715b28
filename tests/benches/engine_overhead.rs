//! Benchmark of the engine's overhead per step, persistence included: a 1,000-step chain and a
//! 1,000-step fan-out of the `well-behaved` test plugin (one tiny input, one tiny output), run on
//! SQLite in a temporary data directory.
//!
//! Run it with `cargo xtask bench engine`.

use anyhow::Context as _;
use runledger::engine::plan::plan;
use runledger::engine::{Engine, PlanContext, RunOptions};
use runledger::runtime::{Runtime, RuntimeSettings};
use runledger::store::{RunStatus, Store};
use runledger_tests::{registry, temp_store};
use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Instant;

const STEPS: usize = 1_000;

fn main() -> anyhow::Result<()> {
    let tokio = tokio::runtime::Runtime::new()?;
    println!("engine overhead benchmark ({STEPS} steps of the well-behaved plugin, SQLite)");
    let mut worst = 0.0_f64;
    for (shape, yaml) in [("chain", chain()), ("fan-out", fan_out())] {
        let per_step_ms = tokio.block_on(run_pipeline(&yaml))? * 1000.0 / STEPS as f64;
        println!("{shape:<8}: {per_step_ms:.3} ms per step, persistence and plugin call included");
        worst = worst.max(per_step_ms);
    }
    let verdict = if worst <= 2.0 { "met" } else { "MISSED" };
    println!("target engine overhead per step: {worst:.3} ms <= 2 ms ... {verdict}");
    Ok(())
}

fn header() -> String {
    "name: overhead\nsteps:\n  - name: s0\n    plugin: well-behaved\n    cache: false\n".to_owned()
}

/// Each step consumes the previous step's output.
fn chain() -> String {
    let mut yaml = header();
    for index in 1..STEPS {
        let previous = index - 1;
        write!(
            yaml,
            "  - name: s{index}\n    plugin: well-behaved\n    cache: false\n    inputs: {{ data: s{previous}.count }}\n"
        )
        .expect("writing to a string");
    }
    yaml
}

/// Every step after the first consumes the first step's output.
fn fan_out() -> String {
    let mut yaml = header();
    for index in 1..STEPS {
        write!(
            yaml,
            "  - name: s{index}\n    plugin: well-behaved\n    cache: false\n    inputs: {{ data: s0.count }}\n"
        )
        .expect("writing to a string");
    }
    yaml
}

/// Plans, records and executes the pipeline; returns the wall time in seconds from recording
/// the run to its end.
async fn run_pipeline(yaml: &str) -> anyhow::Result<f64> {
    let (dir, artifacts) = temp_store();
    let store = Store::open_sqlite(dir.path()).await?;
    let runtime = Runtime::new(RuntimeSettings {
        cache_dir: Some(dir.path().join("cache")),
        pool_instances: 16,
        ..RuntimeSettings::default()
    });
    let context = PlanContext {
        registry: registry(),
        base_dir: dir.path(),
        overrides: &Default::default(),
        artifacts: &artifacts,
        pinned_inputs: &Default::default(),
    };
    let plan = plan(yaml, "generated", &context)?;
    let plugin = plan.steps[0]
        .plugin
        .as_ref()
        .context("the step runs a plugin")?;
    runtime.prepare(plugin)?;
    let engine = Engine::new(Arc::new(runtime), store, artifacts);
    let options = RunOptions {
        use_cache: false,
        ..RunOptions::default()
    };
    let started = Instant::now();
    let run_id = engine.create_run(&plan, &options).await?;
    let summary = engine
        .execute(
            &run_id,
            &plan,
            &options,
            Arc::new(AtomicBool::new(false)),
            None,
        )
        .await?;
    let elapsed = started.elapsed().as_secs_f64();
    anyhow::ensure!(
        summary.status == RunStatus::Succeeded,
        "run {run_id} {}",
        summary.status
    );
    Ok(elapsed)
}
