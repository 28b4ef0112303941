// Q4_1: 20-byte blocks of 32: f16 scale d, f16 minimum m, then 16 bytes of 4-bit q.
// Element j < 16 is the low nibble of byte j, element 16 + j its high nibble;
// value = d * q + m. 20-byte blocks keep rows word-aligned, so words are read directly.
fn dq32(row: u32, c: u32) -> array<vec4<f32>, 8> {
    let wi = (row + c * 20u) >> 2u;
    let dm = unpack2x16float(w[wi]);
    var o: array<vec4<f32>, 8>;
    for (var i = 0u; i < 4u; i++) {
        let q = w[wi + 1u + i];
        o[i] = dm.x * nibbles_lo(q) + dm.y;
        o[i + 4u] = dm.x * nibbles_hi(q) + dm.y;
    }
    return o;
}

fn dot32(row: u32, c: u32, xs: ptr<function, array<vec4<f32>, 8>>) -> f32 {
    let wi = (row + c * 20u) >> 2u;
    let dm = unpack2x16float(w[wi]);
    var s = 0.0;
    var sx = vec4<f32>(0.0);
    for (var i = 0u; i < 4u; i++) {
        let q = w[wi + 1u + i];
        s += dot(nibbles_lo(q), (*xs)[i]) + dot(nibbles_hi(q), (*xs)[i + 4u]);
        sx += (*xs)[i] + (*xs)[i + 4u];
    }
    return dm.x * s + dm.y * dot(sx, vec4<f32>(1.0));
}
