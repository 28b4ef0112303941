//! One step's batch: which tokens of which sequences, and the metadata the kernels read
//! (positions, entries, block tables, wanted logits rows) laid out as `common/step.wgsl`
//! describes.

use crate::gpu::StepParams;
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

/// Lays out the metadata of `batch`, whose positions were already appended to the
/// block manager (so each entry's tokens end at its sequence's length).
pub fn build(
    batch: &[BatchEntry<'_>],
    blocks: &BlockManager,
    tiling: &AttnTiling,
) -> Result<StepMeta, KvError> {
    let n_tokens: usize = batch.iter().map(|e| e.tokens.len()).sum();
    let mut tokens = Vec::with_capacity(n_tokens);
    let mut token_info = Vec::with_capacity(2 * n_tokens);
    let mut entries = Vec::with_capacity(4 * batch.len());
    let mut tables = Vec::new();
    let mut rows = Vec::new();
    let mut work = Vec::new();
    let mut reduce = Vec::new();
    let mut partials = 0u32;
    // Table offsets are absolute in the metadata buffer: token info, then entries,
    // then tables.
    let tables_start = (2 * n_tokens + 4 * batch.len()) as u32;
    for (e, entry) in batch.iter().enumerate() {
        let len = blocks.len(entry.seq)?;
        let n = entry.tokens.len() as u32;
        let pos0 = len - n;
        let first_token = tokens.len() as u32;
        entries.extend_from_slice(&[tables_start + tables.len() as u32, len, first_token, n]);
        tables.extend_from_slice(blocks.table(entry.seq)?);
        for (i, &t) in entry.tokens.iter().enumerate() {
            tokens.push(t);
            token_info.extend_from_slice(&[pos0 + i as u32, e as u32]);
        }
        match entry.logits {
            Logits::None => {}
            Logits::Last => rows.push(first_token + n - 1),
            Logits::All => rows.extend(first_token..first_token + n),
        }
        attention_work(
            e as u32,
            first_token,
            pos0,
            n,
            tiling,
            &mut work,
            &mut reduce,
            &mut partials,
        );
    }
    let rows_start = tables_start + tables.len() as u32;
    let work_start = rows_start + rows.len() as u32;
    let reduce_start = work_start + work.len() as u32;
    let (n_rows, n_work, n_reduce) = (
        rows.len() as u32,
        work.len() as u32 / 8,
        reduce.len() as u32 / 4,
    );
    let params = StepParams {
        n_tokens: n_tokens as u32,
        n_entries: batch.len() as u32,
        n_rows,
        n_work,
        token_info: 0,
        entries: 2 * n_tokens as u32,
        tables: tables_start,
        rows: rows_start,
        work: work_start,
        reduce: reduce_start,
        n_reduce,
        _pad: 0,
    };
    let mut words = token_info;
    words.extend(entries);
    words.extend(tables);
    words.extend(rows);
    words.extend(work);
    words.extend(reduce);
    Ok(StepMeta {
        params,
        words,
        tokens,
        rows: n_rows,
        work: n_work,
        reduce: n_reduce,
    })
}

/// Cuts one entry's attention into work items: tiles of up to `bq` queries; a single
/// decoded token with many keys is split by key ranges (split-K), its partial results
/// merged by a reduce item.
#[allow(clippy::too_many_arguments)]
pub fn attention_work(
    entry: u32,
    first_token: u32,
    pos0: u32,
    n: u32,
    tiling: &AttnTiling,
    work: &mut Vec<u32>,
    reduce: &mut Vec<u32>,
    partials: &mut u32,
) {
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
                let k1 = (k0 + per).min(pos0 + 1);
                work.extend_from_slice(&[entry, first_token, 1, k0, k1, *partials, s, splits]);
            }
            reduce.extend_from_slice(&[first_token, *partials, splits, 0]);
            *partials += splits;
            return;
        }
    }
    let mut q = 0;
    while q < n {
        let count = tiling.bq.min(n - q);
        // Starts never decrease with the position: the tile's first query starts earliest.
        let k0 = first_key(pos0 + q, tiling.window);
        let k1 = pos0 + q + count;
        work.extend_from_slice(&[entry, first_token + q, count, k0, k1, 0, 0, 1]);
        q += count;
    }
}
