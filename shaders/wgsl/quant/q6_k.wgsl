// Q6_K: 210-byte super-blocks of 256: 128 bytes ql (low 4 bits), 64 bytes qh (high 2
// bits), 16 signed 8-bit scales (one per 16 elements), f16 d. In half h, chunk k (0..4)
// takes element l's low bits from the low (k < 2) or high nibble of
// ql[64h + 32 (k % 2) + l] and its high bits from bits 2k.. of qh[32h + l];
// value = d * scale * (q - 32). Super-blocks are 2-byte aligned: the 8-word runs of ql
// and qh are read as 9 aligned words each and shifted into place (`funnel`).

// matvec reads the four chunks of a half together (`dot_group`, group g = 2 * super-block
// + h): chunks k and k + 2 share their ql bytes and all four their qh bytes, so each
// word is loaded once, and the half's eight scales and d once for all.
#define GROUP_CHUNKS 4

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
    var ch = q6_chunk(row, c);
    var o: array<vec4<f32>, 8>;
    for (var i = 0u; i < 8u; i++) {
        o[i] = select(ch.s1, ch.s0, i < 4u) * (ch.q[i] - 32.0);
    }
    return o;
}

// Factored per 16-element half: scale * (sum(q x) - 32 sum(x)).
fn dot32(row: u32, c: u32, xs: ptr<function, array<vec4<f32>, 8>>) -> f32 {
    var ch = q6_chunk(row, c);
    var s = vec2<f32>(0.0);
    var sx = vec2<f32>(0.0);
    for (var i = 0u; i < 4u; i++) {
        s += vec2<f32>(dot(ch.q[i], (*xs)[i]), dot(ch.q[i + 4u], (*xs)[i + 4u]));
        sx += vec2<f32>(dot((*xs)[i], vec4<f32>(1.0)), dot((*xs)[i + 4u], vec4<f32>(1.0)));
    }
    let t = s - 32.0 * sx;
    return ch.s0 * t.x + ch.s1 * t.y;
}

fn dot_group(row: u32, g: u32, xs: ptr<function, array<vec4<f32>, 32>>) -> f32 {
    let b = row + (g >> 1u) * 210u;
    let h = g & 1u;
    let d = w_f16(b + 208u);
    // Every run starts at the super-block's parity.
    let sh = (b & 2u) * 8u;
    // The half's eight scales: chunk k's first 16 elements take scale 2k, its last 16
    // scale 2k + 1.
    let si = (b + 192u + 8u * h) >> 2u;
    let s1 = w[si + 1u];
    let sc_a = bytes_i8(funnel(w[si], s1, sh));
    let sc_b = bytes_i8(funnel(s1, w[si + 2u], sh));
    let first = d * vec4<f32>(sc_a.x, sc_a.z, sc_b.x, sc_b.z);
    let second = d * vec4<f32>(sc_a.y, sc_a.w, sc_b.y, sc_b.w);
    // ql: 64 bytes, chunks 0 and 2 in the first 32 (low, high nibbles), 1 and 3 in the
    // next 32; qh: 32 bytes, chunk k in bits 2k ..
    let il = (b + 64u * h) >> 2u;
    let ih = (b + 128u + 32u * h) >> 2u;
    var lo_a = w[il];
    var lo_b = w[il + 8u];
    var lo_h = w[ih];
    var sum = 0.0;
    for (var part = 0u; part < 2u; part++) {
        // Per chunk (the vec4's components): sum((q - 32) x) over 16 elements.
        var t = vec4<f32>(0.0);
        for (var n = 0u; n < 4u; n++) {
            let i = 4u * part + n;
            let hi_a = w[il + i + 1u];
            let hi_b = w[il + i + 9u];
            let hi_h = w[ih + i + 1u];
            let qa = funnel(lo_a, hi_a, sh);
            let qb = funnel(lo_b, hi_b, sh);
            let qh = funnel(lo_h, hi_h, sh);
            let q0 = nibbles_lo(qa) + 16.0 * byte_fields(qh, 0u, 3u) - 32.0;
            let q1 = nibbles_lo(qb) + 16.0 * byte_fields(qh, 2u, 3u) - 32.0;
            let q2 = nibbles_hi(qa) + 16.0 * byte_fields(qh, 4u, 3u) - 32.0;
            let q3 = nibbles_hi(qb) + 16.0 * byte_fields(qh, 6u, 3u) - 32.0;
            t += vec4<f32>(dot(q0, (*xs)[i]), dot(q1, (*xs)[8u + i]), dot(q2, (*xs)[16u + i]), dot(q3, (*xs)[24u + i]));
            lo_a = hi_a;
            lo_b = hi_b;
            lo_h = hi_h;
        }
        sum += dot(t, select(second, first, part == 0u));
    }
    return sum;
}
