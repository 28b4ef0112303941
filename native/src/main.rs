//! The `wisp` command. One module per subcommand (`cmd_*.rs`).

mod cmd_fetch;
mod model_cache;

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

#[derive(Debug, Parser)]
#[command(name = "wisp", version, about = "Wisp: portable LLM inference on wgpu")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Download known models into the cache folder and print their paths.
    Fetch(cmd_fetch::FetchArgs),
}

fn main() -> ExitCode {
    // Logs go to stderr; RUST_LOG picks the level (default: warnings and errors).
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();

    let cli = Cli::parse();
    let result = match cli.command {
        Cmd::Fetch(args) => cmd_fetch::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
