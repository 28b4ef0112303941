//! `wisp serve`'s flags.

use clap::Args;

use crate::common::{DeviceArgs, ModelArgs};
use crate::speculation::SpeculationArgs;

#[derive(Debug, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub model: ModelArgs,

    /// The address to listen on. The default, loopback, keeps the server on this machine;
    /// give 0.0.0.0 (with --api-key) to open it to the network.
    #[arg(long, value_name = "HOST", default_value = "127.0.0.1")]
    pub host: String,

    /// The port to listen on (0: any free port; the line `listening on …` says which).
    #[arg(long, value_name = "PORT", default_value_t = 8080)]
    pub port: u16,

    /// At most N generations run at once (each choice of a request is one); the rest wait
    /// in order of arrival. The KV pool holds one context per generation unless --kv-pool
    /// says otherwise.
    #[arg(long, value_name = "N", default_value_t = 4,
          value_parser = clap::value_parser!(u32).range(1..=64))]
    pub parallel: u32,

    /// Require `Authorization: Bearer KEY` on every /v1/ request (/health and /metrics
    /// stay open).
    #[arg(long, value_name = "KEY")]
    pub api_key: Option<String>,

    /// The most generations that may wait for a place; requests beyond it are answered
    /// 429 with Retry-After.
    #[arg(long, value_name = "N", default_value_t = 64)]
    pub max_queue: usize,

    /// On SIGTERM or Ctrl-C, how long running generations may take to finish before they
    /// are cut short; new requests are refused meanwhile. A second signal cuts them at once.
    #[arg(long, value_name = "SECONDS", default_value_t = 30.0)]
    pub drain_s: f64,

    #[command(flatten)]
    pub device: DeviceArgs,

    /// A drafter for every request (each may send `"speculative": false`, or bound its
    /// draft length with llama.cpp's `speculative.n_max` and `speculative.n_min`).
    #[command(flatten)]
    pub speculation: SpeculationArgs,
}
