//! The engine: a model on a device, a paged KV cache shared by any number of
//! sequences, and the recorded forward passes that turn a batch of their tokens into
//! logits. See `ARCHITECTURE.md` for the path of one token.
//!
//! Two levels of API:
//! - the batch API for a scheduler: create, fork and remove sequences, run a [`step`]
//!   over a batch mixing prefill chunks and decoded tokens of different sequences, and
//!   sample each wanted logits row ([`sample_rows`]);
//! - the single-sequence API (`prefill`, `decode`, `sample`, ...) on a default sequence,
//!   for one conversation at a time.
//!
//! [`step`]: Engine::step
//! [`sample_rows`]: Engine::sample_rows

mod activations;
mod batch;
mod forward;
mod sample;

pub use batch::{AttnEntry, AttnTiling, BatchEntry, Logits, attention_work};
pub use forward::{ForwardPlans, HeadOutput};
pub use sample::{CANDIDATE_CAP, MAX_PENALTY_ENTRIES};

use std::sync::Arc;

use crate::speculative::SpeculationError;
use crate::speculative::verify::Distribution;

use crate::Error;
use crate::gguf::GgufFile;
use crate::gpu::{Gpu, KernelTime, KvType, Plan, StepParams, StepShape, Variant, VariantOverrides};
use crate::kernels::{FlashTiles, Tuning, TuningOverrides};
use crate::kv::{BlockCopy, BlockHash, BlockManager, KvError, KvPool, SeqId};
use crate::model::{ModelConfig, ModelWeights, TensorSource};
use crate::sampling::{Sampler, SamplerConfig};

use activations::Activations;
use sample::SamplerTail;

/// Why the engine refused a request. Nothing in the cache is changed when these occur.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("the prompt is empty: there is nothing to process")]
    EmptyPrompt,
    #[error(
        "{needed} tokens do not fit in the context of {n_ctx} ({used} already used); use a shorter prompt or a larger --ctx"
    )]
    ContextFull {
        needed: usize,
        used: usize,
        n_ctx: usize,
    },
    #[error(
        "{needed} tokens can never fit in the KV pool of {capacity} positions; use a shorter prompt or a larger --kv-pool"
    )]
    PoolTooSmall { needed: usize, capacity: usize },
    #[error("token id {token} is outside the vocabulary of {vocab} tokens")]
    InvalidToken { token: u32, vocab: u32 },
    #[error("there are no logits yet: process a prompt first")]
    NoLogits,
    #[error(
        "the last step's head kept only each row's argmax (greedy sampling) but {0}: step \
         with HeadOutput::Logits"
    )]
    OnlyArgmax(String),
    #[error("invalid engine option: {0}")]
    InvalidOption(String),
    #[error("invalid batch: {0}")]
    InvalidBatch(String),
    #[error(transparent)]
    Kv(#[from] KvError),
}

/// Options for building an engine.
#[derive(Clone, Debug)]
pub struct EngineOptions {
    /// Context length of one sequence in tokens (0: the model's training context, capped
    /// at 4096).
    pub n_ctx: u32,
    /// Positions the KV pool holds for all sequences together (0: `n_ctx`).
    pub kv_pool_tokens: u32,
    /// Positions per block of the KV pool.
    pub kv_block: u32,
    /// Storage type of the KV cache (`None`: f16 where the adapter has shader-f16).
    pub kv_type: Option<KvType>,
    /// The most tokens one step processes; longer prompts go in chunks.
    pub max_batch: u32,
    /// The most logits rows one step computes (and sequences one step can sample).
    pub max_rows: u32,
    /// The most entries (sequences) in one step.
    pub max_entries: u32,
    pub variant: VariantOverrides,
    /// Tuning overrides, for tuning experiments (natively from `WISP_TUNE`, on the web
    /// page from its load request's `tune`).
    pub tuning: TuningOverrides,
    /// Record a drafting pass through the first this many layers, for layer-skip
    /// speculative decoding ([`Engine::draft_step`]).
    pub self_draft_layers: Option<u32>,
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            n_ctx: 0,
            kv_pool_tokens: 0,
            kv_block: 16,
            kv_type: None,
            max_batch: 256,
            max_rows: 32,
            max_entries: 64,
            variant: VariantOverrides::default(),
            tuning: TuningOverrides::default(),
            self_draft_layers: None,
        }
    }
}

/// Occupancy of the KV pool.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct KvStats {
    pub block_size: u32,
    pub blocks: u32,
    pub used_blocks: u32,
    /// Blocks a sequence can be given (the idle cached ones included).
    pub free_blocks: u32,
    /// Blocks no sequence uses that hold a cached prefix (given away when needed).
    pub cached_blocks: u32,
    /// Bytes of every pool buffer together.
    pub pool_bytes: u64,
    pub kv_type: KvType,
}

/// The sizes an engine's options ask for, checked against each other, the adapter and
/// the model before anything is allocated.
struct Sizes {
    n_ctx: u32,
    kv_type: KvType,
    /// Blocks of the KV pool.
    n_blocks: u32,
}

