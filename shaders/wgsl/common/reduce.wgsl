// Workgroup-wide reductions in two variants (REDUCE = subgroup | workgroup).
// Needs WG (workgroup size, a power of two). Every invocation of the workgroup must
// call these from uniform control flow. The subgroup variant reduces inside each
// subgroup first and combines the per-subgroup results through workgroup memory; the
// workgroup variant is a shared-memory tree and works on every adapter.
//
// Kernels call `reduce_init` at the top of main with the subgroup builtins (subgroup
// variant) so the helpers below do not need them as parameters.

var<workgroup> red_f32: array<f32, WG>;
var<workgroup> red_u32: array<u32, WG>;
var<private> rd_lid: u32;

#if REDUCE == subgroup
var<private> rd_sg_id: u32;
var<private> rd_n_sg: u32;
var<private> rd_sg_lane: u32;

fn reduce_init(lid: u32, sg_id: u32, n_sg: u32, sg_lane: u32) {
    rd_lid = lid;
    rd_sg_id = sg_id;
    rd_n_sg = n_sg;
    rd_sg_lane = sg_lane;
}

fn wg_sum(v: f32) -> f32 {
    let s = subgroupAdd(v);
    if (rd_sg_lane == 0u) {
        red_f32[rd_sg_id] = s;
    }
    workgroupBarrier();
    var t = 0.0;
    for (var i = 0u; i < rd_n_sg; i++) {
        t += red_f32[i];
    }
    workgroupBarrier();
    return t;
}

fn wg_max(v: f32) -> f32 {
    let s = subgroupMax(v);
    if (rd_sg_lane == 0u) {
        red_f32[rd_sg_id] = s;
    }
    workgroupBarrier();
    var t = red_f32[0];
    for (var i = 1u; i < rd_n_sg; i++) {
        t = max(t, red_f32[i]);
    }
    workgroupBarrier();
    return t;
}

// The largest value and the lowest index holding it.
fn wg_argmax(v: f32, idx: u32) -> vec2<u32> {
    let m = subgroupMax(v);
    let i = subgroupMin(select(0xffffffffu, idx, v == m));
    if (rd_sg_lane == 0u) {
        red_f32[rd_sg_id] = m;
        red_u32[rd_sg_id] = i;
    }
    workgroupBarrier();
    var bm = red_f32[0];
    var bi = red_u32[0];
    for (var s = 1u; s < rd_n_sg; s++) {
        let sm = red_f32[s];
        let si = red_u32[s];
        if (sm > bm || (sm == bm && si < bi)) {
            bm = sm;
            bi = si;
        }
    }
    workgroupBarrier();
    return vec2<u32>(bitcast<u32>(bm), bi);
}

#ifdef SPLIT
// Sum over aligned groups of SPLIT consecutive invocations (SPLIT a power of two no
// larger than the adapter's minimum subgroup size, so a group never straddles two
// subgroups). Every lane of the group gets the sum.
fn group_sum(v: f32) -> f32 {
    var s = v;
    for (var off = SPLIT / 2u; off > 0u; off >>= 1u) {
        s += subgroupShuffleXor(s, off);
    }
    return s;
}
#endif

#else

fn reduce_init(lid: u32) {
    rd_lid = lid;
}

fn wg_sum(v: f32) -> f32 {
    red_f32[rd_lid] = v;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s >>= 1u) {
        if (rd_lid < s) {
            red_f32[rd_lid] += red_f32[rd_lid + s];
        }
        workgroupBarrier();
    }
    let t = red_f32[0];
    workgroupBarrier();
    return t;
}

fn wg_max(v: f32) -> f32 {
    red_f32[rd_lid] = v;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s >>= 1u) {
        if (rd_lid < s) {
            red_f32[rd_lid] = max(red_f32[rd_lid], red_f32[rd_lid + s]);
        }
        workgroupBarrier();
    }
    let t = red_f32[0];
    workgroupBarrier();
    return t;
}

fn wg_argmax(v: f32, idx: u32) -> vec2<u32> {
    red_f32[rd_lid] = v;
    red_u32[rd_lid] = idx;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s >>= 1u) {
        if (rd_lid < s) {
            let om = red_f32[rd_lid + s];
            let oi = red_u32[rd_lid + s];
            let m = red_f32[rd_lid];
            if (om > m || (om == m && oi < red_u32[rd_lid])) {
                red_f32[rd_lid] = om;
                red_u32[rd_lid] = oi;
            }
        }
        workgroupBarrier();
    }
    let r = vec2<u32>(bitcast<u32>(red_f32[0]), red_u32[0]);
    workgroupBarrier();
    return r;
}

#ifdef SPLIT
// Sum over aligned groups of SPLIT consecutive invocations. Every lane gets the sum.
fn group_sum(v: f32) -> f32 {
    red_f32[rd_lid] = v;
    workgroupBarrier();
    let base = rd_lid & ~(SPLIT - 1u);
    var s = 0.0;
    for (var i = 0u; i < SPLIT; i++) {
        s += red_f32[base + i];
    }
    workgroupBarrier();
    return s;
}
#endif
#endif
