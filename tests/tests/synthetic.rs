//! Synthetic models (random weights generated as the loader streams them) load and run:
//! every logit finite, in every kind of kernel variant, dense and with experts.

use wisp_core::engine::{Engine, EngineOptions};
use wisp_core::gpu::VariantOverrides;
use wisp_core::model::SyntheticModel;
use wisp_tests::gpu::{covering_variants, gpu};

const PROMPT: [u32; 6] = [1, 999, 42, 42, 7, 500];

fn check_finite_logits(spec: &str) {
    let gpu = gpu();
    let m = SyntheticModel::parse(spec).unwrap_or_else(|e| panic!("{spec}: {e}"));
    for v in covering_variants(&gpu) {
        let options = EngineOptions {
            n_ctx: 64,
            variant: VariantOverrides {
                act: Some(v.act),
                reduce: Some(v.reduce),
                tier: Some(v.tier),
            },
            ..Default::default()
        };
        let mut engine = pollster::block_on(Engine::load(gpu.clone(), &m.file, &m, &options))
            .unwrap_or_else(|e| panic!("{spec} {v}: {e}"));
        let logits = pollster::block_on(engine.prefill_logits(&PROMPT))
            .unwrap_or_else(|e| panic!("{spec} {v}: {e}"));
        assert_eq!(logits.len(), PROMPT.len());
        for (p, row) in logits.iter().enumerate() {
            assert_eq!(row.len(), 1000, "{spec} {v} position {p}");
            assert!(
                row.iter().all(|l| l.is_finite()),
                "{spec} {v} position {p}: a logit is not finite"
            );
            let (lo, hi) = row
                .iter()
                .fold((f32::MAX, f32::MIN), |(lo, hi), &l| (lo.min(l), hi.max(l)));
            assert!(hi > lo, "{spec} {v} position {p}: every logit is {lo}");
        }
    }
}

#[test]
fn a_dense_synthetic_model_gives_finite_logits() {
    check_finite_logits("layers=2,embd=256,ff=512,heads=4,kv_heads=2,vocab=1000:q4_0");
}

#[test]
fn a_synthetic_mixture_of_experts_gives_finite_logits() {
    check_finite_logits("layers=2,embd=256,ff=512,heads=4,kv_heads=2,vocab=1000,experts=4/2:q4_k");
}

#[test]
fn a_synthetic_qwen2_with_biases_gives_finite_logits() {
    check_finite_logits(
        "layers=2,embd=256,ff=512,heads=4,kv_heads=2,vocab=1000,arch=qwen2,tied=true:f16",
    );
}
