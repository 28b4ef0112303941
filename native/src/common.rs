//! What the model-running subcommands share: opening the model (file or folder), the device and the
//! engine; the sampling flags; Ctrl-C handling.

use std::fs::File;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use clap::Args;
use memmap2::Mmap;
use wisp_core::defaults::{ModelDefaults, SamplingDefaults, SamplingOverrides};
use wisp_core::engine::{Engine, EngineOptions};
use wisp_core::gguf::GgufFile;
use wisp_core::gpu::{AdapterChoice, DeviceOptions, Gpu, KvType};
use wisp_core::hf::LoadOptions;
use wisp_core::model::{FileBytes, ModelConfig, TensorBytes, TensorSource};
use wisp_core::quant::GgmlType;
use wisp_core::sampling::SamplerConfig;
use wisp_core::tokenizer::Tokenizer;

use crate::hf_folder::HfFolder;
use crate::settings::EnvSettings;
use crate::{model_cache, pipeline_store};

/// `-m MODEL` and `--quantize`.
#[derive(Debug, Args)]
pub struct ModelArgs {
    /// A GGUF file, a Hugging Face model folder (config.json, *.safetensors,
    /// tokenizer.json), or the name of a known model (fetched once into the cache; see
    /// `wisp fetch --list`). Default: the default model.
    #[arg(short = 'm', long = "model", value_name = "MODEL")]
    pub model: Option<String>,

    /// Quantize the matrices of a Hugging Face folder while loading it (norms stay f32).
    #[arg(long, value_name = "q8_0|q4_0|q4_k")]
    pub quantize: Option<String>,
}

/// A weight type named on the command line (`q8_0`, `f16`, …), one of `allowed`.
pub fn parse_type(name: &str, allowed: &[GgmlType]) -> Result<GgmlType> {
    allowed
        .iter()
        .copied()
        .find(|t| t.name().eq_ignore_ascii_case(name))
        .ok_or_else(|| {
            let names: Vec<String> = allowed.iter().map(|t| t.name().to_lowercase()).collect();
            anyhow::anyhow!(
                "unknown type {name:?}: expected one of {}",
                names.join(", ")
            )
        })
}

/// `--adapter` and `--ctx`.
#[derive(Clone, Debug, Args)]
pub struct DeviceArgs {
    /// The adapter, by index (as `wisp info` lists them) or by part of its name.
    /// Default: a discrete GPU, else an integrated one, …, else a CPU adapter.
    #[arg(long, value_name = "INDEX|NAME")]
    pub adapter: Option<String>,

    /// Context length in tokens (0: the model's training context, at most 4096).
    #[arg(long = "ctx", value_name = "N", default_value_t = 0)]
    pub ctx: u32,

    /// Storage of the KV cache: f16 (default where the adapter has shader-f16), f32, or
    /// q8_0 (8-bit, about half of f16).
    #[arg(long = "kv-type", value_name = "f16|f32|q8_0")]
    pub kv_type: Option<String>,

    /// Positions the paged KV pool holds for all sequences together (0: one context
    /// per parallel sequence).
    #[arg(long = "kv-pool", value_name = "TOKENS", default_value_t = 0)]
    pub kv_pool: u32,

    /// Positions per block of the KV pool (16 or 32).
    #[arg(long = "kv-block", value_name = "N", default_value_t = 16)]
    pub kv_block: u32,

    /// The most tokens one engine step processes: prompts longer than that go in chunks,
    /// between which running generations keep decoding. Default: the engine's.
    #[arg(long = "batch-tokens", value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub batch_tokens: Option<u32>,

    /// The depth of the drafting pass to record at load: commands with `--self-draft`
    /// set it from that flag (`SpeculationArgs::self_draft_layers`).
    #[arg(skip)]
    pub self_draft_layers: Option<u32>,
}

