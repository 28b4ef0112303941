//! Models with random weights in the shapes of real ones (`wisp bench --synthetic
//! llama-8b:q4_k`): benchmarks of any size and weight format without a download.
//!
//! The GGUF header is built in memory; tensor bytes are generated when the loader asks
//! for them, one piece at a time, so the whole model never exists outside the GPU.
//! Norms are ones, so activations keep the scale the random matrices give them.

use std::borrow::Cow;
use std::collections::{BTreeSet, HashMap};
use std::ops::Range;

use crate::Error;
use crate::gguf::{
    DEFAULT_ALIGNMENT, GgufFile, GgufWriter, Metadata, TensorInfo, Value, ValueType,
};
use crate::gpu::gpu_weight_type;
use crate::quant::{GgmlType, fill_random_blocks};

use super::{ModelConfig, ModelError, TensorFuture, TensorSource, check_tensors};

/// The dimensions of a model.
#[derive(Clone, Copy, Debug)]
struct Shape {
    arch: &'static str,
    n_layer: u32,
    n_embd: u32,
    n_head: u32,
    n_kv_head: u32,
    n_ff: u32,
    vocab: u32,
    tied: bool,
    /// (experts, experts used per token)
    experts: Option<(u32, u32)>,
    rope_base: f32,
    n_ctx: u32,
}

const LLAMA_2: Shape = Shape {
    arch: "llama",
    n_layer: 32,
    n_embd: 4096,
    n_head: 32,
    n_kv_head: 32,
    n_ff: 11008,
    vocab: 32000,
    tied: false,
    experts: None,
    rope_base: 1e4,
    n_ctx: 4096,
};

const LLAMA_3: Shape = Shape {
    n_kv_head: 8,
    n_ff: 14336,
    vocab: 128256,
    rope_base: 5e5,
    ..LLAMA_2
};

struct NamedShape {
    name: &'static str,
    shape: Shape,
    /// How the shape departs from the model it is named after.
    caveat: Option<&'static str>,
}

const SHAPES: [NamedShape; 6] = [
    NamedShape {
        name: "llama-1b",
        shape: Shape {
            n_layer: 16,
            n_embd: 2048,
            n_ff: 8192,
            tied: true,
            ..LLAMA_3
        },
        caveat: None,
    },
    NamedShape {
        name: "llama-3b",
        shape: Shape {
            n_layer: 28,
            n_embd: 3072,
            n_head: 24,
            n_ff: 8192,
            tied: true,
            ..LLAMA_3
        },
        caveat: None,
    },
    NamedShape {
        name: "llama-7b",
        shape: LLAMA_2,
        caveat: None,
    },
    NamedShape {
        name: "llama-8b",
        shape: LLAMA_3,
        caveat: None,
    },
    NamedShape {
        name: "qwen2-0.5b",
        shape: Shape {
            arch: "qwen2",
            n_layer: 24,
            n_embd: 896,
            n_head: 14,
            n_kv_head: 2,
            n_ff: 4864,
            vocab: 151936,
            tied: true,
            experts: None,
            rope_base: 1e6,
            n_ctx: 4096,
        },
        caveat: None,
    },
    NamedShape {
        name: "mixtral-8x7b",
        shape: Shape {
            n_layer: 4,
            n_kv_head: 8,
            n_ff: 14336,
            experts: Some((8, 2)),
            rope_base: 1e6,
            ..LLAMA_2
        },
        caveat: Some("Mixtral 8x7B has 32 layers"),
    },
];

/// The keys of explicit dimensions, as in `layers=2,embd=256,ff=512,heads=4,vocab=1000`.
const DIM_KEYS: [&str; 10] = [
    "layers", "embd", "ff", "heads", "kv_heads", "vocab", "arch", "experts", "tied", "ctx",
];

/// Explicit dimensions are bounded so that no tensor's size overflows.
const MAX_DIM: u32 = 1 << 20;

/// Random tensors are generated in chunks of about this many bytes (whole blocks), each
/// from its own seed: any range of a tensor can be generated alone, and always the same.
const CHUNK_BYTES: usize = 256 << 10;

/// Root mean square of the random weights: about a trained model's, so that activations
/// stay within f16's range through dozens of layers.
const WEIGHT_RMS: f32 = 0.03;

/// What the loader should ask for at once.
const MAX_PIECE: u64 = 16 << 20;

/// What a tensor holds.
#[derive(Clone, Copy, Debug)]
enum Contents {
    Ones,
    Random { seed: u64 },
}