impl Sizes {
    fn check(options: &EngineOptions, gpu: &Gpu, config: &ModelConfig) -> Result<Sizes, Error> {
        let n_ctx = match options.n_ctx {
            0 => config.n_ctx_train.min(4096),
            n => n,
        };
        let bad = |m: String| -> Error { EngineError::InvalidOption(m).into() };
        if options.max_batch == 0
            || options.max_rows == 0
            || options.max_rows > options.max_batch
            || options.max_entries == 0
        {
            return Err(bad(format!(
                "max_batch ({}), max_rows ({}) and max_entries ({}) must be positive with max_rows <= max_batch",
                options.max_batch, options.max_rows, options.max_entries
            )));
        }
        if ![16, 32].contains(&options.kv_block) {
            return Err(bad(format!(
                "KV block size {} (it must be 16 or 32)",
                options.kv_block
            )));
        }
        let kv_type = options.kv_type.unwrap_or(KvType::default_for(&gpu.caps));
        if kv_type == KvType::F16 && !gpu.caps.shader_f16 {
            return Err(crate::gpu::GpuError::MissingFeature {
                adapter: gpu.adapter_name(),
                feature: "shader-f16",
                variant: "an f16 KV cache".into(),
            }
            .into());
        }
        if kv_type == KvType::Q8_0 && !config.kv_dim().is_multiple_of(32) {
            return Err(bad(format!(
                "a Q8_0 KV cache needs a key width that is a multiple of 32 (this model's is {})",
                config.kv_dim()
            )));
        }
        let pool_tokens = if options.kv_pool_tokens == 0 {
            n_ctx
        } else {
            options.kv_pool_tokens
        };
        Ok(Sizes {
            n_ctx,
            kv_type,
            n_blocks: pool_tokens.div_ceil(options.kv_block),
        })
    }
}

/// The softmax's running maximum and sum that a split stores ahead of each head's outputs.
const PARTIAL_MAX_AND_SUM: u64 = 2;

/// Bytes of split-K partial results one split takes. For each decoded entry and head,
/// `flash_attn.wgsl` writes `HD + 2` `f32`s to `partials`: the running maximum and sum of
/// its online softmax, then its `head_dim` outputs, which `flash_reduce.wgsl` merges. The
/// length depends on `head_dim`, so no fixed-size Rust type describes it.
fn split_partial_bytes(max_entries: u32, n_head: u32, head_dim: u32) -> u64 {
    let floats_per_head = head_dim as u64 + PARTIAL_MAX_AND_SUM;
    size_of::<f32>() as u64 * max_entries as u64 * n_head as u64 * floats_per_head
}

/// How attention splits its work, and the bytes of split-K partial results one split
/// takes ([`split_partial_bytes`]). Fewer splits than tuning asks for where they would not
/// fit one binding.
fn attention_tiling(
    gpu: &Gpu,
    config: &ModelConfig,
    options: &EngineOptions,
    tuning: &Tuning,
    query_tile: u32,
) -> (AttnTiling, u64) {
    let partial_bytes = split_partial_bytes(options.max_entries, config.n_head, config.head_dim);
    let fitting_splits =
        (gpu.caps.max_storage_binding / partial_bytes.max(1)).clamp(1, u32::MAX as u64) as u32;
    let tiling = AttnTiling {
        bq: query_tile,
        // Work items skip old keys only when no layer needs them.
        window: config.window_on_every_layer().unwrap_or(0),
        keys_per_split: tuning.attn_split_keys.max(1),
        max_splits: tuning.attn_max_splits.clamp(1, fitting_splits),
    };
    (tiling, partial_bytes)
}

/// The buffers every step writes before its pass: the `Step` uniform, the metadata
/// records, and the split-K scratch (only when attention splits).
struct StepBuffers {
    step: wgpu::Buffer,
    meta: wgpu::Buffer,
    meta_words: u64,
    partials: Option<wgpu::Buffer>,
}

impl StepBuffers {
    async fn new(
        gpu: &Gpu,
        options: &EngineOptions,
        n_ctx: u32,
        tiling: &AttnTiling,
        partial_bytes: u64,
    ) -> Result<StepBuffers, Error> {
        let step = gpu
            .uniform("step", std::mem::size_of::<StepParams>() as u64)
            .await?;
        let meta_words = crate::kernels::max_meta_words(
            options.max_batch,
            options.max_entries,
            n_ctx.div_ceil(options.kv_block),
            options.max_rows,
            // Attention work items: a tile per token at worst, plus every entry's splits.
            options.max_batch as u64 + options.max_entries as u64 * tiling.max_splits as u64,
        );
        let meta = gpu
            .storage(
                "step metadata",
                meta_words * std::mem::size_of::<u32>() as u64,
            )
            .await?;
        let partials = if tiling.max_splits > 1 {
            let bytes = partial_bytes * tiling.max_splits as u64;
            Some(
                gpu.storage("split attention partial results", bytes)
                    .await?,
            )
        } else {
            None
        };
        Ok(StepBuffers {
            step,
            meta,
            meta_words,
            partials,
        })
    }
}

