// What the sampling kernels (penalties, candidates) read per logits row. The Rust side
// is `RowParams` (core/src/kernels/params.rs), checked against this by core's
// reflection test.
struct RowParams {
    // Positive logits are divided by it, the others multiplied (1: off).
    repeat: f32,
    // Subtracted once per occurrence in the recent window (0: off).
    frequency: f32,
    // Subtracted once per token present in the recent window (0: off).
    presence: f32,
    // Candidates are the tokens within this of the row's largest logit.
    cutoff: f32,
}
