//! One step's batch: which tokens of which sequences, and the metadata the kernels read
//! (positions, entries, block tables, wanted logits rows) laid out as `common/step.wgsl`
//! describes.

use crate::gpu::StepParams;
use crate::kernels::{EntryInfo, ReduceItem, TokenInfo, WorkItem, words};
use crate::kv::{BlockManager, KvError, SeqId};

/// Which logits an entry wants.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Logits {
    None,
    /// The last token's.
    Last,
    /// Every token's.
    All,
}

/// Some tokens of one sequence in a step: a prefill chunk or a decoded token.
#[derive(Clone, Copy, Debug)]
pub struct BatchEntry<'a> {
    pub seq: SeqId,
    pub tokens: &'a [u32],
    pub logits: Logits,
}

/// How attention work is cut into items (`common/attention_work.wgsl`).
#[derive(Clone, Copy, Debug)]
pub struct AttnTiling {
    /// Queries per tile.
    pub bq: u32,
    /// Keys older than this are not attended to (0: no window).
    pub window: u32,
    /// A decoded token gets one split per this many keys...
    pub keys_per_split: u32,
    /// ...up to this many splits.
    pub max_splits: u32,
}

/// The metadata of a step, ready to upload.
pub struct StepMeta {
    pub params: StepParams,
    pub words: Vec<u32>,
    pub tokens: Vec<u32>,
    pub rows: u32,
    pub work: u32,
    pub reduce: u32,
}

/// The first position a query at `pos` attends to.
fn first_key(pos: u32, window: u32) -> u32 {
    if window > 0 {
        (pos + 1).saturating_sub(window)
    } else {
        0
    }
}

/// Each section of a step's metadata as its records.
#[derive(Default)]
struct Sections {
    token_info: Vec<TokenInfo>,
    entries: Vec<EntryInfo>,
    tables: Vec<u32>,
    rows: Vec<u32>,
    work: Vec<WorkItem>,
    reduce: Vec<ReduceItem>,
}

/// Word count of `n` records of type `T`.
fn span<T: crate::kernels::GpuStruct>(n: usize) -> u32 {
    n as u32 * words::<T>()
}

impl Sections {
    /// The step uniform that locates each section in the flat word buffer.
    fn params(&self) -> StepParams {
        let tables =
            span::<TokenInfo>(self.token_info.len()) + span::<EntryInfo>(self.entries.len());
        let rows = tables + self.tables.len() as u32;
        let work = rows + self.rows.len() as u32;
        StepParams {
            n_tokens: self.token_info.len() as u32,
            n_entries: self.entries.len() as u32,
            n_rows: self.rows.len() as u32,
            n_work: self.work.len() as u32,
            token_info: 0,
            entries: span::<TokenInfo>(self.token_info.len()),
            tables,
            rows,
            work,
            reduce: work + span::<WorkItem>(self.work.len()),
            n_reduce: self.reduce.len() as u32,
            _pad: 0,
        }
    }

    /// The sections one after another, in the order `params` locates them.
    fn words(&self) -> Vec<u32> {
        let mut words: Vec<u32> = bytemuck::cast_slice(&self.token_info).to_vec();
        words.extend_from_slice(bytemuck::cast_slice(&self.entries));
        words.extend_from_slice(&self.tables);
        words.extend_from_slice(&self.rows);
        words.extend_from_slice(bytemuck::cast_slice(&self.work));
        words.extend_from_slice(bytemuck::cast_slice(&self.reduce));
        words
    }
}

/// Lays out the metadata of `batch`, whose positions were already appended to the
/// block manager (so each entry's tokens end at its sequence's length).
pub fn build(
    batch: &[BatchEntry<'_>],
    blocks: &BlockManager,
    tiling: &AttnTiling,
) -> Result<StepMeta, KvError> {
    let n_tokens: usize = batch.iter().map(|e| e.tokens.len()).sum();
    let mut tokens = Vec::with_capacity(n_tokens);
    let mut s = Sections::default();
    let mut partials = 0u32;
    // Table offsets are absolute in the metadata buffer: token info, then entries,
    // then tables.
    let tables_start = span::<TokenInfo>(n_tokens) + span::<EntryInfo>(batch.len());
    for (e, entry) in batch.iter().enumerate() {
        let len = blocks.len(entry.seq)?;
        let n = entry.tokens.len() as u32;
        let pos0 = len - n;
        let first_token = tokens.len() as u32;
        s.entries.push(EntryInfo {
            table: tables_start + s.tables.len() as u32,
            keys: len,
            first_token,
            n_tokens: n,
        });
        s.tables.extend_from_slice(blocks.table(entry.seq)?);
        for (i, &t) in entry.tokens.iter().enumerate() {
            tokens.push(t);
            s.token_info.push(TokenInfo {
                pos: pos0 + i as u32,
                entry: e as u32,
            });
        }
        match entry.logits {
            Logits::None => {}
            Logits::Last => s.rows.push(first_token + n - 1),
            Logits::All => s.rows.extend(first_token..first_token + n),
        }
        let first = AttnEntry {
            entry: e as u32,
            first_token,
            pos0,
            n,
        };
        attention_work(&first, tiling, &mut s.work, &mut s.reduce, &mut partials);
    }
    let params = s.params();
    Ok(StepMeta {
        params,
        words: s.words(),
        tokens,
        rows: params.n_rows,
        work: params.n_work,
        reduce: params.n_reduce,
    })
}

/// One entry's tokens, as attention work is cut for them.
#[derive(Clone, Copy, Debug)]
pub struct AttnEntry {
    /// Index of the entry in the step.
    pub entry: u32,
    /// Its first token in the step.
    pub first_token: u32,
    /// The position of that token in its sequence.
    pub pos0: u32,
    /// Its tokens in this step.
    pub n: u32,
}

/// Cuts one entry's attention into work items: tiles of up to `bq` queries; a single
/// decoded token with many keys is split by key ranges (split-K), its partial results
/// merged by a reduce item.
pub fn attention_work(
    e: &AttnEntry,
    tiling: &AttnTiling,
    work: &mut Vec<WorkItem>,
    reduce: &mut Vec<ReduceItem>,
    partials: &mut u32,
) {
    let AttnEntry {
        entry,
        first_token,
        pos0,
        n,
    } = *e;
    if n == 1 {
        let begin = first_key(pos0, tiling.window);
        let keys = pos0 + 1 - begin;
        let splits = keys
            .div_ceil(tiling.keys_per_split)
            .clamp(1, tiling.max_splits);
        if splits > 1 {
            let per = keys.div_ceil(splits);
            for s in 0..splits {
                let k0 = begin + s * per;
                work.push(WorkItem {
                    entry,
                    q_first: first_token,
                    q_count: 1,
                    k_begin: k0,
                    k_end: (k0 + per).min(pos0 + 1),
                    partial: *partials,
                    split: s,
                    n_splits: splits,
                });
            }
            reduce.push(ReduceItem {
                token: first_token,
                first_partial: *partials,
                n_splits: splits,
                _pad: 0,
            });
            *partials += splits;
            return;
        }
    }
    let mut q = 0;
    while q < n {
        let count = tiling.bq.min(n - q);
        // Starts never decrease with the position: the tile's first query starts earliest.
        work.push(WorkItem {
            entry,
            q_first: first_token + q,
            q_count: count,
            k_begin: first_key(pos0 + q, tiling.window),
            k_end: pos0 + q + count,
            partial: 0,
            split: 0,
            n_splits: 1,
        });
        q += count;
    }
}
