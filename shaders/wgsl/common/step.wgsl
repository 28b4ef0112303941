// Per-step values shared by every dispatch of one forward step. The command list of a
// step is recorded once; only this small uniform changes between steps.
struct Step {
    // Tokens processed in this step (1 when decoding).
    n_tokens: u32,
    // Position of the first of them in the sequence.
    pos0: u32,
    // Keys/values in the cache once this step's are written (pos0 + n_tokens).
    n_kv: u32,
    _pad: u32,
}
