//! The engine: a model on a device, its KV cache, and the recorded forward passes that
//! turn tokens into logits. See `ARCHITECTURE.md` for the path of one token.

mod activations;
mod forward;
mod kv_cache;
mod sample;

pub use forward::ForwardPlans;
pub use kv_cache::KvCache;
pub use sample::{CANDIDATE_CAP, MAX_PENALTY_ENTRIES};

use std::sync::Arc;

use crate::gguf::GgufFile;
use crate::gpu::{Gpu, StepParams, Variant, VariantOverrides};
use crate::model::{ModelConfig, ModelWeights, TensorSource};
use crate::Error;

use activations::Activations;
use sample::SamplerTail;

/// Why the engine refused a request. Nothing in the cache is changed when these occur.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("the prompt is empty: there is nothing to process")]
    EmptyPrompt,
    #[error("{needed} tokens do not fit in the context of {n_ctx} ({used} already used); use a shorter prompt or a larger --ctx")]
    ContextFull { needed: usize, used: usize, n_ctx: usize },
    #[error("token id {token} is outside the vocabulary of {vocab} tokens")]
    InvalidToken { token: u32, vocab: u32 },
    #[error("there are no logits yet: process a prompt first")]
    NoLogits,
    #[error("invalid engine option: {0}")]
    InvalidOption(String),
}

/// Options for building an engine.
#[derive(Clone, Debug)]
pub struct EngineOptions {
    /// Context length in tokens (0: the model's training context, capped at 4096).
    pub n_ctx: u32,
    /// The most tokens one prefill step processes; longer prompts go in chunks.
    pub max_batch: u32,
    /// The most positions whose logits one step of [`Engine::prefill_logits`] computes.
    pub logits_batch: u32,
    pub variant: VariantOverrides,
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions { n_ctx: 0, max_batch: 256, logits_batch: 32, variant: VariantOverrides::default() }
    }
}

/// A model loaded on a device with one sequence's KV cache.
pub struct Engine {
    pub gpu: Arc<Gpu>,
    pub config: ModelConfig,
    pub variant: Variant,
    pub weights: ModelWeights,
    n_ctx: u32,
    max_batch: u32,
    logits_batch: u32,
    kv: KvCache,
    acts: Activations,
    plans: ForwardPlans,
    tail: SamplerTail,
    step: wgpu::Buffer,
    /// Tokens in the cache.
    pos: u32,
    /// Whether `acts.logits` holds the logits of the last processed token.
    have_logits: bool,
}

impl Engine {
    /// Uploads the model and records its forward passes.
    pub async fn load(gpu: Arc<Gpu>, file: &GgufFile, src: &dyn TensorSource, options: &EngineOptions) -> Result<Engine, Error> {
        let config = ModelConfig::from_gguf(file)?;
        let variant = options.variant.resolve(&gpu.caps, &gpu.adapter_name())?;
        let n_ctx = match options.n_ctx {
            0 => config.n_ctx_train.min(4096),
            n => n,
        };
        if options.max_batch == 0 || options.logits_batch == 0 || options.logits_batch > options.max_batch {
            return Err(EngineError::InvalidOption(format!(
                "max_batch ({}) and logits_batch ({}) must be positive with logits_batch <= max_batch",
                options.max_batch, options.logits_batch
            ))
            .into());
        }
        let weights = ModelWeights::upload(&gpu, file, &config, src).await?;
        let kv = KvCache::new(&gpu, &config, variant.act, n_ctx).await?;
        let acts = Activations::new(&gpu, &config, variant.act, options.max_batch, options.logits_batch).await?;
        let step = gpu.uniform("step", std::mem::size_of::<StepParams>() as u64).await?;
        let plans = ForwardPlans::build(&gpu, variant, &config, &weights, &kv, &acts, &step).await?;
        let tail = SamplerTail::new(&gpu, variant, &acts, config.vocab_size).await?;
        Ok(Engine {
            gpu,
            config,
            variant,
            weights,
            n_ctx,
            max_batch: options.max_batch,
            logits_batch: options.logits_batch,
            kv,
            acts,
            plans,
            tail,
            step,
            pos: 0,
            have_logits: false,
        })
    }

    /// Tokens in the cache.
    pub fn position(&self) -> u32 {
        self.pos
    }

    /// Context length in tokens.
    pub fn context_size(&self) -> u32 {
        self.n_ctx
    }

    /// Bytes of KV cache allocated.
    pub fn kv_bytes(&self) -> u64 {
        self.kv.bytes()
    }

    /// Forgets the sequence: the next prompt starts at position 0.
    pub fn reset(&mut self) {
        self.pos = 0;
        self.have_logits = false;
    }

    /// Drops the cache back to `pos` tokens (e.g. to regenerate a reply).
    pub fn truncate(&mut self, pos: u32) {
        if pos < self.pos {
            self.pos = pos;
            self.have_logits = false;
        }
    }

    fn check(&self, tokens: &[u32]) -> Result<(), EngineError> {
        if tokens.is_empty() {
            return Err(EngineError::EmptyPrompt);
        }
        let needed = self.pos as usize + tokens.len();
        if needed > self.n_ctx as usize {
            return Err(EngineError::ContextFull { needed: tokens.len(), used: self.pos as usize, n_ctx: self.n_ctx as usize });
        }
        if let Some(&bad) = tokens.iter().find(|&&t| t >= self.config.vocab_size) {
            return Err(EngineError::InvalidToken { token: bad, vocab: self.config.vocab_size });
        }
        Ok(())
    }