/// Which layers a step runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Pass {
    /// Every layer.
    Full,
    /// The self-drafting depth.
    Draft,
}

/// A model loaded on a device with a paged KV cache.
pub struct Engine {
    pub gpu: Arc<Gpu>,
    pub config: ModelConfig,
    pub variant: Variant,
    pub weights: ModelWeights,
    n_ctx: u32,
    max_batch: u32,
    max_rows: u32,
    max_entries: u32,
    pool: KvPool,
    blocks: BlockManager,
    acts: Activations,
    plans: ForwardPlans,
    tail: SamplerTail,
    step: wgpu::Buffer,
    meta: wgpu::Buffer,
    meta_words: u64,
    tiling: AttnTiling,
    tuning: Tuning,
    /// The sequence of the single-sequence API.
    default_seq: SeqId,
    /// Rows the last step left for sampling (0: none usable), as `ready_output` says.
    rows_ready: u32,
    /// What the last step's head left of them: logits, or only their argmaxes.
    ready_output: HeadOutput,
}

impl Engine {
    /// Uploads the model, allocates the KV pool and records the forward passes.
    pub async fn load(
        gpu: Arc<Gpu>,
        file: &GgufFile,
        src: &dyn TensorSource,
        options: &EngineOptions,
    ) -> Result<Engine, Error> {
        let config = ModelConfig::from_gguf(file)?;
        if let Some(layers) = options.self_draft_layers
            && !(1..config.n_layer).contains(&layers)
        {
            return Err(SpeculationError::SelfDraftLayers {
                layers,
                n_layer: config.n_layer,
            }
            .into());
        }
        let variant = options.variant.resolve(&gpu.caps, &gpu.adapter_name())?;
        let Sizes {
            n_ctx,
            kv_type,
            n_blocks,
        } = Sizes::check(options, &gpu, &config)?;
        let tuning = Tuning::new(variant, &gpu.caps).with_overrides(&options.tuning);
        let uniform_x = tuning.matvec_x_uniform;
        let weights = ModelWeights::upload(&gpu, file, &config, src, uniform_x).await?;
        let pool = KvPool::new(&gpu, &config, kv_type, options.kv_block, n_blocks).await?;
        let mut blocks = BlockManager::new(n_blocks, options.kv_block, n_ctx);
        let default_seq = blocks.create();
        let acts = Activations::new(
            &gpu,
            &config,
            variant.act,
            options.max_batch,
            options.max_rows,
            uniform_x,
        )
        .await?;
        let tiles = FlashTiles::for_head_dim(config.head_dim, &gpu.caps);
        let (tiling, partial_bytes) = attention_tiling(&gpu, &config, options, &tuning, tiles.bq);
        let StepBuffers {
            step,
            meta,
            meta_words,
            partials,
        } = StepBuffers::new(&gpu, options, n_ctx, &tiling, partial_bytes).await?;
        let plans = ForwardPlans::build(
            &gpu,
            variant,
            tuning,
            &config,
            &weights,
            &pool,
            &acts,
            &step,
            &meta,
            partials.as_ref(),
            tiles,
            options.self_draft_layers,
        )
        .await?;
        let tail = SamplerTail::new(
            &gpu,
            variant,
            tuning,
            &acts,
            config.vocab_size,
            options.max_rows,
        )
        .await?;
        Ok(Engine {
            gpu,
            config,
            variant,
            weights,
            n_ctx,
            max_batch: options.max_batch,
            max_rows: options.max_rows,
            max_entries: options.max_entries,
            pool,
            blocks,
            acts,
            plans,
            tail,
            step,
            meta,
            meta_words,
            tiling,
            tuning,
            default_seq,
            rows_ready: 0,
            ready_output: HeadOutput::Logits,
        })
    }

    /// Context length of one sequence, in tokens.
    pub fn context_size(&self) -> u32 {
        self.n_ctx
    }

    /// The prefill chunk size (most tokens per step).
    pub fn max_batch(&self) -> u32 {
        self.max_batch
    }

    /// The most logits rows (sequences sampled) per step.
    pub fn max_rows(&self) -> u32 {
        self.max_rows
    }

    /// The most sequences in one step.
    /// The kernel shapes this engine was recorded with.
    pub fn tuning(&self) -> &Tuning {
        &self.tuning
    }

    pub fn max_entries(&self) -> u32 {
        self.max_entries
    }

    pub fn kv_stats(&self) -> KvStats {
        KvStats {
            block_size: self.pool.block,
            blocks: self.blocks.n_blocks(),
            used_blocks: self.blocks.used_blocks(),
            free_blocks: self.blocks.free_blocks(),
            cached_blocks: self.blocks.cached_blocks(),
            pool_bytes: self.pool.bytes(),
            kv_type: self.pool.kv,
        }
    }

