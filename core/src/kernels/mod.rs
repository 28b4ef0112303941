//! The Rust side of each GPU kernel: its parameter block (mirroring the WGSL struct),
//! its bindings, the defines of the chosen variant, and its grid. Each function adds
//! one kind of dispatch to a [`PlanBuilder`].
//!
//! To add an op: write `shaders/wgsl/<op>.wgsl`, register its axes in
//! `shaders/src/kernels.rs`, add a function here, and a CPU-reference test in
//! `tests/tests/kernels.rs`.

mod params;
mod tuning;

pub use params::*;
pub use tuning::Tuning;

use crate::gpu::{
    Act, BindingKind as B, Gpu, GpuError, Grid, PlanBuilder, QMatrix, Variant, gpu_weight_type,
};

/// What a matrix product does with its result.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Out {
    /// Store as activations (the variant's type).
    Act,
    /// Store as f32 (logits).
    F32,
    /// Add into an f32 buffer (the residual stream).
    AddF32,
}

impl Out {
    fn wgsl(self) -> &'static str {
        match self {
            Out::Act => "act",
            Out::F32 => "f32",
            Out::AddF32 => "f32_add",
        }
    }
}

/// Where a matrix product reads and writes.
pub struct MatArgs<'a> {
    pub x: &'a wgpu::Buffer,
    /// Elements between consecutive tokens in x (a multiple of 4).
    pub x_stride: u32,
    pub y: &'a wgpu::Buffer,
    /// Elements between consecutive tokens in y.
    pub y_stride: u32,
    /// Column of y where row 0 of the matrix goes.
    pub y_offset: u32,
    pub out: Out,
}

/// Builds dispatches of the kernels in one variant for one device.
pub struct Kernels<'g> {
    pub gpu: &'g Gpu,
    pub variant: Variant,
    pub tuning: Tuning,
}

fn weight_type(m: &QMatrix) -> Result<&'static str, GpuError> {
    gpu_weight_type(m.ty).ok_or_else(|| GpuError::Shader {
        kernel: m.name.clone(),
        message: format!("no GPU kernel for tensor type {}", m.ty),
    })
}

impl<'g> Kernels<'g> {
    pub fn new(gpu: &'g Gpu, variant: Variant) -> Self {
        let tuning = Tuning::new(variant, &gpu.caps);
        // Tuning experiments only; an invalid setting is reported and ignored.
        let tuning = match std::env::var("WISP_TUNE") {
            Ok(spec) => tuning.with_overrides(&spec).unwrap_or_else(|e| {
                tracing::warn!("{e}");
                tuning
            }),
            Err(_) => tuning,
        };
        Kernels { gpu, variant, tuning }
    }

    fn act(&self) -> String {
        self.variant.act.wgsl().to_string()
    }

    fn reduce(&self) -> String {
        self.variant.reduce.wgsl().to_string()
    }

    async fn pipeline(
        &self,
        kernel: &str,
        defines: &[(&str, String)],
        bindings: &[B],
    ) -> Result<std::sync::Arc<crate::gpu::Pipeline>, GpuError> {
        self.gpu.pipelines.get(&self.gpu.device, kernel, defines, bindings).await
    }

    fn max_dim(&self) -> u32 {
        self.gpu.caps.max_workgroups_per_dimension
    }

