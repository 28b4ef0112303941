//! Wisp's CPU dequantizer and quantizers against gguf-py's (`gguf.quants`), an independent
//! implementation, via the fixtures `scripts/make_quant_fixtures.py` writes to
//! `tests/fixtures/quant/`.
//!
//! Every comparison is bit-exact: gguf-py computes in f32 with the same order of
//! operations as ggml (scale times sub-scale first, then times the quant, then minus the
//! min), and so does Wisp, so there is no rounding difference to allow for.

use std::path::PathBuf;

use wisp_core::quant::{GgmlType, can_dequantize, can_quantize, dequantize, quantize};

fn fixture(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/quant")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (regenerate with `python3 scripts/make_quant_fixtures.py`)",
            path.display()
        )
    })
}

fn f32s(bytes: &[u8]) -> Vec<f32> {
    bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

/// The types the fixtures cover; the test below checks it is all of `can_dequantize`.
const DEQUANT_TYPES: [GgmlType; 14] = [
    GgmlType::F32,
    GgmlType::F16,
    GgmlType::BF16,
    GgmlType::Q4_0,
    GgmlType::Q4_1,
    GgmlType::Q5_0,
    GgmlType::Q5_1,
    GgmlType::Q8_0,
    GgmlType::IQ4_NL,
    GgmlType::Q2_K,
    GgmlType::Q3_K,
    GgmlType::Q4_K,
    GgmlType::Q5_K,
    GgmlType::Q6_K,
];

const QUANT_TYPES: [GgmlType; 7] = [
    GgmlType::F16,
    GgmlType::BF16,
    GgmlType::Q4_0,
    GgmlType::Q4_1,
    GgmlType::Q5_0,
    GgmlType::Q5_1,
    GgmlType::Q8_0,
];

#[test]
fn fixtures_cover_every_supported_type() {
    for ty in GgmlType::ALL {
        assert_eq!(
            can_dequantize(ty),
            DEQUANT_TYPES.contains(&ty),
            "dequant fixture for {ty}"
        );
        // F32 "quantization" is a plain copy, and gguf-py has no Q4_K quantizer (Q4_K is
        // checked by round-trip bounds in wisp-core); every other quantizer has a fixture.
        assert_eq!(
            can_quantize(ty) && !matches!(ty, GgmlType::F32 | GgmlType::Q4_K),
            QUANT_TYPES.contains(&ty),
            "quant fixture for {ty}"
        );
    }
}

#[test]
fn dequantize_matches_gguf_py_bit_exactly() {
    for ty in DEQUANT_TYPES {
        let raw = fixture(&format!("{ty}.bin"));
        let expected = f32s(&fixture(&format!("{ty}.f32")));
        assert_eq!(
            raw.len() as u64,
            ty.bytes_for(expected.len() as u64).unwrap(),
            "{ty}: fixture sizes disagree"
        );
        let got = dequantize(ty, &raw, expected.len()).unwrap();
        let mismatches: Vec<String> = got
            .iter()
            .zip(&expected)
            .enumerate()
            .filter(|(_, (g, e))| g.to_bits() != e.to_bits())
            .take(5)
            .map(|(i, (g, e))| {
                format!(
                    "element {i} (block {}): {g:e} != {e:e}",
                    i / ty.block_elems()
                )
            })
            .collect();
        assert!(mismatches.is_empty(), "{ty}: {mismatches:#?}");
    }
}

#[test]
fn quantize_matches_gguf_py_bit_exactly() {
    let input = f32s(&fixture("quant_input.f32"));
    for ty in QUANT_TYPES {
        let expected = fixture(&format!("{ty}.quant.bin"));
        let got = quantize(ty, &input).unwrap();
        assert_eq!(got.len(), expected.len(), "{ty}: length");
        if let Some(i) = got.iter().zip(&expected).position(|(g, e)| g != e) {
            let b = i / ty.block_bytes();
            panic!(
                "{ty}: byte {i} (block {b}, offset {}) differs: {} != {}; input block {:?}",
                i % ty.block_bytes(),
                got[i],
                expected[i],
                &input[b * ty.block_elems()..(b + 1) * ty.block_elems()]
            );
        }
    }
}