    /// Bytes of KV cache allocated.
    pub fn kv_bytes(&self) -> u64 {
        self.pool.bytes()
    }

    // ---- sequences ------------------------------------------------------------------

    /// A new, empty sequence.
    pub fn create_sequence(&mut self) -> SeqId {
        self.blocks.create()
    }

    /// A new sequence sharing `src`'s cache: its prompt is stored once, and a block is
    /// copied only when one of them writes into a shared, partly filled block.
    pub fn fork_sequence(&mut self, src: SeqId) -> Result<SeqId, Error> {
        Ok(self.blocks.fork(src).map_err(EngineError::from)?)
    }

    /// Drops a sequence and frees its blocks.
    pub fn remove_sequence(&mut self, id: SeqId) -> Result<(), Error> {
        self.blocks.remove(id).map_err(EngineError::from)?;
        Ok(())
    }

    /// Forgets positions from `len` on.
    pub fn truncate_sequence(&mut self, id: SeqId, len: u32) -> Result<(), Error> {
        self.blocks.truncate(id, len).map_err(EngineError::from)?;
        Ok(())
    }

    /// Removes every sequence but the default one, which is emptied: the engine's whole
    /// pool is free again (for a scheduler that takes the engine over).
    pub fn remove_all_sequences(&mut self) {
        let all: Vec<SeqId> = self.blocks.sequences().collect();
        for id in all {
            if id != self.default_seq {
                let _ = self.blocks.remove(id);
            }
        }
        let _ = self.blocks.truncate(self.default_seq, 0);
        self.rows_ready = 0;
    }

    /// Positions the sequence has in the cache.
    pub fn sequence_len(&self, id: SeqId) -> Result<u32, Error> {
        Ok(self.blocks.len(id).map_err(EngineError::from)?)
    }

    /// Blocks that `n` more positions of `id` would take from the pool.
    pub fn blocks_needed(&self, id: SeqId, n: u32) -> Result<usize, Error> {
        Ok(self
            .blocks
            .blocks_needed(id, n)
            .map_err(EngineError::from)?)
    }

    /// Positions the whole KV pool holds.
    pub fn kv_capacity(&self) -> u32 {
        self.blocks.n_blocks() * self.pool.block
    }

    /// A new sequence starting with the cached blocks of `hashes`, from the first on and
    /// at most `n_blocks` of them; its length says how many it got.
    pub fn create_sequence_from_prefix(&mut self, hashes: &[BlockHash], n_blocks: usize) -> SeqId {
        self.blocks.create_from_prefix(hashes, n_blocks)
    }

    /// Offers the full, written blocks `first..` of `id` to the prefix cache under
    /// `hashes` (the names of its tokens' blocks from block `first` on, from a
    /// [`BlockHasher`](crate::kv::BlockHasher) with this engine's block size).
    pub fn name_blocks(
        &mut self,
        id: SeqId,
        first: usize,
        hashes: &[BlockHash],
    ) -> Result<(), Error> {
        self.blocks
            .name_blocks(id, first, hashes)
            .map_err(EngineError::from)?;
        Ok(())
    }

    // ---- steps ------------------------------------------------------------------------