/// A model of random weights, generated as the loader reads them: `file` is its header,
/// and the model itself is the [`TensorSource`] of its bytes.
#[derive(Debug)]
pub struct SyntheticModel {
    pub name: String,
    pub file: GgufFile,
    /// The format of the matrices (a few may fall back to another, as llama.cpp's do
    /// where rows are not whole blocks; the description says which).
    pub quant: GgmlType,
    shape: Shape,
    caveats: Vec<String>,
    /// Each tensor's index in `file.tensors` and contents.
    contents: HashMap<String, (usize, Contents)>,
}

/// The names of the built-in shapes.
pub fn synthetic_shape_names() -> impl Iterator<Item = &'static str> {
    SHAPES.iter().map(|s| s.name)
}

fn invalid(message: String) -> ModelError {
    ModelError::InvalidConfig(message)
}

fn weight_types() -> impl Iterator<Item = GgmlType> {
    GgmlType::ALL
        .into_iter()
        .filter(|&t| gpu_weight_type(t).is_some())
}

fn parse_weight_type(name: &str) -> Result<GgmlType, ModelError> {
    weight_types()
        .find(|t| t.name().eq_ignore_ascii_case(name))
        .ok_or_else(|| {
            let supported: Vec<String> = weight_types().map(|t| t.name().to_lowercase()).collect();
            invalid(format!(
                "unknown weight type {name:?} for a synthetic model (supported: {})",
                supported.join(", ")
            ))
        })
}

fn parse_shape(text: &str) -> Result<(Shape, Option<&'static str>), ModelError> {
    if text.contains('=') {
        return Ok((parse_dims(text)?, None));
    }
    match SHAPES.iter().find(|s| s.name.eq_ignore_ascii_case(text)) {
        Some(s) => Ok((s.shape, s.caveat)),
        None => Err(invalid(format!(
            "unknown synthetic model {text:?} (known: {}; or dimensions such as \
             layers=2,embd=256,ff=512,heads=4,kv_heads=2,vocab=1000)",
            synthetic_shape_names().collect::<Vec<_>>().join(", ")
        ))),
    }
}

/// `layers=2,embd=256,ff=512,heads=4,vocab=1000` with optional `kv_heads` (default:
/// `heads`), `arch` (llama or qwen2), `experts=N/M`, `tied` (default false) and `ctx`.
fn parse_dims(text: &str) -> Result<Shape, ModelError> {
    let mut values: HashMap<&str, &str> = HashMap::new();
    for item in text.split(',') {
        let (key, value) = item.split_once('=').ok_or_else(|| {
            invalid(format!(
                "synthetic model dimensions: {item:?} is not key=value"
            ))
        })?;
        let key = key.trim();
        if !DIM_KEYS.contains(&key) {
            return Err(invalid(format!(
                "synthetic model dimensions: unknown key {key:?} (keys: {})",
                DIM_KEYS.join(", ")
            )));
        }
        if values.insert(key, value.trim()).is_some() {
            return Err(invalid(format!(
                "synthetic model dimensions: {key} is given twice"
            )));
        }
    }
    let number = |key: &str, default: Option<u32>| -> Result<u32, ModelError> {
        let Some(v) = values.get(key) else {
            return default
                .ok_or_else(|| invalid(format!("synthetic model dimensions: {key}= is missing")));
        };
        v.parse::<u32>()
            .ok()
            .filter(|n| (1..=MAX_DIM).contains(n))
            .ok_or_else(|| invalid(format!("synthetic model dimensions: {key}={v} is not a whole number from 1 to {MAX_DIM}")))
    };
    let n_head = number("heads", None)?;
    let (arch, rope_base) = match values.get("arch").copied().unwrap_or("llama") {
        "llama" => ("llama", 1e4),
        "qwen2" => ("qwen2", 1e6),
        other => {
            return Err(invalid(format!(
                "synthetic model dimensions: arch={other} is not llama or qwen2"
            )));
        }
    };
    let tied = match values.get("tied").copied().unwrap_or("false") {
        "true" => true,
        "false" => false,
        other => {
            return Err(invalid(format!(
                "synthetic model dimensions: tied={other} is not true or false"
            )));
        }
    };
    let experts = match values.get("experts") {
        None => None,
        Some(v) => {
            let pair = v
                .split_once('/')
                .and_then(|(n, used)| Some((n.parse::<u32>().ok()?, used.parse::<u32>().ok()?)));
            match pair {
                Some((n, used)) if (1..=MAX_DIM).contains(&n) => Some((n, used)),
                _ => {
                    return Err(invalid(format!(
                        "synthetic model dimensions: experts={v} is not N/M (N experts, M used per token)"
                    )));
                }
            }
        }
    };
    Ok(Shape {
        arch,
        n_layer: number("layers", None)?,
        n_embd: number("embd", None)?,
        n_head,
        n_kv_head: number("kv_heads", Some(n_head))?,
        n_ff: number("ff", None)?,
        vocab: number("vocab", None)?,
        tied,
        experts,
        rope_base,
        n_ctx: number("ctx", Some(4096))?,
    })
}