/// The sampler's flags. A flag left out takes the model's recommended value (`wisp info -m
/// MODEL` lists them and where each comes from), else llama.cpp's default, which its help
/// gives (a test checks those numbers against [`SamplerConfig::default`]).
#[derive(Debug, Args)]
pub struct SamplingArgs {
    /// Temperature; 0 is greedy (always the most likely token). Default: the model's, else 0.8.
    #[arg(long, value_name = "T", allow_negative_numbers = true)]
    pub temp: Option<f32>,

    /// Keep the K most likely tokens (0: off). Default: the model's, else 40.
    #[arg(long, value_name = "K")]
    pub top_k: Option<usize>,

    /// Nucleus sampling: keep the most likely tokens up to this probability mass (1: off).
    /// Default: the model's, else 0.95.
    #[arg(long, value_name = "P", allow_negative_numbers = true)]
    pub top_p: Option<f32>,

    /// Keep tokens at least this fraction as likely as the best one (0: off). Default: the
    /// model's, else 0.05.
    #[arg(long, value_name = "M", allow_negative_numbers = true)]
    pub min_p: Option<f32>,

    /// Divide the (positive) logits of recent tokens by R (1: off). Default: the model's,
    /// else 1.
    #[arg(long, value_name = "R", allow_negative_numbers = true)]
    pub repeat_penalty: Option<f32>,

    /// How many recent tokens the penalties look at (0: off). Default: the model's, else 64.
    #[arg(long, value_name = "N")]
    pub repeat_last_n: Option<usize>,

    /// Subtract X from the logit of every recent token. Default: 0.
    #[arg(long, value_name = "X", allow_negative_numbers = true)]
    pub presence_penalty: Option<f32>,

    /// Subtract Y per occurrence from the logits of recent tokens. Default: 0.
    #[arg(long, value_name = "Y", allow_negative_numbers = true)]
    pub frequency_penalty: Option<f32>,

    /// RNG seed; the same seed gives the same output. Default: random (printed at the end).
    #[arg(long, value_name = "S")]
    pub seed: Option<u64>,

    /// Stop before this text (repeat for several).
    #[arg(long = "stop", value_name = "STR")]
    pub stop: Vec<String>,
}

impl SamplingArgs {
    /// The flags given, checked on their own: a bad value is reported before any model is
    /// opened (or fetched).
    pub fn overrides(&self) -> Result<SamplingOverrides> {
        let overrides = SamplingOverrides {
            temperature: self.temp,
            top_k: self.top_k,
            top_p: self.top_p,
            min_p: self.min_p,
            repeat_penalty: self.repeat_penalty,
            presence_penalty: self.presence_penalty,
            frequency_penalty: self.frequency_penalty,
            penalty_last_n: self.repeat_last_n,
            seed: self.seed,
        };
        overrides.validate()?;
        Ok(overrides)
    }
}

/// The values in effect for a model with `defaults` given the flags' `overrides` (each with
/// its source), and the sampler they make, with the seed filled in (a fresh one if none).
pub fn resolve_sampling(
    overrides: &SamplingOverrides,
    defaults: &ModelDefaults,
) -> Result<(SamplingDefaults, SamplerConfig)> {
    let seed = overrides.seed.unwrap_or_else(random_seed);
    Ok(defaults.sampler(overrides, seed)?)
}

/// The model's defaults (its GGUF keys, else Wisp's table of known models, else generic),
/// with a warning on stderr for each unusable `general.sampling.*` key.
pub fn model_defaults(model: &Model) -> ModelDefaults {
    let defaults = ModelDefaults::for_model(&model.file.metadata);
    for warning in &defaults.warnings {
        eprintln!("warning: {}: {warning}", model.path.display());
    }
    defaults
}

/// One line for stderr: the sampling values in effect and whose they are.
pub fn describe_sampling(sampling: &SamplingDefaults, defaults: &ModelDefaults) -> String {
    let values: Vec<String> = sampling
        .rows()
        .into_iter()
        .filter(|(name, _, _)| {
            !matches!(
                *name,
                "presence_penalty" | "frequency_penalty" | "penalty_last_n"
            )
        })
        .map(|(name, value, _)| format!("{name} {value}"))
        .collect();
    let whose = match defaults.known_model {
        Some(known) => format!("unset values: the recommended ones for {known}"),
        None => "unset values: the file's or llama.cpp's".to_string(),
    };
    format!(
        "sampling: {} ({whose}; `wisp info -m MODEL` says where each comes from)",
        values.join(", ")
    )
}

