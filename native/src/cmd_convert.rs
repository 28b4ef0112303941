//! `wisp convert`: a GGUF model to a Hugging Face folder (config.json, safetensors,
//! tokenizer.json), or a Hugging Face folder to a GGUF file, quantized or not.
//!
//! The output is written under a temporary name beside OUT and renamed when complete, so
//! a failed or interrupted conversion never leaves a half-written model at OUT.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use safetensors::tensor::TensorView;
use serde_json::json;
use wisp_core::gguf::GgufWriter;
use wisp_core::hf::export::{self, ExportTensor};
use wisp_core::hf::{INDEX_FILE, safetensors_dtype};
use wisp_core::quant::GgmlType;
use wisp_core::tokenizer::gguf_metadata_from_json;

use crate::common::{Model, parse_type};

#[derive(Debug, Args)]
pub struct ConvertArgs {
    /// The model to convert: a GGUF file (or a known model name), or a Hugging Face folder.
    #[arg(value_name = "IN")]
    pub input: String,

    /// Where to write it: a folder (--to hf) or a file (--to gguf). It must not exist.
    #[arg(value_name = "OUT")]
    pub output: PathBuf,

    /// The output format: hf or gguf. Default: the one IN is not.
    #[arg(long, value_name = "hf|gguf")]
    pub to: Option<String>,

    /// The matrices' type: f32, f16 or bf16 for a folder (default f32); those or q8_0,
    /// q4_0, q4_k for a GGUF file (default q8_0). Norms and biases stay f32 in GGUF.
    #[arg(long = "type", value_name = "TYPE")]
    pub ty: Option<String>,

    /// The largest safetensors file of a folder, e.g. 500M or 2G (decimal units, as
    /// Hugging Face's max_shard_size). Tensors are never split.
    #[arg(long, value_name = "SIZE", default_value = "5G")]
    pub shard_size: String,
}

const HF_TYPES: [GgmlType; 3] = [GgmlType::F32, GgmlType::F16, GgmlType::BF16];
const GGUF_TYPES: [GgmlType; 6] = [
    GgmlType::F32,
    GgmlType::F16,
    GgmlType::BF16,
    GgmlType::Q8_0,
    GgmlType::Q4_0,
    GgmlType::Q4_K,
];

pub fn run(args: ConvertArgs) -> Result<()> {
    if args.output.exists() {
        bail!(
            "{} already exists; choose a new path",
            args.output.display()
        );
    }
    let input_is_folder = Path::new(&args.input).is_dir();
    let to_hf = match args.to.as_deref() {
        None => !input_is_folder,
        Some("hf") => true,
        Some("gguf") => false,
        Some(other) => bail!("--to {other:?}: expected hf or gguf"),
    };
    match (to_hf, input_is_folder) {
        (true, true) => bail!(
            "{} is already a Hugging Face folder (--to hf converts GGUF files)",
            args.input
        ),
        (false, false) => bail!(
            "{} is not a Hugging Face folder (--to gguf converts folders)",
            args.input
        ),
        _ => {}
    }
    let (allowed, default) = if to_hf {
        (&HF_TYPES[..], GgmlType::F32)
    } else {
        (&GGUF_TYPES[..], GgmlType::Q8_0)
    };
    let ty = args
        .ty
        .as_deref()
        .map(|t| parse_type(t, allowed))
        .transpose()
        .context("--type")?
        .unwrap_or(default);

    let partial = partial_path(&args.output)?;
    let result = if to_hf {
        let model = Model::open_with(Some(&args.input), None)?;
        let shard_size = parse_size(&args.shard_size).context("--shard-size")?;
        write_hf(&model, ty, shard_size, &partial)
    } else {
        let model = Model::open_with(Some(&args.input), Some(ty))?;
        write_gguf(&model, &partial)
    };
    if let Err(e) = result {
        // What was written is useless; a failure to remove it is not worth hiding `e`.
        let _ = if partial.is_dir() {
            fs::remove_dir_all(&partial)
        } else {
            fs::remove_file(&partial)
        };
        return Err(e);
    }
    fs::rename(&partial, &args.output).with_context(|| {
        format!(
            "renaming {} to {}",
            partial.display(),
            args.output.display()
        )
    })?;
    eprintln!("wrote {}", args.output.display());
    Ok(())
}

/// A hidden name beside `out`, unique to this process.
fn partial_path(out: &Path) -> Result<PathBuf> {
    let name = out
        .file_name()
        .with_context(|| format!("{} has no file name", out.display()))?;
    let mut partial = std::ffi::OsString::from(".");
    partial.push(name);
    partial.push(format!(".partial-{}", std::process::id()));
    Ok(out.with_file_name(partial))
}

/// "5G", "500M", "64K", "1000": bytes, decimal units.
fn parse_size(text: &str) -> Result<usize> {
    let t = text.trim().trim_end_matches(['B', 'b']);
    let (digits, unit) = match t.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => (&t[..i], c.to_ascii_uppercase()),
        _ => (t, ' '),
    };
    let scale: usize = match unit {
        ' ' => 1,
        'K' => 1_000,
        'M' => 1_000_000,
        'G' => 1_000_000_000,
        _ => bail!("{text:?}: the unit must be K, M or G"),
    };
    let n: usize = digits
        .trim()
        .parse()
        .with_context(|| format!("{text:?} is not a size"))?;
    if n == 0 {
        bail!("{text:?}: the size must be positive");
    }
    Ok(n.saturating_mul(scale))
}

