// Per-step values shared by every dispatch of one forward step. The command list of a
// step is recorded once; only this uniform and the step's metadata buffer change.
//
// A step is a batch of entries, each some tokens of one sequence (a prefill chunk or a
// decoded token). The metadata buffer `step_meta` (array<u32>) holds, at the offsets below:
// - per token: a TokenInfo;
// - per entry: an EntryInfo;
// - the entries' block tables: the pool block of each run of BLOCK positions;
// - the tokens whose logits are wanted, 1 word each;
// - the attention work items (Work, common/attention_work.wgsl) and reduce items
//   (ReduceItem).
// Each record is a struct here and in Rust (core/src/kernels/step.rs); readers index
// `step_meta` with the *_WORDS constants, and core's reflection test checks that both
// sides agree on every member and on each constant (the struct's size in words).
struct Step {
    n_tokens: u32,
    n_entries: u32,
    // Rows of logits this step computes.
    n_rows: u32,
    n_work: u32,
    token_info: u32,
    entries: u32,
    tables: u32,
    rows: u32,
    work: u32,
    reduce: u32,
    n_reduce: u32,
    _pad: u32,
}

struct TokenInfo {
    // Position in its sequence.
    pos: u32,
    entry: u32,
}
const TOKEN_INFO_WORDS: u32 = 2u;

struct EntryInfo {
    // Offset of its block table in step_meta.
    table: u32,
    // Keys of its sequence after this step.
    keys: u32,
    first_token: u32,
    n_tokens: u32,
}
const ENTRY_INFO_WORDS: u32 = 4u;

// A decoded token whose attention was split over several work items (split-K): its
// partial results are in slots first_partial .. first_partial + n_splits.
struct ReduceItem {
    token: u32,
    first_partial: u32,
    n_splits: u32,
    _pad: u32,
}
const REDUCE_ITEM_WORDS: u32 = 4u;