/// llama.cpp's choice for rows that are not whole 256-element blocks
/// (`llama_tensor_get_type`).
fn fallback_type(ty: GgmlType) -> GgmlType {
    match ty {
        GgmlType::Q2_K | GgmlType::Q3_K => GgmlType::IQ4_NL,
        GgmlType::Q4_K => GgmlType::Q5_0,
        GgmlType::Q5_K => GgmlType::Q5_1,
        GgmlType::Q6_K => GgmlType::Q8_0,
        other => other,
    }
}

/// The tensors of the model being built, laid out back to back.
struct Layout {
    quant: GgmlType,
    tensors: Vec<TensorInfo>,
    contents: HashMap<String, (usize, Contents)>,
    end: u64,
    /// Row lengths that took a fallback type, with it.
    fallbacks: BTreeSet<(u64, GgmlType)>,
}

impl Layout {
    fn add(
        &mut self,
        name: String,
        dims: Vec<u64>,
        ty: GgmlType,
        ones: bool,
    ) -> Result<(), ModelError> {
        let index = self.tensors.len();
        let contents = if ones {
            Contents::Ones
        } else {
            Contents::Random { seed: index as u64 }
        };
        let offset = self.end.next_multiple_of(DEFAULT_ALIGNMENT);
        let info = TensorInfo {
            name: name.clone(),
            dims,
            ty,
            offset,
        };
        self.end = offset.checked_add(info.n_bytes()).ok_or_else(|| {
            invalid(format!(
                "the synthetic model is too large (at tensor {name})"
            ))
        })?;
        self.tensors.push(info);
        self.contents.insert(name, (index, contents));
        Ok(())
    }

    fn matrix(&mut self, name: String, dims: Vec<u64>) -> Result<(), ModelError> {
        let ty = match self.quant.bytes_for(dims[0]) {
            Some(_) => self.quant,
            None => {
                let ty = fallback_type(self.quant);
                self.fallbacks.insert((dims[0], ty));
                ty
            }
        };
        self.add(name, dims, ty, false)
    }

    fn norm(&mut self, name: String, width: u64) -> Result<(), ModelError> {
        self.add(name, vec![width], GgmlType::F32, true)
    }
}

fn metadata(name: &str, s: &Shape) -> Metadata {
    let a = s.arch;
    let mut m = Metadata::new();
    m.insert("general.architecture", Value::String(a.into()));
    m.insert("general.name", Value::String(format!("{name} (synthetic)")));
    for (key, value) in [
        ("block_count", s.n_layer),
        ("embedding_length", s.n_embd),
        ("feed_forward_length", s.n_ff),
        ("attention.head_count", s.n_head),
        ("attention.head_count_kv", s.n_kv_head),
        ("context_length", s.n_ctx),
        ("vocab_size", s.vocab),
    ] {
        m.insert(format!("{a}.{key}"), Value::U32(value));
    }
    m.insert(
        format!("{a}.attention.layer_norm_rms_epsilon"),
        Value::F32(1e-5),
    );
    m.insert(format!("{a}.rope.freq_base"), Value::F32(s.rope_base));
    if let Some((n_expert, n_used)) = s.experts {
        m.insert(format!("{a}.expert_count"), Value::U32(n_expert));
        m.insert(format!("{a}.expert_used_count"), Value::U32(n_used));
    }
    m
}

