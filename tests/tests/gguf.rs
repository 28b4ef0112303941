//! The GGUF reader and writer: the real SmolLM2 file, tiny generated models, and broken
//! files (each error must name the problem, and nothing may panic).

use wisp_core::gguf::{GgufError, GgufFile, GgufWriter, Value, ValueType};
use wisp_core::quant::{GgmlType, dequantize};
use wisp_tests::model_path;

const SMOLLM2: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";

fn read_smollm2() -> Vec<u8> {
    let path = model_path(SMOLLM2);
    std::fs::read(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// Facts checked against gguf-py's `GGUFReader` on the same file.
#[test]
fn smollm2_header() {
    let bytes = read_smollm2();
    let f = GgufFile::parse(&bytes).unwrap();
    assert_eq!(f.version, 3);
    assert_eq!(f.architecture().unwrap(), "llama");
    let md = &f.metadata;
    assert_eq!(md.len(), 33);
    assert_eq!(md.require_u64("llama.block_count").unwrap(), 30);
    assert_eq!(md.require_u64("llama.embedding_length").unwrap(), 576);
    assert_eq!(md.require_u64("llama.feed_forward_length").unwrap(), 1536);
    assert_eq!(md.require_u64("llama.attention.head_count").unwrap(), 9);
    assert_eq!(md.require_u64("llama.attention.head_count_kv").unwrap(), 3);
    assert_eq!(md.require_u64("llama.context_length").unwrap(), 8192);
    assert_eq!(md.require_f64("llama.rope.freq_base").unwrap(), 100000.0);
    assert_eq!(
        md.get("llama.attention.layer_norm_rms_epsilon"),
        Some(&Value::F32(1e-5))
    );
    assert_eq!(md.require_str("tokenizer.ggml.model").unwrap(), "gpt2");
    assert_eq!(md.require_str("tokenizer.ggml.pre").unwrap(), "smollm");
    assert_eq!(
        md.opt_bool("tokenizer.ggml.add_bos_token").unwrap(),
        Some(false)
    );
    assert_eq!(md.require_u64("tokenizer.ggml.eos_token_id").unwrap(), 2);
    assert!(
        md.require_str("tokenizer.chat_template")
            .unwrap()
            .contains("<|im_start|>")
    );

    let tokens = md.require_str_array("tokenizer.ggml.tokens").unwrap();
    assert_eq!(tokens.len(), 49152);
    assert_eq!(
        &tokens[..3],
        ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    );
    let merges = md.require_str_array("tokenizer.ggml.merges").unwrap();
    assert_eq!(merges.len(), 48900);
    assert_eq!(merges[0], "Ġ t");
    match md.get("tokenizer.ggml.token_type") {
        Some(Value::Array(ValueType::I32, v)) => assert_eq!(v.len(), 49152),
        other => panic!("token_type: {other:?}"),
    }

    // No general.alignment key: the default 32 applies.
    assert_eq!(f.alignment, 32);
    assert_eq!(f.data_offset, 1_785_664);
    // 1 embedding + 30 layers × 9 + output_norm; no output.weight (tied embeddings).
    assert_eq!(f.tensors.len(), 272);
    assert!(f.tensor("output.weight").is_none());
    let count = |ty| f.tensors.iter().filter(|t| t.ty == ty).count();
    assert_eq!(
        (
            count(GgmlType::Q4_1),
            count(GgmlType::F32),
            count(GgmlType::Q8_0)
        ),
        (210, 61, 1)
    );

    let emb = f.tensor("token_embd.weight").unwrap();
    assert_eq!(
        (emb.ty, emb.dims.as_slice()),
        (GgmlType::Q8_0, &[576u64, 49152][..])
    );
    assert_eq!(emb.offset, 0);
    let q = f.tensor("blk.0.attn_q.weight").unwrap();
    assert_eq!(
        (q.ty, q.dims.as_slice()),
        (GgmlType::Q4_1, &[576u64, 576][..])
    );
    let down = f.tensor("blk.29.ffn_down.weight").unwrap();
    assert_eq!(
        (down.ty, down.dims.as_slice()),
        (GgmlType::Q4_1, &[1536u64, 576][..])
    );

    // The last tensor's data ends exactly at the end of the file (no trailing padding).
    let end = f
        .tensors
        .iter()
        .map(|t| f.tensor_range(t).unwrap().end)
        .max()
        .unwrap();
    assert_eq!(end, bytes.len() as u64);
}

/// Dequantized weights of the real file, against values gguf-py computes.
#[test]
fn smollm2_dequantizes_like_gguf_py() {
    let bytes = read_smollm2();
    let f = GgufFile::parse(&bytes).unwrap();
    // (tensor, first four values as f32 bits, sum of all values in f64 per gguf-py)
    let cases = [
        (
            "blk.0.attn_q.weight",
            [0xbdc54000u32, 0x3e212000, 0xbdc54000, 0xbf3b0000],
            59.22322082519531,
        ),
        (
            "token_embd.weight",
            [0xbdda3400, 0x3d071400, 0x3d456c00, 0xbcbb0800],
            -15353.04449415207,
        ),
        (
            "output_norm.weight",
            [0x3fe10000, 0x3fe90000, 0x3fe40000, 0x3fcd0000],
            1038.33203125,
        ),
        (
            "blk.29.ffn_down.weight",
            [0xbe8bf000, 0x3e3ec000, 0x3e3ec000, 0x3d464000],
            49.83570861816406,
        ),
    ];
    for (name, first, sum) in cases {
        let info = f.tensor(name).unwrap();
        let data = f.tensor_data(&bytes, info).unwrap();
        let values = dequantize(info.ty, data, info.n_elements() as usize).unwrap();
        let got: Vec<u32> = values[..4].iter().map(|v| v.to_bits()).collect();
        assert_eq!(got, first, "{name}");
        let total: f64 = values.iter().map(|&v| v as f64).sum();
        assert!(
            (total - sum).abs() <= 1e-6 * sum.abs().max(1.0),
            "{name}: sum {total} vs {sum}"
        );
    }
}

/// A browser-style reader: fetch a prefix, parse the header, fetch more when told.
#[test]
fn smollm2_streaming_header() {
    let bytes = read_smollm2();
    let full = GgufFile::parse(&bytes).unwrap();
    let mut have = 4096usize;
    let mut fetches = 1;
    let header = loop {
        match GgufFile::parse_header(&bytes[..have], Some(bytes.len() as u64)) {
            Ok(h) => break h,
            Err(GgufError::Truncated {
                needed, available, ..
            }) => {
                assert_eq!(available, have as u64);
                assert!(needed > have as u64);
                // Fetch at least what is needed, growing geometrically.
                have = (needed as usize).max(have * 2).min(bytes.len());
                fetches += 1;
            }
            Err(e) => panic!("{e}"),
        }
    };
    assert!(fetches <= 12, "{fetches} fetches");
    assert!(have < 4 * 1024 * 1024);
    assert_eq!(header.tensors, full.tensors);
    assert_eq!(header.metadata, full.metadata);
    assert_eq!(header.data_offset, full.data_offset);
}

#[test]
fn smollm2_truncated() {
    let bytes = read_smollm2();
    let full = GgufFile::parse(&bytes).unwrap();
    let find = |needle: &[u8]| {
        bytes
            .windows(needle.len())
            .position(|w| w == needle)
            .unwrap()
    };
    let tokens_at = find(b"tokenizer.ggml.tokens");
    let merges_at = find(b"tokenizer.ggml.merges");
    let infos_at = find(b"blk.0.attn_norm.weight");
    for (n, expect) in [
        (0, "the header"),
        (10, "the header"),
        (30, "metadata entry 0 of 33"),
        (400, "metadata"),
        (tokens_at + 100_000, "tokenizer.ggml.tokens"),
        (merges_at + 1000, "tokenizer.ggml.merges"),
        (infos_at + 24, "the tensor info of blk.0.attn_norm.weight"),
        (infos_at - 4, "tensor info 1 of 272"),
        (full.data_offset as usize - 100, "tensor info"),
    ] {
        let e = GgufFile::parse(&bytes[..n]).unwrap_err();
        assert!(matches!(e, GgufError::Truncated { .. }), "{n}: {e}");
        let msg = e.to_string();
        assert!(
            msg.contains(expect) && msg.contains("truncated"),
            "{n}: {msg}"
        );
    }
    // Cut inside the data: the header parses, but a tensor lies outside the file.
    for n in [
        full.data_offset as usize + 1000,
        bytes.len() / 2,
        bytes.len() - 1,
    ] {
        let e = GgufFile::parse(&bytes[..n]).unwrap_err();
        let msg = e.to_string();
        assert!(
            matches!(e, GgufError::TensorOutOfBounds { .. }),
            "{n}: {msg}"
        );
        assert!(
            msg.contains("outside the file") && msg.contains(".weight"),
            "{msg}"
        );
        // The header alone is fine.
        assert!(GgufFile::parse_header(&bytes[..n], None).is_ok());
    }
    // Many more cut points, none may panic.
    for k in 0..400 {
        let n = (k * 4463) % full.data_offset as usize;
        assert!(GgufFile::parse(&bytes[..n]).is_err(), "{n}");
    }
}

// ---------------------------------------------------------------------------------------
// Tiny generated models

const DIM: usize = 64;
const FF: usize = 128;
const VOCAB: usize = 32;

/// Deterministic values in [-1, 1).
fn values(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s >> 40) as f32 / (1u64 << 23) as f32 - 1.0
        })
        .collect()
}

