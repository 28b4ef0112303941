//! KV-cache memory of the paged cache against contiguous max-context caches, for a mix
//! of conversation lengths that share one system prompt (forked, stored once).
//! Bookkeeping only: the same block manager the engine uses, with SmolLM2's bytes per
//! position.
use wisp_core::gpu::KvType;
use wisp_core::kv::BlockManager;

fn main() {
    let (n_ctx, block) = (4096u32, 16u32);
    // SmolLM2-135M: 30 layers, 3 KV heads of 64: keys and values.
    let per_position = |kv: KvType| 2 * 30 * kv.bytes_per_position(3 * 64);
    let system_prompt = 40u32;
    // Total lengths of 16 conversations in flight (prompt + reply so far).
    let lengths = [
        120u32, 350, 800, 60, 2200, 450, 1500, 90, 3000, 700, 250, 1100, 180, 4000, 520, 950,
    ];
    let mut m = BlockManager::new(lengths.len() as u32 * n_ctx / block, block, n_ctx);
    let root = m.create();
    m.append(root, system_prompt).unwrap();
    for &len in &lengths {
        let s = m.fork(root).unwrap();
        m.append(s, len - system_prompt).unwrap();
    }
    m.remove(root).unwrap();
    let used = m.used_blocks() as u64 * block as u64;
    let tokens: u64 = lengths.iter().map(|&l| l as u64).sum();
    let contiguous = lengths.len() as u64 * n_ctx as u64;
    println!(
        "{} sequences, {tokens} positions in all (mean {}), context {n_ctx}, blocks of {block}",
        lengths.len(),
        tokens / lengths.len() as u64
    );
    println!("| KV type | contiguous (16 × {n_ctx}) | paged | paged / contiguous |");
    println!("|---|---|---|---|");
    for kv in [KvType::F32, KvType::F16, KvType::Q8_0] {
        let (c, p) = (contiguous * per_position(kv), used * per_position(kv));
        println!(
            "| {kv:?} | {:.1} MiB | {:.1} MiB | {:.1}% |",
            c as f64 / 1048576.0,
            p as f64 / 1048576.0,
            100.0 * p as f64 / c as f64
        );
    }
    println!(
        "the paged pool holds {used} positions for {tokens} positions of context: the system prompt's full blocks are stored once for all, and each sequence wastes at most one partly filled block"
    );
}
