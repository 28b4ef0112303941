//! Quick speed probe: prefill a 128-token prompt, decode 64 tokens greedily.
use std::time::Instant;
use wisp_core::engine::{Engine, EngineOptions};
use wisp_core::gguf::GgufFile;
use wisp_core::gpu::VariantOverrides;
use wisp_core::model::FileBytes;
use wisp_core::sampling::{Sampler, SamplerConfig};

fn main() {
    let gpu = wisp_tests::gpu::gpu();
    let bytes = std::fs::read(wisp_tests::model_path("SmolLM2-135M-Instruct.Q4_1.gguf")).unwrap();
    let file = GgufFile::parse(&bytes).unwrap();
    let t0 = Instant::now();
    let options = EngineOptions { n_ctx: 512, variant: VariantOverrides::from_env().unwrap(), ..Default::default() };
    let mut e = pollster::block_on(Engine::load(gpu.clone(), &file, &FileBytes { file: &file, bytes: &bytes }, &options)).unwrap();
    println!("load+compile {:?} variant {} pipelines {}", t0.elapsed(), e.variant, gpu.pipelines.len());
    let prompt: Vec<u32> = (0..128).map(|i| 100 + (i * 37) % 4000).collect();
    for run in 0..3 {
        e.reset();
        let mut s = Sampler::new(SamplerConfig::greedy()).unwrap();
        let t = Instant::now();
        e.prefill(&prompt).unwrap();
        pollster::block_on(e.wait_idle()).unwrap();
        let pf = t.elapsed();
        let mut tok = pollster::block_on(e.sample(&mut s)).unwrap();
        let t = Instant::now();
        for _ in 0..63 {
            e.decode(tok).unwrap();
            tok = pollster::block_on(e.sample(&mut s)).unwrap();
        }
        let dt = t.elapsed();
        let _ = run;
        println!("run {run}: prefill {:.1} tok/s, decode {:.2} tok/s", 128.0 / pf.as_secs_f64(), 63.0 / dt.as_secs_f64());
    }
    for (label, toks) in [("decode", vec![5u32]), ("prefill", prompt.clone())] {
        e.reset();
        if label == "decode" { e.prefill(&prompt).unwrap(); }
        let times = pollster::block_on(e.profile_step(&toks)).unwrap().unwrap();
        let mut by: std::collections::BTreeMap<String, (f64, usize)> = Default::default();
        let total: f64 = times.iter().map(|t| t.nanos).sum();
        for t in &times { let k = t.kernel.split(' ').next().unwrap().to_string() + " " + t.kernel.split(' ').nth(1).unwrap_or(""); let en = by.entry(k).or_default(); en.0 += t.nanos; en.1 += 1; }
        println!("{label}: total GPU {:.2} ms over {} dispatches", total / 1e6, times.len());
        let mut v: Vec<_> = by.into_iter().collect(); v.sort_by(|a, b| b.1.0.total_cmp(&a.1.0));
        for (k, (ns, n)) in v { println!("  {:>8.2} ms {:>4}x {}", ns / 1e6, n, k); }
    }
}
