// Q3_K: 110-byte super-blocks of 256: 32 bytes hmask, 64 bytes of 2-bit quants, 12 bytes
// of 6-bit scales (bias 32, one per 16 elements), f16 d. In half h, chunk s (0..4) takes
// element l's low bits from bits 2s.. of qs[32h + l]; bit 4h + s of hmask[l] clear
// means q - 4. value = d * scale * q. Super-blocks are 2-byte aligned: the 8-word runs
// of hmask and qs are read as 9 aligned words each and shifted into place (`funnel`).

// Scale k (0..16): low 4 bits from the nibbles of bytes 0..8, top 2 bits from bytes 8..12.
fn q3_k_scale(s: u32, k: u32) -> f32 {
    var low = w_u8(s + (k & 7u));
    if (k >= 8u) {
        low = low >> 4u;
    }
    let high = (w_u8(s + 8u + (k & 3u)) >> (2u * (k >> 2u))) & 3u;
    return f32(i32((low & 15u) | (high << 4u)) - 32);
}

// The chunk's quants (-4..3), four per vec4, and its two scales times d.
struct Q3Chunk {
    q: array<vec4<f32>, 8>,
    d0: f32,
    d1: f32,
}

fn q3_chunk(row: u32, c: u32) -> Q3Chunk {
    let b = row + (c >> 3u) * 110u;
    let j = c & 7u;
    let h = j >> 2u;
    let s = j & 3u;
    let d = w_f16(b + 108u);
    let k0 = 8u * h + 2u * s;
    var out: Q3Chunk;
    out.d0 = d * q3_k_scale(b + 96u, k0);
    out.d1 = d * q3_k_scale(b + 96u, k0 + 1u);
    // hmask at b and qs at b + 32 + 32h share the super-block's parity.
    let sh = (b & 2u) * 8u;
    let iq = (b + 32u + 32u * h) >> 2u;
    let im = b >> 2u;
    var lo_q = w[iq];
    var lo_m = w[im];
    for (var i = 0u; i < 8u; i++) {
        let hi_q = w[iq + i + 1u];
        let hi_m = w[im + i + 1u];
        let low = byte_fields(funnel(lo_q, hi_q, sh), 2u * s, 3u);
        let high = byte_fields(funnel(lo_m, hi_m, sh), 4u * h + s, 1u);
        out.q[i] = low - 4.0 + 4.0 * high;
        lo_q = hi_q;
        lo_m = hi_m;
    }
    return out;
}

fn dq32(row: u32, c: u32) -> array<vec4<f32>, 8> {
    var ch = q3_chunk(row, c);
    var o: array<vec4<f32>, 8>;
    for (var i = 0u; i < 8u; i++) {
        o[i] = select(ch.d1, ch.d0, i < 4u) * ch.q[i];
    }
    return o;
}

// Factored per 16-element half.
fn dot32(row: u32, c: u32, xs: ptr<function, array<vec4<f32>, 8>>) -> f32 {
    var ch = q3_chunk(row, c);
    var s = vec2<f32>(0.0);
    for (var i = 0u; i < 4u; i++) {
        s += vec2<f32>(dot(ch.q[i], (*xs)[i]), dot(ch.q[i + 4u], (*xs)[i + 4u]));
    }
    return ch.d0 * s.x + ch.d1 * s.y;
}
