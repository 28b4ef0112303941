// Q4_0: 18-byte blocks of 32: f16 scale d, then 16 bytes of 4-bit values q.
// Element j < 16 is the low nibble of byte j, element 16 + j its high nibble;
// value = d * (q - 8). Blocks are only 2-byte aligned: the quants are read as 5
// aligned words and shifted into place (`funnel`).
fn q4_0_scale(b: u32) -> f32 {
    return unpack2x16float(w[b >> 2u] >> ((b & 2u) * 8u)).x;
}

fn dq32(row: u32, c: u32) -> array<vec4<f32>, 8> {
    let b = row + c * 18u;
    let d = q4_0_scale(b);
    let s = b + 2u;
    let i = s >> 2u;
    let sh = (s & 2u) * 8u;
    var o: array<vec4<f32>, 8>;
    var lo = w[i];
    for (var k = 0u; k < 4u; k++) {
        let hi = w[i + k + 1u];
        let q = funnel(lo, hi, sh);
        o[k] = d * (nibbles_lo(q) - 8.0);
        o[k + 4u] = d * (nibbles_hi(q) - 8.0);
        lo = hi;
    }
    return o;
}

fn dot32(row: u32, c: u32, xs: ptr<function, array<vec4<f32>, 8>>) -> f32 {
    let b = row + c * 18u;
    let s = b + 2u;
    let i = s >> 2u;
    let sh = (s & 2u) * 8u;
    var acc = 0.0;
    var sx = vec4<f32>(0.0);
    var lo = w[i];
    for (var k = 0u; k < 4u; k++) {
        let hi = w[i + k + 1u];
        let q = funnel(lo, hi, sh);
        acc += dot(nibbles_lo(q), (*xs)[k]) + dot(nibbles_hi(q), (*xs)[k + 4u]);
        sx += (*xs)[k] + (*xs)[k + 4u];
        lo = hi;
    }
    // d * sum((q - 8) x) = d * (sum(q x) - 8 sum(x))
    return q4_0_scale(b) * (acc - 8.0 * dot(sx, vec4<f32>(1.0)));
}
