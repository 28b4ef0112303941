// Q5_0: 22-byte blocks of 32: f16 scale d, 32 high bits qh (bit j for element j), then
// 16 bytes of low nibbles (element j < 16 in the low nibble of byte j, 16 + j in its
// high nibble); value = d * (q - 16). Blocks are only 2-byte aligned: qh and the
// nibbles (5 words from byte 2) are read as 6 aligned words and shifted into place
// (`funnel`).
fn q5_0_scale(b: u32) -> f32 {
    return unpack2x16float(w[b >> 2u] >> ((b & 2u) * 8u)).x;
}

// The block's 32 five-bit quants (0..31), four per vec4.
fn q5_0_quants(b: u32) -> array<vec4<f32>, 8> {
    let s = b + 2u;
    let i = s >> 2u;
    let sh = (s & 2u) * 8u;
    var lo = w[i + 1u];
    let qh = funnel(w[i], lo, sh);
    var o: array<vec4<f32>, 8>;
    for (var k = 0u; k < 4u; k++) {
        let hi = w[i + k + 2u];
        let q = funnel(lo, hi, sh);
        o[k] = nibbles_lo(q) + 16.0 * bits4(qh >> (4u * k));
        o[k + 4u] = nibbles_hi(q) + 16.0 * bits4(qh >> (16u + 4u * k));
        lo = hi;
    }
    return o;
}

fn dq32(row: u32, c: u32) -> array<vec4<f32>, 8> {
    let b = row + c * 22u;
    let d = q5_0_scale(b);
    var q = q5_0_quants(b);
    var o: array<vec4<f32>, 8>;
    for (var k = 0u; k < 8u; k++) {
        o[k] = d * (q[k] - 16.0);
    }
    return o;
}

// d * sum((q - 16) x) = d * (sum(q x) - 16 sum(x)).
fn dot32(row: u32, c: u32, xs: ptr<function, array<vec4<f32>, 8>>) -> f32 {
    let b = row + c * 22u;
    var q = q5_0_quants(b);
    var acc = 0.0;
    var sx = vec4<f32>(0.0);
    for (var k = 0u; k < 8u; k++) {
        acc += dot(q[k], (*xs)[k]);
        sx += (*xs)[k];
    }
    return q5_0_scale(b) * (acc - 16.0 * dot(sx, vec4<f32>(1.0)));
}
