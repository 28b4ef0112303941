// The attention work list of a step (in the step metadata at step.work, WORK_WORDS per
// item; core/src/kernels/step.rs is the Rust side): which query tile of which entry,
// and which keys, each workgroup takes.
// A tile is up to BQ consecutive tokens of one sequence. A single decoded token with a
// long context is split over several items by key ranges (split-K); their partial
// results go to `partials` and a reduce pass merges them.
struct Work {
    entry: u32,
    q_first: u32,
    q_count: u32,
    k_begin: u32,
    k_end: u32,
    partial: u32,
    split: u32,
    n_splits: u32,
}
const WORK_WORDS: u32 = 8u;

fn work_item(i: u32) -> Work {
    let b = step.work + WORK_WORDS * i;
    return Work(step_meta[b], step_meta[b + 1u], step_meta[b + 2u], step_meta[b + 3u],
                step_meta[b + 4u], step_meta[b + 5u], step_meta[b + 6u], step_meta[b + 7u]);
}
