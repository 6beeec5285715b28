//! Project automation for runledger: `cargo xtask <command>`.
//!
//! - `setup` installs what the build and the tests need: the wasm32-wasip2 Rust target, the web
//!   UI's npm libraries in `host/ui/node_modules` (with `npm ci`), Debian's Chromium and the
//!   browser tests' playwright-core in `tests/browser/node_modules`, and a Python venv at
//!   `target/venv` with schemathesis, openapi-spec-validator and the OpenLineage client at
//!   pinned versions.
//! - `build-plugins` builds every plugin for wasm32-wasip2 in release mode and collects each
//!   component with its manifest under `target/plugins/` (first-party plugins) and
//!   `target/test-plugins/` (the misbehaving test corpus).
//! - `demo` does both, then runs the wine-quality example end to end.
//! - `test` runs `setup` and `build-plugins`, then the native tests of the first-party plugin
//!   crates and every test of the workspace.
//! - `bench NAME` runs a benchmark and prints its figures; `bench compare-mlflow` first installs
//!   MLflow's server into `target/bench-venv`. The benchmarks that start `runledger serve` first
//!   record which functions a start runs (with Valgrind's callgrind) and link the executable
//!   with those functions first.

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use std::path::{Path, PathBuf};
use std::process::Command;

mod browser;
mod compare_mlflow;
mod demo;
mod plugins;
mod python;
mod startup_order;
mod ui;

#[derive(Parser)]
#[command(about = "runledger project automation")]
struct Cli {
    #[command(subcommand)]
    command: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Install the wasm32-wasip2 Rust target, the web UI's npm libraries, Chromium with
    /// playwright-core for the browser tests, and the tests' Python venv if they are missing.
    Setup,
    /// Build all plugins for wasm32-wasip2 and collect them with their manifests.
    BuildPlugins,
    /// Set up, build, and run the wine-quality example end to end.
    Demo,
    /// Set up, build the plugins, and run every test of the workspace.
    Test {
        /// Extra arguments passed to `cargo test`, such as a test name filter.
        #[arg(trailing_var_arg = true)]
        args: Vec<String>,
    },
    /// Run a benchmark and print its figures.
    Bench {
        /// Which benchmark.
        #[arg(value_enum)]
        name: Benchmark,
    },
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum Benchmark {
    /// Whole-call latency, compile cache, and artifact throughput of the plugin runtime.
    PluginCall,
    /// Engine overhead per step of 1,000-step pipelines on SQLite.
    Engine,
    /// Metric ingestion over HTTP by `runledger serve` on SQLite.
    Ingest,
    /// Web UI load times in Chromium over 10,000 runs and a 1,000,000-point metric series.
    Ui,
    /// runledger beside MLflow's own server (installed into `target/bench-venv`) over MLflow's
    /// REST protocol; writes the table into BENCHMARKS.md.
    CompareMlflow,
}

fn main() -> Result<()> {
    match Cli::parse().command {
        Task::Setup => {
            setup()?;
            python::ensure_venv(&workspace_root())
        }
        Task::BuildPlugins => {
            setup()?;
            plugins::build_all(&workspace_root())
        }
        Task::Demo => {
            setup()?;
            plugins::build_all(&workspace_root())?;
            demo::demo()
        }
        Task::Test { args } => test(&args),
        Task::Bench { name } => bench(name),
    }
}

/// The repository root: the parent of this crate's directory.
pub(crate) fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives one level below the workspace root")
        .to_owned()
}

/// Runs a command, failing with its command line when it exits unsuccessfully.
pub(crate) fn run(command: &mut Command) -> Result<()> {
    let line = format!("{command:?}");
    eprintln!("xtask: {line}");
    let status = command
        .status()
        .with_context(|| format!("cannot start {line}"))?;
    if !status.success() {
        bail!("{line} failed with {status}");
    }
    Ok(())
}

fn setup() -> Result<()> {
    let installed = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
        .context("rustup is required to install the wasm32-wasip2 target")?;
    let targets = String::from_utf8_lossy(&installed.stdout);
    if !targets.lines().any(|line| line.trim() == "wasm32-wasip2") {
        run(Command::new("rustup").args(["target", "add", "wasm32-wasip2"]))?;
    }
    ui::ensure_node_modules(&workspace_root())?;
    browser::ensure_browser(&workspace_root())
}

pub(crate) fn cargo() -> Command {
    Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
}

fn test(args: &[String]) -> Result<()> {
    setup()?;
    let root = workspace_root();
    python::ensure_venv(&root)?;
    plugins::build_all(&root)?;
    plugins::test_first_party(&root)?;
    // The end-to-end tests drive the binary itself, which `cargo test` does not build for
    // another package's tests. Building every target of the workspace selects the same
    // packages and features as the test run, so dependencies are compiled once, not twice.
    run(cargo()
        .current_dir(&root)
        .args(["build", "--workspace", "--all-targets"]))?;
    run(cargo()
        .current_dir(&root)
        .args(["test", "--workspace", "--no-fail-fast"])
        .args(args))
}

/// Builds the dev build of the `runledger` executable.
fn build_server(root: &Path) -> Result<()> {
    run(cargo().current_dir(root).args([
        "build",
        "--quiet",
        "-p",
        "runledger",
        "--bin",
        "runledger",
    ]))
}

fn bench(name: Benchmark) -> Result<()> {
    setup()?;
    let root = workspace_root();
    plugins::build_all(&root)?;
    let bin = match name {
        Benchmark::PluginCall => "bench-plugin-call",
        Benchmark::Engine => "bench-engine",
        Benchmark::Ingest => "bench-ingest",
        Benchmark::Ui => "bench-ui",
        Benchmark::CompareMlflow => {
            compare_mlflow::ensure_venv(&root)?;
            "bench-compare-mlflow"
        }
    };
    if matches!(
        name,
        Benchmark::Ingest | Benchmark::Ui | Benchmark::CompareMlflow
    ) {
        // These benchmarks start the dev build of the binary as their server, linked with its
        // start-up functions first, as a deployment would be.
        build_server(&root)?;
        if startup_order::record(&root, &root.join("target/debug"))? {
            build_server(&root)?;
        }
    }
    run(cargo()
        .current_dir(&root)
        .args(["run", "--quiet", "-p", "runledger-tests", "--bin", bin]))
}
