//! `wisp perplexity`: how well the model predicts a text.

use std::io::Write;

use anyhow::{Context, Result, bail};
use clap::Args;
use serde_json::json;
use wisp_core::engine::Engine;

use crate::common::{self, DeviceArgs, Model, ModelArgs};

/// Positions whose logits are read back at a time: bounds host memory (one row is the
/// vocabulary in f32) whatever the context length.
const LOGITS_PIECE: usize = 128;

#[derive(Debug, Args)]
#[command(after_help = "\
How the text is scored:
  The file is tokenized as a whole (with BOS when the model adds one), and
  ppl = exp(mean negative log-likelihood), with log-softmax in f64.
  - If it fits in the context (--ctx), it is one window and every token after the
    first is scored: n_tokens = tokens - 1.
  - Otherwise llama.cpp's llama-perplexity convention applies: the tokens are cut
    into floor(tokens / ctx) chunks of ctx tokens (the rest is dropped), each
    evaluated from an empty cache, with BOS in place of its first token when the
    model adds BOS; only the second half of each chunk is scored (the positions
    from ctx/2 to ctx-2 predict the next token), so the model always has at least
    ctx/2 tokens of context: n_tokens = chunks * (ctx - ctx/2 - 1). Give the same
    context as llama-perplexity's -c to compare numbers (llama-perplexity also
    insists on at least 2*ctx tokens; here one chunk is enough).")]
pub struct PerplexityArgs {
    #[command(flatten)]
    pub model: ModelArgs,

    /// The text file to score.
    #[arg(short = 'f', long = "file", value_name = "TEXT_FILE")]
    pub file: std::path::PathBuf,

    #[command(flatten)]
    pub device: DeviceArgs,

    /// Print {"ppl": x, "n_tokens": n, ...} instead of a sentence.
    #[arg(long)]
    pub json: bool,
}

/// Running sum of negative log-likelihoods.
#[derive(Default)]
struct Nll {
    sum: f64,
    count: usize,
}

impl Nll {
    /// Adds `-log softmax(logits)[target]`, computed in f64.
    fn add(&mut self, logits: &[f32], target: u32) -> Result<()> {
        let max = logits
            .iter()
            .copied()
            .fold(f64::NEG_INFINITY, |m, x| m.max(f64::from(x)));
        if !max.is_finite() {
            bail!(
                "the model produced no finite logit (max {max}); the device results are unusable"
            );
        }
        let sum: f64 = logits.iter().map(|&x| (f64::from(x) - max).exp()).sum();
        let logit = logits
            .get(target as usize)
            .copied()
            .context("token id outside the logits")?;
        self.sum += max + sum.ln() - f64::from(logit);
        self.count += 1;
        Ok(())
    }

    fn ppl(&self) -> f64 {
        (self.sum / self.count as f64).exp()
    }
}

/// Processes `window` from an empty cache and scores the predictions made at positions
/// `first ..= window.len() - 2` (each of the following token).
fn score_window(engine: &mut Engine, window: &[u32], first: usize, nll: &mut Nll) -> Result<()> {
    engine.reset();
    if first > 0 {
        // The context before the scored part needs no logits.
        engine.prefill(&window[..first])?;
    }
    // The last token predicts nothing inside the window, so it is never processed.
    let scored = &window[first..window.len() - 1];
    let mut pos = first;
    for piece in scored.chunks(LOGITS_PIECE) {
        let rows = pollster::block_on(engine.prefill_logits(piece))?;
        for row in &rows {
            nll.add(row, window[pos + 1])?;
            pos += 1;
        }
    }
    Ok(())
}

pub fn run(args: PerplexityArgs) -> Result<()> {
    let text = std::fs::read_to_string(&args.file)
        .with_context(|| format!("reading {}", args.file.display()))?;
    let model = Model::open(&args.model)?;
    let tokenizer = model.tokenizer()?;
    let tokens = tokenizer
        .encode_prompt(&text)
        .context("tokenizing the text")?;
    if tokens.len() < 2 {
        bail!(
            "{} has {} token(s); perplexity needs at least 2 (one to predict from, one to score)",
            args.file.display(),
            tokens.len()
        );
    }
    let mut engine = common::engine_for(&model, &args.device)?;
    let n_ctx = engine.context_size() as usize;
    if n_ctx < 4 {
        bail!(
            "a context of {n_ctx} tokens is too small to measure perplexity (use --ctx 4 or more)"
        );
    }

    let mut nll = Nll::default();
    let n_chunks = if tokens.len() <= n_ctx {
        score_window(&mut engine, &tokens, 0, &mut nll)?;
        0
    } else {
        let n_chunks = tokens.len() / n_ctx;
        let first = n_ctx / 2;
        let bos = tokenizer.bos_id().filter(|_| tokenizer.add_bos_token());
        let mut window = Vec::with_capacity(n_ctx);
        for (i, chunk) in tokens.chunks_exact(n_ctx).enumerate() {
            window.clear();
            window.extend_from_slice(chunk);
            if let Some(bos) = bos {
                window[0] = bos;
            }
            score_window(&mut engine, &window, first, &mut nll)?;
            eprintln!("chunk {}/{n_chunks}: ppl so far {:.4}", i + 1, nll.ppl());
        }
        n_chunks
    };

    let ppl = nll.ppl();
    let mut out = std::io::stdout().lock();
    if args.json {
        let value =
            json!({ "ppl": ppl, "n_tokens": nll.count, "n_ctx": n_ctx, "n_chunks": n_chunks });
        writeln!(out, "{value}").context("writing to stdout")?;
    } else {
        let how = if n_chunks == 0 {
            "one window".to_string()
        } else {
            format!("{n_chunks} chunks of {n_ctx}")
        };
        writeln!(
            out,
            "perplexity: {ppl:.4} over {} tokens ({how})",
            nll.count
        )
        .context("writing to stdout")?;
    }
    Ok(())
}