fn progress(n: usize, what: &str) -> ProgressBar {
    let bar = ProgressBar::new(n as u64).with_message(what.to_string());
    if let Ok(style) = ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} tensors") {
        bar.set_style(style.progress_chars("=> "));
    }
    bar
}

/// GGUF → folder: config.json, the tokenizer's files, and the tensors in safetensors
/// files of at most `shard_size` bytes (with the index when there are several).
fn write_hf(model: &Model, ty: GgmlType, shard_size: usize, dir: &Path) -> Result<()> {
    let (config, tensors) = export::plan(&model.file, ty)
        .with_context(|| format!("converting {}", model.path.display()))?;
    let (tokenizer_json, tokenizer_config) = model.tokenizer()?.to_hf_json()?;
    fs::create_dir(dir).with_context(|| format!("creating {}", dir.display()))?;
    let write = |name: &str, text: &str| {
        fs::write(dir.join(name), text)
            .with_context(|| format!("writing {}", dir.join(name).display()))
    };
    let dtype = safetensors_dtype(ty).context("a Hugging Face type")?;
    write(
        "config.json",
        &serde_json::to_string_pretty(&config.to_json(export::torch_dtype(dtype)))?,
    )?;
    write(
        "generation_config.json",
        &serde_json::to_string_pretty(&json!({
            "bos_token_id": config.bos_token_id,
            "eos_token_id": config.eos_token_id,
        }))?,
    )?;
    write("tokenizer.json", &tokenizer_json)?;
    write("tokenizer_config.json", &tokenizer_config)?;

    let sizes: Vec<usize> = tensors.iter().map(ExportTensor::n_bytes).collect();
    let files = export::shards(&sizes, shard_size);
    let source = model.tensor_source();
    let bar = progress(tensors.len(), "writing safetensors");
    // `transformers` refuses safetensors files without this.
    let file_metadata = Some(HashMap::from([("format".to_string(), "pt".to_string())]));
    for (file, members) in &files {
        // One file's tensors are converted at a time: memory holds at most one shard.
        let mut data = Vec::with_capacity(members.len());
        for &i in members {
            let t = &tensors[i];
            data.push((
                t,
                t.data(source.as_ref())
                    .with_context(|| format!("converting {}", t.hf_name))?,
            ));
            bar.inc(1);
        }
        let views = data
            .iter()
            .map(|(t, bytes)| {
                Ok((
                    t.hf_name.clone(),
                    TensorView::new(t.dtype, t.shape.clone(), bytes)?,
                ))
            })
            .collect::<Result<Vec<_>, safetensors::SafeTensorError>>()
            .with_context(|| format!("preparing {file}"))?;
        let path = dir.join(file);
        safetensors::serialize_to_file(views, file_metadata.clone(), &path)
            .with_context(|| format!("writing {}", path.display()))?;
        // The crate writes through a private temporary file (mode 0600 on Unix); the model
        // should be as readable as the JSON files beside it.
        fs::set_permissions(&path, fs::metadata(dir.join("config.json"))?.permissions())
            .with_context(|| format!("setting the permissions of {}", path.display()))?;
    }
    bar.finish_and_clear();
    if files.len() > 1 {
        write(
            INDEX_FILE,
            &serde_json::to_string_pretty(&export::index_json(&tensors, &files))?,
        )?;
    }
    Ok(())
}

/// Folder → GGUF: the model's metadata and tokenizer keys, and its tensors converted to
/// the types `Model::open_with` planned.
fn write_gguf(model: &Model, path: &Path) -> Result<()> {
    let folder = model.hf_folder().context("a Hugging Face folder")?;
    let mut w = GgufWriter::new();
    for (key, value) in model.file.metadata.iter() {
        w.metadata(key.clone(), value.clone())?;
    }
    let (tokenizer_json, tokenizer_config) = folder.tokenizer_files()?;
    let keys = gguf_metadata_from_json(
        &tokenizer_json,
        tokenizer_config.as_deref(),
        Some(folder.model.config.vocab_size),
    )
    .with_context(|| format!("converting the tokenizer in {}", folder.dir.display()))?;
    for (key, value) in keys {
        w.metadata(key, value)?;
    }
    let tensors = folder.tensors();
    let bar = progress(model.file.tensors.len(), "converting");
    for t in &model.file.tensors {
        let bytes = tensors.convert(&t.name)?;
        w.tensor(t.name.clone(), &t.dims, t.ty, bytes.into_owned())?;
        bar.inc(1);
    }
    bar.finish_and_clear();
    let file = fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
    let mut out = std::io::BufWriter::new(file);
    w.write_to(&mut out)
        .with_context(|| format!("writing {}", path.display()))?;
    std::io::Write::flush(&mut out).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_decimal_units() {
        assert_eq!(parse_size("5G").unwrap(), 5_000_000_000);
        assert_eq!(parse_size("500MB").unwrap(), 500_000_000);
        assert_eq!(parse_size("64k").unwrap(), 64_000);
        assert_eq!(parse_size("1000").unwrap(), 1000);
        assert!(parse_size("0").is_err());
        assert!(parse_size("5X").is_err());
        assert!(parse_size("lots").is_err());
    }
}
