// The 6-bit scale and minimum of sub-block j (0..8) of a Q4_K or Q5_K block whose 12
// scale bytes start at byte `s` (word-aligned in both formats): sub-blocks 0..4 use the
// low 6 bits of bytes j and j + 4; sub-blocks 4..8 take their low 4 bits from the
// nibbles of byte j + 4 and their top 2 bits from the top bits of bytes j - 4 and j.
// Read as three words and picked without branches: it runs for every chunk of every row.
fn k_scale_min(s: u32, j: u32) -> vec2<f32> {
    return k_scale_min_of(k_scale_words(s), j);
}

// The 12 scale bytes at byte `s`, as three words (read once for several sub-blocks).
fn k_scale_words(s: u32) -> vec3<u32> {
    let i = s >> 2u;
    return vec3<u32>(w[i], w[i + 1u], w[i + 2u]);
}

// Sub-block j's scale and minimum from the scale words.
fn k_scale_min_of(words: vec3<u32>, j: u32) -> vec2<f32> {
    let sh = 8u * (j & 3u);
    let b0 = (words.x >> sh) & 255u;
    let b1 = (words.y >> sh) & 255u;
    let b2 = (words.z >> sh) & 255u;
    let low = vec2<u32>(b0 & 63u, b1 & 63u);
    let high = vec2<u32>((b2 & 15u) | ((b0 >> 6u) << 4u), (b2 >> 4u) | ((b1 >> 6u) << 4u));
    return vec2<f32>(select(high, low, j < 4u));
}

// What `dot_group` of Q4_K and Q5_K needs of a super-block's header for its nibble pair
// p (chunks 2p and 2p + 1): (d, dmin), and the two chunks' scales and minimums.
struct KPair {
    dm: vec2<f32>,
    scales: vec2<f32>,
    mins: vec2<f32>,
}

// The header of the super-block at byte `b` for nibble pair `p` (its 12 scale bytes
// follow d and dmin, at b + 4, in both formats).
fn k_pair(b: u32, p: u32) -> KPair {
    let sc = k_scale_words(b + 4u);
    let lo = k_scale_min_of(sc, 2u * p);
    let hi = k_scale_min_of(sc, 2u * p + 1u);
    return KPair(unpack2x16float(w[b >> 2u]), vec2<f32>(lo.x, hi.x), vec2<f32>(lo.y, hi.y));
}

// The pair's dot product from each chunk's sum of quants times activations (`s`) and sum
// of activations (`sx`): d * scale * s - dmin * min * sx, per chunk.
fn k_pair_dot(h: KPair, s: vec2<f32>, sx: vec2<f32>) -> f32 {
    return h.dm.x * dot(h.scales, s) - h.dm.y * dot(h.mins, sx);
}
