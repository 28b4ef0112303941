//! Running single kernels on the test device: uploading inputs in the variant's
//! activation type, dispatching one recorded plan, and reading results back as f32.

use half::f16;
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use wisp_core::engine::{AttnEntry, AttnTiling, attention_work};
use wisp_core::gpu::{Act, Gpu, KvType, Plan, PlanBuilder, StepParams, StepShape};
use wisp_core::kernels::{EntryInfo, Q8KvBlock, TokenInfo, WorkItem, words};
use wisp_core::quant::GgmlType;

/// Deterministic pseudo-random values in [-scale, scale).
pub fn random(seed: u64, n: usize, scale: f32) -> Vec<f32> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..n)
        .map(|_| (rng.random::<f32>() * 2.0 - 1.0) * scale)
        .collect()
}

/// Values as the activation type stores them.
pub fn act_bytes(act: Act, v: &[f32]) -> Vec<u8> {
    match act {
        Act::F32 => bytemuck::cast_slice(v).to_vec(),
        Act::F16 => v
            .iter()
            .flat_map(|x| f16::from_f32(*x).to_le_bytes())
            .collect(),
    }
}

/// Rounds values to what the activation type can hold (the CPU reference uses these).
pub fn round_act(act: Act, v: &[f32]) -> Vec<f32> {
    match act {
        Act::F32 => v.to_vec(),
        Act::F16 => v.iter().map(|x| f16::from_f32(*x).to_f32()).collect(),
    }
}

pub fn from_act_bytes(act: Act, b: &[u8]) -> Vec<f32> {
    match act {
        Act::F32 => bytemuck::cast_slice::<u8, f32>(&b[..b.len() / 4 * 4]).to_vec(),
        Act::F16 => b
            .chunks_exact(2)
            .map(|c| f16::from_le_bytes([c[0], c[1]]).to_f32())
            .collect(),
    }
}

pub fn upload_act(gpu: &Gpu, act: Act, v: &[f32]) -> wgpu::Buffer {
    upload_product_input(gpu, &act_bytes(act, v))
}

/// Whether test inputs are made bindable as matvec's uniform x: always, so that every
/// tuning's x binding (uniform or storage) can be tested on the same buffers.
const BINDABLE_AS_UNIFORM_X: bool = true;

/// Activations in a buffer made as the engine makes a matrix product's input on a CPU
/// adapter (so the kernels take the same variants, with either x binding).
fn upload_product_input(gpu: &Gpu, bytes: &[u8]) -> wgpu::Buffer {
    let made = wisp_core::kernels::product_input(
        gpu,
        "test input",
        bytes.len() as u64,
        BINDABLE_AS_UNIFORM_X,
    );
    let buf = pollster::block_on(made).expect("upload");
    gpu.write(&buf, 0, bytes);
    buf
}

pub fn upload_f32(gpu: &Gpu, v: &[f32]) -> wgpu::Buffer {
    pollster::block_on(gpu.storage_with("test input", bytemuck::cast_slice(v))).expect("upload")
}

pub fn upload_u32(gpu: &Gpu, v: &[u32]) -> wgpu::Buffer {
    pollster::block_on(gpu.storage_with("test input", bytemuck::cast_slice(v))).expect("upload")
}

pub fn read_act(gpu: &Gpu, act: Act, b: &wgpu::Buffer, n: usize) -> Vec<f32> {
    let bytes =
        pollster::block_on(gpu.read_buffer(b, 0, n as u64 * act.size())).expect("read back");
    from_act_bytes(act, &bytes)
}

pub fn read_f32(gpu: &Gpu, b: &wgpu::Buffer, n: usize) -> Vec<f32> {
    let bytes = pollster::block_on(gpu.read_buffer(b, 0, n as u64 * 4)).expect("read back");
    bytemuck::cast_slice(&bytes).to_vec()
}

pub fn read_u32(gpu: &Gpu, b: &wgpu::Buffer, n: usize) -> Vec<u32> {
    let bytes = pollster::block_on(gpu.read_buffer(b, 0, n as u64 * 4)).expect("read back");
    bytemuck::cast_slice(&bytes).to_vec()
}

/// A step uniform holding `step`, and a builder over it.
pub fn builder(gpu: &Gpu, step: StepParams) -> PlanBuilder {
    let buf =
        pollster::block_on(gpu.uniform("test step", std::mem::size_of::<StepParams>() as u64))
            .expect("step uniform");
    gpu.write(&buf, 0, bytemuck::bytes_of(&step));
    PlanBuilder::new(gpu, buf)
}

/// Runs a plan for a step of `n_tokens` tokens (and as many logits rows) and waits.
pub fn run(gpu: &Gpu, plan: &Plan, n_tokens: u32) {
    run_shape(
        gpu,
        plan,
        StepShape {
            tokens: n_tokens,
            rows: n_tokens,
            work: n_tokens,
            reduce: 0,
        },
    );
}

