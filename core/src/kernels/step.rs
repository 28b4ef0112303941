//! The records of the step metadata buffer, laid out as the structs of
//! `common/step.wgsl` and `common/attention_work.wgsl` (checked against naga's
//! reflection: `kernels::interface`). The buffer is an `array<u32>` in WGSL, so each
//! record is a whole number of words and is read at `section + WORDS * index`.

use super::layout::{GpuStruct, gpu_struct};
use crate::gpu::StepParams;

gpu_struct! {
    /// One token of the step (`TokenInfo`).
    #[derive(PartialEq, Eq)]
    pub struct TokenInfo {
        /// Position in its sequence.
        pub pos: u32,
        /// Index of its entry in the step.
        pub entry: u32,
    }
}

gpu_struct! {
    /// One entry of the step: some tokens of one sequence (`EntryInfo`).
    #[derive(PartialEq, Eq)]
    pub struct EntryInfo {
        /// Word offset of its block table in the metadata buffer.
        pub table: u32,
        /// Keys of its sequence after this step.
        pub keys: u32,
        pub first_token: u32,
        pub n_tokens: u32,
    }
}

gpu_struct! {
    /// One attention work item: a query tile of one entry over a range of its keys
    /// (`Work`).
    #[derive(PartialEq, Eq)]
    pub struct WorkItem {
        pub entry: u32,
        pub q_first: u32,
        pub q_count: u32,
        pub k_begin: u32,
        pub k_end: u32,
        /// Slot of its partial result when split (split-K).
        pub partial: u32,
        pub split: u32,
        pub n_splits: u32,
    }
}

gpu_struct! {
    /// A decoded token whose split-K partial results `flash_reduce` merges
    /// (`ReduceItem`).
    #[derive(PartialEq, Eq)]
    pub struct ReduceItem {
        pub token: u32,
        pub first_partial: u32,
        pub n_splits: u32,
        pub _pad: u32,
    }
}

impl GpuStruct for StepParams {
    fn fields() -> Vec<super::Field> {
        // `StepParams` lives with the plans that bind it (gpu/plan.rs); its fields are
        // listed here, where the other step layouts are. A field missing from this list
        // shows up as a WGSL member without a Rust field, and a misspelt one fails to
        // compile.
        macro_rules! fields {
            ($($f:ident),*) => {
                vec![$(super::Field {
                    name: stringify!($f),
                    offset: std::mem::offset_of!(StepParams, $f) as u32,
                    size: std::mem::size_of_val(&StepParams::default().$f) as u32,
                }),*]
            };
        }
        fields!(
            n_tokens, n_entries, n_rows, n_work, token_info, entries, tables, rows, work, reduce,
            n_reduce, _pad
        )
    }
}

/// Words one record of type `T` takes in the metadata buffer.
pub const fn words<T: GpuStruct>() -> u32 {
    (std::mem::size_of::<T>() / 4) as u32
}

/// The most words a step's metadata can take: token info per token, entry info and a
/// whole block table per entry, one word per logits row, and the work and reduce items.
pub fn max_meta_words(
    max_tokens: u32,
    max_entries: u32,
    blocks_per_seq: u32,
    max_rows: u32,
    max_work: u64,
) -> u64 {
    let entries = u64::from(max_entries);
    u64::from(max_tokens) * u64::from(words::<TokenInfo>())
        + entries * u64::from(words::<EntryInfo>() + blocks_per_seq)
        + u64::from(max_rows)
        + max_work * u64::from(words::<WorkItem>())
        + entries * u64::from(words::<ReduceItem>())
}
