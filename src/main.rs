//! The `leadrelay` binary: parse the command line, start logging, run, map errors to an
//! exit code. Everything else lives in the library.

use std::io::IsTerminal;
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
    // RUST_LOG, when set, says everything; otherwise --log-level, which the demo lowers to
    // warn (it prints its own readable lines). The embedded broker logs every client
    // disconnect as an error, which is noise here; sqlx logs every statement at debug.
    let filter = match std::env::var("RUST_LOG") {
        Ok(directives) if !directives.trim().is_empty() => {
            tracing_subscriber::EnvFilter::new(directives)
        }
        _ => tracing_subscriber::EnvFilter::new(cli.log_filter()),
    };
    // Colours only for a person at a terminal: a file or a log collector gets plain text.
    let ansi = std::io::stderr().is_terminal()
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    match cli.log_format {
        leadrelay::cli::LogFormat::Json => logs.json().init(),
        leadrelay::cli::LogFormat::Text => logs.init(),
    }
    match leadrelay::cli::run(cli) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {}", leadrelay::cli::causes(&error));
            ExitCode::FAILURE
        }
    }
}