    /// y (+)= W x for each token of the step (decode-shaped: every lane group streams
    /// whole rows). With `one_row`, only row 0 of x, whatever the step's token count.
    pub async fn matvec(&self, b: &mut PlanBuilder, w: &QMatrix, a: &MatArgs<'_>, one_row: bool) -> Result<(), GpuError> {
        let t = &self.tuning;
        // The reduction kind only matters when lanes split a row.
        let reduce = if t.matvec_split > 1 { self.reduce() } else { "workgroup".into() };
        let defines = [
            ("WTYPE", weight_type(w)?.to_string()),
            ("ACT", self.act()),
            ("OUT", a.out.wgsl().to_string()),
            ("REDUCE", reduce),
            ("SPLIT", t.matvec_split.to_string()),
            ("ROWS", t.matvec_rows.to_string()),
            ("WG", t.matvec_wg.to_string()),
        ];
        let pipe = self.pipeline("matvec", &defines, &[B::Uniform, B::Uniform, B::Read, B::Read, B::ReadWrite]).await?;
        let rows_per_wg = t.matvec_wg / t.matvec_split * t.matvec_rows;
        for chunk in &w.chunks {
            let params = MatParams {
                k: w.k,
                n: chunk.n_rows,
                row_bytes: w.row_bytes,
                out_offset: a.y_offset + chunk.first_row,
                x_stride: a.x_stride / 4,
                y_stride: a.y_stride,
                _pad: [0; 2],
            };
            let grid = Grid::rows(chunk.n_rows.div_ceil(rows_per_wg), self.max_dim(), (!one_row).then_some(1));
            b.add(pipe.clone(), Some(bytemuck::bytes_of(&params)), true, &[&chunk.buffer, a.x, a.y], grid);
        }
        Ok(())
    }

    /// y (+)= W x for all tokens of the step (prefill-shaped), with the kernel the
    /// tuning picks: lanes over rows (register-blocked) or lanes over tokens.
    pub async fn matmul(&self, b: &mut PlanBuilder, w: &QMatrix, a: &MatArgs<'_>) -> Result<(), GpuError> {
        let t = &self.tuning;
        let common = [("WTYPE", weight_type(w)?.to_string()), ("ACT", self.act()), ("OUT", a.out.wgsl().to_string())];
        let bindings = [B::Uniform, B::Uniform, B::Read, B::Read, B::ReadWrite];
        let (pipe, rows_per_wg, tokens_per_wg) = if t.matmul_tokens {
            let defines = [common.as_slice(), &[("RN", t.tokens_rn.to_string()), ("WG", t.tokens_wg.to_string())]].concat();
            (self.pipeline("matmul_tokens", &defines, &bindings).await?, t.tokens_rn, t.tokens_wg)
        } else {
            let blocking = [("RT", t.matmul_rt.to_string()), ("RN", t.matmul_rn.to_string()), ("WG", t.matmul_wg.to_string())];
            let defines = [common.as_slice(), &blocking].concat();
            (self.pipeline("matmul", &defines, &bindings).await?, t.matmul_wg * t.matmul_rn, t.matmul_rt)
        };
        for chunk in &w.chunks {
            let params = MatParams {
                k: w.k,
                n: chunk.n_rows,
                row_bytes: w.row_bytes,
                out_offset: a.y_offset + chunk.first_row,
                x_stride: a.x_stride / 4,
                y_stride: a.y_stride,
                _pad: [0; 2],
            };
            let grid = Grid::rows(chunk.n_rows.div_ceil(rows_per_wg), self.max_dim(), Some(tokens_per_wg));
            b.add(pipe.clone(), Some(bytemuck::bytes_of(&params)), true, &[&chunk.buffer, a.x, a.y], grid);
        }
        Ok(())
    }

    /// x[t, :] = scale * E[tokens[t], :] into the f32 residual stream.
    pub async fn embed(
        &self,
        b: &mut PlanBuilder,
        table: &QMatrix,
        tokens: &wgpu::Buffer,
        x: &wgpu::Buffer,
        scale: f32,
    ) -> Result<(), GpuError> {
        let defines = [("WTYPE", weight_type(table)?.to_string()), ("WG", "64".to_string())];
        let pipe = self.pipeline("embed", &defines, &[B::Uniform, B::Uniform, B::Read, B::Read, B::ReadWrite]).await?;
        for chunk in &table.chunks {
            let params = EmbedParams {
                k: table.k,
                row_bytes: table.row_bytes,
                row_offset: chunk.first_row,
                n_rows: chunk.n_rows,
                scale,
                _pad: [0; 3],
            };
            let grid = Grid { base: [1, 1, 1], per_token: Some((0, 1)) };
            b.add(pipe.clone(), Some(bytemuck::bytes_of(&params)), true, &[&chunk.buffer, tokens, x], grid);
        }
        Ok(())
    }

