//! `wisp generate`: continue a raw prompt (no chat template), streaming the text.

use std::io::Write;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use clap::Args;
use serde_json::json;
use wisp_core::generate::{GenerateOptions, Generation, Generator};
use wisp_core::sampling::SamplerConfig;
use wisp_core::scheduler::Scheduler;

use crate::common::{self, DeviceArgs, Interrupt, Model, ModelArgs, SamplingArgs};
use crate::speculation::{self, SpeculationArgs};

#[derive(Debug, Args)]
pub struct GenerateArgs {
    #[command(flatten)]
    pub model: ModelArgs,

    /// The text to continue, tokenized as is (BOS where the model wants it; no chat
    /// template: use `wisp chat` for that). Give it several times to run several
    /// prompts at once.
    #[arg(short = 'p', long = "prompt", value_name = "PROMPT", required = true)]
    pub prompt: Vec<String>,

    /// Run N generations at once in one batch (continuous batching): the prompts given,
    /// repeated in turn up to N, each with its own seed (seed, seed + 1, ...). Given at
    /// all (even `--parallel 1`), generation goes through the scheduler and `--json`
    /// reports its batch statistics.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub parallel: Option<u32>,

    /// The most tokens to generate (-1: until an end token or a full context).
    #[arg(
        short = 'n',
        long = "n-predict",
        value_name = "N",
        default_value_t = 256,
        allow_negative_numbers = true
    )]
    pub n_predict: i64,

    /// Keep generating past end-of-generation tokens, to exactly `-n` tokens (for
    /// benchmarks, like llama.cpp's `--ignore-eos`).
    #[arg(long)]
    pub ignore_eos: bool,

    #[command(flatten)]
    pub device: DeviceArgs,

    #[command(flatten)]
    pub sampling: SamplingArgs,

    #[command(flatten)]
    pub speculation: SpeculationArgs,

    /// Print nothing while generating, then one JSON object: prompt_ids, ids, text,
    /// prefill_tok_s, decode_tok_s, adapter, stop_reason, variant, seed, sampling (each
    /// value in effect with its source), load_s, pipeline_compile_s, kv (the KV pool's
    /// blocks) and speculation (with a drafter: steps, drafted, accepted, produced,
    /// acceptance_rate, mean_accepted_length; else null). With --parallel: outputs (one
    /// per generation, each with its speculation), parallel, steps, peak_batch, seconds,
    /// total_tok_s, generated_tok_s, adapter, variant, seed (the first generation's),
    /// sampling, kv.
    #[arg(long)]
    pub json: bool,
}

