//! Reference outputs from `tests/reference` and the metrics that compare logits.

use std::collections::BTreeMap;
use std::path::PathBuf;

use std::sync::Arc;

use serde_json::Value;
use wisp_core::engine::{Engine, EngineOptions};
use wisp_core::gguf::GgufFile;
use wisp_core::gpu::{Act, Gpu, Variant, VariantOverrides};
use wisp_core::model::FileBytes;

use crate::reference_dir;

/// An engine for a parsed model with every kernel choice forced to `variant`.
pub fn engine_in_variant(
    gpu: Arc<Gpu>,
    file: &GgufFile,
    bytes: &[u8],
    variant: Variant,
    n_ctx: u32,
) -> Engine {
    let options = EngineOptions {
        n_ctx,
        variant: VariantOverrides {
            act: Some(variant.act),
            reduce: Some(variant.reduce),
            tier: Some(variant.tier),
        },
        ..Default::default()
    };
    pollster::block_on(Engine::load(
        gpu,
        file,
        &FileBytes { file, bytes },
        &options,
    ))
    .expect("load engine")
}

/// `NAME.json` of a reference model.
pub fn json(name: &str) -> Value {
    let path = reference_dir().join(format!("{name}.json"));
    let text =
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("parse {}: {e}", path.display()))
}

/// Token ids at `pointer` (e.g. `/capital/ids`) of a reference JSON.
pub fn ids(v: &Value, pointer: &str) -> Vec<u32> {
    v.pointer(pointer)
        .and_then(Value::as_array)
        .unwrap_or_else(|| panic!("no array at {pointer}"))
        .iter()
        .map(|x| x.as_u64().expect("token id") as u32)
        .collect()
}

/// (text, llama.cpp's ids) of every `tokenizer_cases` entry of a reference JSON (none
/// when it has no such list).
pub fn tokenizer_cases(v: &Value) -> Vec<(String, Vec<u32>)> {
    v["tokenizer_cases"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .map(|c| {
            (
                c["text"].as_str().expect("case text").to_string(),
                ids(c, "/ids"),
            )
        })
        .collect()
}

/// The f32 tensors of `NAME.logits.safetensors`, flattened, with their shapes.
pub fn logits(name: &str) -> BTreeMap<String, (Vec<usize>, Vec<f32>)> {
    let path: PathBuf = reference_dir().join(format!("{name}.logits.safetensors"));
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    let st = safetensors::SafeTensors::deserialize(&bytes).expect("parse reference safetensors");
    st.tensors()
        .into_iter()
        .map(|(name, view)| {
            assert_eq!(view.dtype(), safetensors::Dtype::F32, "{name}");
            let data: Vec<f32> = view
                .data()
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect();
            (name, (view.shape().to_vec(), data))
        })
        .collect()
}

pub fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let (mut ab, mut aa, mut bb) = (0.0f64, 0.0f64, 0.0f64);
    for (&x, &y) in a.iter().zip(b) {
        ab += x as f64 * y as f64;
        aa += x as f64 * x as f64;
        bb += y as f64 * y as f64;
    }
    ab / (aa.sqrt() * bb.sqrt())
}

pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// Indices of the `k` largest values, largest first (ties: lower index first).
pub fn top_k(v: &[f32], k: usize) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..v.len()).collect();
    idx.sort_by(|&a, &b| v[b].total_cmp(&v[a]).then(a.cmp(&b)));
    idx.truncate(k);
    idx
}

/// The gap between the largest and second-largest values.
pub fn top2_margin(v: &[f32]) -> f32 {
    let t = top_k(v, 2);
    v[t[0]] - v[t[1]]
}

