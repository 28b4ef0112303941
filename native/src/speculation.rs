//! The speculative decoding flags `generate`, `chat`, `bench` and `serve` share, and how
//! their statistics are reported.

use std::sync::Arc;

use anyhow::{Context, Result, bail};
use clap::Args;
use serde_json::{Value, json};
use wisp_core::engine::Engine;
use wisp_core::gpu::Gpu;
use wisp_core::speculative::{DrafterKind, SpeculationOptions, SpeculationStats};
use wisp_core::tokenizer::Tokenizer;

use crate::common::{DeviceArgs, Model, ModelArgs, load_engine};

/// Speculative decoding: a drafter guesses up to `--draft-max` tokens and one step of
/// the model verifies them all. Greedy output is unchanged token for token; sampled
/// output keeps its distribution.
#[derive(Clone, Debug, Default, Args)]
pub struct SpeculationArgs {
    /// Prompt-lookup drafting: propose the tokens that followed the latest earlier match
    /// of the last N tokens (N down to 1) of the prompt and output. Strong when the
    /// output repeats the input (code editing, summaries).
    #[arg(long, value_name = "N", conflicts_with_all = ["self_draft", "draft"])]
    pub lookup: Option<usize>,

    /// Draft-model drafting: a second, smaller model with the same vocabulary (a file
    /// or a known model's name, as for -m), on the same adapter.
    #[arg(long, value_name = "MODEL", conflicts_with = "self_draft")]
    pub draft: Option<String>,

    /// Layer-skip self-drafting: the model's first LAYERS layers and its head draft,
    /// sharing its weights and KV cache.
    #[arg(long = "self-draft", value_name = "LAYERS")]
    pub self_draft: Option<u32>,

    /// The most tokens drafted per step.
    #[arg(long = "draft-max", value_name = "K", default_value_t = 8)]
    pub draft_max: usize,

    /// Fewer drafted tokens than this are not verified.
    #[arg(long = "draft-min", value_name = "K", default_value_t = 1)]
    pub draft_min: usize,

    /// Always draft `--draft-max` tokens, instead of scaling the count with the measured
    /// acceptance rate and the number of busy sequences.
    #[arg(long = "draft-fixed")]
    pub draft_fixed: bool,
}

impl SpeculationArgs {
    /// The options these flags ask for (`None`: no drafter named), checked.
    pub fn options(&self) -> Result<Option<SpeculationOptions>> {
        let drafter = match (self.lookup, self.self_draft, &self.draft) {
            (Some(ngram), None, None) => DrafterKind::Lookup { ngram },
            (None, Some(layers), None) => DrafterKind::SelfDraft { layers },
            (None, None, Some(_)) => DrafterKind::Model,
            (None, None, None) => {
                if self.draft_fixed {
                    bail!(
                        "--draft-fixed needs a drafter: --lookup N, --self-draft LAYERS or --draft MODEL"
                    );
                }
                return Ok(None);
            }
            _ => bail!("--lookup, --self-draft and --draft: choose one drafter"),
        };
        let options = SpeculationOptions {
            min_draft: self.draft_min,
            adaptive: !self.draft_fixed,
            ..SpeculationOptions::new(drafter, self.draft_max)
        };
        options.validate()?;
        Ok(Some(options))
    }

    /// The drafter and its draft length, in words (`lookup 3, k <= 8`).
    pub fn describe_drafter(&self) -> String {
        let drafter = match (self.lookup, self.self_draft, &self.draft) {
            (Some(n), _, _) => format!("lookup {n}"),
            (_, Some(layers), _) => format!("self-draft {layers}"),
            (_, _, Some(model)) => format!("draft {model}"),
            _ => "none".to_string(),
        };
        let k = if self.draft_fixed { "=" } else { "<=" };
        format!("{drafter}, k {k} {}", self.draft_max)
    }

    /// The layers the engine must record a drafting pass for.
    pub fn self_draft_layers(&self) -> Option<u32> {
        self.self_draft
    }
}

/// Opens and loads the draft model `--draft` names (if any) on `gpu`, with the target's
/// device settings (the same context).
pub fn load_draft_model(
    args: &SpeculationArgs,
    gpu: Arc<Gpu>,
    device: &DeviceArgs,
    parallel: u32,
) -> Result<Option<(Engine, Tokenizer)>> {
    let Some(name) = &args.draft else {
        return Ok(None);
    };
    let model = Model::open(&ModelArgs {
        model: Some(name.clone()),
        quantize: None,
    })
    .context("--draft")?;
    let tokenizer = model.tokenizer().context("--draft")?;
    let device = DeviceArgs {
        self_draft_layers: None,
        ..device.clone()
    };
    let engine = load_engine(&model, gpu, &device, parallel).context("--draft")?;
    Ok(Some((engine, tokenizer)))
}

/// Speculation statistics as `--json` reports them.
pub fn stats_json(stats: &SpeculationStats) -> Value {
    json!({
        "steps": stats.steps,
        "drafted": stats.drafted,
        "accepted": stats.accepted,
        "produced": stats.produced,
        "acceptance_rate": stats.acceptance_rate(),
        "mean_accepted_length": stats.mean_accepted_length(),
    })
}

/// One line for the terminal.
pub fn describe(stats: &SpeculationStats) -> String {
    format!(
        "speculation: {} verification steps, {} of {} drafts kept ({:.0}%), {:.2} tokens per step",
        stats.steps,
        stats.accepted,
        stats.drafted,
        100.0 * stats.acceptance_rate(),
        stats.mean_accepted_length()
    )
}
