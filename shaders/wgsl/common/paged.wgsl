// Reading the step metadata and translating a sequence position into its KV-pool slot
// through the entry's block table. Needs `step` (common/step.wgsl), a binding
// `step_meta: array<u32>` and BLOCK, the positions per pool block.

// Token t's TokenInfo. Members are read in declaration order (what the Rust struct's
// field order is checked against).
fn token_info(t: u32) -> TokenInfo {
    let b = step.token_info + TOKEN_INFO_WORDS * t;
    return TokenInfo(step_meta[b], step_meta[b + 1u]);
}

fn token_pos(t: u32) -> u32 {
    return token_info(t).pos;
}

fn token_entry(t: u32) -> u32 {
    return token_info(t).entry;
}

fn entry_record(e: u32) -> EntryInfo {
    let b = step.entries + ENTRY_INFO_WORDS * e;
    return EntryInfo(step_meta[b], step_meta[b + 1u], step_meta[b + 2u], step_meta[b + 3u]);
}

// (table offset, keys after this step, first token, token count) of entry e.
fn entry_info(e: u32) -> vec4<u32> {
    let r = entry_record(e);
    return vec4<u32>(r.table, r.keys, r.first_token, r.n_tokens);
}

// The pool slot holding position j of the sequence whose table starts at `table`.
fn kv_slot(table: u32, j: u32) -> u32 {
    return step_meta[table + j / BLOCK] * BLOCK + j % BLOCK;
}