/// Checks `ours` against llama.cpp's logits at one position with the tolerances of
/// `tests/reference/README.md`: cosine >= 0.999, the same top-1 wherever llama.cpp's
/// top-2 margin exceeds 0.5, and at least 4 of its top 5 in our top 5.
pub fn check_against_llamacpp(what: &str, ours: &[f32], theirs: &[f32]) -> Result<(), String> {
    let cos = cosine(ours, theirs);
    let mut problems = Vec::new();
    if cos < 0.999 {
        problems.push(format!("cosine {cos:.6} < 0.999"));
    }
    let (o5, t5) = (top_k(ours, 5), top_k(theirs, 5));
    if top2_margin(theirs) > 0.5 && o5[0] != t5[0] {
        problems.push(format!(
            "top-1 {} differs from llama.cpp's {} (margin {:.3})",
            o5[0],
            t5[0],
            top2_margin(theirs)
        ));
    }
    let shared = t5.iter().filter(|t| o5.contains(t)).count();
    if shared < 4 {
        problems.push(format!(
            "only {shared} of llama.cpp's top 5 {t5:?} in ours {o5:?}"
        ));
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "{what}: {} (max |Δ| {:.3})",
            problems.join("; "),
            max_abs_diff(ours, theirs)
        ))
    }
}

/// The README's tolerance against exact (f32-reference) arithmetic for activations of
/// type `act`: (minimum cosine, maximum |Δ|, whether the top-1 token must match).
pub fn exact_tolerance(act: Act) -> (f64, f32, bool) {
    match act {
        Act::F32 => (0.99999, 0.05, false),
        Act::F16 => (0.9995, 0.5, true),
    }
}

/// Checks `ours` against exact arithmetic (`tests/reference`'s f32 reference, or the
/// f64 CPU model) at the tolerance of the activation type.
pub fn check_against_exact(
    what: &str,
    act: Act,
    ours: &[f32],
    exact: &[f32],
) -> Result<(), String> {
    let (min_cos, max_diff, top1) = exact_tolerance(act);
    let cos = cosine(ours, exact);
    let diff = max_abs_diff(ours, exact);
    let same_top1 = top_k(ours, 1) == top_k(exact, 1);
    if cos >= min_cos && diff <= max_diff && (same_top1 || !top1) {
        Ok(())
    } else {
        Err(format!(
            "{what} vs exact arithmetic ({act:?}): cosine {cos:.7}, max |Δ| {diff:.4}, same top-1 {same_top1}"
        ))
    }
}

/// Whether llama.cpp's tolerance is a fair test of an engine with activations of type
/// `act` at a position: exact arithmetic must meet it with room to spare for the
/// rounding `act` is allowed (its cosine to llama.cpp at least 0.999 plus the cosine the
/// activation type may lose against exact arithmetic). Elsewhere llama.cpp's own
/// 8-bit activations put it too close to (or past) the bound, and the engine is held to
/// exact arithmetic instead.
pub fn llamacpp_is_fair(act: Act, exact: &[f32], llamacpp: &[f32]) -> bool {
    let (min_cos, _, _) = exact_tolerance(act);
    check_against_llamacpp("exact", exact, llamacpp).is_ok()
        && cosine(exact, llamacpp) >= 0.999 + (1.0 - min_cos)
}

/// For each position of a prompt, whether exact arithmetic (`exact`, the CPU reference
/// model's logits) itself meets llama.cpp's tolerance against `llama` ([T, vocab], flat).
/// llama.cpp quantizes activations to 8 bits in its matrix products, which at some
/// positions moves its logits further from exact arithmetic than its own tolerance; there
/// an engine is held to exact arithmetic instead. Panics if that is most positions.
pub fn exact_meets_llamacpp(exact: &[Vec<f32>], llama: &[f32], vocab: usize) -> Vec<bool> {
    let meets: Vec<bool> = exact
        .iter()
        .enumerate()
        .map(|(i, e)| {
            check_against_llamacpp("exact", e, &llama[i * vocab..(i + 1) * vocab]).is_ok()
        })
        .collect();
    assert!(
        meets.iter().filter(|ok| **ok).count() >= 3,
        "exact arithmetic meets llama.cpp's tolerance at too few positions: {meets:?}"
    );
    meets
}
