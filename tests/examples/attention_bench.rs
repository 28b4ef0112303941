//! Attention kernel time against context length on SmolLM2 (GPU timestamps):
//! - prefill: the attention dispatches of a whole prompt of L tokens, in chunks of 512;
//! - decode: the attention dispatches of one token at context L.
//!
//! Usage: `cargo run --release -p wisp-tests --example attention_bench -- 256 1024 4096 8192`
//! (`WISP_KV=f32|f16|q8_0` picks the KV storage; default: the adapter's).
use wisp_core::engine::{Engine, EngineOptions};
use wisp_core::gguf::GgufFile;
use wisp_core::model::FileBytes;

fn attention_ms(times: &[wisp_core::gpu::KernelTime]) -> f64 {
    times
        .iter()
        .filter(|t| {
            t.kernel.contains("attn")
                || t.kernel.starts_with("attention")
                || t.kernel.starts_with("flash")
        })
        .map(|t| t.nanos)
        .sum::<f64>()
        / 1e6
}

fn main() {
    let lengths: Vec<usize> = std::env::args()
        .skip(1)
        .map(|a| a.parse().expect("a length"))
        .collect();
    let lengths = if lengths.is_empty() {
        vec![256, 1024, 4096, 8192]
    } else {
        lengths
    };
    let max_len = *lengths.iter().max().unwrap();
    let gpu = wisp_tests::gpu::gpu();
    let bytes = std::fs::read(wisp_tests::model_path("SmolLM2-135M-Instruct.Q4_1.gguf")).unwrap();
    let file = GgufFile::parse(&bytes).unwrap();
    let chunk = 512usize;
    let kv_type = std::env::var("WISP_KV")
        .ok()
        .map(|s| s.parse().expect("WISP_KV: f32, f16 or q8_0"));
    let options = EngineOptions {
        n_ctx: (max_len + 8) as u32,
        max_batch: chunk as u32,
        kv_type,
        ..Default::default()
    };
    let mut e = pollster::block_on(Engine::load(
        gpu,
        &file,
        &FileBytes {
            file: &file,
            bytes: &bytes,
        },
        &options,
    ))
    .unwrap();
    println!(
        "adapter {}, kernels {}, KV {:?}",
        e.gpu.adapter_name(),
        e.variant,
        e.kv_stats().kv_type
    );
    let text: Vec<u32> = (0..max_len as u32).map(|i| 100 + (i * 37) % 4000).collect();
    for &len in &lengths {
        e.reset();
        let mut prefill = 0.0;
        for c in text[..len].chunks(chunk) {
            prefill += attention_ms(
                &pollster::block_on(e.profile_step(c))
                    .unwrap()
                    .expect("timestamps"),
            );
        }
        let decode = attention_ms(
            &pollster::block_on(e.profile_step(&[7]))
                .unwrap()
                .expect("timestamps"),
        );
        println!(
            "context {len:>5}: prefill attention {prefill:>10.1} ms ({:.3} ms/token), decode attention {decode:>8.2} ms/token",
            prefill / len as f64
        );
    }
}
