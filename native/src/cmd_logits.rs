//! `wisp logits`: the top-K logits at every position of a prompt, for comparisons with
//! other implementations.

use std::io::Write;

use anyhow::{Context, Result, bail};
use clap::Args;
use serde_json::json;

use crate::common::{self, DeviceArgs, Model, ModelArgs};

#[derive(Debug, Args)]
pub struct LogitsArgs {
    #[command(flatten)]
    pub model: ModelArgs,

    /// The text, tokenized as is (BOS where the model wants it).
    #[arg(short = 'p', long = "prompt", value_name = "PROMPT")]
    pub prompt: String,

    /// How many of the largest logits to show per position.
    #[arg(long, value_name = "K", default_value_t = 10)]
    pub top: usize,

    #[command(flatten)]
    pub device: DeviceArgs,

    /// One JSON object: {"ids": [...], "positions": [{"pos", "token", "top": [[id, logit], ...]}]}.
    #[arg(long)]
    pub json: bool,
}

/// The `k` largest logits as (id, logit), largest first; ties go to the lower id, and NaN
/// sorts below everything (it is never a prediction).
pub fn top_k(logits: &[f32], k: usize) -> Vec<(u32, f32)> {
    let key = |x: f32| if x.is_nan() { f32::NEG_INFINITY } else { x };
    let mut order: Vec<(u32, f32)> = (0u32..).zip(logits.iter().copied()).collect();
    order.sort_by(|a, b| key(b.1).total_cmp(&key(a.1)).then(a.0.cmp(&b.0)));
    order.truncate(k);
    order
}

pub fn run(args: LogitsArgs) -> Result<()> {
    if args.prompt.is_empty() {
        bail!("the prompt is empty: pass some text with -p");
    }
    let model = Model::open(&args.model)?;
    let tokenizer = model.tokenizer()?;
    let ids = tokenizer
        .encode_prompt(&args.prompt)
        .context("tokenizing the prompt")?;
    let mut engine = common::engine_for(&model, &args.device)?;
    let logits = pollster::block_on(engine.prefill_logits(&ids))?;

    let mut out = std::io::stdout().lock();
    if args.json {
        let positions: Vec<_> = ids
            .iter()
            .zip(&logits)
            .enumerate()
            .map(|(pos, (&token, row))| {
                let top: Vec<_> = top_k(row, args.top)
                    .into_iter()
                    .map(|(id, l)| json!([id, l]))
                    .collect();
                json!({ "pos": pos, "token": token, "top": top })
            })
            .collect();
        writeln!(out, "{}", json!({ "ids": ids, "positions": positions }))
            .context("writing to stdout")?;
        return Ok(());
    }
    let piece = |id: u32| {
        tokenizer
            .token_piece(id)
            .map_or_else(|_| "?".to_string(), |p| format!("{p:?}"))
    };
    for (pos, (&token, row)) in ids.iter().zip(&logits).enumerate() {
        writeln!(out, "pos {pos:>4}  token {token:>6} {}", piece(token))
            .context("writing to stdout")?;
        for (rank, (id, logit)) in top_k(row, args.top).into_iter().enumerate() {
            writeln!(
                out,
                "    {:>3}. {id:>6} {logit:>10.4}  {}",
                rank + 1,
                piece(id)
            )
            .context("writing to stdout")?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::top_k;

    #[test]
    fn top_k_orders_by_logit_then_id() {
        let got = top_k(&[1.0, 3.0, f32::NAN, 3.0, -1.0], 3);
        assert_eq!(got, vec![(1, 3.0), (3, 3.0), (0, 1.0)]);
        assert_eq!(top_k(&[0.5], 4), vec![(0, 0.5)]);
    }
}
