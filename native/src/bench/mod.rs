//! `wisp bench`: llama-bench's tests (prompt processing `ppN` and text generation `tgN`,
//! at a context depth, repeated, mean ± std) plus what llama-bench lacks: where the time
//! goes per kernel, and how close decoding gets to the adapter's own bandwidth (the
//! streaming-read probe, `wisp_core::kernels::streaming_read`).
//!
//! - `measure.rs` runs the tests on an engine;
//! - `report.rs` prints markdown, JSON or CSV;
//! - `compare.rs` merges JSON runs from several machines into one table;
//! - `plot.rs` draws tokens/s against depth and a step's kernels as SVG;
//! - `speculative.rs` compares decoding with and without a drafter (`--lookup`,
//!   `--self-draft`, `--draft`) on one prompt.

mod compare;
mod measure;
mod plot;
mod report;
mod speculative;

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand, ValueEnum};
use wisp_core::gguf::GgufFile;
use wisp_core::model::{ModelConfig, ModelCost, SyntheticModel};

use crate::common::{self, DeviceArgs, Model};
use crate::speculation::SpeculationArgs;
use report::{BenchReport, LoadInfo, ModelInfo};

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Md,
    Json,
    Csv,
}

#[derive(Debug, Subcommand)]
pub enum BenchAction {
    /// Merge `wisp bench -o json` runs (from other machines, adapters or models) into one
    /// markdown table: a row per test, a column per run.
    Compare {
        /// JSON files, each one report or an array of them (`--all-adapters`).
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
}

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct BenchArgs {
    #[command(subcommand)]
    pub action: Option<BenchAction>,

    /// Run the benchmark on every adapter found, one after another (`--adapter` picks one).
    #[arg(long, conflicts_with = "adapter")]
    pub all_adapters: bool,

    /// A GGUF file, a Hugging Face folder or a known model's name (default: the default
    /// model, unless --synthetic is given).
    #[arg(short = 'm', long)]
    pub model: Option<String>,

    /// Random weights of a named shape, no download: NAME:QUANT with NAME one of
    /// llama-1b, llama-3b, llama-7b, llama-8b, qwen2-0.5b, mixtral-8x7b (4 layers), or
    /// explicit dims `layers=2,embd=256,ff=512,heads=4,kv_heads=2,vocab=1000`; QUANT any
    /// weight type (q4_0, q4_k, q8_0, f16, ...).
    #[arg(long, value_name = "NAME:QUANT", conflicts_with = "model")]
    pub synthetic: Option<String>,

    /// Write the --synthetic model to this GGUF file (with a placeholder vocabulary) and
    /// exit, so that other runtimes can be benchmarked on the very same weights, e.g.
    /// `llama-bench -m FILE`; `wisp bench -m FILE` then runs the same model too.
    #[arg(long, value_name = "FILE.gguf", requires = "synthetic")]
    pub save_gguf: Option<PathBuf>,

    /// Prompt lengths of the prompt-processing tests (comma-separated; 0 skips them).
    #[arg(
        short = 'p',
        long = "n-prompt",
        value_delimiter = ',',
        default_value = "512"
    )]
    pub n_prompt: Vec<u32>,

    /// Tokens of the text-generation tests (comma-separated; 0 skips them).
    #[arg(
        short = 'n',
        long = "n-gen",
        value_delimiter = ',',
        default_value = "128"
    )]
    pub n_gen: Vec<u32>,

    /// Context depths: tokens already in the cache before each test (comma-separated).
    #[arg(
        short = 'd',
        long = "n-depth",
        value_delimiter = ',',
        default_value = "0"
    )]
    pub depth: Vec<u32>,

    /// Timed repetitions of each test (after one untimed warm-up).
    #[arg(short = 'r', long = "repetitions", default_value_t = 5)]
    pub reps: u32,

    /// Sequences run at once (comma-separated): generation decodes one token of each per
    /// step; prompt processing prefills each sequence's prompt in the same steps.
    #[arg(
        short = 'b',
        long = "batch",
        value_delimiter = ',',
        default_value = "1"
    )]
    pub batch: Vec<u32>,

    /// Also draw tokens/s against depth and the per-kernel breakdown into this SVG file.
    #[arg(long, value_name = "FILE.svg")]
    pub plot: Option<PathBuf>,

    /// Output format.
    #[arg(short = 'o', long = "output", value_enum, default_value_t = Format::Md)]
    pub output: Format,

    #[command(flatten)]
    pub device: DeviceArgs,

    /// With a drafter, instead of llama-bench's tests: decode one prompt (the first -n
    /// tokens, greedy) with and without speculative decoding in the same run.
    #[command(flatten)]
    pub speculation: SpeculationArgs,

    /// The prompt of the speculative comparison (default: a function to repeat with one
    /// change).
    #[arg(long, value_name = "TEXT")]
    pub prompt_text: Option<String>,
}

