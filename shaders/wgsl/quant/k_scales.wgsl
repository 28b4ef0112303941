// The 6-bit scale and minimum of sub-block j (0..8) of a Q4_K or Q5_K block whose 12
// scale bytes start at byte `s`: sub-blocks 0..4 use the low 6 bits of bytes j and
// j + 4; sub-blocks 4..8 take their low 4 bits from the nibbles of byte j + 4 and their
// top 2 bits from the top bits of bytes j - 4 and j.
fn k_scale_min(s: u32, j: u32) -> vec2<f32> {
    if (j < 4u) {
        return vec2<f32>(f32(i32(w_u8(s + j) & 63u)), f32(i32(w_u8(s + j + 4u) & 63u)));
    }
    let a = w_u8(s + j + 4u);
    let scale = (a & 15u) | ((w_u8(s + j - 4u) >> 6u) << 4u);
    let min = (a >> 4u) | ((w_u8(s + j) >> 6u) << 4u);
    return vec2<f32>(f32(i32(scale)), f32(i32(min)));
}
