//! The `runledger` command line: parse, call the layers below, print.

mod context;
mod db;
mod lineage;
mod plugins;
mod progress;
mod reproduce;
mod run;
mod runs;

use crate::config::Config;
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

/// Runs ML pipelines of sandboxed WebAssembly steps and records every run.
#[derive(Debug, Parser)]
#[command(name = "runledger", version, about)]
pub struct Cli {
    /// Directory for the database, artifacts and compile cache
    /// [default: $XDG_DATA_HOME/runledger or ~/.local/share/runledger].
    #[arg(long, global = true, env = "RUNLEDGER_DATA_DIR")]
    data_dir: Option<PathBuf>,

    /// Directory to scan for plugins (each in a NAME@VERSION subdirectory with plugin.toml and
    /// plugin.wasm); repeat for several [default: DATA_DIR/plugins].
    #[arg(long = "plugin-dir", global = true, env = "RUNLEDGER_PLUGIN_DIR", value_delimiter = ':')]
    plugin_dirs: Vec<PathBuf>,

    /// Database URL, such as postgres://user@host/db [default: SQLite file in DATA_DIR].
    #[arg(long, global = true, env = "RUNLEDGER_DATABASE_URL", hide_env_values = true)]
    database_url: Option<String>,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a pipeline and record it.
    Run(run::RunArgs),
    /// List, show and compare recorded runs.
    #[command(subcommand)]
    Runs(runs::RunsCommand),
    /// Show the lineage graph of a run, step run, artifact or dataset.
    Lineage(lineage::LineageArgs),
    /// Re-execute a recorded run and check its outputs are bit-identical.
    Reproduce(reproduce::ReproduceArgs),
    /// List and inspect plugins.
    #[command(subcommand)]
    Plugins(plugins::PluginsCommand),
    /// Manage the database.
    #[command(subcommand)]
    Db(db::DbCommand),
}

/// Entry point of the binary: parses arguments, runs the command and maps errors to exit codes.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing();
    let config = Config::resolve(cli.data_dir, cli.plugin_dirs, cli.database_url);
    let result = match cli.command {
        Command::Run(args) => run::run(&config, args),
        Command::Runs(command) => runs::run(&config, command),
        Command::Lineage(args) => lineage::run(&config, args),
        Command::Reproduce(args) => reproduce::run(&config, args),
        Command::Plugins(command) => plugins::run(&config, command),
        Command::Db(command) => db::run(&config, command),
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}
