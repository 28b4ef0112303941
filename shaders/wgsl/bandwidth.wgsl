// A streaming read: every word of `data` is read once and folded into one word per
// workgroup, so the time it takes is the adapter's practical memory-bandwidth ceiling
// for the kernels (what `wisp bench` compares them against).
struct Params {
    // vec4s in data
    n: u32,
    // vec4s each workgroup reads
    per_group: u32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> data: array<vec4<u32>>;
@group(0) @binding(2) var<storage, read_write> sink: array<u32>;

@compute @workgroup_size(WG)
fn main(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>) {
    let g = wid.x + wid.y * nwg.x;
    let start = g * p.per_group;
    let end = min(start + p.per_group, p.n);
    var acc = vec4<u32>(0u);
    // Consecutive lanes read consecutive vec4s: coalesced on GPUs, contiguous on CPUs.
    for (var i = start + lid; i < end; i += WG) {
        acc ^= data[i];
    }
    let folded = acc.x ^ acc.y ^ acc.z ^ acc.w;
    // Written only if impossible in practice, so the reads cannot be optimised away
    // while the write traffic stays nil.
    if (folded == 0x9e3779b9u) {
        sink[g] = folded;
    }
}