/// A two-layer llama with every kind of tensor a loader meets: Q8_0 embeddings, Q4_0 /
/// Q4_1 / F16 projections, F32 norms.
fn tiny_llama() -> GgufWriter {
    let mut w = GgufWriter::new();
    w.metadata("general.architecture", "llama").unwrap();
    w.metadata("general.name", "tiny test llama").unwrap();
    w.metadata("llama.block_count", 2u32).unwrap();
    w.metadata("llama.context_length", 128u32).unwrap();
    w.metadata("llama.embedding_length", DIM as u32).unwrap();
    w.metadata("llama.feed_forward_length", FF as u32).unwrap();
    w.metadata("llama.attention.head_count", 4u32).unwrap();
    w.metadata("llama.attention.head_count_kv", 2u32).unwrap();
    w.metadata("llama.attention.layer_norm_rms_epsilon", 1e-5f32)
        .unwrap();
    w.metadata("llama.rope.freq_base", 10000.0f32).unwrap();
    w.metadata("tokenizer.ggml.model", "gpt2").unwrap();
    let tokens: Vec<String> = (0..VOCAB).map(|i| format!("t{i}")).collect();
    w.metadata("tokenizer.ggml.tokens", Value::string_array(tokens))
        .unwrap();
    w.metadata(
        "tokenizer.ggml.token_type",
        Value::array_of(ValueType::I32, vec![1i32; VOCAB]),
    )
    .unwrap();
    w.metadata("tokenizer.ggml.merges", Value::string_array(["t 1", "t 2"]))
        .unwrap();
    let mut seed = 0;
    let mut add = |w: &mut GgufWriter, name: &str, dims: &[u64], ty: GgmlType| {
        seed += 1;
        let n = dims.iter().product::<u64>() as usize;
        w.tensor_from_f32(name, dims, ty, &values(n, seed)).unwrap();
    };
    let (d, f, v) = (DIM as u64, FF as u64, VOCAB as u64);
    add(&mut w, "token_embd.weight", &[d, v], GgmlType::Q8_0);
    for l in 0..2 {
        add(
            &mut w,
            &format!("blk.{l}.attn_norm.weight"),
            &[d],
            GgmlType::F32,
        );
        add(
            &mut w,
            &format!("blk.{l}.attn_q.weight"),
            &[d, d],
            GgmlType::Q4_0,
        );
        add(
            &mut w,
            &format!("blk.{l}.attn_k.weight"),
            &[d, d / 2],
            GgmlType::Q4_1,
        );
        add(
            &mut w,
            &format!("blk.{l}.attn_v.weight"),
            &[d, d / 2],
            GgmlType::Q4_1,
        );
        add(
            &mut w,
            &format!("blk.{l}.attn_output.weight"),
            &[d, d],
            GgmlType::F16,
        );
        add(
            &mut w,
            &format!("blk.{l}.ffn_norm.weight"),
            &[d],
            GgmlType::F32,
        );
        add(
            &mut w,
            &format!("blk.{l}.ffn_gate.weight"),
            &[d, f],
            GgmlType::Q8_0,
        );
        add(
            &mut w,
            &format!("blk.{l}.ffn_up.weight"),
            &[d, f],
            GgmlType::Q5_0,
        );
        add(
            &mut w,
            &format!("blk.{l}.ffn_down.weight"),
            &[f, d],
            GgmlType::BF16,
        );
    }
    add(&mut w, "output_norm.weight", &[d], GgmlType::F32);
    w
}

