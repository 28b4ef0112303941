// Q8_0: 34-byte blocks of 32: f16 scale d, then 32 signed bytes q; value = d * q.
// Odd blocks start two bytes into a word, hence w_u32.
fn dq32(row: u32, c: u32) -> array<vec4<f32>, 8> {
    let b = row + c * 34u;
    let d = w_f16(b);
    var o: array<vec4<f32>, 8>;
    for (var i = 0u; i < 8u; i++) {
        o[i] = d * bytes_i8(w_u32(b + 2u + 4u * i));
    }
    return o;
}

fn dot32(row: u32, c: u32, xs: array<vec4<f32>, 8>) -> f32 {
    let b = row + c * 34u;
    var s = 0.0;
    for (var i = 0u; i < 8u; i++) {
        s += dot(bytes_i8(w_u32(b + 2u + 4u * i)), xs[i]);
    }
    return w_f16(b) * s;
}
