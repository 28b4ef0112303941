// Q6_K: 210-byte super-blocks of 256: 128 bytes ql (low 4 bits), 64 bytes qh (high 2
// bits), 16 signed 8-bit scales (one per 16 elements), f16 d. In half h, chunk k (0..4)
// takes element l's low bits from the low (k < 2) or high nibble of
// ql[64h + 32 (k % 2) + l] and its high bits from bits 2k.. of qh[32h + l];
// value = d * scale * (q - 32). Super-blocks are 2-byte aligned: the 8-word runs of ql
// and qh are read as 9 aligned words each and shifted into place (`funnel`).

// The chunk's 6-bit quants (0..63), four per vec4, and its two scales times d.
struct Q6Chunk {
    q: array<vec4<f32>, 8>,
    s0: f32,
    s1: f32,
}

fn q6_chunk(row: u32, c: u32) -> Q6Chunk {
    let b = row + (c >> 3u) * 210u;
    let j = c & 7u;
    let h = j >> 2u;
    let k = j & 3u;
    let d = w_f16(b + 208u);
    let sc = b + 192u + 8u * h + 2u * k;
    var out: Q6Chunk;
    out.s0 = d * w_i8(sc);
    out.s1 = d * w_i8(sc + 1u);
    let ql = b + 64u * h + 32u * (k & 1u);
    let qh = b + 128u + 32u * h;
    // Both runs start at the super-block's parity.
    let sh = (b & 2u) * 8u;
    let il = ql >> 2u;
    let ih = qh >> 2u;
    var lo_l = w[il];
    var lo_h = w[ih];
    for (var i = 0u; i < 8u; i++) {
        let hi_l = w[il + i + 1u];
        let hi_h = w[ih + i + 1u];
        out.q[i] = byte_fields(funnel(lo_l, hi_l, sh), 4u * (k >> 1u), 15u) + 16.0 * byte_fields(funnel(lo_h, hi_h, sh), 2u * k, 3u);
        lo_l = hi_l;
        lo_h = hi_h;
    }
    return out;
}

fn dq32(row: u32, c: u32) -> array<vec4<f32>, 8> {
    let ch = q6_chunk(row, c);
    var o: array<vec4<f32>, 8>;
    for (var i = 0u; i < 8u; i++) {
        o[i] = select(ch.s1, ch.s0, i < 4u) * (ch.q[i] - 32.0);
    }
    return o;
}

// Factored per 16-element half: scale * (sum(q x) - 32 sum(x)).
fn dot32(row: u32, c: u32, xs: array<vec4<f32>, 8>) -> f32 {
    let ch = q6_chunk(row, c);
    var s = vec2<f32>(0.0);
    var sx = vec2<f32>(0.0);
    for (var i = 0u; i < 4u; i++) {
        s += vec2<f32>(dot(ch.q[i], xs[i]), dot(ch.q[i + 4u], xs[i + 4u]));
        sx += vec2<f32>(dot(xs[i], vec4<f32>(1.0)), dot(xs[i + 4u], vec4<f32>(1.0)));
    }
    let t = s - 32.0 * sx;
    return ch.s0 * t.x + ch.s1 * t.y;
}
