// Q4_0: 18-byte blocks of 32: f16 scale d, then 16 bytes of 4-bit values q.
// Element j < 16 is the low nibble of byte j, element 16 + j its high nibble;
// value = d * (q - 8).
fn dq32(row: u32, c: u32) -> array<vec4<f32>, 8> {
    let b = row + c * 18u;
    let d = w_f16(b);
    var o: array<vec4<f32>, 8>;
    for (var i = 0u; i < 4u; i++) {
        let q = w_u32(b + 2u + 4u * i);
        o[i] = d * (nibbles_lo(q) - 8.0);
        o[i + 4u] = d * (nibbles_hi(q) - 8.0);
    }
    return o;
}

fn dot32(row: u32, c: u32, xs: array<vec4<f32>, 8>) -> f32 {
    let b = row + c * 18u;
    var s = 0.0;
    var sx = vec4<f32>(0.0);
    for (var i = 0u; i < 4u; i++) {
        let q = w_u32(b + 2u + 4u * i);
        s += dot(nibbles_lo(q), xs[i]) + dot(nibbles_hi(q), xs[i + 4u]);
        sx += xs[i] + xs[i + 4u];
    }
    // d * sum((q - 8) x) = d * (sum(q x) - 8 sum(x))
    return w_f16(b) * (s - 8.0 * dot(sx, vec4<f32>(1.0)));
}