/// The tensors `ModelConfig` and `check_tensors` expect of the shape. Heads are
/// `n_embd / n_head` wide (a shape that does not divide is refused by `ModelConfig`).
fn layout(s: &Shape, quant: GgmlType) -> Result<Layout, ModelError> {
    let mut l = Layout {
        quant,
        tensors: Vec::new(),
        contents: HashMap::new(),
        end: 0,
        fallbacks: BTreeSet::new(),
    };
    let (d, ff, v) = (s.n_embd as u64, s.n_ff as u64, s.vocab as u64);
    let head_dim = (s.n_embd / s.n_head) as u64;
    let (q, kv) = (s.n_head as u64 * head_dim, s.n_kv_head as u64 * head_dim);
    l.matrix("token_embd.weight".into(), vec![d, v])?;
    l.norm("output_norm.weight".into(), d)?;
    if !s.tied {
        l.matrix("output.weight".into(), vec![d, v])?;
    }
    for i in 0..s.n_layer {
        let b = |n: &str| format!("blk.{i}.{n}.weight");
        l.norm(b("attn_norm"), d)?;
        l.matrix(b("attn_q"), vec![d, q])?;
        l.matrix(b("attn_k"), vec![d, kv])?;
        l.matrix(b("attn_v"), vec![d, kv])?;
        l.matrix(b("attn_output"), vec![q, d])?;
        if s.arch == "qwen2" {
            for (p, n) in [("q", q), ("k", kv), ("v", kv)] {
                l.add(
                    format!("blk.{i}.attn_{p}.bias"),
                    vec![n],
                    GgmlType::F32,
                    false,
                )?;
            }
        }
        l.norm(b("ffn_norm"), d)?;
        match s.experts {
            None => {
                l.matrix(b("ffn_gate"), vec![d, ff])?;
                l.matrix(b("ffn_up"), vec![d, ff])?;
                l.matrix(b("ffn_down"), vec![ff, d])?;
            }
            Some((n_expert, _)) => {
                let e = n_expert as u64;
                l.add(b("ffn_gate_inp"), vec![d, e], GgmlType::F32, false)?;
                l.matrix(b("ffn_gate_exps"), vec![d, ff, e])?;
                l.matrix(b("ffn_up_exps"), vec![d, ff, e])?;
                l.matrix(b("ffn_down_exps"), vec![ff, d, e])?;
            }
        }
    }
    Ok(l)
}

impl SyntheticModel {
    /// A model from `NAME:QUANT`: NAME is a built-in shape (see
    /// [`synthetic_shape_names`]) or dimensions such as
    /// `layers=2,embd=256,ff=512,heads=4,kv_heads=2,vocab=1000[,arch=qwen2][,experts=4/2][,tied=true]`;
    /// QUANT is any weight format the GPU reads (`q4_0`, `q4_k`, `f16`, ...).
    pub fn parse(spec: &str) -> Result<SyntheticModel, ModelError> {
        let (name, quant) = spec.rsplit_once(':').ok_or_else(|| {
            invalid(format!(
                "synthetic model {spec:?} needs a weight type: NAME:QUANT, e.g. llama-1b:q4_0"
            ))
        })?;
        let (name, quant) = (name.trim(), parse_weight_type(quant.trim())?);
        let (shape, caveat) = parse_shape(name)?;
        let l = layout(&shape, quant)?;
        let file = GgufFile {
            version: 3,
            metadata: metadata(name, &shape),
            tensors: l.tensors,
            alignment: DEFAULT_ALIGNMENT,
            data_offset: 0,
        };
        let config = ModelConfig::from_gguf(&file)?;
        check_tensors(&file, &config)?;
        let mut caveats: Vec<String> = caveat.map(String::from).into_iter().collect();
        caveats.extend(l.fallbacks.iter().map(|(row, ty)| {
            format!("rows of {row} are not whole {quant} blocks, so those tensors are {ty}")
        }));
        Ok(SyntheticModel {
            name: name.to_string(),
            file,
            quant,
            shape,
            caveats,
            contents: l.contents,
        })
    }

    /// Parameters of every tensor, norms and biases included.
    pub fn n_params(&self) -> u64 {
        self.file
            .tensors
            .iter()
            .fold(0u64, |n, t| n.saturating_add(t.n_elements()))
    }

    /// E.g. "llama-1b (synthetic, q4_0: 16 layers, 2048 wide, 1.24 B parameters)".
    pub fn description(&self) -> String {
        let s = &self.shape;
        let experts = s
            .experts
            .map(|(n, used)| format!(", {n} experts ({used} per token)"))
            .unwrap_or_default();
        let n = self.n_params();
        let params = match n {
            1_000_000_000.. => format!("{:.2} B", n as f64 / 1e9),
            1_000_000.. => format!("{:.1} M", n as f64 / 1e6),
            _ => n.to_string(),
        };
        let caveats: String = self.caveats.iter().map(|c| format!("; {c}")).collect();
        format!(
            "{} (synthetic, {}: {} layers, {} wide{experts}, {params} parameters{caveats})",
            self.name,
            self.quant.name().to_lowercase(),
            s.n_layer,
            s.n_embd
        )
    }

