//! `runledger db migrate`.

use super::context::{open_store, tokio_runtime};
use crate::config::Config;
use anyhow::Result;
use clap::Subcommand;
use std::process::ExitCode;

#[derive(Debug, Subcommand)]
#[command(defer = true)]
pub(crate) enum DbCommand {
    /// Create or upgrade the database schema.
    Migrate,
}

pub(crate) fn run(config: &Config, command: DbCommand) -> Result<ExitCode> {
    match command {
        DbCommand::Migrate => tokio_runtime()?.block_on(async {
            open_store(config).await?;
            println!(
                "database schema is up to date: {}",
                config.redacted_database_url()
            );
            Ok(ExitCode::SUCCESS)
        }),
    }
}
