//! `wisp-desktop`: a chat window over wisp-core. The window is egui (eframe, rendered
//! with wgpu); the engine runs on its own thread (`engine_thread`), so loading a model or
//! generating never freezes the window. Conversations and settings are kept in a data
//! folder and listed again on the next start.

mod app;
mod automation;
mod engine_thread;
mod history;
mod prefs;
mod screenshot;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, anyhow};
use clap::Parser;
use eframe::egui;
use tracing_subscriber::EnvFilter;

use app::{DesktopApp, Startup};
use automation::{Script, Step};

#[derive(Debug, Parser)]
#[command(name = "wisp-desktop", version, about = "Wisp's desktop chat app")]
struct Cli {
    /// The model to load at start: a GGUF file, a Hugging Face model folder or a known
    /// model's name (see `wisp fetch --list`). Default: the last model loaded, else the
    /// default model (fetched into the cache the first time).
    #[arg(short = 'm', long = "model", value_name = "MODEL")]
    model: Option<String>,

    /// The adapter the engine runs on, by index (as `wisp info` lists them) or part of
    /// its name. Default: the best one.
    #[arg(long, value_name = "INDEX|NAME")]
    adapter: Option<String>,

    /// Where conversations and settings are kept. Default: the platform's data folder
    /// (on Linux `~/.local/share/wisp/desktop`).
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,

    /// Sets the sampling temperature (0: greedy), as the settings panel would (it is saved).
    #[arg(long, value_name = "T")]
    temp: Option<f32>,

    /// Sets the most tokens per reply, as the settings panel would (it is saved).
    #[arg(short = 'n', long = "max-tokens", value_name = "N")]
    max_tokens: Option<u32>,

    /// Scripted run: once the model is loaded, type this message and send it (the same
    /// as `--step send=TEXT`; before any --step).
    #[arg(long, value_name = "TEXT")]
    send: Option<String>,

    /// Scripted run: what to do once the model is loaded, in order, each waiting for its
    /// reply: `send=TEXT`, `regenerate` (answer the last message again) or
    /// `send-stop=TEXT` (send, then press Stop as soon as the reply's first text shows).
    #[arg(long = "step", value_name = "STEP")]
    steps: Vec<Step>,

    /// Scripted run: when the last step's reply has ended (with no steps, once the model
    /// is loaded), save a PNG of the window here.
    #[arg(long, value_name = "FILE.png")]
    screenshot: Option<PathBuf>,

    /// Scripted run: print what the window shows (conversations, the selected one, the
    /// last reply's speed) as one JSON line when done.
    #[arg(long)]
    report: bool,

    /// Scripted run: close the window when done.
    #[arg(long)]
    quit: bool,

    /// Scripted run: give up (exit status 1) after this many seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = 900)]
    timeout: u64,
}

fn data_dir(cli: &Cli) -> Result<PathBuf> {
    if let Some(dir) = &cli.data_dir {
        return Ok(dir.clone());
    }
    let dirs = directories::ProjectDirs::from("", "", "wisp")
        .ok_or_else(|| anyhow!("no home folder to keep conversations in: pass --data-dir"))?;
    Ok(dirs.data_dir().join("desktop"))
}

fn run(cli: Cli) -> Result<()> {
    let data_dir = data_dir(&cli)?;
    std::fs::create_dir_all(&data_dir)
        .with_context(|| format!("creating {}", data_dir.display()))?;
    let steps: Vec<Step> = cli
        .send
        .iter()
        .map(|t| Step::Send(t.clone()))
        .chain(cli.steps.iter().cloned())
        .collect();
    let scripted = !steps.is_empty() || cli.screenshot.is_some() || cli.report || cli.quit;
    let script = scripted.then(|| {
        Script::new(
            steps,
            cli.screenshot.clone(),
            cli.quit,
            cli.report,
            Duration::from_secs(cli.timeout),
        )
    });
    let failure = script.as_ref().map(|s| s.failure.clone());
    let (temp, max_tokens) = (cli.temp, cli.max_tokens);
    let startup = Startup {
        data_dir,
        adapter: cli.adapter,
        model: cli.model,
        sampling_override: Box::new(move |prefs| {
            if let Some(t) = temp {
                prefs.sampling.overrides.temperature = Some(t);
            }
            if let Some(n) = max_tokens {
                prefs.sampling.max_tokens = n;
            }
        }),
        script,
    };
    let options = eframe::NativeOptions {
        viewport: egui::ViewportBuilder::default()
            .with_title("Wisp")
            .with_app_id("wisp-desktop")
            .with_inner_size([1100.0, 720.0])
            .with_min_inner_size([640.0, 400.0]),
        renderer: eframe::Renderer::Wgpu,
        ..Default::default()
    };
    eframe::run_native(
        "Wisp",
        options,
        Box::new(|cc| Ok(Box::new(DesktopApp::new(&cc.egui_ctx, startup)?))),
    )
    .map_err(|e| anyhow!("the window could not run: {e}"))?;
    if let Some(failure) = failure
        && let Some(why) = failure.lock().unwrap_or_else(|e| e.into_inner()).take()
    {
        return Err(anyhow!("{why}"));
    }
    Ok(())
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| EnvFilter::new("warn,wisp_desktop=info")),
        )
        .with_writer(std::io::stderr)
        .init();
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