pub fn run(mut args: GenerateArgs) -> Result<()> {
    // Checked before anything loads.
    args.speculation.options()?;
    args.device.self_draft_layers = args.speculation.self_draft_layers();
    if args.prompt.iter().any(String::is_empty) {
        bail!("the prompt is empty: pass some text with -p");
    }
    if args.parallel.is_some() || args.prompt.len() > 1 {
        return run_parallel(args);
    }
    let overrides = args.sampling.overrides()?;
    let model = Model::open(&args.model)?;
    let defaults = common::model_defaults(&model);
    let (sampling, sampler) = common::resolve_sampling(&overrides, &defaults)?;
    let tokenizer = model.tokenizer()?;
    let prompt_ids = tokenizer
        .encode_prompt(&args.prompt[0])
        .context("tokenizing the prompt")?;
    let t_load = Instant::now();
    let gpu = common::open_gpu(&args.device)?;
    let engine = common::load_engine(&model, gpu.clone(), &args.device, 1)?;
    let draft = speculation::load_draft_model(&args.speculation, gpu, &args.device, 1)?;
    let loaded = Loaded {
        // Weights upload plus pipeline creation; the latter is also reported alone.
        load_s: t_load.elapsed().as_secs_f64(),
        pipeline_compile_s: engine.gpu.pipelines.compile_seconds(),
        adapter: engine.gpu.adapter_name(),
        variant: engine.variant.to_string(),
    };
    if !args.json {
        eprintln!("{}", common::describe_sampling(&sampling, &defaults));
    }
    let mut generator = Generator::new(engine, tokenizer);
    if let Some((engine, tokenizer)) = draft {
        generator.set_draft_model(engine, tokenizer)?;
    }
    let options = generate_options(&args, sampler)?;
    let generation = stream_to_stdout(&mut generator, &prompt_ids, &options, args.json)?;
    let kv = generator.engine().kv_stats();
    let timing = generation.timing;
    let prefill_tok_s = timing.prefill_tokens_per_second(generation.n_prefilled);
    let decode_tok_s = timing.decode_tokens_per_second(generation.n_generated());
    if args.json {
        let out = json!({
            "prompt_ids": generation.prompt_ids,
            "ids": generation.ids,
            "text": generation.text,
            "prefill_tok_s": prefill_tok_s,
            "decode_tok_s": decode_tok_s,
            "adapter": loaded.adapter,
            "stop_reason": generation.stop_reason,
            "variant": loaded.variant,
            "seed": sampler.seed,
            "sampling": sampling,
            "load_s": loaded.load_s,
            "pipeline_compile_s": loaded.pipeline_compile_s,
            "kv": kv,
            "speculation": generation.speculation.as_ref().map(speculation::stats_json),
        });
        writeln!(std::io::stdout(), "{out}").context("writing to stdout")?;
    } else {
        if !generation.text.is_empty() && !generation.text.ends_with('\n') {
            // End the streamed line on the terminal without adding to the text on stdout.
            eprintln!();
        }
        eprintln!(
            "prompt: {} tokens, {:.1} tok/s; generated: {} tokens, {:.1} tok/s; stop: {}; seed {}; KV cache {} of {} blocks in use",
            generation.n_prompt(),
            prefill_tok_s,
            generation.n_generated(),
            decode_tok_s,
            generation.stop_reason,
            sampler.seed,
            kv.used_blocks,
            kv.blocks
        );
        if let Some(stats) = &generation.speculation {
            eprintln!("{}", speculation::describe(stats));
        }
    }
    Ok(())
}

/// What loading the engine took and gave, for the report.
struct Loaded {
    load_s: f64,
    pipeline_compile_s: f64,
    adapter: String,
    variant: String,
}

/// The options of a generation from the command line, with `sampler` resolved.
fn generate_options(args: &GenerateArgs, sampler: SamplerConfig) -> Result<GenerateOptions> {
    Ok(GenerateOptions {
        max_tokens: common::max_tokens(args.n_predict),
        sampler,
        stop: args.sampling.stop.clone(),
        ignore_eos: args.ignore_eos,
        speculation: args.speculation.options()?,
        ..GenerateOptions::default()
    })
}

/// Runs one generation, streaming its text to stdout (unless `quiet`, for `--json`).
/// Ctrl-C ends it early; so does a reader that goes away (e.g. `| head`), reported as an
/// error once the generation is finished.
fn stream_to_stdout(
    generator: &mut Generator,
    prompt_ids: &[u32],
    options: &GenerateOptions,
    quiet: bool,
) -> Result<Generation> {
    let interrupt = Interrupt::install();
    interrupt.begin();
    let mut run = generator
        .start(prompt_ids, options)?
        .with_cancel(&interrupt.cancel);
    let mut stdout = std::io::stdout().lock();
    let mut write_error: Option<std::io::Error> = None;
    let mut on_text = |piece: &str| {
        if quiet || write_error.is_some() {
            return;
        }
        if let Err(e) = stdout
            .write_all(piece.as_bytes())
            .and_then(|()| stdout.flush())
        {
            write_error = Some(e);
            interrupt
                .cancel
                .store(true, std::sync::atomic::Ordering::SeqCst);
        }
    };
    let stepped = loop {
        match pollster::block_on(run.next_token(&mut on_text)) {
            Ok(Some(_)) => {}
            Ok(None) => break Ok(()),
            Err(e) => break Err(e),
        }
    };
    interrupt.end();
    let generation = run.finish();
    stepped?;
    if let Some(e) = write_error {
        return Err(e).context("writing to stdout");
    }
    Ok(generation)
}

