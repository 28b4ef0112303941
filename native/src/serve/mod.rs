//! `wisp serve`: an OpenAI-compatible HTTP server over one engine.
//!
//! The HTTP side (axum on a small tokio runtime) parses and checks requests, builds and
//! measures their prompts, and queues them as jobs. One engine thread (`engine.rs`) owns
//! the engine and runs every request's generations in one continuous batch, sending each
//! request its text as it comes. Modules:
//!
//! - `args`: the flags; `state`: what handlers and the engine thread share;
//! - `request` / `json` / `validate`: request bodies, their parsing with OpenAI-shaped
//!   errors, and the checks that turn them into a `Plan`;
//! - `model`: the served model's names, tokenizer, chat template and defaults;
//! - `job`: the messages between the HTTP side and the engine thread;
//! - `admission`: the bounded queue (429 when full); `engine`: the engine thread;
//! - `response` / `stream`: OpenAI's response and chunk shapes, whole or as SSE;
//! - `routes`: the endpoints, the API key, request counting; `metrics`: Prometheus text;
//! - `error`: OpenAI's error JSON; `shutdown`: the signals that drain the server.

mod admission;
mod args;
mod engine;
mod error;
mod job;
mod json;
mod metrics;
mod model;
mod request;
mod response;
mod routes;
mod shutdown;
mod state;
mod stream;
mod validate;

use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use tokio::sync::{mpsc, oneshot};

pub use args::ServeArgs;

use admission::Admission;
use engine::EngineSetup;
use job::Command;
use metrics::Metrics;
use shutdown::Signals;
use state::Shared;

/// How long connections may take to close once the engine has drained.
const CLOSE_GRACE: Duration = Duration::from_secs(5);

pub fn run(args: ServeArgs) -> Result<()> {
    if !(args.drain_s.is_finite() && args.drain_s >= 0.0) {
        bail!("--drain-s must be a number of seconds >= 0");
    }
    // The engine has its own thread; two workers are plenty for parsing and streaming.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("wisp-http")
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(serve(args))
}

async fn serve(args: ServeArgs) -> Result<()> {
    // Refused before anything binds or loads.
    args.speculation.options()?;
    let mut signals = Signals::new()?;
    let listener = tokio::net::TcpListener::bind((args.host.as_str(), args.port))
        .await
        .with_context(|| format!("listening on {}:{}", args.host, args.port))?;
    let address = listener.local_addr().context("reading the bound address")?;
    if !address.ip().is_loopback() && args.api_key.is_none() {
        eprintln!(
            "warning: listening on {address} without --api-key: anyone who can reach it may use the model"
        );
    }
    let (commands, command_receiver) = mpsc::unbounded_channel();
    let shared = Arc::new(Shared {
        model: OnceLock::new(),
        commands: commands.clone(),
        admission: Admission::new(args.max_queue),
        draining: Default::default(),
        metrics: Metrics::default(),
        api_key: args.api_key.clone(),
    });
    let (engine_ended, mut engine_done) = oneshot::channel();
    engine::spawn(
        EngineSetup {
            model: args.model,
            device: args.device,
            parallel: args.parallel,
            speculation: args.speculation,
        },
        command_receiver,
        shared.clone(),
        engine_ended,
    )
    .context("starting the engine thread")?;

    let (close, closing) = oneshot::channel::<()>();
    let app = routes::router(shared.clone());
    let server = tokio::spawn(
        axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = closing.await;
            })
            .into_future(),
    );
    // Tests and scripts wait for this line; /health says when the model is loaded.
    eprintln!("listening on http://{address}");

    let signal = tokio::select! {
        signal = signals.next() => signal,
        ended = &mut engine_done => {
            // Before any signal the engine thread only ends when loading failed.
            return match ended {
                Ok(Err(e)) => Err(e.context("loading the model")),
                _ => bail!("the engine thread stopped unexpectedly"),
            };
        }
    };
    shared.draining.store(true, Ordering::Release);
    let drain = Duration::from_secs_f64(args.drain_s);
    eprintln!("{signal}: draining (new requests get 503; running ones have {drain:?} to finish)");
    let _ = commands.send(Command::Drain {
        deadline: Instant::now() + drain,
    });
    let ended = tokio::select! {
        ended = &mut engine_done => ended,
        signal = signals.next() => {
            eprintln!("{signal} again: cutting running generations short");
            let _ = commands.send(Command::Drain { deadline: Instant::now() });
            (&mut engine_done).await
        }
    };
    if let Ok(Err(e)) = ended {
        // A signal that came while the model was still loading: nothing ran.
        tracing::warn!("the engine did not start: {e:#}");
    }
    let _ = close.send(());
    match tokio::time::timeout(CLOSE_GRACE, server).await {
        Ok(Ok(Err(e))) => tracing::warn!("the HTTP server ended with an error: {e}"),
        Err(_) => tracing::warn!("connections still open after {CLOSE_GRACE:?}: closing them"),
        _ => {}
    }
    eprintln!("drained");
    Ok(())
}
