//! `wisp info`: the adapters wgpu sees and, with `-m`, what a model file holds and the
//! defaults it runs with (sampling values and system prompt, each with its source).

use std::collections::BTreeMap;
use std::io::Write;

use anyhow::{Context, Result};
use clap::Args;
use serde::Serialize;
use serde_json::{Value, json};
use wisp_core::defaults::ModelDefaults;
use wisp_core::gpu::{AdapterSummary, KvType, list_adapters};
use wisp_core::model::ModelConfig;

use crate::common::{self, Model, ModelArgs};

#[derive(Debug, Args)]
pub struct InfoArgs {
    /// Also describe this model (a GGUF file, a Hugging Face folder or a known model name); nothing is uploaded.
    #[command(flatten)]
    pub model: ModelArgs,

    /// One JSON object: {"adapters": [...], "model": {...}}.
    #[arg(long)]
    pub json: bool,
}

/// Tensors of one GGML type.
#[derive(Debug, Default, Serialize)]
struct TypeTotal {
    count: usize,
    bytes: u64,
}

fn model_info(model: &Model, defaults: &ModelDefaults) -> Value {
    let metadata: BTreeMap<&str, String> = model
        .file
        .metadata
        .iter()
        .map(|(k, v)| (k.as_str(), v.summary()))
        .collect();
    let mut by_type: BTreeMap<&'static str, TypeTotal> = BTreeMap::new();
    for t in &model.file.tensors {
        let total = by_type.entry(t.ty.name()).or_default();
        total.count += 1;
        total.bytes += t.n_bytes();
    }
    // A model Wisp cannot run still has metadata worth showing: the reason goes instead.
    let (config, config_error, kv_cache) = match ModelConfig::from_gguf(&model.file) {
        Ok(c) => (
            serde_json::to_value(&c).unwrap_or(Value::Null),
            Value::Null,
            kv_cache_info(&c),
        ),
        Err(e) => (Value::Null, Value::from(e.to_string()), Value::Null),
    };
    json!({
        "path": model.path.display().to_string(),
        "file_bytes": model.file_bytes(),
        // What runs when no flag is given, each value with its source.
        "defaults": defaults,
        "gguf_version": model.file.version,
        "metadata": metadata,
        "config": config,
        "config_error": config_error,
        "kv_cache": kv_cache,
        "tensors": {
            "count": model.file.tensors.len(),
            "bytes": by_type.values().map(|t| t.bytes).sum::<u64>(),
            "by_type": by_type,
        },
    })
}

