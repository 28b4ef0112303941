// Reading the step metadata and translating a sequence position into its KV-pool slot
// through the entry's block table. Needs `step` (common/step.wgsl), a binding
// `step_meta: array<u32>` and BLOCK, the positions per pool block.

// (position, entry) of token t of the step.
fn token_pos(t: u32) -> u32 {
    return step_meta[step.token_info + 2u * t];
}

fn token_entry(t: u32) -> u32 {
    return step_meta[step.token_info + 2u * t + 1u];
}

// (table offset, keys after this step, first token, token count) of entry e.
fn entry_info(e: u32) -> vec4<u32> {
    let b = step.entries + 4u * e;
    return vec4<u32>(step_meta[b], step_meta[b + 1u], step_meta[b + 2u], step_meta[b + 3u]);
}

// The pool slot holding position j of the sequence whose table starts at `table`.
fn kv_slot(table: u32, j: u32) -> u32 {
    return step_meta[table + j / BLOCK] * BLOCK + j % BLOCK;
}