    /// Bytes `range` of tensor `info`, generated.
    fn generate(&self, info: &TensorInfo, range: Range<u64>) -> Result<Vec<u8>, Error> {
        let name = &info.name;
        let (index, contents) = *self
            .contents
            .get(name)
            .ok_or_else(|| Error::Source(format!("the synthetic model has no tensor {name}")))?;
        let ours = &self.file.tensors[index];
        if ours.ty != info.ty || ours.dims != info.dims {
            return Err(Error::Source(format!(
                "tensor {name} was asked for as {} {:?}, but the synthetic model's is {} {:?}",
                info.ty, info.dims, ours.ty, ours.dims
            )));
        }
        let block = ours.ty.block_bytes() as u64;
        let n_bytes = ours.n_bytes();
        if range.start > range.end
            || range.end > n_bytes
            || !range.start.is_multiple_of(block)
            || !range.end.is_multiple_of(block)
        {
            return Err(Error::Source(format!(
                "bytes {range:?} of synthetic tensor {name}: it has {n_bytes} bytes in blocks of {block}"
            )));
        }
        let mut out = vec![0u8; (range.end - range.start) as usize];
        match contents {
            Contents::Ones => {
                for v in out.chunks_exact_mut(4) {
                    v.copy_from_slice(&1f32.to_le_bytes());
                }
            }
            Contents::Random { seed } => random_range(ours.ty, seed, range, &mut out)
                .map_err(|e| Error::Source(format!("synthetic tensor {name}: {e}")))?,
        }
        Ok(out)
    }
}

impl SyntheticModel {
    /// The model as a GGUF file, for other runtimes (`llama-bench`) to run the very same
    /// weights. Its vocabulary is a placeholder SentencePiece one (`<unk>`, `<s>`, `</s>`,
    /// the 256 byte tokens, then `t<N>`): enough for benchmarks, which feed random ids.
    /// The tensors are generated whole, so this takes the model's size in memory.
    pub fn to_gguf(&self) -> Result<GgufWriter, Error> {
        let mut w = GgufWriter::new();
        let bad = |e: crate::gguf::GgufWriteError| {
            Error::Source(format!("writing the synthetic model: {e}"))
        };
        for (key, value) in self.file.metadata.iter() {
            w.metadata(key.clone(), value.clone()).map_err(bad)?;
        }
        for (key, value) in placeholder_vocabulary(self.shape.vocab)? {
            w.metadata(key, value).map_err(bad)?;
        }
        for t in &self.file.tensors {
            w.tensor(
                t.name.clone(),
                &t.dims,
                t.ty,
                self.generate(t, 0..t.n_bytes())?,
            )
            .map_err(bad)?;
        }
        Ok(w)
    }
}

/// Special tokens and the byte tokens come first in the placeholder vocabulary.
const PLACEHOLDER_FIXED_TOKENS: u32 = 3 + 256;

/// `tokenizer.ggml.*` keys of a SentencePiece vocabulary of `n` made-up tokens.
fn placeholder_vocabulary(n: u32) -> Result<Vec<(&'static str, Value)>, Error> {
    if n < PLACEHOLDER_FIXED_TOKENS + 1 {
        return Err(Error::Source(format!(
            "a vocabulary of {n} tokens is too small for the placeholder one written to files (at least {})",
            PLACEHOLDER_FIXED_TOKENS + 1
        )));
    }
    // llama.cpp's token types: 1 normal, 2 unknown, 3 control, 6 byte.
    let mut tokens = vec!["<unk>".to_string(), "<s>".to_string(), "</s>".to_string()];
    let mut types = vec![2, 3, 3];
    tokens.extend((0..=255u8).map(|b| format!("<0x{b:02X}>")));
    types.extend([6; 256]);
    tokens.extend((PLACEHOLDER_FIXED_TOKENS..n).map(|i| format!("t{i}")));
    types.resize(n as usize, 1);
    let strings = |v: Vec<String>| {
        Value::Array(
            ValueType::String,
            v.into_iter().map(Value::String).collect(),
        )
    };
    Ok(vec![
        ("tokenizer.ggml.model", Value::String("llama".into())),
        ("tokenizer.ggml.tokens", strings(tokens)),
        (
            "tokenizer.ggml.scores",
            Value::Array(ValueType::F32, vec![Value::F32(0.0); n as usize]),
        ),
        (
            "tokenizer.ggml.token_type",
            Value::Array(ValueType::I32, types.into_iter().map(Value::I32).collect()),
        ),
        ("tokenizer.ggml.unknown_token_id", Value::U32(0)),
        ("tokenizer.ggml.bos_token_id", Value::U32(1)),
        ("tokenizer.ggml.eos_token_id", Value::U32(2)),
    ])
}