#[test]
fn tiny_llama_round_trips() {
    let bytes = tiny_llama().to_bytes();
    let f = GgufFile::parse(&bytes).unwrap();
    assert_eq!((f.version, f.alignment), (3, 32));
    assert_eq!(f.architecture().unwrap(), "llama");
    assert_eq!(f.metadata.require_u64("llama.block_count").unwrap(), 2);
    assert_eq!(
        f.metadata.require_f64("llama.rope.freq_base").unwrap(),
        10000.0
    );
    assert_eq!(
        f.metadata
            .require_str_array("tokenizer.ggml.tokens")
            .unwrap()[31],
        "t31"
    );
    assert_eq!(
        f.metadata.require_str("general.name").unwrap(),
        "tiny test llama"
    );
    assert_eq!(f.tensors.len(), 2 + 2 * 9);

    // Every tensor comes back as written, and dequantizes close to its source values.
    let mut seed = 0;
    for info in &f.tensors {
        seed += 1;
        assert_eq!(info.offset % 32, 0, "{}", info.name);
        let n = info.n_elements() as usize;
        let src = values(n, seed);
        let data = f.tensor_data(&bytes, info).unwrap();
        assert_eq!(
            data,
            wisp_core::quant::quantize(info.ty, &src).unwrap(),
            "{}",
            info.name
        );
        let back = dequantize(info.ty, data, n).unwrap();
        let tol = match info.ty {
            GgmlType::F32 => 0.0,
            GgmlType::F16 | GgmlType::BF16 => 4e-3,
            GgmlType::Q8_0 => 5e-3,
            GgmlType::Q5_0 => 0.07,
            _ => 0.14, // Q4_0 clips one sign by up to a full step (max/8)
        };
        let err = src
            .iter()
            .zip(&back)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f32::max);
        assert!(err <= tol, "{} ({}): max error {err}", info.name, info.ty);
    }
}

