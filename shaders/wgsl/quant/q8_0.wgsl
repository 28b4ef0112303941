// Q8_0: 34-byte blocks of 32: f16 scale d, then 32 signed bytes q; value = d * q.
// Blocks are only 2-byte aligned: the 32 quants are read as 9 aligned words and shifted
// into place (`funnel`), the same code for either alignment.
fn q8_0_scale(b: u32) -> f32 {
    return unpack2x16float(w[b >> 2u] >> ((b & 2u) * 8u)).x;
}

fn dq32(row: u32, c: u32) -> array<vec4<f32>, 8> {
    let b = row + c * 34u;
    let d = q8_0_scale(b);
    let s = b + 2u;
    let i = s >> 2u;
    let sh = (s & 2u) * 8u;
    var o: array<vec4<f32>, 8>;
    var lo = w[i];
    for (var k = 0u; k < 8u; k++) {
        let hi = w[i + k + 1u];
        o[k] = d * bytes_i8(funnel(lo, hi, sh));
        lo = hi;
    }
    return o;
}

fn dot32(row: u32, c: u32, xs: ptr<function, array<vec4<f32>, 8>>) -> f32 {
    let b = row + c * 34u;
    let s = b + 2u;
    let i = s >> 2u;
    let sh = (s & 2u) * 8u;
    var acc = 0.0;
    var lo = w[i];
    for (var k = 0u; k < 8u; k++) {
        let hi = w[i + k + 1u];
        acc += dot(bytes_i8(funnel(lo, hi, sh)), (*xs)[k]);
        lo = hi;
    }
    return q8_0_scale(b) * acc;
}