/// Fills `out` with bytes `range` of a random tensor. Every chunk is the prefix of its
/// seed's stream, so a range that starts inside a chunk regenerates the chunk's head.
fn random_range(
    ty: GgmlType,
    tensor_seed: u64,
    range: Range<u64>,
    out: &mut [u8],
) -> Result<(), crate::quant::RandomBlocksError> {
    let chunk = ((CHUNK_BYTES / ty.block_bytes()).max(1) * ty.block_bytes()) as u64;
    let mut head = Vec::new();
    for c in range.start / chunk..range.end.div_ceil(chunk) {
        let chunk_start = c * chunk;
        let (lo, hi) = (
            range.start.max(chunk_start),
            range.end.min(chunk_start + chunk),
        );
        let dst = &mut out[(lo - range.start) as usize..(hi - range.start) as usize];
        let seed = (tensor_seed << 40) | c;
        if lo == chunk_start {
            fill_random_blocks(ty, dst, seed, WEIGHT_RMS)?;
        } else {
            head.resize((hi - chunk_start) as usize, 0);
            fill_random_blocks(ty, &mut head, seed, WEIGHT_RMS)?;
            dst.copy_from_slice(&head[(lo - chunk_start) as usize..]);
        }
    }
    Ok(())
}

impl TensorSource for SyntheticModel {
    fn fetch<'a>(&'a self, info: &'a TensorInfo) -> TensorFuture<'a> {
        Box::pin(std::future::ready(
            self.generate(info, 0..info.n_bytes()).map(Cow::Owned),
        ))
    }

    fn max_piece(&self) -> u64 {
        MAX_PIECE
    }

