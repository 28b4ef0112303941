//! The bench's results as markdown (llama-bench's table plus bandwidth columns and each
//! test's kernel breakdown), JSON (everything, the schema `wisp bench compare` reads) or
//! CSV (one row per test).

use std::io::Write;

use anyhow::Result;
use serde::Serialize;
use wisp_core::engine::Engine;
use wisp_core::gguf::GgufFile;
use wisp_core::kernels::Bandwidth;
use wisp_core::model::{ModelCost, SyntheticModel};

use super::Format;
use super::measure::TestResult;

/// Prints one report (JSON: an object) or, with `per_adapter`, one per adapter (JSON:
/// an array; CSV: one header; markdown: one table each).
pub fn print(reports: &[BenchReport], format: Format, per_adapter: bool) -> Result<()> {
    let mut out = std::io::stdout().lock();
    match (format, reports) {
        (Format::Json, [one]) if !per_adapter => {
            writeln!(out, "{}", serde_json::to_string_pretty(one)?)?
        }
        (Format::Json, all) => writeln!(out, "{}", serde_json::to_string_pretty(all)?)?,
        (Format::Csv, all) => {
            writeln!(out, "{CSV_HEADER}")?;
            for r in all {
                r.csv(&mut out)?;
            }
        }
        (Format::Md, all) => {
            for (i, r) in all.iter().enumerate() {
                if i > 0 {
                    writeln!(out)?;
                }
                r.markdown(&mut out)?;
            }
        }
    }
    Ok(())
}

const CSV_HEADER: &str = "model,params,tensor_bytes,adapter,backend,variant,kv_type,test,kind,tokens,depth,batch,tok_s,tok_s_std,bytes_per_token,gb_s,percent_of_bandwidth,gflop_s,bandwidth_gb_s";

/// Bumped when a field changes meaning or goes away.
pub const SCHEMA_VERSION: u32 = 1;

#[derive(Debug, Serialize)]
pub struct ModelInfo {
    pub name: String,
    /// The file, or `synthetic:SPEC`.
    pub source: String,
    pub architecture: String,
    /// Bytes of tensor data (what the GPU holds, before the KV cache).
    pub tensor_bytes: u64,
    pub file_bytes: Option<u64>,
    pub params: u64,
}

impl ModelInfo {
    fn tensors(file: &GgufFile) -> (u64, u64) {
        file.tensors
            .iter()
            .fold((0, 0), |(b, p), t| (b + t.n_bytes(), p + t.n_elements()))
    }

    pub fn of_file(path: &str, file: &GgufFile, file_bytes: u64) -> ModelInfo {
        let (tensor_bytes, params) = Self::tensors(file);
        let name = file
            .metadata
            .get("general.name")
            .and_then(|v| v.as_str())
            .map(str::to_string);
        ModelInfo {
            name: name.unwrap_or_else(|| path.rsplit('/').next().unwrap_or(path).to_string()),
            source: path.to_string(),
            architecture: file.architecture().unwrap_or("?").to_string(),
            tensor_bytes,
            file_bytes: Some(file_bytes),
            params,
        }
    }

    pub fn of_synthetic(s: &SyntheticModel) -> ModelInfo {
        let (tensor_bytes, params) = Self::tensors(&s.file);
        ModelInfo {
            name: s.description(),
            source: format!("synthetic:{}", s.name),
            architecture: s.file.architecture().unwrap_or("?").to_string(),
            tensor_bytes,
            file_bytes: None,
            params,
        }
    }
}

#[derive(Debug, Serialize)]
pub struct LoadInfo {
    /// Upload and pipeline creation, the first-run cost.
    pub seconds: f64,
    /// Of which creating (compiling) the pipelines.
    pub pipeline_compile_seconds: f64,
}

#[derive(Debug, Serialize)]
pub struct AdapterInfo {
    pub name: String,
    pub backend: String,
    pub driver: String,
    pub variant: String,
    pub kv_type: String,
    pub timestamp_queries: bool,
}

#[derive(Debug, Serialize)]
pub struct BenchReport {
    pub schema_version: u32,
    pub wisp_version: &'static str,
    pub model: ModelInfo,
    pub adapter: AdapterInfo,
    pub load: LoadInfo,
    pub bandwidth: Bandwidth,
    pub cost: ModelCost,
    pub tests: Vec<TestResult>,
}