#[test]
fn writer_alignment_and_validation() {
    let mut w = tiny_llama();
    w.alignment(256).unwrap();
    let bytes = w.to_bytes();
    let f = GgufFile::parse(&bytes).unwrap();
    assert_eq!(f.alignment, 256);
    assert_eq!(f.data_offset % 256, 0);
    assert!(f.tensors.iter().all(|t| t.offset % 256 == 0));
    assert_eq!(f.metadata.get("general.alignment"), Some(&Value::U32(256)));

    let msg = |e: wisp_core::gguf::GgufWriteError| e.to_string();
    assert!(msg(w.alignment(24).unwrap_err()).contains("24"));
    let e = msg(w
        .tensor("x", &[32], GgmlType::Q8_0, vec![0; 33])
        .unwrap_err());
    assert!(
        e.contains("x") && e.contains("34 bytes") && e.contains("33"),
        "{e}"
    );
    let e = msg(w
        .tensor("token_embd.weight", &[4], GgmlType::F32, vec![0; 16])
        .unwrap_err());
    assert!(
        e.contains("token_embd.weight") && e.contains("twice"),
        "{e}"
    );
    let e = msg(w
        .tensor("y", &[16], GgmlType::Q4_0, vec![0; 9])
        .unwrap_err());
    assert!(e.contains("whole number of Q4_0 blocks"), "{e}");
    let e = msg(w
        .metadata("bad", Value::Array(ValueType::U32, vec![Value::I32(1)]))
        .unwrap_err());
    assert!(e.contains("bad") && e.contains("element 0"), "{e}");
    let e = msg(w
        .tensor_from_f32("z", &[256], GgmlType::Q6_K, &[0.0; 256])
        .unwrap_err());
    assert!(e.contains("z") && e.contains("Q6_K"), "{e}");
}

