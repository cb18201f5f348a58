//! The command line: clap definitions, and `run`, which hands each command to its file.
//!
//! This is the binary's edge, so errors here are `anyhow` with context for the operator.

pub mod broker_acl;
pub mod check_data;
pub mod locate;
pub mod sweep;
pub mod targets_import;
pub mod tokens;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::cli::broker_acl::BrokerAclArgs;
use crate::cli::check_data::CheckDataArgs;
use crate::cli::locate::LocateArgs;
use crate::cli::sweep::SweepArgs;
use crate::cli::targets_import::ImportArgs;
use crate::service::config::ServeArgs;
use crate::tools::demo::DemoArgs;

/// leadrelay: sightings of flagged debtors' vehicles and persons in, assistance tasks for
/// the right court's command center out.
#[derive(Debug, Parser)]
#[command(name = "leadrelay", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// Log format on stderr.
    #[arg(
        long,
        global = true,
        env = "LEADRELAY_LOG_FORMAT",
        default_value = "text"
    )]
    pub log_format: LogFormat,
    /// Least severe log lines written: error, warn, info, debug or trace (default: info; the
    /// demo: warn). RUST_LOG, when set, wins: it takes tracing's directives, e.g.
    /// `leadrelay=debug,sqlx=info`.
    #[arg(long, global = true, env = "LEADRELAY_LOG_LEVEL")]
    pub log_level: Option<LogLevel>,
}

impl Cli {
    /// The log filter `--log-level` means for this command. Two libraries are kept quieter:
    /// the embedded broker logs every client disconnect as an error, and sqlx every
    /// statement at debug.
    pub fn log_filter(&self) -> String {
        let level = self.log_level.unwrap_or(match self.command {
            Command::Demo(_) => LogLevel::Warn,
            _ => LogLevel::Info,
        });
        let sqlx = level.min(LogLevel::Warn);
        format!("{},rumqttd=off,sqlx={}", level.as_str(), sqlx.as_str())
    }
}

/// How much is logged, least to most.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, clap::ValueEnum)]
pub enum LogLevel {
    Error,
    Warn,
    Info,
    Debug,
    Trace,
}

impl LogLevel {
    fn as_str(self) -> &'static str {
        match self {
            LogLevel::Error => "error",
            LogLevel::Warn => "warn",
            LogLevel::Info => "info",
            LogLevel::Debug => "debug",
            LogLevel::Trace => "trace",
        }
    }
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the service: sightings in over MQTT, tasks out, HTTP API and metrics.
    Serve(ServeArgs),
    /// Everything embedded (broker, SQLite, Ningbo data) with a simulated camera feed.
    Demo(DemoArgs),
    /// Manage flagged targets.
    #[command(subcommand)]
    Targets(TargetsCommand),
    /// Print which court's area holds a point and which court would act on it, as JSON.
    Locate(LocateArgs),
    /// Validate jurisdiction and court files and report every problem found.
    CheckData(CheckDataArgs),
    /// Export the active targets whose known locations lie in a court's area (sweep planning).
    Sweep(SweepArgs),
    /// Write the broker's ACL and password entries: each court, feed and the service gets
    /// only its own topics.
    BrokerAcl(BrokerAclArgs),
    /// Bearer tokens of the HTTP API: create (printed once), list, revoke.
    #[command(subcommand)]
    Tokens(crate::cli::tokens::TokensCommand),
    /// Load generator: publish realistic sightings, check and time what comes back.
    Simulate(crate::tools::simulate::SimulateArgs),
}

#[derive(Debug, Subcommand)]
pub enum TargetsCommand {
    /// Import targets from a JSON-lines file (one Target per line); a running service picks
    /// them up within a second.
    Import(ImportArgs),
}

/// Runs the command; the exit code says whether it succeeded.
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Locate(args) => locate::run(args),
        Command::CheckData(args) => check_data::run(args),
        Command::BrokerAcl(args) => broker_acl::run(args),
        Command::Sweep(args) => runtime()?.block_on(sweep::run(args)),
        Command::Serve(args) => {
            let config = args.resolve()?;
            tracing::info!(?config, "configuration");
            let runtime = runtime()?;
            let served = runtime.block_on(crate::service::run(
                config,
                crate::service::shutdown_signal(),
            ));
            // After a shutdown that overran its grace, tasks may still wait on a dead socket:
            // do not wait for them (dropping the runtime would).
            runtime.shutdown_timeout(SHUTDOWN_LINGER);
            served?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Demo(args) => {
            runtime()?.block_on(crate::tools::demo::run(args))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Targets(TargetsCommand::Import(args)) => {
            runtime()?.block_on(targets_import::run(args))
        }
        Command::Tokens(command) => runtime()?.block_on(tokens::run(command)),
        Command::Simulate(args) => Ok(
            if runtime_with_threads(args.threads)?.block_on(crate::tools::simulate::run(args))? {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            },
        ),
    }
}

/// An error and its causes on one line, each cause said once: a cause whose text the message
/// already holds (a library that puts its source into its own message too) is skipped.
pub fn causes(error: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in error.chain() {
        let text = cause.to_string();
        if line.contains(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line
}

/// How long the runtime may wind down after `serve` returned.
const SHUTDOWN_LINGER: std::time::Duration = std::time::Duration::from_secs(1);

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    runtime_with_threads(0)
}

/// A runtime of `threads` workers: 0 = one per core, 1 = the current thread only (what
/// `simulate --threads` chooses).
fn runtime_with_threads(threads: usize) -> anyhow::Result<tokio::runtime::Runtime> {
    let mut builder = match threads {
        0 => tokio::runtime::Builder::new_multi_thread(),
        1 => tokio::runtime::Builder::new_current_thread(),
        n => {
            let mut builder = tokio::runtime::Builder::new_multi_thread();
            builder.worker_threads(n);
            builder
        }
    };
    Ok(builder.enable_all().build()?)
}