/// What the paged KV cache costs for this model, per storage type: bytes per position
/// (keys and values of every layer), per 16-position block, and for the pool that one
/// sequence at the default context (the training context, at most 4096) gets.
fn kv_cache_info(c: &ModelConfig) -> Value {
    let n_ctx = c.n_ctx_train.min(4096);
    let block = 16u32;
    let types: serde_json::Map<String, Value> = [KvType::F32, KvType::F16, KvType::Q8_0]
        .into_iter()
        .map(|kv| {
            let per_position = 2 * c.n_layer as u64 * kv.bytes_per_position(c.kv_dim());
            let info = json!({
                "bytes_per_position": per_position,
                "bytes_per_block": per_position * block as u64,
                "default_pool_bytes": per_position * n_ctx.div_ceil(block) as u64 * block as u64,
            });
            (kv.wgsl().to_string(), info)
        })
        .collect();
    json!({ "block": block, "default_ctx": n_ctx, "default_pool_blocks": n_ctx.div_ceil(block), "types": types })
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

fn print_adapters(out: &mut impl Write, adapters: &[AdapterSummary]) -> std::io::Result<()> {
    if adapters.is_empty() {
        writeln!(
            out,
            "no adapters: wgpu found no Vulkan, Metal or DX12 device"
        )?;
    }
    for a in adapters {
        let c = &a.capabilities;
        writeln!(
            out,
            "[{}] {} ({}, {})",
            a.index, a.name, a.backend, a.device_type
        )?;
        writeln!(out, "    driver: {} {}", a.driver, a.driver_info)?;
        writeln!(
            out,
            "    shader-f16: {}, subgroups: {} (size {}..{}), cpu-like: {}, timestamps: {}",
            c.shader_f16,
            c.subgroups,
            c.subgroup_min_size,
            c.subgroup_max_size,
            c.cpu_like,
            c.timestamp_queries
        )?;
        writeln!(
            out,
            "    max storage binding {}, max buffer {}, workgroup: {} invocations, {} bytes shared",
            mib(c.max_storage_binding),
            mib(c.max_buffer_size),
            c.max_invocations_per_workgroup,
            c.max_workgroup_storage
        )?;
        writeln!(out, "    features: {}", a.features.join(" "))?;
    }
    Ok(())
}

fn print_model(out: &mut impl Write, info: &Value) -> std::io::Result<()> {
    let s = |v: &Value| match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    writeln!(
        out,
        "\nmodel: {} (GGUF v{}, {} bytes)",
        s(&info["path"]),
        info["gguf_version"],
        info["file_bytes"]
    )?;
    writeln!(out, "metadata:")?;
    if let Some(map) = info["metadata"].as_object() {
        for (k, v) in map {
            writeln!(out, "    {k} = {}", s(v))?;
        }
    }
    match info["config"].as_object() {
        Some(config) => {
            writeln!(out, "config:")?;
            for (k, v) in config {
                writeln!(out, "    {k}: {v}")?;
            }
        }
        None => writeln!(
            out,
            "config: not runnable by Wisp: {}",
            s(&info["config_error"])
        )?,
    }
    let kv = &info["kv_cache"];
    if let Some(types) = kv["types"].as_object() {
        writeln!(
            out,
            "KV cache: blocks of {} positions; one sequence at context {} takes {} blocks (blocks in use are reported after each `wisp chat` turn, `wisp generate` run and in their --json)",
            kv["block"], kv["default_ctx"], kv["default_pool_blocks"]
        )?;
        for (ty, v) in types {
            writeln!(
                out,
                "    {ty:<5} {} KiB per position, {} per block, {} for the default context",
                v["bytes_per_position"].as_u64().unwrap_or(0) as f64 / 1024.0,
                mib(v["bytes_per_block"].as_u64().unwrap_or(0)),
                mib(v["default_pool_bytes"].as_u64().unwrap_or(0))
            )?;
        }
    }
    let t = &info["tensors"];
    writeln!(
        out,
        "tensors: {} ({})",
        t["count"],
        mib(t["bytes"].as_u64().unwrap_or(0))
    )?;
    if let Some(map) = t["by_type"].as_object() {
        for (ty, total) in map {
            writeln!(
                out,
                "    {ty:<6} {:>5} tensors, {}",
                total["count"],
                mib(total["bytes"].as_u64().unwrap_or(0))
            )?;
        }
    }
    Ok(())
}

/// The sampling values and the system prompt in effect when no flag is given, and where
/// each one comes from.
fn print_defaults(out: &mut impl Write, defaults: &ModelDefaults) -> std::io::Result<()> {
    match defaults.known_model {
        Some(known) => writeln!(
            out,
            "defaults when no flag is given (recognised as the known model {known}):"
        )?,
        None => writeln!(out, "defaults when no flag is given (not a known model):")?,
    }
    for (name, value, source) in defaults.sampling.rows() {
        writeln!(out, "    {name:<18} {value:<6} {source}")?;
    }
    let system = &defaults.system_prompt;
    let (text, source) = match system.value.as_deref() {
        None => ("none: the chat template decides".to_string(), None),
        Some("") => ("an empty system message".to_string(), Some(system.source)),
        Some(prompt) => (format!("{prompt:?}"), Some(system.source)),
    };
    match source {
        Some(source) => writeln!(out, "    {:<18} {text} ({source})", "system_prompt")?,
        None => writeln!(out, "    {:<18} {text}", "system_prompt")?,
    }
    for warning in &defaults.warnings {
        writeln!(out, "    warning: {warning}")?;
    }
    Ok(())
}

pub fn run(args: InfoArgs) -> Result<()> {
    let adapters = pollster::block_on(list_adapters());
    let model = match &args.model.model {
        Some(_) => {
            let model = Model::open(&args.model)?;
            let defaults = common::model_defaults(&model);
            Some((model_info(&model, &defaults), defaults))
        }
        None => None,
    };
    let mut out = std::io::stdout().lock();
    if args.json {
        let model = model.map(|(info, _)| info);
        writeln!(out, "{}", json!({ "adapters": adapters, "model": model }))
            .context("writing to stdout")?;
        return Ok(());
    }
    print_adapters(&mut out, &adapters).context("writing to stdout")?;
    if let Some((info, defaults)) = &model {
        print_model(&mut out, info)
            .and_then(|()| print_defaults(&mut out, defaults))
            .context("writing to stdout")?;
    }
    Ok(())
}