// ---------------------------------------------------------------------------------------
// Broken files

fn find(hay: &[u8], needle: &[u8]) -> usize {
    hay.windows(needle.len())
        .position(|w| w == needle)
        .expect("pattern in file")
}

fn parse_err(bytes: &[u8]) -> GgufError {
    match GgufFile::parse(bytes) {
        Ok(_) => panic!("a broken file parsed"),
        Err(e) => e,
    }
}

#[test]
fn truncated_files() {
    let bytes = tiny_llama().to_bytes();
    let f = GgufFile::parse(&bytes).unwrap();
    let tokens_at = find(&bytes, b"tokenizer.ggml.tokens");
    let info_at = find(&bytes, b"blk.1.attn_q.weight");
    for (n, expect) in [
        (3, "the header"),
        (20, "the header"),
        (tokens_at + 30, "tokenizer.ggml.tokens"),
        (info_at + 22, "blk.1.attn_q.weight"),
    ] {
        let e = parse_err(&bytes[..n]);
        let msg = e.to_string();
        assert!(matches!(e, GgufError::Truncated { .. }), "{n}: {msg}");
        assert!(
            msg.contains(expect) && msg.contains(&format!("the file has {n}")),
            "{n}: {msg}"
        );
    }
    let n = f.data_offset as usize + 100;
    let msg = parse_err(&bytes[..n]).to_string();
    assert!(
        msg.contains("outside the file") && msg.contains("truncated"),
        "{msg}"
    );
    for n in 0..bytes.len() - 1 {
        let _ = GgufFile::parse(&bytes[..n]);
    }
}

#[test]
fn wrong_magic_and_versions() {
    let mut bytes = tiny_llama().to_bytes();
    bytes[..4].copy_from_slice(b"GGJT");
    let msg = parse_err(&bytes).to_string();
    assert!(
        msg.contains("not a GGUF file") && msg.contains("0x544a4747"),
        "{msg}"
    );
    bytes[..4].copy_from_slice(b"GGUF");
    for v in [1u32, 4] {
        bytes[4..8].copy_from_slice(&v.to_le_bytes());
        let e = parse_err(&bytes);
        assert!(
            matches!(e, GgufError::UnsupportedVersion(x) if x == v),
            "{e}"
        );
        assert_eq!(
            e.to_string(),
            format!("unsupported GGUF version {v} (Wisp reads versions 2 and 3)")
        );
    }
}

#[test]
fn unknown_tensor_type() {
    let mut bytes = tiny_llama().to_bytes();
    // blk.0.attn_q.weight: name, n_dims (u32), 2 dims (u64), then the type id.
    let name = b"blk.0.attn_q.weight";
    let at = find(&bytes, name) + name.len() + 4 + 16;
    assert_eq!(bytes[at..at + 4], GgmlType::Q4_0.id().to_le_bytes());
    bytes[at..at + 4].copy_from_slice(&99u32.to_le_bytes());
    let e = parse_err(&bytes);
    assert_eq!(
        e.to_string(),
        "unsupported tensor type 99 in tensor blk.0.attn_q.weight"
    );
}