    /// RMSNorm of each token's residual row, or with `p.last` only the step's last
    /// token, into row 0.
    pub async fn rmsnorm(
        &self,
        b: &mut PlanBuilder,
        p: &NormParams,
        x: &wgpu::Buffer,
        weight: &wgpu::Buffer,
        y: &wgpu::Buffer,
    ) -> Result<(), GpuError> {
        let defines = [("ACT", self.act()), ("REDUCE", self.reduce()), ("WG", self.tuning.norm_wg.to_string())];
        let pipe = self.pipeline("rmsnorm", &defines, &[B::Uniform, B::Uniform, B::Read, B::Read, B::ReadWrite]).await?;
        let grid = if p.last != 0 { Grid::fixed(1, 1, 1) } else { Grid { base: [1, 1, 1], per_token: Some((0, 1)) } };
        b.add(pipe, Some(bytemuck::bytes_of(p)), true, &[x, weight, y], grid);
        Ok(())
    }

    /// RoPE on the step's queries and keys; keys and values into the cache.
    pub async fn rope_kv(
        &self,
        b: &mut PlanBuilder,
        p: &RopeParams,
        qkv: &wgpu::Buffer,
        k_cache: &wgpu::Buffer,
        v_cache: &wgpu::Buffer,
        inv_freq: &wgpu::Buffer,
    ) -> Result<(), GpuError> {
        let defines = [("ACT", self.act()), ("WG", "64".to_string())];
        let pipe = self
            .pipeline("rope_kv", &defines, &[B::Uniform, B::Uniform, B::ReadWrite, B::ReadWrite, B::ReadWrite, B::Read])
            .await?;
        let work = (p.n_head + 2 * p.n_kv_head) * (p.head_dim / 2);
        let grid = Grid { base: [work.div_ceil(64), 1, 1], per_token: Some((1, 1)) };
        b.add(pipe, Some(bytemuck::bytes_of(p)), true, &[qkv, k_cache, v_cache, inv_freq], grid);
        Ok(())
    }

    /// Causal attention of the step's queries over the cache. `batched` says the
    /// step usually has many tokens (prefill): on CPU-like adapters that takes the
    /// query-per-lane kernel; a single decoded token is better served by spreading its
    /// keys over the lanes.
    pub async fn attention(
        &self,
        b: &mut PlanBuilder,
        p: &AttnParams,
        batched: bool,
        qkv: &wgpu::Buffer,
        k_cache: &wgpu::Buffer,
        v_cache: &wgpu::Buffer,
        out: &wgpu::Buffer,
    ) -> Result<(), GpuError> {
        let bindings = [B::Uniform, B::Uniform, B::Read, B::Read, B::Read, B::ReadWrite];
        let (pipe, grid) = if self.tuning.attn_lanes && batched {
            let wg = self.tuning.attn_lanes_wg;
            let defines = [("ACT", self.act()), ("HD", p.head_dim.to_string()), ("WG", wg.to_string())];
            (self.pipeline("attention_lanes", &defines, &bindings).await?, Grid { base: [p.n_head, 1, 1], per_token: Some((1, wg)) })
        } else {
            let defines = [("ACT", self.act()), ("REDUCE", self.reduce()), ("HD", p.head_dim.to_string()), ("WG", self.tuning.attn_wg.to_string())];
            (self.pipeline("attention", &defines, &bindings).await?, Grid { base: [p.n_head, 1, 1], per_token: Some((1, 1)) })
        };
        b.add(pipe, Some(bytemuck::bytes_of(p)), true, &[qkv, k_cache, v_cache, out], grid);
        Ok(())
    }