/// A seed from the clock and the process id (no need for cryptographic quality: it only
/// has to differ between runs), mixed with SplitMix64 so nearby times differ in every bit.
pub fn random_seed() -> u64 {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let mut z = nanos ^ (u64::from(std::process::id()) << 32);
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// `-n N`: -1 (or any negative) means no limit.
pub fn max_tokens(n: i64) -> usize {
    usize::try_from(n).unwrap_or(usize::MAX)
}

/// A model: a memory-mapped GGUF file, or a Hugging Face folder seen as one.
pub struct Model {
    pub path: PathBuf,
    /// The GGUF metadata and tensor infos (for a folder, converted from its config and
    /// safetensors headers).
    pub file: GgufFile,
    data: ModelData,
}

enum ModelData {
    Gguf(Mmap),
    // Boxed: a folder carries its parsed model, far larger than a map.
    Hf(Box<HfFolder>),
}

impl Model {
    /// Opens `-m` (a path, or a known name fetched into the cache; default: the default
    /// model) and parses its header, quantizing a folder's matrices with `--quantize`.
    /// Truncated or corrupt files fail here, with the reason.
    pub fn open(args: &ModelArgs) -> Result<Model> {
        let quantize = args
            .quantize
            .as_deref()
            .map(|q| parse_type(q, &[GgmlType::Q8_0, GgmlType::Q4_0, GgmlType::Q4_K]))
            .transpose()
            .context("--quantize")?;
        Model::open_with(args.model.as_deref(), quantize)
    }

    /// As [`Model::open`], with the quantization of a folder's matrices given directly.
    pub fn open_with(spec: Option<&str>, quantize: Option<GgmlType>) -> Result<Model> {
        let path = model_cache::ensure_model(spec.unwrap_or(model_cache::DEFAULT_MODEL))?;
        if path.is_dir() {
            let folder = HfFolder::open(
                &path,
                &LoadOptions {
                    matrix_type: quantize,
                },
            )?;
            let file = folder.model.file.clone();
            return Ok(Model {
                path,
                file,
                data: ModelData::Hf(Box::new(folder)),
            });
        }
        if quantize.is_some() {
            anyhow::bail!(
                "--quantize applies to Hugging Face folders; {} is a GGUF file (see `wisp convert`)",
                path.display()
            );
        }
        let handle = File::open(&path).with_context(|| format!("opening {}", path.display()))?;
        // SAFETY: the map is read-only; if another process truncates the file while it is
        // mapped, reads can fault. That is the usual contract of memory-mapped model files
        // (llama.cpp maps them too), and copying ~100 MB–GBs into memory is the alternative.
        let mmap =
            unsafe { Mmap::map(&handle) }.with_context(|| format!("mapping {}", path.display()))?;
        let file = GgufFile::parse(&mmap)
            .with_context(|| format!("reading the model {}", path.display()))?;
        Ok(Model {
            path,
            file,
            data: ModelData::Gguf(mmap),
        })
    }

    /// Bytes of the model's file(s).
    pub fn file_bytes(&self) -> u64 {
        match &self.data {
            ModelData::Gguf(mmap) => mmap.len() as u64,
            ModelData::Hf(folder) => folder.file_bytes(),
        }
    }

    /// The Hugging Face folder, when the model is one.
    pub fn hf_folder(&self) -> Option<&HfFolder> {
        match &self.data {
            ModelData::Hf(folder) => Some(folder),
            ModelData::Gguf(_) => None,
        }
    }

    /// Where the engine reads the tensors' bytes.
    pub fn tensor_source(&self) -> Box<dyn TensorBytes + '_> {
        match &self.data {
            ModelData::Gguf(mmap) => Box::new(FileBytes {
                file: &self.file,
                bytes: mmap,
            }),
            ModelData::Hf(folder) => Box::new(folder.tensors()),
        }
    }

    pub fn tokenizer(&self) -> Result<Tokenizer> {
        match &self.data {
            ModelData::Gguf(_) => Tokenizer::from_gguf(&self.file.metadata)
                .with_context(|| format!("reading the tokenizer of {}", self.path.display())),
            ModelData::Hf(folder) => folder.tokenizer(),
        }
    }
}