#[test]
fn tensor_data_outside_the_file() {
    let mut bytes = tiny_llama().to_bytes();
    let name = b"output_norm.weight";
    let at = find(&bytes, name) + name.len() + 4 + 8 + 4;
    bytes[at..at + 8].copy_from_slice(&(1u64 << 20).to_le_bytes());
    let e = parse_err(&bytes);
    let msg = e.to_string();
    assert!(matches!(e, GgufError::TensorOutOfBounds { .. }), "{msg}");
    assert!(
        msg.contains("output_norm.weight") && msg.contains("outside the file"),
        "{msg}"
    );
    // Without the file length (header-only parse), the same header is accepted; the
    // check happens when the data is asked for.
    let head = GgufFile::parse_header(&bytes, None).unwrap();
    let info = head.tensor("output_norm.weight").unwrap();
    assert!(
        head.tensor_data(&bytes, info)
            .unwrap_err()
            .to_string()
            .contains("output_norm.weight")
    );
}

#[test]
fn missing_required_key() {
    let mut w = tiny_llama();
    w.remove_metadata("llama.block_count")
        .remove_metadata("general.architecture");
    let f = GgufFile::parse(&w.to_bytes()).unwrap();
    let e = f.metadata.require_u64("llama.block_count").unwrap_err();
    assert_eq!(
        e.to_string(),
        "missing required metadata key llama.block_count"
    );
    let e = f.architecture().unwrap_err();
    assert_eq!(
        e.to_string(),
        "missing required metadata key general.architecture"
    );
    let e = f.metadata.require_u64("general.name").unwrap_err();
    assert!(
        e.to_string()
            .contains("general.name should be unsigned integer"),
        "{e}"
    );
}

#[test]
fn non_utf8_string() {
    let mut bytes = tiny_llama().to_bytes();
    let at = find(&bytes, b"tiny test llama");
    bytes[at + 5] = 0xFF;
    let msg = parse_err(&bytes).to_string();
    assert!(
        msg.contains("general.name") && msg.contains("not valid UTF-8"),
        "{msg}"
    );
    // In a string array element too.
    let mut bytes = tiny_llama().to_bytes();
    let at = find(&bytes, b"t17");
    bytes[at] = 0xC0;
    let msg = parse_err(&bytes).to_string();
    assert!(
        msg.contains("tokenizer.ggml.tokens") && msg.contains("not valid UTF-8"),
        "{msg}"
    );
}

#[test]
fn bad_alignment() {
    let mut w = tiny_llama();
    w.alignment(64).unwrap();
    // Two 64-byte tensors in a row: the second one's offset is 64 past a multiple of 128.
    w.tensor_from_f32("pad.a", &[16], GgmlType::F32, &[0.0; 16])
        .unwrap();
    w.tensor_from_f32("pad.b", &[16], GgmlType::F32, &[0.0; 16])
        .unwrap();
    let good = w.to_bytes();
    assert!(GgufFile::parse(&good).is_ok());
    let key = b"general.alignment";
    // Key, then its type (u32 = 4), then the value.
    let at = find(&good, key) + key.len();
    assert_eq!(good[at..at + 8], [4, 0, 0, 0, 64, 0, 0, 0]);
    for bad in [0u32, 48, 3] {
        let mut bytes = good.clone();
        bytes[at + 4..at + 8].copy_from_slice(&bad.to_le_bytes());
        let msg = parse_err(&bytes).to_string();
        assert!(
            msg.contains("general.alignment") && msg.contains("power of two"),
            "{bad}: {msg}"
        );
    }
    // 128 is a legal alignment, but the tensor offsets were laid out for 64.
    let mut bytes = good.clone();
    bytes[at + 4..at + 8].copy_from_slice(&128u32.to_le_bytes());
    let msg = parse_err(&bytes).to_string();
    assert!(msg.contains("not a multiple of the alignment 128"), "{msg}");
    // A wrong value type (i32 instead of u32).
    let mut bytes = good;
    bytes[at..at + 4].copy_from_slice(&5u32.to_le_bytes());
    let msg = parse_err(&bytes).to_string();
    assert!(msg.contains("general.alignment must be a u32"), "{msg}");
}