    /// h = silu(g) * u from the fused gate/up output.
    pub async fn silu_mul(&self, b: &mut PlanBuilder, gu: &wgpu::Buffer, h: &wgpu::Buffer, n: u32) -> Result<(), GpuError> {
        let defines = [("ACT", self.act()), ("WG", "64".to_string())];
        let pipe = self.pipeline("silu_mul", &defines, &[B::Uniform, B::Uniform, B::Read, B::ReadWrite]).await?;
        let params = SiluParams { n, _pad: [0; 3] };
        let grid = Grid { base: [n.div_ceil(64), 1, 1], per_token: Some((1, 1)) };
        b.add(pipe, Some(bytemuck::bytes_of(&params)), true, &[gu, h], grid);
        Ok(())
    }

    /// result[0..2] = (index, bits) of the largest of `n` logits.
    pub async fn argmax(&self, b: &mut PlanBuilder, logits: &wgpu::Buffer, result: &wgpu::Buffer, n: u32) -> Result<(), GpuError> {
        let defines = [("REDUCE", self.reduce()), ("WG", self.tuning.argmax_wg.to_string())];
        let pipe = self.pipeline("argmax", &defines, &[B::Uniform, B::Read, B::ReadWrite]).await?;
        let params = ArgmaxParams { n, _pad: [0; 3] };
        b.add(pipe, Some(bytemuck::bytes_of(&params)), false, &[logits, result], Grid::fixed(1, 1, 1));
        Ok(())
    }

    /// Penalties on the logits; `params` is a uniform the caller rewrites each step
    /// with a [`PenaltyParams`], `entries` the (token, count) pairs.
    pub async fn penalties(
        &self,
        b: &mut PlanBuilder,
        params: &wgpu::Buffer,
        entries: &wgpu::Buffer,
        logits: &wgpu::Buffer,
        max_entries: u32,
    ) -> Result<(), GpuError> {
        let pipe = self.pipeline("penalties", &[], &[B::Uniform, B::Read, B::ReadWrite]).await?;
        b.add(pipe, None, false, &[params, entries, logits], Grid::fixed(max_entries.div_ceil(64).max(1), 1, 1));
        Ok(())
    }

    /// The sampling candidates; `params` is a uniform the caller rewrites each step with
    /// a [`CandidateParams`].
    pub async fn candidates(
        &self,
        b: &mut PlanBuilder,
        params: &wgpu::Buffer,
        logits: &wgpu::Buffer,
        out: &wgpu::Buffer,
    ) -> Result<(), GpuError> {
        let defines = [("REDUCE", self.reduce()), ("WG", self.tuning.argmax_wg.to_string())];
        let pipe = self.pipeline("candidates", &defines, &[B::Uniform, B::Read, B::ReadWrite]).await?;
        b.add(pipe, None, false, &[params, logits, out], Grid::fixed(1, 1, 1));
        Ok(())
    }

    /// A streaming read of `data` (`vec4s` of 16 bytes), for measuring bandwidth.
    pub async fn bandwidth(&self, b: &mut PlanBuilder, data: &wgpu::Buffer, sink: &wgpu::Buffer, vec4s: u32) -> Result<(), GpuError> {
        let wg = 256u32;
        let pipe = self.pipeline("bandwidth", &[("WG", wg.to_string())], &[B::Uniform, B::Read, B::ReadWrite]).await?;
        // Enough workgroups to fill any device, each streaming a contiguous range.
        let groups = (vec4s / (wg * 16)).clamp(1, 4096);
        let params = BandwidthParams { n: vec4s, per_group: vec4s.div_ceil(groups), _pad: [0; 2] };
        b.add(pipe, Some(bytemuck::bytes_of(&params)), false, &[data, sink], Grid::rows(groups, self.max_dim(), None));
        Ok(())
    }

    /// Bytes per activation element in this variant.
    pub fn act_size(&self) -> u64 {
        match self.variant.act {
            Act::F32 => 4,
            Act::F16 => 2,
        }
    }
}