/// Opens the adapter `--adapter` names (or the best one).
pub fn open_gpu(args: &DeviceArgs) -> Result<Arc<Gpu>> {
    let adapter = match &args.adapter {
        None => AdapterChoice::Auto,
        Some(s) => {
            let Ok(choice) = s.parse::<AdapterChoice>();
            choice
        }
    };
    let env = EnvSettings::from_env()?;
    let options = DeviceOptions {
        adapter,
        loop_bounding: env.loop_bounding,
        ..Default::default()
    };
    let gpu = pollster::block_on(Gpu::new(&options)).context("opening the device")?;
    pipeline_store::attach(&gpu, env.pipeline_cache);
    Ok(Arc::new(gpu))
}

/// Uploads the model, with kernel variants from `WISP_ACT` / `WISP_REDUCE` / `WISP_TIER`
/// and tuning overrides from `WISP_TUNE` when set, and says on stderr which adapter runs
/// it and why. `parallel` sequences may run at once (the KV pool and the step limits are
/// sized for them).
pub fn load_engine(
    model: &Model,
    gpu: Arc<Gpu>,
    device: &DeviceArgs,
    parallel: u32,
) -> Result<Engine> {
    let source = model.tensor_source();
    load_engine_from(
        &model.file,
        &source,
        &model.path.display().to_string(),
        gpu,
        device,
        parallel,
    )
}

/// [`load_engine`] for any model: a header and a source of its tensors (`what` names it
/// in errors).
pub fn load_engine_from(
    file: &GgufFile,
    source: &dyn TensorSource,
    what: &str,
    gpu: Arc<Gpu>,
    device: &DeviceArgs,
    parallel: u32,
) -> Result<Engine> {
    let env = EnvSettings::from_env()?;
    let kv_type = device
        .kv_type
        .as_deref()
        .map(str::parse::<KvType>)
        .transpose()
        .context("--kv-type")?;
    let n_ctx = match device.ctx {
        0 => ModelConfig::from_gguf(file)
            .map(|c| c.n_ctx_train.min(4096))
            .unwrap_or(4096),
        n => n,
    };
    let defaults = EngineOptions::default();
    let options = EngineOptions {
        n_ctx,
        kv_type,
        kv_pool_tokens: if device.kv_pool > 0 {
            device.kv_pool
        } else {
            n_ctx.saturating_mul(parallel.max(1))
        },
        kv_block: device.kv_block,
        max_rows: defaults.max_rows.max(parallel),
        max_entries: defaults.max_entries.max(parallel),
        variant: env.variant,
        tuning: env.tuning,
        max_batch: device.batch_tokens.unwrap_or(defaults.max_batch),
        self_draft_layers: device.self_draft_layers,
    };
    let engine = pollster::block_on(Engine::load(gpu, file, source, &options))
        .with_context(|| format!("loading {what} onto the device"))?;
    let kv = engine.kv_stats();
    eprintln!(
        "adapter: {} — {}; kernels {}; KV cache {:?}, {} blocks of {} positions ({:.1} MiB)",
        engine.gpu.adapter_name(),
        engine.gpu.choice_reason,
        engine.variant,
        kv.kv_type,
        kv.blocks,
        kv.block_size,
        kv.pool_bytes as f64 / 1048576.0
    );
    // Every pipeline the engine uses is built by now: keep them for the next run.
    pipeline_store::save(&engine.gpu, env.pipeline_cache);
    Ok(engine)
}

/// Opens the model's device and engine in one go.
pub fn engine_for(model: &Model, device: &DeviceArgs) -> Result<Engine> {
    load_engine(model, open_gpu(device)?, device, 1)
}