impl BenchReport {
    pub fn new(
        model: ModelInfo,
        engine: &Engine,
        load: LoadInfo,
        bandwidth: Bandwidth,
        cost: ModelCost,
        tests: Vec<TestResult>,
    ) -> BenchReport {
        let gpu = &engine.gpu;
        BenchReport {
            schema_version: SCHEMA_VERSION,
            wisp_version: env!("CARGO_PKG_VERSION"),
            model,
            adapter: AdapterInfo {
                name: gpu.info.name.clone(),
                backend: format!("{:?}", gpu.info.backend),
                driver: format!("{} {}", gpu.info.driver, gpu.info.driver_info)
                    .trim()
                    .to_string(),
                variant: engine.variant.to_string(),
                kv_type: format!("{:?}", engine.kv_stats().kv_type).to_lowercase(),
                timestamp_queries: gpu.caps.timestamp_queries,
            },
            load,
            bandwidth,
            cost,
            tests,
        }
    }

    fn csv(&self, out: &mut impl Write) -> Result<()> {
        let opt = |v: Option<f64>| v.map(|x| format!("{x:.4}")).unwrap_or_default();
        let quote = |s: &str| format!("\"{}\"", s.replace('"', "\"\""));
        for t in &self.tests {
            writeln!(
                out,
                "{},{},{},{},{},{},{},{},{},{},{},{},{:.4},{:.4},{},{},{},{},{:.4}",
                quote(&self.model.name),
                self.model.params,
                self.model.tensor_bytes,
                quote(&self.adapter.name),
                self.adapter.backend,
                self.adapter.variant,
                self.adapter.kv_type,
                quote(&t.test),
                t.shape.kind.name(),
                t.shape.tokens,
                t.shape.depth,
                t.shape.batch,
                t.tokens_per_second,
                t.tokens_per_second_std,
                opt(t.bytes_per_token),
                opt(t.gb_per_second),
                opt(t.percent_of_bandwidth),
                opt(t.gflop_per_second),
                self.bandwidth.gb_per_s
            )?;
        }
        Ok(())
    }

    fn markdown(&self, out: &mut impl Write) -> Result<()> {
        let m = &self.model;
        writeln!(
            out,
            "| model | size | params | adapter | kernels | test | t/s | GB/s | % of {:.1} GB/s | GFLOP/s |",
            self.bandwidth.gb_per_s
        )?;
        writeln!(
            out,
            "| --- | ---: | ---: | --- | --- | ---: | ---: | ---: | ---: | ---: |"
        )?;
        let opt = |v: Option<f64>, digits: usize| {
            v.map(|x| format!("{x:.digits$}"))
                .unwrap_or_else(|| "–".into())
        };
        for t in &self.tests {
            writeln!(
                out,
                "| {} | {:.2} GiB | {:.2} B | {} ({}) | {} {} | {} | {:.2} ± {:.2} | {} | {} | {} |",
                m.name,
                m.tensor_bytes as f64 / (1u64 << 30) as f64,
                m.params as f64 / 1e9,
                self.adapter.name,
                self.adapter.backend,
                self.adapter.variant,
                self.adapter.kv_type,
                t.test,
                t.tokens_per_second,
                t.tokens_per_second_std,
                opt(t.gb_per_second, 2),
                opt(t.percent_of_bandwidth, 1),
                opt(t.gflop_per_second, 1),
            )?;
        }
        writeln!(out)?;
        writeln!(
            out,
            "First-run cost: load {:.2} s, of which pipeline creation {:.2} s. Bandwidth probe: {:.2} GB/s ({}, {} MiB streamed).",
            self.load.seconds,
            self.load.pipeline_compile_seconds,
            self.bandwidth.gb_per_s,
            self.bandwidth.timing,
            self.bandwidth.bytes >> 20
        )?;
        for t in &self.tests {
            let b = &t.breakdown;
            writeln!(out)?;
            if b.kernels.is_empty() {
                writeln!(
                    out,
                    "{}: one step {:.2} ms (CPU wall time: this adapter has no timestamp queries, so no per-kernel times)",
                    t.test, b.total_ms
                )?;
                continue;
            }
            writeln!(
                out,
                "{}: one step, {:.2} ms of GPU time (timestamp queries, one pass per dispatch)",
                t.test, b.total_ms
            )?;
            writeln!(out)?;
            writeln!(out, "| kernel | dispatches | ms | % |")?;
            writeln!(out, "| --- | ---: | ---: | ---: |")?;
            for k in b.kernels.iter().take(8) {
                writeln!(
                    out,
                    "| `{}` | {} | {:.3} | {:.1} |",
                    k.kernel, k.dispatches, k.ms, k.percent
                )?;
            }
        }
        Ok(())
    }
}