/// Runs a plan for a step of this shape.
pub fn run_shape(gpu: &Gpu, plan: &Plan, shape: StepShape) {
    let mut enc = gpu.device.create_command_encoder(&Default::default());
    {
        let mut pass = enc.begin_compute_pass(&Default::default());
        plan.encode(&mut pass, shape);
    }
    gpu.queue.submit([enc.finish()]);
    gpu.check_errors().expect("GPU errors");
}

/// Step values for kernels that only need the token count (and as many rows).
pub fn step(n_tokens: u32) -> StepParams {
    StepParams {
        n_tokens,
        n_rows: n_tokens,
        ..Default::default()
    }
}

/// Q8_0 of 32 values as the KV cache stores them: (quants, scale), with the scale an
/// f16-rounded amax / 127 and quants rounded half away from zero.
fn q8_block(v: &[f32]) -> ([i8; 32], f32) {
    let amax = v.iter().fold(0.0f32, |m, x| m.max(x.abs()));
    let d = amax / 127.0;
    let id = if d > 0.0 { 1.0 / d } else { 0.0 };
    let mut q = [0i8; 32];
    for (o, x) in q.iter_mut().zip(v) {
        *o = (x * id).round() as i8;
    }
    (q, f16::from_f32(d).to_f32())
}

/// Values as the KV cache type stores them (the CPU reference uses these).
pub fn round_kv(kv: KvType, v: &[f32]) -> Vec<f32> {
    match kv {
        KvType::F32 => v.to_vec(),
        KvType::F16 => round_act(Act::F16, v),
        KvType::Q8_0 => v
            .chunks(32)
            .flat_map(|c| {
                let (q, d) = q8_block(c);
                q.into_iter().map(move |x| x as f32 * d)
            })
            .collect(),
    }
}

/// A KV pool holding `v` ([slots, stride] values) in the layout of `kv`.
pub fn upload_kv(gpu: &Gpu, kv: KvType, v: &[f32], stride: usize) -> wgpu::Buffer {
    match kv {
        KvType::F32 => upload_act(gpu, Act::F32, v),
        KvType::F16 => upload_act(gpu, Act::F16, v),
        KvType::Q8_0 => {
            assert_eq!(stride % 32, 0, "a Q8_0 slot holds whole blocks");
            let blocks: Vec<Q8KvBlock> = v
                .chunks(32)
                .map(|c| {
                    let (q, d) = q8_block(c);
                    Q8KvBlock::new(&q, d)
                })
                .collect();
            upload_u32(gpu, bytemuck::cast_slice(&blocks))
        }
    }
}

/// `n` values ([slots, stride]) read back from a KV pool of type `kv`.
pub fn read_kv(gpu: &Gpu, kv: KvType, b: &wgpu::Buffer, n: usize, stride: usize) -> Vec<f32> {
    match kv {
        KvType::F32 => read_act(gpu, Act::F32, b, n),
        KvType::F16 => read_act(gpu, Act::F16, b, n),
        KvType::Q8_0 => {
            assert_eq!(stride % 32, 0, "a Q8_0 slot holds whole blocks");
            let words = read_u32(gpu, b, n / 32 * std::mem::size_of::<Q8KvBlock>() / 4);
            let blocks: &[Q8KvBlock] = bytemuck::cast_slice(&words);
            blocks.iter().flat_map(Q8KvBlock::values).collect()
        }
    }
}

/// A step over several sequences in a paged KV cache, laid out as the engine lays it
/// out, with each sequence's blocks scattered over the pool in a shuffled order (so a
/// kernel that ignored the block table would read the wrong keys).
pub struct PagedStep {
    pub params: StepParams,
    pub meta: Vec<u32>,
    pub block: u32,
    pub n_blocks: u32,
    /// Per sequence: its block table.
    pub tables: Vec<Vec<u32>>,
    /// Per sequence: (first position of this step, tokens in this step).
    pub seqs: Vec<(u32, u32)>,
    pub shape: StepShape,
}

impl PagedStep {
    /// `seqs`: per sequence, (positions already cached, tokens in this step).
    pub fn new(seqs: &[(u32, u32)], block: u32, seed: u64) -> PagedStep {
        let tiling = AttnTiling {
            bq: 16,
            window: 0,
            keys_per_split: 256,
            max_splits: 16,
        };
        Self::with_tiling(seqs, block, seed, &tiling)
    }