    fn check_batch(&self, batch: &[BatchEntry<'_>]) -> Result<(u32, u32), EngineError> {
        if batch.is_empty() || batch.iter().any(|e| e.tokens.is_empty()) {
            return Err(EngineError::EmptyPrompt);
        }
        if batch.len() > self.max_entries as usize {
            return Err(EngineError::InvalidBatch(format!(
                "{} entries, over the limit of {}",
                batch.len(),
                self.max_entries
            )));
        }
        let tokens: usize = batch.iter().map(|e| e.tokens.len()).sum();
        if tokens > self.max_batch as usize {
            return Err(EngineError::InvalidBatch(format!(
                "{tokens} tokens, over the step limit of {}",
                self.max_batch
            )));
        }
        let rows: usize = batch
            .iter()
            .map(|e| match e.logits {
                Logits::None => 0,
                Logits::Last => 1,
                Logits::All => e.tokens.len(),
            })
            .sum();
        if rows > self.max_rows as usize {
            return Err(EngineError::InvalidBatch(format!(
                "{rows} logits rows, over the limit of {}",
                self.max_rows
            )));
        }
        let mut seen = std::collections::BTreeSet::new();
        let mut blocks_needed = 0;
        for e in batch {
            if !seen.insert(e.seq) {
                return Err(EngineError::InvalidBatch(format!(
                    "sequence {:?} appears twice",
                    e.seq
                )));
            }
            self.check_prompt(self.blocks.len(e.seq)? as usize, e.tokens)?;
            blocks_needed += self.blocks.blocks_needed(e.seq, e.tokens.len() as u32)?;
        }
        let free = self.blocks.free_blocks() as usize;
        if blocks_needed > free {
            return Err(KvError::PoolFull {
                needed: blocks_needed,
                free,
                block_size: self.pool.block,
            }
            .into());
        }
        Ok((tokens as u32, rows as u32))
    }

    /// Runs one forward step over `batch`: each entry's tokens are appended to its
    /// sequence (a prefill chunk, or one decoded token), all in one compute pass. The
    /// logits rows it asks for ([`Logits`]) are laid out in entry order and stay until
    /// the next step. Returns how many rows there are. The work is submitted, not
    /// awaited. A refused batch changes nothing.
    pub fn step(&mut self, batch: &[BatchEntry<'_>]) -> Result<u32, Error> {
        self.step_to(batch, HeadOutput::Logits)
    }

    /// [`Engine::step`] with the head ending in `output`: with
    /// [`HeadOutput::Argmax`], only samplers whose argmax suffices
    /// ([`SamplerConfig::argmax_suffices`](crate::sampling::SamplerConfig::argmax_suffices))
    /// can take its rows, and no logits can be read.
    pub fn step_to(&mut self, batch: &[BatchEntry<'_>], output: HeadOutput) -> Result<u32, Error> {
        Ok(self.submit_step(batch, Pass::Full, output)?.rows)
    }

    /// [`Engine::step`] through the drafting pass: the first
    /// [`self_draft_layers`](Self::self_draft_layers) layers, then the head. Their KV is
    /// written for the positions as a full step writes it, so a later full step over the
    /// same tokens rewrites the same values; the caller truncates the drafted positions
    /// away before verifying them.
    pub fn draft_step(
        &mut self,
        batch: &[BatchEntry<'_>],
        output: HeadOutput,
    ) -> Result<u32, Error> {
        Ok(self.submit_step(batch, Pass::Draft, output)?.rows)
    }

    /// The depth of the drafting pass, when the engine was loaded with one.
    pub fn self_draft_layers(&self) -> Option<u32> {
        self.plans.draft.as_ref().map(|d| d.layers)
    }

    fn submit_step(
        &mut self,
        batch: &[BatchEntry<'_>],
        which: Pass,
        output: HeadOutput,
    ) -> Result<batch::StepMeta, Error> {
        if which == Pass::Draft && self.plans.draft.is_none() {
            return Err(SpeculationError::NoDraftPass.into());
        }
        let (n_tokens, _) = self.check_batch(batch)?;
        self.gpu.check_errors()?;
        let (meta, copies) = self.book_step(batch)?;
        let shape = StepShape {
            tokens: n_tokens,
            rows: meta.rows,
            work: meta.work,
            reduce: meta.reduce,
        };
        let mut enc = self
            .gpu
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("step"),
            });
        self.pool.encode_copies(&mut enc, &copies);
        {
            let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: Some("step"),
                timestamp_writes: None,
            });
            let (layers, head) = self.step_plans(n_tokens, meta.rows, which, output);
            layers.encode(&mut pass, shape);
            if let Some(head) = head {
                head.encode(&mut pass, shape);
            }
        }
        self.gpu.queue.submit([enc.finish()]);
        self.finish_step(batch, &meta, output);
        Ok(meta)
    }

    /// Appends a checked batch's positions to its sequences' block tables and uploads the
    /// step's values, metadata and token ids. Returns the metadata and the block copies
    /// (copy-on-write) that must run before the step.
    fn book_step(
        &mut self,
        batch: &[BatchEntry<'_>],
    ) -> Result<(batch::StepMeta, Vec<BlockCopy>), Error> {
        let mut copies = Vec::new();
        for e in batch {
            // Cannot fail: the batch was checked against the pool and the context.
            copies.extend(
                self.blocks
                    .append(e.seq, e.tokens.len() as u32)
                    .map_err(EngineError::from)?,
            );
        }
        let meta = batch::build(batch, &self.blocks, &self.tiling).map_err(EngineError::from)?;
        debug_assert!(meta.words.len() as u64 <= self.meta_words);
        self.gpu
            .write(&self.step, 0, bytemuck::bytes_of(&meta.params));
        self.gpu
            .write(&self.meta, 0, bytemuck::cast_slice(&meta.words));
        self.gpu
            .write(&self.acts.tokens, 0, bytemuck::cast_slice(&meta.tokens));
        Ok((meta, copies))
    }

    /// The recorded plans a step runs: the layers (the matrix-vector set for a single
    /// token, the small-batch set for a few where the tuning has one, else the
    /// matrix-matrix set), then the head when logits rows are wanted.
    fn step_plans(
        &self,
        n_tokens: u32,
        rows: u32,
        pass: Pass,
        output: HeadOutput,
    ) -> (&Plan, Option<&Plan>) {
        let small = self
            .plans
            .few
            .as_ref()
            .is_some_and(|few| few.tuning.small_batch(n_tokens));
        let layers = match (pass, &self.plans.draft) {
            (Pass::Draft, Some(d)) => match &d.few {
                _ if n_tokens == 1 => &d.single,
                Some(few) if small => few,
                _ => &d.batched,
            },
            _ => match &self.plans.few {
                _ if n_tokens == 1 => &self.plans.layers_single,
                Some(few) if small => &few.layers,
                _ => &self.plans.layers_batched,
            },
        };
        (layers, self.head_plan(rows, output))
    }

    /// The LM head for `rows` logits rows (none for no rows), ending in `output`.
    fn head_plan(&self, rows: u32, output: HeadOutput) -> Option<&Plan> {
        let heads = match rows {
            0 => return None,
            1 => &self.plans.head_one,
            _ => match &self.plans.few {
                Some(few) if few.tuning.small_batch(rows) => &few.head,
                _ => &self.plans.head_many,
            },
        };
        Some(heads.get(output))
    }

    /// Bookkeeping after a step was submitted: its rows are ready, and blocks left
    /// outside a sliding window go back to the pool.
    fn finish_step(
        &mut self,
        batch: &[BatchEntry<'_>],
        meta: &batch::StepMeta,
        output: HeadOutput,
    ) {
        self.rows_ready = meta.rows;
        self.ready_output = output;
        self.release_outside_window(batch);
    }

    /// With a sliding window on every layer, blocks whose positions no later query can
    /// see go back to the pool. (The step that just read them was submitted first, so a
    /// later step reusing them writes after it.)
    fn release_outside_window(&mut self, batch: &[BatchEntry<'_>]) {
        let Some(window) = self.config.window_on_every_layer() else {
            return;
        };
        for e in batch {
            if let Ok(len) = self.blocks.len(e.seq) {
                // The next query is at position `len` and sees `len + 1 - window` on.
                let first_needed = (len + 1).saturating_sub(window);
                let _ = self.blocks.release_before(e.seq, first_needed);
            }
        }
    }

    /// Samples row i of the last step's logits with `samplers[i]`, reading back only
    /// what the choice needs, and accepts each token into its sampler. Penalties change
    /// the logits in place, so the rows are used up.
    pub async fn sample_rows(&mut self, samplers: &mut [&mut Sampler]) -> Result<Vec<u32>, Error> {
        let configs: Vec<_> = samplers.iter().map(|s| *s.config()).collect();
        self.check_rows_ready(&configs)?;
        let tokens = match self.ready_output {
            HeadOutput::Logits => self.tail.sample(&self.gpu, &self.acts, samplers).await?,
            HeadOutput::Argmax => {
                let rows = samplers.len() as u32;
                let tokens = self.tail.head_argmaxes(&self.gpu, &self.acts, rows).await?;
                for (s, &t) in samplers.iter_mut().zip(&tokens) {
                    s.accept(t);
                }
                tokens
            }
        };
        self.rows_ready = 0;
        Ok(tokens)
    }

    /// The final distribution of row i of the last step's logits under `samplers[i]`'s
    /// penalties and chain (a point mass at the argmax for a greedy one), for
    /// speculative verification. Penalties change the logits in place, so the rows are
    /// used up.
    pub async fn row_distributions(
        &mut self,
        samplers: &[&Sampler],
    ) -> Result<Vec<Distribution>, Error> {
        let configs: Vec<_> = samplers.iter().map(|s| *s.config()).collect();
        self.check_rows_ready(&configs)?;
        let dists = match self.ready_output {
            HeadOutput::Logits => {
                self.tail
                    .distributions(&self.gpu, &self.acts, samplers)
                    .await?
            }
            HeadOutput::Argmax => {
                let rows = samplers.len() as u32;
                let tokens = self.tail.head_argmaxes(&self.gpu, &self.acts, rows).await?;
                tokens.into_iter().map(|t| vec![(t, 1.0)]).collect()
            }
        };
        self.rows_ready = 0;
        Ok(dists)
    }

    /// Checks that the last step left a row for each of `samplers`, and what each needs:
    /// after an argmax head, only samplers whose argmax suffices.
    fn check_rows_ready(&self, samplers: &[SamplerConfig]) -> Result<(), Error> {
        if samplers.is_empty() || samplers.len() > self.rows_ready as usize {
            return Err(EngineError::NoLogits.into());
        }
        if self.ready_output == HeadOutput::Argmax
            && let Some(row) = samplers.iter().position(|c| !c.argmax_suffices())
        {
            return Err(EngineError::OnlyArgmax(format!(
                "row {row}'s sampler is not greedy without penalties"
            ))
            .into());
        }
        Ok(())
    }

    /// Rows `rows` of the last step's logits (a full readback: for tools and tests).
    pub async fn read_logits(&self, rows: std::ops::Range<u32>) -> Result<Vec<Vec<f32>>, Error> {
        if rows.is_empty() || rows.end > self.rows_ready {
            return Err(EngineError::NoLogits.into());
        }
        if self.ready_output == HeadOutput::Argmax {
            return Err(EngineError::OnlyArgmax("its logits were asked for".into()).into());
        }
        let vocab = self.config.vocab_size as u64;
        let bytes = self
            .gpu
            .read_buffer(
                &self.acts.logits,
                rows.start as u64 * vocab * 4,
                rows.len() as u64 * vocab * 4,
            )
            .await?;
        let all: &[f32] = bytemuck::cast_slice(&bytes);
        Ok(all.chunks(vocab as usize).map(|r| r.to_vec()).collect())
    }

    /// Waits until the GPU has finished all submitted work (for timing a prefill
    /// separately from the first sample).
    pub async fn wait_idle(&self) -> Result<(), Error> {
        // A tiny readback orders after everything submitted before it.
        self.gpu.read_buffer(&self.acts.tokens, 0, 4).await?;
        Ok(())
    }

    // ---- the single-sequence API ---------------------------------------------------

    /// The sequence the single-sequence API works on (a [`Generator`](crate::generate::Generator)
    /// runs its generations on it, so a new prompt can reuse its cache).
    pub fn default_sequence(&self) -> SeqId {
        self.default_seq
    }

    /// Tokens in the default sequence.
    pub fn position(&self) -> u32 {
        self.blocks.len(self.default_seq).unwrap_or(0)
    }

    /// Forgets the default sequence: the next prompt starts at position 0.
    pub fn reset(&mut self) {
        let _ = self.blocks.truncate(self.default_seq, 0);
        self.rows_ready = 0;
    }

    /// Drops the default sequence back to `pos` tokens (e.g. to regenerate a reply).
    pub fn truncate(&mut self, pos: u32) {
        if pos < self.position() {
            let _ = self.blocks.truncate(self.default_seq, pos);
            self.rows_ready = 0;
        }
    }

    /// The one check of a prompt, before any of it runs: `tokens` are to follow `used`
    /// tokens already in a sequence. Refuses an empty prompt, one that does not fit in the
    /// context or could not fit in the whole KV pool, and ids outside the vocabulary.
    /// Whether the pool has room now is decided per step (a scheduler lets a generation
    /// wait for blocks).
    pub fn check_prompt(&self, used: usize, tokens: &[u32]) -> Result<(), EngineError> {
        if tokens.is_empty() {
            return Err(EngineError::EmptyPrompt);
        }
        if used + tokens.len() > self.n_ctx as usize {
            return Err(EngineError::ContextFull {
                needed: tokens.len(),
                used,
                n_ctx: self.n_ctx as usize,
            });
        }
        // (With a sliding window on every layer, old blocks go back as a sequence grows.)
        if used + tokens.len() > self.kv_capacity() as usize
            && self.config.window_on_every_layer().is_none()
        {
            return Err(EngineError::PoolTooSmall {
                needed: used + tokens.len(),
                capacity: self.kv_capacity() as usize,
            });
        }
        if let Some(&bad) = tokens.iter().find(|&&t| t >= self.config.vocab_size) {
            return Err(EngineError::InvalidToken {
                token: bad,
                vocab: self.config.vocab_size,
            });
        }
        Ok(())
    }

    /// [`Engine::check_prompt`] for the default sequence, plus room in the KV pool for the
    /// whole prompt, so a refusal happens before any chunk runs.
    fn check_default_prompt(&self, tokens: &[u32]) -> Result<(), EngineError> {
        self.check_prompt(self.position() as usize, tokens)?;
        let needed = self
            .blocks
            .blocks_needed(self.default_seq, tokens.len() as u32)?;
        if needed > self.blocks.free_blocks() as usize {
            return Err(KvError::PoolFull {
                needed,
                free: self.blocks.free_blocks() as usize,
                block_size: self.pool.block,
            }
            .into());
        }
        Ok(())
    }

    /// Processes a prompt on the default sequence (in chunks of at most `max_batch`
    /// tokens), leaving the logits of its last token ready for sampling. The work is
    /// submitted, not awaited.
    pub fn prefill(&mut self, tokens: &[u32]) -> Result<(), Error> {
        self.check_default_prompt(tokens)?;
        let chunks: Vec<&[u32]> = tokens.chunks(self.max_batch as usize).collect();
        for (i, chunk) in chunks.iter().enumerate() {
            let logits = if i + 1 == chunks.len() {
                Logits::Last
            } else {
                Logits::None
            };
            self.step(&[BatchEntry {
                seq: self.default_seq,
                tokens: chunk,
                logits,
            }])?;
        }
        Ok(())
    }

    /// Processes one generated token on the default sequence.
    pub fn decode(&mut self, token: u32) -> Result<(), Error> {
        self.prefill(&[token])
    }

    /// Processes a text on the default sequence and returns the logits at every one of
    /// its positions (for perplexity and comparisons with other implementations).
    pub async fn prefill_logits(&mut self, tokens: &[u32]) -> Result<Vec<Vec<f32>>, Error> {
        let mut out = Vec::with_capacity(tokens.len());
        self.prefill_logits_with(tokens, |_, row| out.push(row))
            .await?;
        Ok(out)
    }

    /// Like [`Engine::prefill_logits`], handing each position's logits to `on` (position
    /// in the text, logits) as they are read, so a long text never holds them all. The
    /// text goes in chunks of `max_batch` tokens, each one step through the layers; the
    /// LM head then runs over the chunk's positions `max_rows` at a time.
    pub async fn prefill_logits_with(
        &mut self,
        tokens: &[u32],
        mut on: impl FnMut(usize, Vec<f32>),
    ) -> Result<(), Error> {
        self.check_default_prompt(tokens)?;
        let mut done = 0;
        let mut last = None;
        for chunk in tokens.chunks(self.max_batch as usize) {
            let meta = self.submit_step(
                &[BatchEntry {
                    seq: self.default_seq,
                    tokens: chunk,
                    logits: Logits::None,
                }],
                Pass::Full,
                HeadOutput::Logits,
            )?;
            // The head reads the chunk's final hidden states, which stay until the next step.
            let all: Vec<u32> = (0..chunk.len() as u32).collect();
            for group in all.chunks(self.max_rows as usize) {
                self.submit_head(&meta, group);
                for row in self.read_logits(0..group.len() as u32).await? {
                    on(done, row);
                    done += 1;
                }
            }
            last = Some((meta, chunk.len() as u32 - 1));
        }
        // Leave the last position's logits in row 0, where sampling reads them.
        if let Some((meta, i)) = last {
            self.submit_head(&meta, &[i]);
        }
        Ok(())
    }

    /// Runs the LM head over the given tokens of the last step (its `meta`), into the
    /// first rows of the logits.
    fn submit_head(&mut self, meta: &batch::StepMeta, tokens: &[u32]) {
        let mut params = meta.params;
        params.n_rows = tokens.len() as u32;
        self.gpu.write(&self.step, 0, bytemuck::bytes_of(&params));
        self.gpu.write(
            &self.meta,
            params.rows as u64 * 4,
            bytemuck::cast_slice(tokens),
        );
        let shape = StepShape {
            tokens: params.n_tokens,
            rows: params.n_rows,
            work: meta.work,
            reduce: meta.reduce,
        };
        let mut enc = self
            .gpu
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("head"),
            });
        {
            let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: Some("head"),
                timestamp_writes: None,
            });
            if let Some(head) = self.head_plan(tokens.len() as u32, HeadOutput::Logits) {
                head.encode(&mut pass, shape);
            }
        }
        self.gpu.queue.submit([enc.finish()]);
        self.rows_ready = tokens.len() as u32;
        self.ready_output = HeadOutput::Logits;
    }