/// Several generations at once through the continuous-batching scheduler. Each one's
/// text is printed when it ends; `--json` prints one object with all of them.
fn run_parallel(args: GenerateArgs) -> Result<()> {
    let n = args.parallel.unwrap_or(1).max(args.prompt.len() as u32) as usize;
    let overrides = args.sampling.overrides()?;
    let model = Model::open(&args.model)?;
    let defaults = common::model_defaults(&model);
    let (sampling, sampler) = common::resolve_sampling(&overrides, &defaults)?;
    let tokenizer = model.tokenizer()?;
    let prompts: Vec<Vec<u32>> = (0..n)
        .map(|i| tokenizer.encode_prompt(&args.prompt[i % args.prompt.len()]))
        .collect::<Result<_, _>>()
        .context("tokenizing the prompts")?;
    let gpu = common::open_gpu(&args.device)?;
    let mut engine = common::load_engine(&model, gpu.clone(), &args.device, n as u32)?;
    let mut draft = speculation::load_draft_model(&args.speculation, gpu, &args.device, n as u32)?;
    let adapter = engine.gpu.adapter_name();
    let variant = engine.variant.to_string();
    let mut scheduler = Scheduler::new(&mut engine, &tokenizer);
    if let Some((engine, tokenizer)) = &mut draft {
        scheduler.set_draft_model(engine, tokenizer)?;
    }
    for (i, prompt) in prompts.iter().enumerate() {
        let seed = sampler.seed.wrapping_add(i as u64);
        let options = generate_options(&args, SamplerConfig { seed, ..sampler })?;
        scheduler.submit(prompt.clone(), &options)?;
    }
    let BatchRun {
        steps,
        peak,
        seconds,
    } = step_until_done(&mut scheduler)?;
    let generations = scheduler.finish();
    let kv = engine.kv_stats();
    let prompt_tokens: usize = generations.iter().map(|g| g.n_prompt()).sum();
    let generated: usize = generations.iter().map(|g| g.n_generated()).sum();
    let total_tok_s = common::rate(prompt_tokens + generated, seconds);
    let generated_tok_s = common::rate(generated, seconds);
    let mut stdout = std::io::stdout().lock();
    if args.json {
        let outputs: Vec<_> = generations
            .iter()
            .map(|g| json!({"prompt_ids": g.prompt_ids, "ids": g.ids, "text": g.text, "stop_reason": g.stop_reason, "speculation": g.speculation.as_ref().map(speculation::stats_json)}))
            .collect();
        let out = json!({
            "outputs": outputs,
            "parallel": n,
            "steps": steps,
            "peak_batch": peak,
            "seconds": seconds,
            "total_tok_s": total_tok_s,
            "generated_tok_s": generated_tok_s,
            "adapter": adapter,
            "variant": variant,
            "seed": sampler.seed,
            "sampling": sampling,
            "kv": kv,
        });
        writeln!(stdout, "{out}").context("writing to stdout")?;
    } else {
        for (i, g) in generations.iter().enumerate() {
            writeln!(
                stdout,
                "--- [{i}] ({} prompt tokens, {} generated, {})\n{}",
                g.n_prompt(),
                g.n_generated(),
                g.stop_reason,
                g.text
            )
            .context("writing to stdout")?;
        }
        eprintln!(
            "{n} generations in {steps} steps (up to {peak} per step), {:.1} s: {:.1} tok/s in all, {:.1} generated tok/s; KV pool {} of {} blocks in use at the end",
            seconds, total_tok_s, generated_tok_s, kv.used_blocks, kv.blocks
        );
    }
    Ok(())
}

/// How a batch of generations ran.
struct BatchRun {
    steps: usize,
    /// The most generations in one step.
    peak: usize,
    seconds: f64,
}

/// Steps the scheduler until every generation has stopped, or Ctrl-C.
fn step_until_done(scheduler: &mut Scheduler<'_>) -> Result<BatchRun> {
    let interrupt = Interrupt::install();
    interrupt.begin();
    let started = Instant::now();
    let (mut steps, mut peak) = (0usize, 0usize);
    let mut stepped = Ok(());
    while scheduler.active() > 0 && !interrupt.cancel.load(std::sync::atomic::Ordering::Relaxed) {
        match pollster::block_on(scheduler.step(&mut |_, _| {})) {
            Ok(report) => {
                steps += 1;
                peak = peak.max(report.sequences);
            }
            Err(e) => {
                stepped = Err(e);
                break;
            }
        }
    }
    interrupt.end();
    stepped?;
    Ok(BatchRun {
        steps,
        peak,
        seconds: started.elapsed().as_secs_f64(),
    })
}
