//! The `leadrelay` binary: parse the command line, start logging, run, map errors to an
//! exit code. Everything else lives in the library.

use std::process::ExitCode;

use clap::Parser;

/// The group commit builds and frees many mid-sized buffers (SQL arguments, JSON payloads);
/// glibc's allocator spent a quarter of the service's CPU on them under load (perf), mimalloc
/// a small fraction. Built with mimalloc's `override` feature, it is also the `malloc` of the
/// C code in the process: SQLite's own allocations had stayed with glibc, whose malloc and
/// free took about a tenth of the SQLite thread's samples in a durable-task run.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = leadrelay::cli::Cli::parse();
    // The demo prints its own readable lines; the service logs at info. The embedded broker
    // logs every client disconnect as an error, which is noise here.
    let default_filter = match cli.command {
        leadrelay::cli::Command::Demo(_) => "warn,rumqttd=off",
        _ => "info,rumqttd=off,sqlx=warn",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| default_filter.into());
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match cli.log_format {
        leadrelay::cli::LogFormat::Json => logs.json().init(),
        leadrelay::cli::LogFormat::Text => logs.init(),
    }
    match leadrelay::cli::run(cli) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