/// Ctrl-C: while a reply streams (`busy`), the first press sets `cancel` and the reply
/// stops; a second press, or one while idle (at the chat prompt), ends the program.
pub struct Interrupt {
    pub cancel: Arc<AtomicBool>,
    pub busy: Arc<AtomicBool>,
}

impl Interrupt {
    pub fn install() -> Interrupt {
        let cancel = Arc::new(AtomicBool::new(false));
        let busy = Arc::new(AtomicBool::new(false));
        let (c, b) = (cancel.clone(), busy.clone());
        let installed = ctrlc::set_handler(move || {
            if b.load(Ordering::SeqCst) && !c.swap(true, Ordering::SeqCst) {
                return;
            }
            eprintln!();
            std::process::exit(130);
        });
        if let Err(e) = installed {
            // Without a handler Ctrl-C still ends the program; only the nicer stop is lost.
            tracing::warn!("cannot handle Ctrl-C: {e}");
        }
        Interrupt { cancel, busy }
    }

    /// Marks the start of a reply: Ctrl-C now stops it.
    pub fn begin(&self) {
        self.cancel.store(false, Ordering::SeqCst);
        self.busy.store(true, Ordering::SeqCst);
    }

    /// Marks its end: Ctrl-C ends the program again.
    pub fn end(&self) {
        self.busy.store(false, Ordering::SeqCst);
        self.cancel.store(false, Ordering::SeqCst);
    }
}

/// Tokens per second, 0 when nothing was timed.
pub fn rate(tokens: usize, seconds: f64) -> f64 {
    if tokens == 0 || seconds <= 0.0 {
        0.0
    } else {
        tokens as f64 / seconds
    }
}

#[cfg(test)]
mod tests {
    use clap::{CommandFactory, Parser};

    use super::*;

    #[derive(Debug, Parser)]
    struct Flags {
        #[command(flatten)]
        sampling: SamplingArgs,
    }

    /// The help states llama.cpp's defaults as literals; they must stay the ones in effect.
    #[test]
    fn the_help_gives_the_generic_defaults() {
        let d = SamplerConfig::default();
        let command = Flags::command();
        let help = |id: &str| {
            let arg = command
                .get_arguments()
                .find(|a| a.get_id() == id)
                .unwrap_or_else(|| panic!("no flag {id}"));
            arg.get_help().map(ToString::to_string).unwrap_or_default()
        };
        for (id, generic) in [
            ("temp", d.temperature.to_string()),
            ("top_k", d.top_k.to_string()),
            ("top_p", d.top_p.to_string()),
            ("min_p", d.min_p.to_string()),
            ("repeat_penalty", d.repeat_penalty.to_string()),
            ("repeat_last_n", d.penalty_last_n.to_string()),
            ("presence_penalty", d.presence_penalty.to_string()),
            ("frequency_penalty", d.frequency_penalty.to_string()),
        ] {
            let text = help(id);
            // clap drops the final period: the help ends with the number.
            assert!(
                text.ends_with(&format!(" {generic}")),
                "--{id}: the help {text:?} should end with the default {generic}"
            );
        }
    }

    #[test]
    fn flags_left_out_take_the_model_defaults_and_given_ones_win() {
        let flags = Flags::parse_from(["wisp", "--temp", "1.5", "--seed", "9"]);
        let mut defaults = ModelDefaults::generic();
        defaults.sampling.top_p =
            wisp_core::defaults::Sourced::new(0.9, wisp_core::defaults::Source::Generic);
        let overrides = flags.sampling.overrides().unwrap();
        let (sampling, config) = resolve_sampling(&overrides, &defaults).unwrap();
        assert_eq!(
            (config.temperature, config.top_p, config.seed),
            (1.5, 0.9, 9)
        );
        assert_eq!(
            sampling.temperature.source,
            wisp_core::defaults::Source::Explicit
        );
        let bad = Flags::parse_from(["wisp", "--top-p", "0"]);
        assert!(
            bad.sampling
                .overrides()
                .unwrap_err()
                .to_string()
                .contains("top_p")
        );
    }
}
