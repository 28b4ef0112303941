// Dispatches larger than 65535 workgroups are folded into x and y; this unfolds them.
fn linear_workgroup(wid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return wid.x + wid.y * nwg.x;
}