    /// The logits of the default sequence's last processed token.
    pub async fn logits(&self) -> Result<Vec<f32>, Error> {
        let rows = self.read_logits(0..1).await?;
        rows.into_iter()
            .next()
            .ok_or_else(|| EngineError::NoLogits.into())
    }

    /// Chooses the next token of the default sequence from its logits.
    pub async fn sample(&mut self, sampler: &mut Sampler) -> Result<u32, Error> {
        let tokens = self.sample_rows(&mut [sampler]).await?;
        tokens
            .into_iter()
            .next()
            .ok_or_else(|| EngineError::NoLogits.into())
    }

    /// Runs one step over `tokens` of the default sequence with a timestamp around every
    /// dispatch and returns the GPU time of each (`None` without timestamp queries).
    pub async fn profile_step(&mut self, tokens: &[u32]) -> Result<Option<Vec<KernelTime>>, Error> {
        let entry = [BatchEntry {
            seq: self.default_seq,
            tokens,
            logits: Logits::Last,
        }];
        self.profile_batch(&entry, HeadOutput::Logits).await
    }

    /// [`Engine::step_to`] with a timestamp around every dispatch: the GPU time of each
    /// (`None` without timestamp queries; then nothing runs).
    pub async fn profile_batch(
        &mut self,
        batch: &[BatchEntry<'_>],
        output: HeadOutput,
    ) -> Result<Option<Vec<KernelTime>>, Error> {
        let (n_tokens, rows) = self.check_batch(batch)?;
        let (layers, head) = self.step_plans(n_tokens, rows, Pass::Full, output);
        let count = (layers.dispatches.len() + head.map_or(0, |h| h.dispatches.len())) as u32;
        let Some(profiler) = crate::gpu::Profiler::new(&self.gpu, count).await? else {
            return Ok(None);
        };
        let (meta, copies) = self.book_step(batch)?;
        if !copies.is_empty() {
            let mut enc = self
                .gpu
                .device
                .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                    label: Some("copies"),
                });
            self.pool.encode_copies(&mut enc, &copies);
            self.gpu.queue.submit([enc.finish()]);
        }
        let shape = StepShape {
            tokens: n_tokens,
            rows: meta.rows,
            work: meta.work,
            reduce: meta.reduce,
        };
        let (layers, head) = self.step_plans(n_tokens, meta.rows, Pass::Full, output);
        let mut plans = vec![(layers, shape)];
        plans.extend(head.map(|h| (h, shape)));
        let times = profiler.run(&self.gpu, &plans).await?;
        self.finish_step(batch, &meta, output);
        Ok(Some(times))
    }
}
