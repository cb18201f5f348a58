//! `leadrelay tokens create|list|revoke`: the bearer tokens of the HTTP API.

use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand};

use crate::app::auth::{self, Scope};
use crate::service::config::{DataArgs, StoreArgs};
use crate::store::Store;

#[derive(Debug, Subcommand)]
pub enum TokensCommand {
    /// Make a token and print it once (only its hash is stored).
    Create(CreateArgs),
    /// Every token: name, scope, created, revoked (never the token or its hash).
    List(ListArgs),
    /// Revoke the live token of this name: a running service refuses it from then on.
    Revoke(RevokeArgs),
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    /// Who holds it, e.g. "cixi console"; unique among the tokens not revoked.
    #[arg(long)]
    pub name: String,
    /// `admin`, `ops` or `court:<court_id>`.
    #[arg(long)]
    pub scope: String,
    #[command(flatten)]
    pub store: StoreArgs,
    /// The courts a `court:` scope is checked against.
    #[command(flatten)]
    pub data: DataArgs,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    #[command(flatten)]
    pub store: StoreArgs,
}

#[derive(Debug, Args)]
pub struct RevokeArgs {
    /// The token's name.
    pub name: String,
    #[command(flatten)]
    pub store: StoreArgs,
}

pub async fn run(command: TokensCommand) -> anyhow::Result<ExitCode> {
    let now = chrono::Utc::now();
    match command {
        TokensCommand::Create(args) => {
            let scope = Scope::parse(&args.scope).map_err(anyhow::Error::msg)?;
            if let Some(court) = scope.court() {
                let geo = args.data.load()?;
                anyhow::ensure!(
                    geo.court(court).is_some(),
                    "scope {scope}: no court {court:?} in the courts data"
                );
            }
            let store = connect(&args.store).await?;
            let token = auth::create(&store, &args.name, &scope, now).await?;
            eprintln!(
                "token {:?} ({scope}) created; it is shown only now:",
                args.name
            );
            crate::outln!("{token}");
        }
        TokensCommand::List(args) => {
            let store = connect(&args.store).await?;
            crate::outln!(
                "{:<30}  {:<28}  {:<24}  revoked",
                "name",
                "scope",
                "created"
            );
            for t in auth::list(&store).await? {
                let revoked = t.revoked_at.map_or("-".to_string(), |r| r.to_rfc3339());
                crate::outln!(
                    "{:<30}  {:<28}  {:<24}  {revoked}",
                    t.name,
                    t.scope,
                    t.created_at.to_rfc3339()
                );
            }
        }
        TokensCommand::Revoke(args) => {
            let store = connect(&args.store).await?;
            auth::revoke(&store, &args.name, now).await?;
            crate::outln!("token {:?} revoked", args.name);
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn connect(store: &StoreArgs) -> anyhow::Result<Store> {
    let url = store.database_url()?;
    Store::connect(&url)
        .await
        .with_context(|| format!("connecting to {}", crate::service::config::redact(&url)))
}
