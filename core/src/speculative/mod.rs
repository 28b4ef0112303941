//! Speculative decoding: a cheap drafter guesses the next k tokens, and the target model
//! checks them all in one step of k + 1 positions (the last accepted token and the
//! drafts), which costs about one decode step's weight traffic on a memory-bound
//! adapter. The target keeps the longest prefix of drafts its own sampler agrees with
//! ([`verify`]), adds one token of its own, and the cache is cut back to what was kept.
//!
//! Exactness: with greedy sampling the output is token for token what plain decoding
//! gives; with random sampling, drafts pass the speculative-sampling rule of Leviathan et
//! al. and Chen et al. (accept with min(1, p/q), else draw from norm(max(0, p − q))) after
//! the whole sampler chain, so the output has the target's distribution.
//!
//! Drafters ([`DrafterKind`]): prompt lookup ([`lookup`]: the tokens that followed the
//! latest earlier match of the last n-gram, a point mass as its distribution), layer
//! skipping (the target's first layers and its head, sharing its weights and KV cache)
//! and a draft model (a second, smaller engine with the same vocabulary, checked by
//! [`check_draft_model`]). The scheduler runs them; how many tokens to draft comes from
//! [`policy`].

mod draft_model;
pub mod lookup;
pub mod policy;
pub mod verify;

pub use draft_model::check_draft_model;

use serde::Serialize;

/// The most tokens drafted for one verification step.
pub const MAX_DRAFT: usize = 16;

/// Where drafted tokens come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DrafterKind {
    /// Prompt lookup: the tokens after the latest earlier occurrence of the last n-gram
    /// of the prompt and output so far, for n from `ngram` down to 1.
    Lookup { ngram: usize },
    /// Layer skipping: the target's first `layers` layers, its final norm and its LM
    /// head, run token by token; they share the target's weights and KV cache.
    SelfDraft { layers: u32 },
    /// A second, smaller model with the same vocabulary on the same adapter
    /// ([`Scheduler::set_draft_model`](crate::scheduler::Scheduler::set_draft_model)).
    Model,
}

impl DrafterKind {
    /// Where its drafting steps run (none for prompt lookup).
    pub fn work(self) -> Option<policy::DraftWork> {
        match self {
            DrafterKind::Lookup { .. } => None,
            DrafterKind::SelfDraft { .. } => Some(policy::DraftWork::TargetLayers),
            DrafterKind::Model => Some(policy::DraftWork::DraftModel),
        }
    }
}

/// How a wrong rule resamples a rejected position; only the distribution test uses
/// anything but [`ResampleRule::Residual`], to show that it notices a wrong rule.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ResampleRule {
    /// norm(max(0, p − q)): exact.
    #[default]
    Residual,
    /// p itself, skipping the residual: biased towards the rejected draft. Wrong on
    /// purpose.
    TargetOnly,
}

/// Speculative decoding for one generation.
#[derive(Clone, Debug, PartialEq)]
pub struct SpeculationOptions {
    pub drafter: DrafterKind,
    /// The most tokens drafted per step (`--draft-max`), 1 to [`MAX_DRAFT`].
    pub max_draft: usize,
    /// Fewer proposed tokens than this are not verified (`--draft-min`): the step
    /// decodes plainly instead.
    pub min_draft: usize,
    /// Scale the draft length with the measured acceptance rate and with the number of
    /// generations sharing the step ([`policy`]); off, every step drafts `max_draft`.
    pub adaptive: bool,
    pub resample: ResampleRule,
}

impl SpeculationOptions {
    pub fn new(drafter: DrafterKind, max_draft: usize) -> Self {
        SpeculationOptions {
            drafter,
            max_draft,
            min_draft: 1,
            adaptive: true,
            resample: ResampleRule::Residual,
        }
    }

    /// Refuses values out of range, naming the option.
    pub fn validate(&self) -> Result<(), SpeculationError> {
        if !(1..=MAX_DRAFT).contains(&self.max_draft) {
            return Err(SpeculationError::DraftMax(self.max_draft));
        }
        if self.min_draft == 0 || self.min_draft > self.max_draft {
            return Err(SpeculationError::DraftMin {
                min: self.min_draft,
                max: self.max_draft,
            });
        }
        match self.drafter {
            DrafterKind::Lookup { ngram } if !(1..=lookup::MAX_NGRAM).contains(&ngram) => {
                Err(SpeculationError::Ngram(ngram))
            }
            DrafterKind::SelfDraft { layers: 0 } => Err(SpeculationError::SelfDraftLayers {
                layers: 0,
                n_layer: 0,
            }),
            _ => Ok(()),
        }
    }
}

/// What speculation did for one generation (or, summed, for many).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct SpeculationStats {
    /// Verification steps (steps that carried drafted tokens).
    pub steps: u64,
    /// Tokens drafted and verified.
    pub drafted: u64,
    /// Drafted tokens the target kept.
    pub accepted: u64,
    /// Tokens the verification steps produced: the kept drafts plus one of the target's
    /// own per step (fewer when the generation stopped inside a step).
    pub produced: u64,
}

impl SpeculationStats {
    /// Kept drafts per drafted token.
    pub fn acceptance_rate(&self) -> f64 {
        ratio(self.accepted, self.drafted)
    }

    /// Tokens per verification step (1 means speculation never helped).
    pub fn mean_accepted_length(&self) -> f64 {
        ratio(self.produced, self.steps)
    }

    pub fn add(&mut self, other: &SpeculationStats) {
        self.steps += other.steps;
        self.drafted += other.drafted;
        self.accepted += other.accepted;
        self.produced += other.produced;
    }
}

fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 { 0.0 } else { a as f64 / b as f64 }
}

/// Speculation options a generation cannot run with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpeculationError {
    #[error("draft length {0} is out of range: --draft-max takes 1 to {MAX_DRAFT}")]
    DraftMax(usize),
    #[error("--draft-min {min} is out of range: it takes 1 to --draft-max ({max})")]
    DraftMin { min: usize, max: usize },
    #[error("lookup n-gram size {0} is out of range: --lookup takes 1 to {max}", max = lookup::MAX_NGRAM)]
    Ngram(usize),
    #[error(
        "--self-draft {layers}: the drafting layers must be at least 1 and fewer than the model's {n_layer}"
    )]
    SelfDraftLayers { layers: u32, n_layer: u32 },
    #[error(
        "self-drafting needs the engine's drafting pass: load the model with --self-draft LAYERS"
    )]
    NoDraftPass,
    #[error(
        "--self-draft {asked} differs from the {loaded} drafting layers the engine was loaded with"
    )]
    DraftPassDepth { asked: u32, loaded: u32 },
    #[error("drafting with a model needs a draft model: load one with --draft MODEL")]
    NoDraftModel,
    #[error(
        "the draft model is on another device ({draft}) than the model ({target}): load both on one adapter's device"
    )]
    OtherAdapter { draft: String, target: String },
    #[error(
        "the draft model's vocabulary differs from the model's at token {id}: {draft} in the draft, {target} in the model"
    )]
    Vocabulary {
        id: u32,
        draft: String,
        target: String,
    },
    #[error(
        "the draft model's context ({draft} tokens) is shorter than the model's ({target}): give both the same --ctx"
    )]
    DraftContext { draft: u32, target: u32 },
}
