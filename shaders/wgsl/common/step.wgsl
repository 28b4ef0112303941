// Per-step values shared by every dispatch of one forward step. The command list of a
// step is recorded once; only this uniform and the step's metadata buffer change.
//
// A step is a batch of entries, each some tokens of one sequence (a prefill chunk or a
// decoded token). The metadata buffer `step_meta` (array<u32>) holds, at the offsets below:
// - per token: (position in its sequence, entry index), 2 words each;
// - per entry: (offset of its block table in step_meta, keys after this step, first token,
//   token count), 4 words each;
// - the entries' block tables: the pool block of each run of BLOCK positions;
// - the tokens whose logits are wanted, 1 word each;
// - the attention work items and reduce items (common/attention_work.wgsl).
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
