//! A plain CPU forward pass of a llama-family model: every weight dequantized to f32
//! (with the dequantizer checked bit-exactly against gguf-py), every sum in f64. It
//! shares no code with the GPU path but the config reader, so GPU results can be
//! checked against it at every position.

use wisp_core::gguf::GgufFile;
use wisp_core::model::ModelConfig;
use wisp_core::quant::dequantize;

use crate::cpu_ref;

struct Layer {
    attn_norm: Vec<f32>,
    q: Vec<f32>,
    k: Vec<f32>,
    v: Vec<f32>,
    o: Vec<f32>,
    ffn_norm: Vec<f32>,
    gate: Vec<f32>,
    up: Vec<f32>,
    down: Vec<f32>,
}

pub struct CpuModel {
    pub cfg: ModelConfig,
    embd: Vec<f32>,
    output: Option<Vec<f32>>,
    output_norm: Vec<f32>,
    layers: Vec<Layer>,
}

fn weight(file: &GgufFile, bytes: &[u8], name: &str) -> Vec<f32> {
    let t = file.tensor(name).unwrap_or_else(|| panic!("no tensor {name}"));
    dequantize(t.ty, file.tensor_data(bytes, t).expect("tensor data"), t.n_elements() as usize).expect("dequantize")
}

impl CpuModel {
    pub fn load(file: &GgufFile, bytes: &[u8]) -> CpuModel {
        let cfg = ModelConfig::from_gguf(file).expect("config");
        let w = |n: &str| weight(file, bytes, n);
        let layers = (0..cfg.n_layer)
            .map(|i| {
                let b = |n: &str| w(&format!("blk.{i}.{n}.weight"));
                Layer {
                    attn_norm: b("attn_norm"),
                    q: b("attn_q"),
                    k: b("attn_k"),
                    v: b("attn_v"),
                    o: b("attn_output"),
                    ffn_norm: b("ffn_norm"),
                    gate: b("ffn_gate"),
                    up: b("ffn_up"),
                    down: b("ffn_down"),
                }
            })
            .collect();
        CpuModel {
            embd: w("token_embd.weight"),
            output: (!cfg.tied_embeddings).then(|| w("output.weight")),
            output_norm: w("output_norm.weight"),
            layers,
            cfg,
        }
    }

    /// Logits at every position of `ids`, starting from an empty cache.
    pub fn forward(&self, ids: &[u32]) -> Vec<Vec<f32>> {
        let c = &self.cfg;
        let (d, t) = (c.n_embd as usize, ids.len());
        let (nh, nkv, hd) = (c.n_head as usize, c.n_kv_head as usize, c.head_dim as usize);
        let ff = c.n_ff as usize;
        let inv_freq = c.rope_inv_freq();
        let mut x: Vec<f32> = ids.iter().flat_map(|&i| self.embd[i as usize * d..(i as usize + 1) * d].to_vec()).collect();
        for l in &self.layers {
            let h = cpu_ref::rmsnorm(&x, &l.attn_norm, c.rms_eps);
            let mut q = cpu_ref::matmul(&l.q, nh * hd, d, &h, t);
            let mut k = cpu_ref::matmul(&l.k, nkv * hd, d, &h, t);
            let v = cpu_ref::matmul(&l.v, nkv * hd, d, &h, t);
            for p in 0..t {
                for head in q[p * nh * hd..(p + 1) * nh * hd].chunks_mut(hd) {
                    cpu_ref::rope_head(head, p as u32, &inv_freq, c.n_rot as usize);
                }
                for head in k[p * nkv * hd..(p + 1) * nkv * hd].chunks_mut(hd) {
                    cpu_ref::rope_head(head, p as u32, &inv_freq, c.n_rot as usize);
                }
            }
            let a = cpu_ref::attention(&q, &k, &v, t, 0, nh, nkv, hd, c.sliding_window.unwrap_or(0) as usize);
            let o = cpu_ref::matmul(&l.o, d, nh * hd, &a, t);
            x.iter_mut().zip(&o).for_each(|(x, o)| *x += o);
            let h = cpu_ref::rmsnorm(&x, &l.ffn_norm, c.rms_eps);
            let g = cpu_ref::matmul(&l.gate, ff, d, &h, t);
            let u = cpu_ref::matmul(&l.up, ff, d, &h, t);
            let gu: Vec<f32> = (0..t).flat_map(|p| [&g[p * ff..(p + 1) * ff], &u[p * ff..(p + 1) * ff]].concat()).collect();
            let hh = cpu_ref::silu_mul(&gu, ff);
            let down = cpu_ref::matmul(&l.down, d, ff, &hh, t);
            x.iter_mut().zip(&down).for_each(|(x, o)| *x += o);
        }
        let h = cpu_ref::rmsnorm(&x, &self.output_norm, c.rms_eps);
        let head = self.output.as_ref().unwrap_or(&self.embd);
        let logits = cpu_ref::matmul(head, c.vocab_size as usize, d, &h, t);
        logits.chunks(c.vocab_size as usize).map(|r| r.to_vec()).collect()
    }
}
