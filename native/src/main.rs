//! The `wisp` command; its subcommands live in the library (`cmd_*.rs`, `bench/`).

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;
use wisp::{
    bench, cmd_chat, cmd_convert, cmd_fetch, cmd_generate, cmd_info, cmd_logits, cmd_perplexity,
    serve,
};

#[derive(Debug, Parser)]
#[command(name = "wisp", version, about = "Wisp: portable LLM inference on wgpu")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Continue a prompt (raw text, no chat template), streaming the output.
    Generate(cmd_generate::GenerateArgs),
    /// Chat interactively; the conversation's KV cache is reused from turn to turn.
    Chat(cmd_chat::ChatArgs),
    /// Print the top logits at every position of a prompt.
    Logits(cmd_logits::LogitsArgs),
    /// Measure the perplexity of a text file.
    Perplexity(cmd_perplexity::PerplexityArgs),
    /// List the adapters (and describe a model with -m).
    Info(cmd_info::InfoArgs),
    /// Download known models into the cache folder and print their paths.
    Fetch(cmd_fetch::FetchArgs),
    /// Convert a GGUF model to a Hugging Face folder, or a folder to a (quantized) GGUF file.
    Convert(cmd_convert::ConvertArgs),
    /// Benchmark prompt processing and generation (llama-bench's tests), with per-kernel
    /// GPU time and decoding's share of the adapter's bandwidth.
    Bench(bench::BenchArgs),
    /// Serve the model over HTTP with OpenAI's API (chat and text completions, streamed or
    /// whole), continuous batching of concurrent requests, /health and /metrics.
    Serve(serve::ServeArgs),
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
        Cmd::Generate(args) => cmd_generate::run(args),
        Cmd::Chat(args) => cmd_chat::run(args),
        Cmd::Logits(args) => cmd_logits::run(args),
        Cmd::Perplexity(args) => cmd_perplexity::run(args),
        Cmd::Info(args) => cmd_info::run(args),
        Cmd::Fetch(args) => cmd_fetch::run(args),
        Cmd::Convert(args) => cmd_convert::run(args),
        Cmd::Bench(args) => bench::run(args),
        Cmd::Serve(args) => serve::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        // A reader that went away (`wisp info | head`) is not an error worth a message.
        Err(err) if is_broken_pipe(&err) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain()
        .filter_map(|e| e.downcast_ref::<std::io::Error>())
        .any(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
}
