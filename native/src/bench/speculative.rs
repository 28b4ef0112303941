//! `wisp bench --lookup N | --self-draft LAYERS | --draft MODEL`: one prompt decoded
//! greedily with and without speculative decoding, in the same run and through the one
//! generation loop, each repetition on a fresh cache: tokens per second of both, the
//! speed-up, what speculation did (acceptance rate, tokens per verification step) and
//! whether the two outputs are the same tokens (they should be).

use anyhow::{Context, Result};
use serde::Serialize;
use wisp_core::generate::{GenerateOptions, Generation, Generator};
use wisp_core::sampling::SamplerConfig;
use wisp_core::speculative::SpeculationStats;

use super::{BenchArgs, Format};
use crate::common::{self, Model};
use crate::speculation;

/// The prompt when `--prompt-text` gives none: a function to be repeated with one
/// change, the code-editing case prompt lookup is made for. It stops where the earlier
/// copy's line ends, so the output's tokens can line up with the earlier copy's.
pub const DEFAULT_PROMPT: &str = "def summarize(records):
    totals = {}
    counts = {}
    for r in records:
        region = r['region']
        totals[region] = totals.get(region, 0) + r['amount']
        counts[region] = counts.get(region, 0) + 1
    averages = {k: totals[k] / counts[k] for k in totals}
    return totals, counts, averages

# The same function, with `counts` renamed to `sizes`:
def summarize(records):";

/// One repetition: plain decoding, then speculative decoding, of the same prompt.
#[derive(Serialize)]
struct Repetition {
    plain_tok_s: f64,
    speculative_tok_s: f64,
    identical: bool,
    speculation: SpeculationStats,
}

#[derive(Serialize)]
struct Summary<'a> {
    model: String,
    adapter: String,
    drafter: String,
    prompt_tokens: usize,
    generated: usize,
    plain_tok_s: f64,
    speculative_tok_s: f64,
    speed_up: f64,
    acceptance_rate: f64,
    mean_accepted_length: f64,
    identical: bool,
    repetitions: &'a [Repetition],
}

/// Runs the comparison for `args` (which name a drafter) on `model` and prints it.
pub fn run(args: &BenchArgs, model: &Model) -> Result<()> {
    let speculation = args.speculation.options()?.context("no drafter named")?;
    let n_gen = args.n_gen.iter().copied().find(|&n| n > 0).unwrap_or(128) as usize;
    let mut device = args.device.clone();
    device.self_draft_layers = args.speculation.self_draft_layers();
    let gpu = common::open_gpu(&device)?;
    let engine = common::load_engine(model, gpu.clone(), &device, 1)?;
    let draft = speculation::load_draft_model(&args.speculation, gpu, &device, 1)?;
    let tokenizer = model.tokenizer()?;
    let prompt = args.prompt_text.as_deref().unwrap_or(DEFAULT_PROMPT);
    let ids = tokenizer
        .encode_prompt(prompt)
        .context("tokenizing --prompt-text")?;
    let adapter = engine.gpu.adapter_name();
    let mut generator = Generator::new(engine, tokenizer);
    if let Some((engine, tokenizer)) = draft {
        generator.set_draft_model(engine, tokenizer)?;
    }
    let plain = GenerateOptions {
        max_tokens: n_gen,
        sampler: SamplerConfig::greedy(),
        ignore_eos: true,
        ..GenerateOptions::default()
    };
    let speculative = GenerateOptions {
        speculation: Some(speculation),
        ..plain.clone()
    };
    let mut generate = |options: &GenerateOptions| -> Result<Generation> {
        generator.reset();
        let cancel = std::sync::atomic::AtomicBool::new(false);
        Ok(pollster::block_on(generator.generate(
            &ids,
            options,
            &cancel,
            &mut |_| {},
        ))?)
    };
    // Untimed warm-up of both (pipelines, caches).
    generate(&plain)?;
    generate(&speculative)?;
    let mut reps = Vec::new();
    for r in 0..args.reps {
        eprintln!(
            "bench: speculative decoding, repetition {} of {}",
            r + 1,
            args.reps
        );
        let a = generate(&plain)?;
        let b = generate(&speculative)?;
        reps.push(Repetition {
            plain_tok_s: a.timing.decode_tokens_per_second(a.n_generated()),
            speculative_tok_s: b.timing.decode_tokens_per_second(b.n_generated()),
            identical: a.ids == b.ids,
            speculation: b.speculation.unwrap_or_default(),
        });
    }
    let mean = |f: fn(&Repetition) -> f64| reps.iter().map(f).sum::<f64>() / reps.len() as f64;
    let mut stats = SpeculationStats::default();
    reps.iter().for_each(|r| stats.add(&r.speculation));
    let (plain_tok_s, speculative_tok_s) = (mean(|r| r.plain_tok_s), mean(|r| r.speculative_tok_s));
    let summary = Summary {
        model: model.path.display().to_string(),
        adapter,
        drafter: args.speculation.describe_drafter(),
        prompt_tokens: ids.len(),
        generated: n_gen,
        plain_tok_s,
        speculative_tok_s,
        speed_up: speculative_tok_s / plain_tok_s,
        acceptance_rate: stats.acceptance_rate(),
        mean_accepted_length: stats.mean_accepted_length(),
        identical: reps.iter().all(|r| r.identical),
        repetitions: &reps,
    };
    match args.output {
        Format::Json => println!("{}", serde_json::to_string(&summary)?),
        _ => print_table(&summary),
    }
    Ok(())
}

fn print_table(s: &Summary<'_>) {
    println!(
        "| model | adapter | drafter | prompt | tg | plain t/s | speculative t/s | speed-up | acceptance | tokens/step | same output |"
    );
    println!("|---|---|---|---:|---:|---:|---:|---:|---:|---:|---|");
    println!(
        "| {} | {} | {} | {} | {} | {:.2} | {:.2} | {:.2}x | {:.0}% | {:.2} | {} |",
        s.model,
        s.adapter,
        s.drafter,
        s.prompt_tokens,
        s.generated,
        s.plain_tok_s,
        s.speculative_tok_s,
        s.speed_up,
        100.0 * s.acceptance_rate,
        s.mean_accepted_length,
        if s.identical { "yes" } else { "no" }
    );
}
