//! The `runledger` command line: parse, call the layers below, print.

mod attachments;
mod context;
mod db;
mod lineage;
mod models;
mod plugins;
mod progress;
mod reproduce;
mod run;
mod runs;
mod serve;
mod tokens;
mod validation;

use crate::config::Config;
use clap::builder::RangedI64ValueParser;
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
    #[arg(
        long = "plugin-dir",
        global = true,
        env = "RUNLEDGER_PLUGIN_DIR",
        value_delimiter = ':'
    )]
    plugin_dirs: Vec<PathBuf>,

    /// Database URL, such as postgres://user@host/db [default: SQLite file in DATA_DIR].
    #[arg(
        long,
        global = true,
        env = "RUNLEDGER_DATABASE_URL",
        hide_env_values = true
    )]
    database_url: Option<String>,

    /// Cap on the memory any plugin may request, in MiB [default: 4096].
    #[arg(long, global = true, env = "RUNLEDGER_MAX_PLUGIN_MEMORY_MIB",
        allow_negative_numbers = true,
        value_parser = RangedI64ValueParser::<u64>::new().range(1..=4096))]
    max_plugin_memory_mib: Option<u64>,

    /// Cap on the wall-clock time of one plugin call, in seconds [default: 86400].
    #[arg(long, global = true, env = "RUNLEDGER_MAX_PLUGIN_TIMEOUT_SECS",
        allow_negative_numbers = true,
        value_parser = RangedI64ValueParser::<u64>::new().range(1..))]
    max_plugin_timeout_secs: Option<u64>,

    /// Cap on the fuel (about one unit per WebAssembly instruction) of one plugin call.
    #[arg(long, global = true, env = "RUNLEDGER_MAX_PLUGIN_FUEL",
        allow_negative_numbers = true,
        value_parser = RangedI64ValueParser::<u64>::new().range(1..))]
    max_plugin_fuel: Option<u64>,

    /// Instance allocator for plugins: auto uses pooling when the address space allows it.
    #[arg(long, global = true, env = "RUNLEDGER_ALLOCATOR", value_enum)]
    allocator: Option<crate::runtime::AllocatorChoice>,

    #[command(subcommand)]
    command: Command,
}

/// The top-level commands. With `defer`, as on the nested command enums, clap builds a
/// command's arguments only when that command is invoked, not on every start.
#[derive(Debug, Subcommand)]
#[command(defer = true)]
enum Command {
    /// Run a pipeline and record it, then run its metric validators.
    ///
    /// Exit status: 0 when the run succeeded and no blocking check failed, 1 when a step failed,
    /// and 2 when the definition was rejected before anything ran. 3 means the run succeeded but
    /// a blocking check of its `validate:` list failed, and 130 that it was cancelled.
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
    /// Serve the HTTP API: runs, ingestion, artifacts, lineage and plugins.
    Serve(serve::ServeArgs),
    /// Create, list and revoke bearer tokens of the HTTP API.
    #[command(subcommand)]
    Tokens(tokens::TokensCommand),
    /// Register models, attach validators and policies, promote versions and read the audit log.
    ///
    /// The command line works on the database directly and acts as the OS user ($USER, else
    /// $LOGNAME) with the admin role, so `USER=alice runledger models approve ...` approves as
    /// alice. Whoever can open the database can therefore act as anyone; the HTTP API, with its
    /// bearer tokens, is what enforces identities and roles.
    #[command(subcommand)]
    Models(models::ModelsCommand),
    /// Manage the database.
    #[command(subcommand)]
    Db(db::DbCommand),
}

/// Entry point of the binary: parses arguments, runs the command and maps errors to exit codes.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing(matches!(cli.command, Command::Serve(_)));
    let mut config = Config::resolve(cli.data_dir, cli.plugin_dirs, cli.database_url);
    config.sandbox = crate::config::SandboxCaps {
        max_memory_mib: cli.max_plugin_memory_mib,
        max_timeout_secs: cli.max_plugin_timeout_secs,
        max_fuel: cli.max_plugin_fuel,
        allocator: cli.allocator,
    };
    let result = match cli.command {
        Command::Run(args) => run::run(&config, args),
        Command::Runs(command) => runs::run(&config, command),
        Command::Lineage(args) => lineage::run(&config, args),
        Command::Reproduce(args) => reproduce::run(&config, args),
        Command::Plugins(command) => plugins::run(&config, command),
        Command::Serve(args) => serve::run(&config, args),
        Command::Tokens(command) => tokens::run(&config, command),
        Command::Models(command) => models::run(&config, command),
        Command::Db(command) => db::run(&config, command),
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {}", error_report(&error));
            ExitCode::FAILURE
        }
    }
}

/// Joins the messages of `error` and its causes with `: `, leaving out a cause whose message
/// the text already contains. Many errors repeat their cause's message in their own, and a
/// driver's error may wrap one with the same text.
fn error_report(error: &anyhow::Error) -> String {
    let mut report = String::new();
    for cause in error.chain() {
        let message = cause.to_string();
        if report.contains(&message) {
            continue;
        }
        if !report.is_empty() {
            report.push_str(": ");
        }
        report.push_str(&message);
    }
    report
}

fn init_tracing(serving: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_log_filter(serving)));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}

/// Log filter when `RUST_LOG` is unset: the server logs its requests and lifecycle at info,
/// other commands only warnings.
fn default_log_filter(serving: bool) -> &'static str {
    if serving {
        "warn,runledger=info,tower_http=info"
    } else {
        "warn"
    }
}

#[cfg(test)]
mod tests {
    use super::{Cli, error_report};
    use clap::Parser;
    use clap::error::ErrorKind;

    #[test]
    fn negative_numbers_are_invalid_values() {
        let cases: [&[&str]; 8] = [
            &["serve", "--poll-micros", "-1"],
            &["serve", "--max-body-mib", "-1"],
            &["serve", "--parallelism", "-1"],
            &["--max-plugin-memory-mib", "-1", "serve"],
            &["--max-plugin-timeout-secs", "-1", "serve"],
            &["--max-plugin-fuel", "-1", "serve"],
            &["run", "pipeline.yaml", "--parallelism", "-1"],
            &["reproduce", "RUN_ID", "--parallelism", "-1"],
        ];
        for case in cases {
            let arguments = std::iter::once("runledger").chain(case.iter().copied());

            let error = Cli::try_parse_from(arguments).unwrap_err();

            assert_eq!(error.kind(), ErrorKind::ValueValidation, "{case:?}");
            assert!(error.to_string().contains("'-1'"), "{case:?}: {error}");
            assert!(
                error.to_string().contains("-1 is not in"),
                "{case:?}: {error}"
            );
        }
    }

    #[test]
    fn report_leaves_out_repeated_causes() {
        let error = anyhow::Error::new(std::io::Error::other("pool timed out"))
            .context("Connection Error: pool timed out")
            .context("cannot open the database");

        let report = error_report(&error);

        assert_eq!(
            report,
            "cannot open the database: Connection Error: pool timed out"
        );
    }

    #[test]
    fn report_joins_distinct_causes() {
        let error = anyhow::Error::new(std::io::Error::other("permission denied"))
            .context("cannot read plugin.toml")
            .context("plugin hello skipped");

        let report = error_report(&error);

        assert_eq!(
            report,
            "plugin hello skipped: cannot read plugin.toml: permission denied"
        );
    }
}