    fn fetch_range<'a>(&'a self, info: &'a TensorInfo, range: Range<u64>) -> TensorFuture<'a> {
        Box::pin(std::future::ready(
            self.generate(info, range).map(Cow::Owned),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quant::dequantize;

    fn parse(spec: &str) -> SyntheticModel {
        SyntheticModel::parse(spec).unwrap_or_else(|e| panic!("{spec}: {e}"))
    }

    fn error(spec: &str) -> String {
        SyntheticModel::parse(spec)
            .map(|_| ())
            .expect_err(spec)
            .to_string()
    }

    fn fetch(m: &SyntheticModel, name: &str, range: Option<Range<u64>>) -> Vec<u8> {
        let t = m.file.tensor(name).unwrap();
        let bytes = match range {
            None => pollster::block_on(m.fetch(t)),
            Some(r) => pollster::block_on(m.fetch_range(t, r)),
        };
        bytes.unwrap().into_owned()
    }

    #[test]
    fn every_named_shape_is_a_valid_model() {
        for name in synthetic_shape_names() {
            for quant in ["q4_0", "Q4_K"] {
                let m = parse(&format!("{name}:{quant}"));
                let config = ModelConfig::from_gguf(&m.file)
                    .unwrap_or_else(|e| panic!("{name}:{quant}: {e}"));
                check_tensors(&m.file, &config).unwrap_or_else(|e| panic!("{name}:{quant}: {e}"));
                assert!(
                    m.description()
                        .starts_with(&format!("{name} (synthetic, {}: ", quant.to_lowercase())),
                    "{}",
                    m.description()
                );
            }
        }
    }

    #[test]
    fn parameter_counts_match_the_real_models() {
        for (name, real) in [("llama-1b", 1.24e9), ("llama-8b", 8.03e9)] {
            let n = parse(&format!("{name}:q4_0")).n_params() as f64;
            assert!(
                (n / real - 1.0).abs() < 0.02,
                "{name}: {n} parameters, the real model has {real}"
            );
        }
        let m = parse("llama-1b:q4_0");
        assert_eq!(
            m.description(),
            "llama-1b (synthetic, q4_0: 16 layers, 2048 wide, 1.24 B parameters)"
        );
    }

    #[test]
    fn shapes_and_tensors_follow_the_spec() {
        let m = parse("mixtral-8x7b:q8_0");
        assert!(
            m.description().contains("8 experts (2 per token)")
                && m.description().contains("32 layers"),
            "{}",
            m.description()
        );
        assert!(m.file.tensor("output.weight").is_some());
        assert_eq!(
            m.file.tensor("blk.3.ffn_gate_exps.weight").unwrap().dims,
            [4096, 14336, 8]
        );
        // Qwen2 0.5B's 896-wide rows are not whole Q4_K blocks: llama.cpp uses Q5_0 there.
        let m = parse("qwen2-0.5b:q4_k");
        assert_eq!(
            m.file.tensor("blk.0.attn_q.weight").unwrap().ty,
            GgmlType::Q5_0
        );
        assert_eq!(
            m.file.tensor("blk.0.ffn_down.weight").unwrap().ty,
            GgmlType::Q4_K
        );
        assert_eq!(m.file.tensor("blk.0.attn_k.bias").unwrap().dims, [128]);
        assert!(
            m.description()
                .contains("rows of 896 are not whole Q4_K blocks, so those tensors are Q5_0"),
            "{}",
            m.description()
        );
        let mut at = 0;
        for t in &m.file.tensors {
            assert!(
                t.offset >= at && t.offset % 32 == 0,
                "{} at {}",
                t.name,
                t.offset
            );
            at = t.offset + t.n_bytes();
        }
    }

    #[test]
    fn explicit_dimensions_parse() {
        let m = parse("layers=2,embd=256,ff=512,heads=4,kv_heads=2,vocab=1000:q4_0");
        let c = ModelConfig::from_gguf(&m.file).unwrap();
        assert_eq!(
            (
                c.n_layer,
                c.n_embd,
                c.n_ff,
                c.n_head,
                c.n_kv_head,
                c.vocab_size,
                c.head_dim
            ),
            (2, 256, 512, 4, 2, 1000, 64)
        );
        assert!(!c.tied_embeddings && c.experts.is_none());
        let m = parse(
            "layers=1, embd=128, ff=256, heads=2, vocab=500, arch=qwen2, experts=4/2, tied=true, ctx=256:F16",
        );
        let c = ModelConfig::from_gguf(&m.file).unwrap();
        assert_eq!(
            (c.architecture.as_str(), c.n_kv_head, c.n_ctx_train),
            ("qwen2", 2, 256)
        );
        assert!(c.tied_embeddings && c.arch.qkv_bias);
        assert_eq!(c.experts.map(|x| (x.n_expert, x.n_used)), Some((4, 2)));
    }

    #[test]
    fn bad_specs_name_the_problem() {
        let dims = "layers=2,embd=256,ff=512,heads=4,vocab=1000";
        for (spec, expected) in [
            ("llama-1b", "needs a weight type"),
            (
                "llama-9b:q4_0",
                "unknown synthetic model \"llama-9b\" (known: llama-1b, llama-3b",
            ),
            (
                "llama-1b:q9_9",
                "unknown weight type \"q9_9\" for a synthetic model (supported: f32, f16, q4_0",
            ),
            ("llama-1b:iq2_xxs", "unknown weight type \"iq2_xxs\""),
            (&format!("{dims},layers=3:q4_0"), "layers is given twice"),
            (&format!("{dims},depth=3:q4_0"), "unknown key \"depth\""),
            (&format!("{dims},tied:q4_0"), "\"tied\" is not key=value"),
            ("layers=2,embd=256,ff=512,heads=4:q4_0", "vocab= is missing"),
            (
                "layers=two,embd=256,ff=512,heads=4,vocab=1000:q4_0",
                "layers=two is not a whole number",
            ),
            (
                "layers=0,embd=256,ff=512,heads=4,vocab=1000:q4_0",
                "layers=0 is not a whole number",
            ),
            (&format!("{dims},experts=4:q4_0"), "experts=4 is not N/M"),
            (&format!("{dims},experts=4/5:q4_0"), "expert_used_count = 5"),
            (
                &format!("{dims},arch=gemma3:q4_0"),
                "arch=gemma3 is not llama or qwen2",
            ),
            (
                &format!("{dims},tied=yes:q4_0"),
                "tied=yes is not true or false",
            ),
            (&format!("{dims},kv_heads=3:q4_0"), "head_count_kv = 3"),
            (
                "layers=2,embd=240,ff=512,heads=4,vocab=1000:q4_0",
                "multiples of 32",
            ),
        ] {
            let err = error(spec);
            assert!(
                err.contains(expected),
                "{spec}: {err:?} does not contain {expected:?}"
            );
        }
    }

    #[test]
    fn a_range_is_the_same_bytes_as_in_the_whole_tensor() {
        for quant in ["q4_0", "q4_k", "f16"] {
            let m = parse(&format!(
                "layers=1,embd=256,ff=512,heads=4,vocab=32000:{quant}"
            ));
            let t = m.file.tensor("token_embd.weight").unwrap();
            let whole = fetch(&m, &t.name, None);
            assert_eq!(whole.len() as u64, t.n_bytes());
            let row = t.row_bytes();
            // Pieces that start inside generation chunks and cross their boundaries, and
            // the pieces the loader asks for.
            for rows in [0..1, 0..100, 1000..3000, 1801..1999, 31_000..32_000] {
                let r = rows.start * row..rows.end * row;
                assert_eq!(
                    fetch(&m, &t.name, Some(r.clone())),
                    whole[r.start as usize..r.end as usize],
                    "{quant} rows {rows:?}"
                );
            }
            let piece = m.max_piece() / row * row;
            let mut streamed = Vec::new();
            for start in (0..t.n_bytes()).step_by(piece as usize) {
                streamed.extend(fetch(
                    &m,
                    &t.name,
                    Some(start..(start + piece).min(t.n_bytes())),
                ));
            }
            assert!(
                streamed == whole,
                "{quant}: pieces of {piece} bytes differ from the whole tensor"
            );
        }
    }

    #[test]
    fn matrices_decode_to_finite_values_and_norms_are_ones() {
        for quant in [GgmlType::Q4_0, GgmlType::Q4_K] {
            let m = parse(&format!(
                "layers=2,embd=256,ff=512,heads=4,vocab=1000,arch=qwen2:{}",
                quant.name()
            ));
            for name in [
                "blk.1.attn_q.weight",
                "blk.0.ffn_down.weight",
                "token_embd.weight",
            ] {
                let t = m.file.tensor(name).unwrap();
                let values =
                    dequantize(t.ty, &fetch(&m, name, None), t.n_elements() as usize).unwrap();
                assert!(
                    values.iter().all(|v| v.is_finite() && v.abs() < 2.0),
                    "{quant} {name}"
                );
                assert!(values.iter().any(|v| *v != 0.0), "{quant} {name}: all zero");
            }
            let norm = fetch(&m, "blk.0.attn_norm.weight", None);
            assert!(
                bytemuck::cast_slice::<u8, f32>(&norm)
                    .iter()
                    .all(|&v| v == 1.0)
            );
            let bias = fetch(&m, "blk.0.attn_v.bias", None);
            assert!(
                bytemuck::cast_slice::<u8, f32>(&bias)
                    .iter()
                    .all(|v| v.abs() < 0.1 && *v != 0.0)
            );
        }
    }

    #[test]
    fn tensors_and_ranges_it_does_not_have_are_errors() {
        let m = parse("layers=1,embd=256,ff=512,heads=4,vocab=1000:q4_0");
        let mut t = m.file.tensor("blk.0.attn_q.weight").unwrap().clone();
        let n = t.n_bytes();
        let err = pollster::block_on(m.fetch_range(&t, 0..n + 18))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("blk.0.attn_q.weight") && err.contains(&format!("it has {n} bytes")),
            "{err}"
        );
        let err = pollster::block_on(m.fetch_range(&t, 0..7))
            .unwrap_err()
            .to_string();
        assert!(err.contains("blocks of 18"), "{err}");
        t.ty = GgmlType::Q8_0;
        let err = pollster::block_on(m.fetch(&t)).unwrap_err().to_string();
        assert!(err.contains("asked for as Q8_0"), "{err}");
        t.name = "blk.9.attn_q.weight".into();
        let err = pollster::block_on(m.fetch(&t)).unwrap_err().to_string();
        assert!(err.contains("has no tensor blk.9.attn_q.weight"), "{err}");
    }

    #[test]
    fn a_written_file_holds_the_same_tensors_and_a_usable_vocabulary() {
        let m = parse("layers=2,embd=256,ff=512,heads=4,kv_heads=2,vocab=1000:q4_0");
        let bytes = m.to_gguf().unwrap().to_bytes();
        let file = GgufFile::parse(&bytes).unwrap();
        assert_eq!(file.tensors.len(), m.file.tensors.len());
        for t in &m.file.tensors {
            let written = file.tensor(&t.name).unwrap();
            assert_eq!((written.ty, &written.dims), (t.ty, &t.dims), "{}", t.name);
            let range = file.tensor_range(written).unwrap();
            assert_eq!(
                &bytes[range.start as usize..range.end as usize],
                fetch(&m, &t.name, None).as_slice(),
                "{}",
                t.name
            );
        }
        assert_eq!(ModelConfig::from_gguf(&file).unwrap().vocab_size, 1000);
        let tok = crate::tokenizer::Tokenizer::from_gguf(&file.metadata).unwrap();
        assert_eq!(tok.vocab_size(), 1000);
        assert_eq!(tok.bos_id(), Some(1));
        // Text is spelled in byte tokens (ids 3..259).
        let ids = tok.encode("hi", false).unwrap();
        assert!(
            !ids.is_empty() && ids.iter().all(|&id| (3..259).contains(&id)),
            "{ids:?}"
        );

        let tiny = parse("layers=1,embd=64,ff=128,heads=2,vocab=100:f32");
        assert!(
            tiny.to_gguf()
                .unwrap_err()
                .to_string()
                .contains("too small")
        );
    }
}