    /// Writes the step's tokens and values, then encodes `f` into one compute pass.
    fn submit_step(&self, tokens: &[u32], f: impl FnOnce(&mut wgpu::ComputePass<'_>, u32)) {
        let n = tokens.len() as u32;
        let step = StepParams { n_tokens: n, pos0: self.pos, n_kv: self.pos + n, _pad: 0 };
        self.gpu.write(&self.step, 0, bytemuck::bytes_of(&step));
        self.gpu.write(&self.acts.tokens, 0, bytemuck::cast_slice(tokens));
        let mut enc = self.gpu.device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("step") });
        {
            let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor { label: Some("step"), timestamp_writes: None });
            f(&mut pass, n);
        }
        self.gpu.queue.submit([enc.finish()]);
    }

    /// Processes a prompt (in chunks of at most `max_batch` tokens), leaving the logits
    /// of its last token ready for sampling. The work is submitted, not awaited.
    pub fn prefill(&mut self, tokens: &[u32]) -> Result<(), Error> {
        self.check(tokens)?;
        self.gpu.check_errors()?;
        let chunks: Vec<&[u32]> = tokens.chunks(self.max_batch as usize).collect();
        for (i, chunk) in chunks.iter().enumerate() {
            let last = i + 1 == chunks.len();
            let single = chunk.len() == 1;
            self.submit_step(chunk, |pass, n| {
                if single {
                    self.plans.layers_single.encode(pass, n);
                } else {
                    self.plans.layers_batched.encode(pass, n);
                }
                if last {
                    self.plans.head_last.encode(pass, n);
                }
            });
            self.pos += chunk.len() as u32;
        }
        self.have_logits = true;
        Ok(())
    }

    /// Processes one generated token.
    pub fn decode(&mut self, token: u32) -> Result<(), Error> {
        self.prefill(&[token])
    }

    /// Processes a text and returns the logits at every one of its positions (for
    /// perplexity and comparisons with other implementations).
    pub async fn prefill_logits(&mut self, tokens: &[u32]) -> Result<Vec<Vec<f32>>, Error> {
        self.check(tokens)?;
        let vocab = self.config.vocab_size as usize;
        let mut out = Vec::with_capacity(tokens.len());
        for chunk in tokens.chunks(self.logits_batch as usize) {
            self.submit_step(chunk, |pass, n| {
                self.plans.layers_batched.encode(pass, n);
                self.plans.head_all.encode(pass, n);
            });
            self.pos += chunk.len() as u32;
            let bytes = self
                .gpu
                .read_buffer(&self.acts.logits_all, 0, (chunk.len() * vocab * 4) as u64)
                .await?;
            let all: &[f32] = bytemuck::cast_slice(&bytes);
            out.extend(all.chunks(vocab).map(|r| r.to_vec()));
        }
        // The last position's logits are also where sampling expects them.
        if let Some(last) = out.last() {
            self.gpu.write(&self.acts.logits, 0, bytemuck::cast_slice(last));
            self.have_logits = true;
        }
        Ok(out)
    }

    /// The logits of the last processed token (a full readback: for tests and tools,
    /// not the generation loop).
    pub async fn logits(&self) -> Result<Vec<f32>, Error> {
        if !self.have_logits {
            return Err(EngineError::NoLogits.into());
        }
        let bytes = self.gpu.read_buffer(&self.acts.logits, 0, self.config.vocab_size as u64 * 4).await?;
        Ok(bytemuck::cast_slice(&bytes).to_vec())
    }

    /// Chooses the next token from the current logits with `sampler`, reading back only
    /// what the choice needs, and records it in the sampler's history.
    pub async fn sample(&mut self, sampler: &mut crate::sampling::Sampler) -> Result<u32, Error> {
        if !self.have_logits {
            return Err(EngineError::NoLogits.into());
        }
        let token = self.tail.sample(&self.gpu, &self.acts, sampler).await?;
        // Penalties changed the logits in place; they are no longer the model's.
        self.have_logits = false;
        Ok(token)
    }

    /// The prefill chunk size.
    pub fn max_batch(&self) -> u32 {
        self.max_batch
    }
}

impl Engine {
    /// Waits until the GPU has finished all submitted work (for timing a prefill
    /// separately from the first sample).
    pub async fn wait_idle(&self) -> Result<(), Error> {
        // A tiny readback orders after everything submitted before it.
        self.gpu.read_buffer(&self.acts.tokens, 0, 4).await?;
        Ok(())
    }
}

impl Engine {
    /// Runs one step over `tokens` with a timestamp around every dispatch and returns
    /// the GPU time of each (`None` without timestamp queries). The tokens enter the
    /// cache as with [`Engine::prefill`].
    pub async fn profile_step(&mut self, tokens: &[u32]) -> Result<Option<Vec<crate::gpu::KernelTime>>, Error> {
        self.check(tokens)?;
        if tokens.len() > self.max_batch as usize {
            return Err(EngineError::InvalidOption(format!("a profiled step takes at most {} tokens", self.max_batch)).into());
        }
        let layers = if tokens.len() == 1 { &self.plans.layers_single } else { &self.plans.layers_batched };
        let count = (layers.dispatches.len() + self.plans.head_last.dispatches.len()) as u32;
        let Some(profiler) = crate::gpu::Profiler::new(&self.gpu, count).await? else {
            return Ok(None);
        };
        let n = tokens.len() as u32;
        let step = StepParams { n_tokens: n, pos0: self.pos, n_kv: self.pos + n, _pad: 0 };
        self.gpu.write(&self.step, 0, bytemuck::bytes_of(&step));
        self.gpu.write(&self.acts.tokens, 0, bytemuck::cast_slice(tokens));
        let times = profiler.run(&self.gpu, &[(layers, n), (&self.plans.head_last, n)]).await?;
        self.pos += n;
        self.have_logits = true;
        Ok(Some(times))
    }
}
