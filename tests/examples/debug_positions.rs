use wisp_core::engine::{Engine, EngineOptions};
use wisp_core::gguf::GgufFile;
use wisp_core::model::FileBytes;
use wisp_tests::reference::{self, cosine, max_abs_diff};

fn main() {
    let gpu = wisp_tests::gpu::gpu();
    let bytes = std::fs::read(wisp_tests::model_path("SmolLM2-135M-Instruct.Q4_1.gguf")).unwrap();
    let file = GgufFile::parse(&bytes).unwrap();
    let json = reference::json("smollm2-135m-instruct-q4_1");
    let refs = reference::logits("smollm2-135m-instruct-q4_1");
    let capital = reference::ids(&json, "/capital/ids");
    let (shape, llama) = &refs["capital.llamacpp_logits"];
    let vocab = shape[1];
    for lb in [1u32, 5] {
        let options = EngineOptions { n_ctx: 64, logits_batch: lb, ..Default::default() };
        let mut e = pollster::block_on(Engine::load(gpu.clone(), &file, &FileBytes { file: &file, bytes: &bytes }, &options)).unwrap();
        let per = pollster::block_on(e.prefill_logits(&capital)).unwrap();
        for (i, o) in per.iter().enumerate() {
            let t = &llama[i * vocab..(i + 1) * vocab];
            println!("batch {lb} pos {i}: cos {:.6} maxdiff {:.3}", cosine(o, t), max_abs_diff(o, t));
        }
    }
}