    /// The same, with the attention work cut as `tiling` says.
    pub fn with_tiling(
        seqs: &[(u32, u32)],
        block: u32,
        seed: u64,
        tiling: &AttnTiling,
    ) -> PagedStep {
        use rand::seq::SliceRandom;
        let per_seq: Vec<u32> = seqs.iter().map(|&(p, n)| (p + n).div_ceil(block)).collect();
        // A few spare blocks so ids are not simply dense.
        let n_blocks = per_seq.iter().sum::<u32>() + 3;
        let mut ids: Vec<u32> = (0..n_blocks).collect();
        ids.shuffle(&mut ChaCha8Rng::seed_from_u64(seed));
        let mut next = ids.into_iter();
        let tables: Vec<Vec<u32>> = per_seq
            .iter()
            .map(|&n| (0..n).map(|_| next.next().unwrap()).collect())
            .collect();
        let n_tokens: u32 = seqs.iter().map(|s| s.1).sum();
        let mut token_info = Vec::new();
        let mut entries = Vec::new();
        let mut table_words = Vec::new();
        let tables_start =
            n_tokens * words::<TokenInfo>() + seqs.len() as u32 * words::<EntryInfo>();
        let mut first = 0;
        let (mut work, mut reduce, mut partials) = (Vec::new(), Vec::new(), 0);
        for (e, &(pos0, n)) in seqs.iter().enumerate() {
            entries.push(EntryInfo {
                table: tables_start + table_words.len() as u32,
                keys: pos0 + n,
                first_token: first,
                n_tokens: n,
            });
            table_words.extend_from_slice(&tables[e]);
            for i in 0..n {
                token_info.push(TokenInfo {
                    pos: pos0 + i,
                    entry: e as u32,
                });
            }
            let entry = AttnEntry {
                entry: e as u32,
                first_token: first,
                pos0,
                n,
            };
            attention_work(&entry, tiling, &mut work, &mut reduce, &mut partials);
            first += n;
        }
        let rows_start = tables_start + table_words.len() as u32;
        let work_start = rows_start + n_tokens;
        let params = StepParams {
            n_tokens,
            n_entries: seqs.len() as u32,
            n_rows: n_tokens,
            n_work: work.len() as u32,
            token_info: 0,
            entries: n_tokens * words::<TokenInfo>(),
            tables: tables_start,
            rows: rows_start,
            work: work_start,
            reduce: work_start + work.len() as u32 * words::<WorkItem>(),
            n_reduce: reduce.len() as u32,
            _pad: 0,
        };
        let shape = StepShape {
            tokens: n_tokens,
            rows: n_tokens,
            work: params.n_work,
            reduce: params.n_reduce,
        };
        let mut meta: Vec<u32> = bytemuck::cast_slice(&token_info).to_vec();
        meta.extend_from_slice(bytemuck::cast_slice(&entries));
        meta.extend(table_words);
        // Rows: every token.
        meta.extend(0..n_tokens);
        meta.extend_from_slice(bytemuck::cast_slice(&work));
        meta.extend_from_slice(bytemuck::cast_slice(&reduce));
        PagedStep {
            params,
            meta,
            block,
            n_blocks,
            tables,
            seqs: seqs.to_vec(),
            shape,
        }
    }

    /// Pool slot of position `pos` of sequence `s`.
    pub fn slot(&self, s: usize, pos: u32) -> u32 {
        self.tables[s][(pos / self.block) as usize] * self.block + pos % self.block
    }

    /// Scatters per-sequence contiguous caches ([positions, stride]) into a pool.
    pub fn scatter(&self, caches: &[Vec<f32>], stride: usize) -> Vec<f32> {
        let mut pool = vec![0.0; (self.n_blocks * self.block) as usize * stride];
        for (s, cache) in caches.iter().enumerate() {
            for (pos, row) in cache.chunks(stride).enumerate() {
                let slot = self.slot(s, pos as u32) as usize;
                pool[slot * stride..(slot + 1) * stride].copy_from_slice(row);
            }
        }
        pool
    }

    /// Gathers a sequence's contiguous cache of `len` positions back from a pool.
    pub fn gather(&self, pool: &[f32], s: usize, len: u32, stride: usize) -> Vec<f32> {
        (0..len)
            .flat_map(|pos| {
                let slot = self.slot(s, pos) as usize;
                pool[slot * stride..(slot + 1) * stride].to_vec()
            })
            .collect()
    }
}

/// Asserts every element is within `atol + rtol * |expected|`.
pub fn assert_close(what: &str, got: &[f32], expected: &[f32], atol: f32, rtol: f32) {
    assert_eq!(got.len(), expected.len(), "{what}: length");
    let mut worst = (0usize, 0.0f32);
    for (i, (g, e)) in got.iter().zip(expected).enumerate() {
        let excess = (g - e).abs() - (atol + rtol * e.abs());
        // NaN compares false: keep it as the worst so it is reported.
        if excess > worst.1 || excess.is_nan() {
            worst = (i, excess);
        }
    }
    if worst.1 > 0.0 || got.iter().any(|g| g.is_nan()) {
        let i = worst.0;
        panic!(
            "{what}: element {i} is {} but the reference is {} (tolerance {atol} + {rtol}·|ref|)",
            got[i], expected[i]
        );
    }
}

/// `n_elems` values of `ty` as random blocks (`wisp_core::quant::random_blocks`): for
/// types that have no quantizer here (the K-quants, IQ4_NL), this is how tests get data.
/// Of order one, as the quantized test data, so the kernels' errors show against the
/// tolerances.
pub fn random_blocks(ty: GgmlType, n_elems: usize, seed: u64) -> Vec<u8> {
    wisp_core::quant::random_blocks(ty, n_elems as u64, seed, 1.0)
        .unwrap_or_else(|e| panic!("random_blocks: {e}"))
}
