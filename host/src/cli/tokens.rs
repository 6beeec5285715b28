//! `runledger tokens`: create, list and revoke bearer tokens of the HTTP API.

use super::context::{open_store, tokio_runtime};
use crate::config::Config;
use crate::server::Role;
use anyhow::Result;
use clap::Subcommand;
use std::process::ExitCode;

#[derive(Debug, Subcommand)]
#[command(defer = true)]
pub(crate) enum TokensCommand {
    /// Create a token and print it once; only its hash is stored.
    Create {
        /// Name shown in logs and listings in place of the token.
        #[arg(long)]
        name: String,
        /// What the token may do: viewer reads, editor also writes runs, approver also
        /// approves promotions, admin also manages plugins and tokens.
        #[arg(long, value_parser = clap::value_parser!(Role))]
        role: Role,
    },
    /// List tokens by name, with role and state; tokens themselves are never shown again.
    List,
    /// Revoke a token; a running server stops accepting it within 10 seconds.
    Revoke {
        /// Name of the token.
        name: String,
    },
}

impl clap::ValueEnum for Role {
    fn value_variants<'a>() -> &'a [Self] {
        &[Self::Viewer, Self::Editor, Self::Approver, Self::Admin]
    }

    fn to_possible_value(&self) -> Option<clap::builder::PossibleValue> {
        Some(clap::builder::PossibleValue::new(self.as_str()))
    }
}

pub(crate) fn run(config: &Config, command: TokensCommand) -> Result<ExitCode> {
    tokio_runtime()?.block_on(async {
        let store = open_store(config).await?;
        match command {
            TokensCommand::Create { name, role } => create(&store, &name, role).await,
            TokensCommand::List => list(&store).await,
            TokensCommand::Revoke { name } => {
                store.revoke_token(&name).await?;
                println!("revoked token {name}");
                Ok(ExitCode::SUCCESS)
            }
        }
    })
}

async fn create(store: &crate::store::Store, name: &str, role: Role) -> Result<ExitCode> {
    if name.trim().is_empty() {
        anyhow::bail!("--name is empty; give the token a name such as ci or alice");
    }
    let (_, token) = store.create_token(name, role.as_str()).await?;
    eprintln!("created {role} token {name}; it is shown once, so store it now:");
    println!("{token}");
    Ok(ExitCode::SUCCESS)
}

async fn list(store: &crate::store::Store) -> Result<ExitCode> {
    let tokens = store.list_tokens().await?;
    if tokens.is_empty() {
        println!("no tokens; create one with `runledger tokens create --name NAME --role ROLE`");
        return Ok(ExitCode::SUCCESS);
    }
    println!("{:<24} {:<9} {:<20} STATE", "NAME", "ROLE", "CREATED");
    for token in tokens {
        let created = super::runs::time(token.created_at);
        let state = match token.revoked_at {
            Some(at) => format!("revoked {}", super::runs::time(at)),
            None => "valid".to_owned(),
        };
        println!(
            "{:<24} {:<9} {:<20} {state}",
            token.name, token.role, created
        );
    }
    Ok(ExitCode::SUCCESS)
}
