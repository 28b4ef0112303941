// Q2_K: 84-byte super-blocks of 256: 16 bytes of scales (low nibble: scale, high nibble:
// minimum, one per 16 elements), 64 bytes of 2-bit quants, f16 d, f16 dmin. In half h,
// chunk s (0..4) is bits 2s.. of qs[32h + l]; value = d * scale * q - dmin * min.
// Super-blocks are word-aligned.

fn dq32(row: u32, c: u32) -> array<vec4<f32>, 8> {
    let b = row + (c >> 3u) * 84u;
    let j = c & 7u;
    let h = j >> 2u;
    let s = j & 3u;
    let dm = unpack2x16float(w[(b + 80u) >> 2u]);
    let sc0 = w_u8(b + 8u * h + 2u * s);
    let sc1 = w_u8(b + 8u * h + 2u * s + 1u);
    let qs = (b + 16u + 32u * h) >> 2u;
    var o: array<vec4<f32>, 8>;
    for (var i = 0u; i < 8u; i++) {
        let sc = select(sc1, sc0, i < 4u);
        let q = byte_fields(w[qs + i], 2u * s, 3u);
        o[i] = dm.x * f32(i32(sc & 15u)) * q - dm.y * f32(i32(sc >> 4u));
    }
    return o;
}

// Factored per 16-element half: d scale sum(q x) - dmin min sum(x).
fn dot32(row: u32, c: u32, xs: ptr<function, array<vec4<f32>, 8>>) -> f32 {
    let b = row + (c >> 3u) * 84u;
    let j = c & 7u;
    let h = j >> 2u;
    let s = j & 3u;
    let dm = unpack2x16float(w[(b + 80u) >> 2u]);
    // Bytes 2s and 2s + 1 of the 8 scale bytes of this half: in word s / 2, at byte 2 (s % 2).
    let pair = (w[(b + 8u * h + 4u * (s >> 1u)) >> 2u] >> (16u * (s & 1u))) & 0xffffu;
    let sc0 = pair & 255u;
    let sc1 = pair >> 8u;
    let qs = (b + 16u + 32u * h) >> 2u;
    var t = vec2<f32>(0.0);
    var sx = vec2<f32>(0.0);
    for (var i = 0u; i < 4u; i++) {
        t += vec2<f32>(dot(byte_fields(w[qs + i], 2u * s, 3u), (*xs)[i]), dot(byte_fields(w[qs + i + 4u], 2u * s, 3u), (*xs)[i + 4u]));
        sx += vec2<f32>(dot((*xs)[i], vec4<f32>(1.0)), dot((*xs)[i + 4u], vec4<f32>(1.0)));
    }
    let scale = vec2<f32>(f32(sc0 & 15u), f32(sc1 & 15u));
    let minimum = vec2<f32>(f32(sc0 >> 4u), f32(sc1 >> 4u));
    return dm.x * dot(scale, t) - dm.y * dot(minimum, sx);
}
