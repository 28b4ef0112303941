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

/// The metadata of a step, ready to upload.
pub struct StepMeta {
    pub params: StepParams,
    pub words: Vec<u32>,
    pub tokens: Vec<u32>,
    pub rows: u32,
}

/// Lays out the metadata of `batch`, whose positions were already appended to the
/// block manager (so each entry's tokens end at its sequence's length).
pub fn build(batch: &[BatchEntry<'_>], blocks: &BlockManager) -> Result<StepMeta, KvError> {
    let n_tokens: usize = batch.iter().map(|e| e.tokens.len()).sum();
    let mut tokens = Vec::with_capacity(n_tokens);
    let mut token_info = Vec::with_capacity(2 * n_tokens);
    let mut entries = Vec::with_capacity(4 * batch.len());
    let mut tables = Vec::new();
    let mut rows = Vec::new();
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
    }
    let params = StepParams {
        n_tokens: n_tokens as u32,
        n_entries: batch.len() as u32,
        n_rows: rows.len() as u32,
        _pad: 0,
        token_info: 0,
        entries: 2 * n_tokens as u32,
        tables: tables_start,
        rows: tables_start + tables.len() as u32,
    };
    let n_rows = rows.len() as u32;
    let mut words = token_info;
    words.extend(entries);
    words.extend(tables);
    words.extend(rows);
    Ok(StepMeta { params, words, tokens, rows: n_rows })
}
