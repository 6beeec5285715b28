//! `cargo xtask demo`: builds everything, then runs the wine-quality example twice, reproduces
//! the first run and prints the model's lineage, in a fresh data directory.

use crate::{cargo, run, workspace_root};
use anyhow::{Context, Result, bail};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Where the demo keeps its database and artifacts; wiped at the start of each demo.
const DEMO_DATA_DIR: &str = "target/demo-data";

pub(crate) fn demo() -> Result<()> {
    let root = workspace_root();
    run(cargo()
        .current_dir(&root)
        .args(["build", "--quiet", "-p", "runledger"]))?;
    let data_dir = root.join(DEMO_DATA_DIR);
    if data_dir.exists() {
        std::fs::remove_dir_all(&data_dir)
            .with_context(|| format!("cannot clear {}", data_dir.display()))?;
    }
    let pipeline = root.join("examples/wine-quality/pipeline.yaml");
    let runledger = Runledger {
        root: root.clone(),
        data_dir,
    };

    banner("1. run the wine-quality pipeline on the red wine data");
    let first = runledger.json(&["run", &path(&pipeline), "--json"])?;
    let first_id = text(&first, "run_id")?;
    print_steps(&first);

    banner("2. run it again: every step is a cache hit");
    let second = runledger.json(&["run", &path(&pipeline), "--json"])?;
    print_steps(&second);

    banner("3. reproduce the first run without the cache and compare every artifact");
    runledger.show(&["reproduce", &first_id])?;

    banner("4. lineage of the trained model in the first run, back to the raw CSV");
    let model = model_digest(&first)?;
    runledger.show(&["lineage", &model, "--upstream", "--run", &first_id])?;

    banner("done");
    println!(
        "run {first_id} {}: {}",
        text(&first, "status")?,
        evaluation(&first)
    );
    println!("the demo's database and artifacts are in {DEMO_DATA_DIR}; explore them with");
    println!("  target/debug/runledger --data-dir {DEMO_DATA_DIR} runs show {first_id}");
    println!(
        "  target/debug/runledger --data-dir {DEMO_DATA_DIR} runs diff {first_id} {}",
        text(&second, "run_id")?
    );
    Ok(())
}

struct Runledger {
    root: PathBuf,
    data_dir: PathBuf,
}

impl Runledger {
    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(self.root.join("target/debug/runledger"));
        command
            .current_dir(&self.root)
            .arg("--data-dir")
            .arg(&self.data_dir)
            .arg("--plugin-dir")
            .arg(self.root.join("target/plugins"))
            .args(args);
        command
    }

    fn show(&self, args: &[&str]) -> Result<()> {
        run(&mut self.command(args))
    }

    fn json(&self, args: &[&str]) -> Result<Value> {
        let output = self
            .command(args)
            .output()
            .context("cannot start runledger")?;
        if !output.status.success() {
            eprintln!("{}", String::from_utf8_lossy(&output.stderr));
            bail!("runledger {} failed with {}", args.join(" "), output.status);
        }
        serde_json::from_slice(&output.stdout).context("runledger printed invalid JSON")
    }
}

fn path(path: &Path) -> String {
    path.display().to_string()
}

fn banner(title: &str) {
    println!("\n== {title}");
}

fn text(value: &Value, key: &str) -> Result<String> {
    value[key]
        .as_str()
        .map(str::to_owned)
        .with_context(|| format!("summary has no `{key}`"))
}

fn print_steps(summary: &Value) {
    println!(
        "run {} {}",
        summary["run_id"].as_str().unwrap_or("?"),
        summary["status"].as_str().unwrap_or("?")
    );
    for step in summary["steps"].as_array().into_iter().flatten() {
        let metrics: Vec<String> = step["metrics"]
            .as_object()
            .into_iter()
            .flatten()
            .filter(|(key, _)| !key.contains('/'))
            .map(|(key, value)| format!("{key}={}", format_value(value)))
            .collect();
        println!(
            "  {:<12} {:<10} {:>6} ms  {}",
            step["name"].as_str().unwrap_or("?"),
            step["status"].as_str().unwrap_or("?"),
            step["duration_ms"],
            metrics.join(" ")
        );
    }
}

/// An integer without a fraction, anything else with four decimals.
fn format_value(value: &Value) -> String {
    match value.as_f64() {
        Some(number) if number.fract() == 0.0 => format!("{number:.0}"),
        Some(number) => format!("{number:.4}"),
        None => value.to_string(),
    }
}

/// The evaluation step's test metrics, such as `test_rmse=0.6665 test_r2=0.3173`.
fn evaluation(summary: &Value) -> String {
    let step = summary["steps"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|step| step["name"] == "evaluate");
    let Some(metrics) = step.and_then(|s| s["metrics"].as_object()) else {
        return "no evaluation metrics".to_owned();
    };
    ["test_rmse", "test_r2", "test_mae"]
        .iter()
        .filter_map(|key| {
            metrics
                .get(*key)
                .map(|v| format!("{key}={}", format_value(v)))
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn model_digest(summary: &Value) -> Result<String> {
    summary["steps"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|step| step["outputs"].as_array().into_iter().flatten())
        .find(|output| output["name"] == "model")
        .and_then(|output| output["digest"].as_str())
        .map(str::to_owned)
        .context("the run produced no `model` artifact")
}
