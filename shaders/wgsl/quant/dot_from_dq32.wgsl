// `dot32` for formats where factoring the dot product saves little (floats, non-uniform
// grids, the K-quants' per-16 scales and bit planes): the chunk through `dq32`.
fn dot32(row: u32, c: u32, xs: ptr<function, array<vec4<f32>, 8>>) -> f32 {
    var wq = dq32(row, c);
    var s = 0.0;
    for (var i = 0u; i < 8u; i++) {
        s += dot(wq[i], (*xs)[i]);
    }
    return s;
}
