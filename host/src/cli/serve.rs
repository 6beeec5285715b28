//! `runledger serve`: the HTTP API on the configured database, artifacts and plugins.

use super::context::{open_engine, tokio_runtime};
use crate::config::Config;
use crate::server::{
    self, AccessMode, AppState, DEFAULT_MAX_BODY_BYTES, DEFAULT_POLL_BUDGET, ServerSettings,
};
use anyhow::{Context as _, Result, bail};
use clap::Args;
use clap::builder::RangedI64ValueParser;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

#[derive(Debug, Args)]
pub(crate) struct ServeArgs {
    /// Address and port to listen on; port 0 picks a free port.
    #[arg(long, default_value = "127.0.0.1:8080", env = "RUNLEDGER_BIND")]
    bind: SocketAddr,
    /// Largest JSON request body, in MiB; artifact uploads stream and have no such limit.
    #[arg(long, env = "RUNLEDGER_MAX_BODY_MIB", allow_negative_numbers = true,
        value_parser = RangedI64ValueParser::<u64>::new().range(1..=4096))]
    max_body_mib: Option<u64>,
    /// Steps of one submitted pipeline run at once [default: number of cores].
    #[arg(long, allow_negative_numbers = true,
        value_parser = RangedI64ValueParser::<u64>::new().range(1..))]
    parallelism: Option<u64>,
    /// Microseconds a connection keeps reading for the client's next request after a response
    /// before it sleeps, 0 for never. This saves a thread wake-up per request for a client that
    /// sends one request after another, and costs that much CPU time when none comes.
    #[arg(long, env = "RUNLEDGER_POLL_MICROS", allow_negative_numbers = true,
        default_value_t = DEFAULT_POLL_BUDGET.as_micros() as u64,
        value_parser = RangedI64ValueParser::<u64>::new().range(0..=1_000))]
    poll_micros: u64,
}

pub(crate) fn run(config: &Config, args: ServeArgs) -> Result<ExitCode> {
    tokio_runtime()?.block_on(serve(config, args))
}

async fn serve(config: &Config, args: ServeArgs) -> Result<ExitCode> {
    let context = open_engine(config).await?;
    let tokens = context.engine.store().count_valid_tokens().await?;
    let mode = access_mode(args.bind, tokens)?;
    let settings = ServerSettings {
        bind: args.bind,
        max_body_bytes: args
            .max_body_mib
            .map_or(DEFAULT_MAX_BODY_BYTES, |mib| (mib as usize) << 20),
        parallelism: super::run::parallelism(args.parallelism, &context.engine),
        poll_budget: Duration::from_micros(args.poll_micros),
    };
    let listener = tokio::net::TcpListener::bind(args.bind)
        .await
        .with_context(|| format!("cannot listen on {}", args.bind))?;
    let address = listener.local_addr()?;
    let state = AppState::new(
        config.clone(),
        settings,
        context.engine,
        context.registry,
        mode,
    );
    announce(address, mode, config);
    server::serve(listener, state, server::shutdown_signal()).await?;
    Ok(ExitCode::SUCCESS)
}

/// Local mode on a loopback address without tokens; tokens everywhere else, and no start on a
/// public address before a token exists.
fn access_mode(bind: SocketAddr, tokens: u64) -> Result<AccessMode> {
    if tokens > 0 {
        return Ok(AccessMode::Tokens);
    }
    if bind.ip().is_loopback() {
        return Ok(AccessMode::Local);
    }
    bail!(
        "refusing to listen on {bind} without access control: no API token exists. Create one \
         with `runledger tokens create --name NAME --role admin`, or bind to 127.0.0.1 for \
         local single-user mode"
    )
}

fn announce(address: SocketAddr, mode: AccessMode, config: &Config) {
    let mode_text = match mode {
        AccessMode::Local => "local single-user mode, no tokens needed",
        AccessMode::Tokens => "bearer tokens required",
    };
    eprintln!("runledger listening on http://{address} ({mode_text})");
    tracing::info!(
        %address,
        database = %config.redacted_database_url(),
        data_dir = %config.data_dir.display(),
        "server started"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_without_tokens_runs_locally() {
        let mode = access_mode("127.0.0.1:0".parse().unwrap(), 0).unwrap();

        assert_eq!(mode, AccessMode::Local);
    }

    #[test]
    fn refuses_public_address_without_tokens() {
        let error = access_mode("0.0.0.0:8080".parse().unwrap(), 0).unwrap_err();

        assert!(error.to_string().contains("tokens create"), "{error}");
    }

    #[test]
    fn tokens_are_required_once_one_exists() {
        let mode = access_mode("[::1]:0".parse().unwrap(), 1).unwrap();

        assert_eq!(mode, AccessMode::Tokens);
    }
}