/// The model under test: a file or a synthetic one.
enum Subject {
    File(Model),
    Synthetic(SyntheticModel),
}

impl Subject {
    fn file(&self) -> &GgufFile {
        match self {
            Subject::File(m) => &m.file,
            Subject::Synthetic(s) => &s.file,
        }
    }
}

pub fn run(args: BenchArgs) -> Result<()> {
    if let Some(BenchAction::Compare { files }) = &args.action {
        print!("{}", compare::table(files)?);
        return Ok(());
    }
    if args.reps == 0 {
        bail!("-r must be at least 1");
    }
    if args.batch.contains(&0) {
        bail!("-b takes sequence counts of at least 1");
    }
    let tests = measure::TestPlan::from_args(&args.n_prompt, &args.n_gen, &args.depth, &args.batch);
    if tests.is_empty() {
        bail!("nothing to run: every -p and -n is 0");
    }
    if let (Some(path), Some(spec)) = (&args.save_gguf, &args.synthetic) {
        return save_synthetic(spec, path);
    }
    if args.speculation.options()?.is_some() {
        if args.synthetic.is_some() {
            bail!("the speculative comparison needs a model file (-m), not --synthetic");
        }
        let model = Model::open_with(args.model.as_deref(), None)?;
        return speculative::run(&args, &model);
    }
    let subject = match &args.synthetic {
        Some(spec) => Subject::Synthetic(SyntheticModel::parse(spec).context("--synthetic")?),
        None => Subject::File(Model::open_with(args.model.as_deref(), None)?),
    };
    let mut reports = Vec::new();
    if args.all_adapters {
        let adapters = pollster::block_on(wisp_core::gpu::list_adapters());
        if adapters.is_empty() {
            bail!("no adapter found");
        }
        for a in adapters {
            eprintln!("bench: adapter {}: {} ({})", a.index, a.name, a.backend);
            let device = DeviceArgs {
                adapter: Some(a.index.to_string()),
                ..args.device.clone()
            };
            reports.push(bench_on(&args, &subject, &tests, device)?);
        }
    } else {
        reports.push(bench_on(&args, &subject, &tests, args.device.clone())?);
    }
    if let Some(path) = &args.plot {
        plot::draw(&reports, path)?;
        eprintln!("bench: plot written to {}", path.display());
    }
    report::print(&reports, args.output, args.all_adapters)
}

/// `--save-gguf`: the synthetic model as a file.
fn save_synthetic(spec: &str, path: &std::path::Path) -> Result<()> {
    let model = SyntheticModel::parse(spec).context("--synthetic")?;
    eprintln!(
        "bench: writing {} to {}",
        model.description(),
        path.display()
    );
    let writer = model.to_gguf()?;
    let file =
        std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
    let mut out = std::io::BufWriter::new(file);
    writer
        .write_to(&mut out)
        .and_then(|()| std::io::Write::flush(&mut out))
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// Every test on the adapter `device` names.
fn bench_on(
    args: &BenchArgs,
    subject: &Subject,
    tests: &[measure::Test],
    mut device: DeviceArgs,
) -> Result<BenchReport> {
    let file = subject.file();
    let config = ModelConfig::from_gguf(file)?;
    let max_batch = *args.batch.iter().max().unwrap_or(&1);
    // Room for the deepest test plus what it adds, per sequence.
    let longest = tests.iter().map(|t| t.depth + t.tokens).max().unwrap_or(1) + 1;
    if device.ctx == 0 {
        device.ctx = longest
            .next_multiple_of(64)
            .min(config.n_ctx_train.max(longest));
    }
    let gpu = common::open_gpu(&device)?;
    let t_load = Instant::now();
    let mut engine = match subject {
        Subject::File(m) => common::load_engine(m, gpu, &device, max_batch)?,
        Subject::Synthetic(s) => {
            common::load_engine_from(&s.file, s, &s.name, gpu, &device, max_batch)?
        }
    };
    let load = LoadInfo {
        seconds: t_load.elapsed().as_secs_f64(),
        pipeline_compile_seconds: engine.gpu.pipelines.compile_seconds(),
    };
    let bandwidth = pollster::block_on(wisp_core::kernels::streaming_read(
        &engine.gpu,
        engine.variant,
    ))?;
    let cost = ModelCost::new(&engine.config, &engine.weights, engine.kv_stats().kv_type);
    let model = match subject {
        Subject::File(m) => ModelInfo::of_file(&m.path.display().to_string(), file, m.file_bytes()),
        Subject::Synthetic(s) => ModelInfo::of_synthetic(s),
    };
    let mut results = Vec::with_capacity(tests.len());
    for test in tests {
        eprintln!("bench: {} ...", test.label());
        results.push(measure::run_test(
            &mut engine,
            test,
            args.reps,
            &cost,
            bandwidth.gb_per_s,
        )?);
    }
    Ok(BenchReport::new(
        model, &engine, load, bandwidth, cost, results,
    ))
}
