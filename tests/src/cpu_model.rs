//! A plain CPU forward pass of every architecture Wisp runs: every weight dequantized to
//! f32 (with the dequantizer checked bit-exactly against gguf-py), every sum in f64. It
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
    /// q | k | v biases (qwen2).
    qkv_bias: Option<Vec<f32>>,
    /// Per-head query and key norms (gemma3).
    qk_norm: Option<(Vec<f32>, Vec<f32>)>,
    o: Vec<f32>,
    ffn_norm: Vec<f32>,
    ffn: Ffn,
    /// Norms of the attention and feed-forward outputs (gemma3).
    post_norms: Option<(Vec<f32>, Vec<f32>)>,
}

enum Ffn {
    Dense {
        gate: Vec<f32>,
        up: Vec<f32>,
        down: Vec<f32>,
    },
    /// Router [n_expert, d] and per-expert gate, up, down.
    Experts {
        router: Vec<f32>,
        gate: Vec<Vec<f32>>,
        up: Vec<Vec<f32>>,
        down: Vec<Vec<f32>>,
    },
}

pub struct CpuModel {
    pub cfg: ModelConfig,
    embd: Vec<f32>,
    output: Option<Vec<f32>>,
    output_norm: Vec<f32>,
    layers: Vec<Layer>,
}

fn weight(file: &GgufFile, bytes: &[u8], name: &str) -> Vec<f32> {
    let t = file
        .tensor(name)
        .unwrap_or_else(|| panic!("no tensor {name}"));
    dequantize(
        t.ty,
        file.tensor_data(bytes, t).expect("tensor data"),
        t.n_elements() as usize,
    )
    .expect("dequantize")
}

fn add_rows(x: &mut [f32], y: &[f32]) {
    x.iter_mut().zip(y).for_each(|(x, y)| *x += y);
}

impl CpuModel {
    pub fn load(file: &GgufFile, bytes: &[u8]) -> CpuModel {
        let cfg = ModelConfig::from_gguf(file).expect("config");
        let w = |n: &str| weight(file, bytes, n);
        let o = cfg.arch;
        let layers = (0..cfg.n_layer)
            .map(|i| {
                let b = |n: &str| w(&format!("blk.{i}.{n}.weight"));
                Layer {
                    attn_norm: b("attn_norm"),
                    q: b("attn_q"),
                    k: b("attn_k"),
                    v: b("attn_v"),
                    qkv_bias: o.qkv_bias.then(|| {
                        ["q", "k", "v"]
                            .iter()
                            .flat_map(|p| w(&format!("blk.{i}.attn_{p}.bias")))
                            .collect()
                    }),
                    qk_norm: o.qk_norm.then(|| (b("attn_q_norm"), b("attn_k_norm"))),
                    o: b("attn_output"),
                    ffn_norm: b("ffn_norm"),
                    ffn: match cfg.experts {
                        None => Ffn::Dense {
                            gate: b("ffn_gate"),
                            up: b("ffn_up"),
                            down: b("ffn_down"),
                        },
                        Some(x) => {
                            let split = |t: Vec<f32>| {
                                t.chunks(t.len() / x.n_expert as usize)
                                    .map(<[f32]>::to_vec)
                                    .collect()
                            };
                            Ffn::Experts {
                                router: b("ffn_gate_inp"),
                                gate: split(b("ffn_gate_exps")),
                                up: split(b("ffn_up_exps")),
                                down: split(b("ffn_down_exps")),
                            }
                        }
                    },
                    post_norms: o
                        .post_norms
                        .then(|| (b("post_attention_norm"), b("post_ffw_norm"))),
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

    /// A gated feed-forward network on `t` rows of `h`.
    fn dense_ffn(&self, gate: &[f32], up: &[f32], down: &[f32], h: &[f32], t: usize) -> Vec<f32> {
        let (d, ff) = (self.cfg.n_embd as usize, self.cfg.n_ff as usize);
        let g = cpu_ref::matmul(gate, ff, d, h, t);
        let u = cpu_ref::matmul(up, ff, d, h, t);
        let gu: Vec<f32> = (0..t)
            .flat_map(|p| [&g[p * ff..(p + 1) * ff], &u[p * ff..(p + 1) * ff]].concat())
            .collect();
        cpu_ref::matmul(
            down,
            d,
            ff,
            &cpu_ref::glu(&gu, ff, self.cfg.arch.ffn_activation),
            t,
        )
    }

    /// The experts one token's activations `h` are routed to, with their weights.
    pub fn route(&self, router: &[f32], h: &[f32]) -> Vec<(usize, f64)> {
        let x = self.cfg.experts.expect("a mixture of experts");
        let scores = cpu_ref::matmul(router, x.n_expert as usize, h.len(), h, 1);
        cpu_ref::route_experts(&scores, x.n_used as usize, x.gating, x.normalize, x.scale)
    }

    /// The experts each token of `ids` picks in layer `layer` (for tests that need
    /// tokens to disagree).
    pub fn routes(&self, ids: &[u32], layer: usize) -> Vec<Vec<usize>> {
        // Routing depends on the layer's input: run the prompt and record it there.
        let c = &self.cfg;
        let d = c.n_embd as usize;
        let mut record = Vec::new();
        self.forward_recording(ids, Some((layer, &mut record)));
        let Ffn::Experts { router, .. } = &self.layers[layer].ffn else {
            panic!("layer {layer} is dense")
        };
        record
            .chunks(d)
            .map(|h| self.route(router, h).into_iter().map(|(e, _)| e).collect())
            .collect()
    }

    /// Logits at every position of `ids`, starting from an empty cache.
    pub fn forward(&self, ids: &[u32]) -> Vec<Vec<f32>> {
        self.forward_recording(ids, None)
    }

    /// The forward pass, copying layer `record.0`'s feed-forward input into `record.1`.
    fn forward_recording(
        &self,
        ids: &[u32],
        mut record: Option<(usize, &mut Vec<f32>)>,
    ) -> Vec<Vec<f32>> {
        let c = &self.cfg;
        let o = &c.arch;
        let (d, t) = (c.n_embd as usize, ids.len());
        let (nh, nkv, hd) = (c.n_head as usize, c.n_kv_head as usize, c.head_dim as usize);
        let (qd, kvd) = (nh * hd, nkv * hd);
        let scale = if o.scale_embedding {
            (d as f64).sqrt()
        } else {
            1.0
        };
        let mut x: Vec<f32> = ids
            .iter()
            .flat_map(|&i| {
                self.embd[i as usize * d..(i as usize + 1) * d]
                    .iter()
                    .map(|v| (*v as f64 * scale) as f32)
            })
            .collect();
        for (li, l) in self.layers.iter().enumerate() {
            let inv_freq = c.rope_inv_freq(li);
            let h = cpu_ref::rmsnorm(&x, &l.attn_norm, c.rms_eps);
            let mut q = cpu_ref::matmul(&l.q, qd, d, &h, t);
            let mut k = cpu_ref::matmul(&l.k, kvd, d, &h, t);
            let mut v = cpu_ref::matmul(&l.v, kvd, d, &h, t);
            if let Some(bias) = &l.qkv_bias {
                for p in 0..t {
                    add_rows(&mut q[p * qd..(p + 1) * qd], &bias[..qd]);
                    add_rows(&mut k[p * kvd..(p + 1) * kvd], &bias[qd..qd + kvd]);
                    add_rows(&mut v[p * kvd..(p + 1) * kvd], &bias[qd + kvd..]);
                }
            }
            if let Some((qn, kn)) = &l.qk_norm {
                q = cpu_ref::rmsnorm(&q, qn, c.rms_eps);
                k = cpu_ref::rmsnorm(&k, kn, c.rms_eps);
            }
            for p in 0..t {
                for head in q[p * qd..(p + 1) * qd].chunks_mut(hd) {
                    cpu_ref::rope_head(head, p as u32, &inv_freq, c.n_rot as usize, o.rope_style);
                }
                for head in k[p * kvd..(p + 1) * kvd].chunks_mut(hd) {
                    cpu_ref::rope_head(head, p as u32, &inv_freq, c.n_rot as usize, o.rope_style);
                }
            }
            let a = cpu_ref::attention(&q, &k, &v, t, 0, nh, nkv, hd, c.layer_windows[li] as usize);
            let mut attn_out = cpu_ref::matmul(&l.o, d, qd, &a, t);
            if let Some((post, _)) = &l.post_norms {
                attn_out = cpu_ref::rmsnorm(&attn_out, post, c.rms_eps);
            }
            add_rows(&mut x, &attn_out);
            let h = cpu_ref::rmsnorm(&x, &l.ffn_norm, c.rms_eps);
            if let Some((at, out)) = record.as_mut()
                && *at == li
            {
                out.extend_from_slice(&h);
            }
            let mut down = match &l.ffn {
                Ffn::Dense { gate, up, down } => self.dense_ffn(gate, up, down, &h, t),
                Ffn::Experts {
                    router,
                    gate,
                    up,
                    down,
                } => {
                    let mut out = vec![0.0; t * d];
                    for p in 0..t {
                        let hp = &h[p * d..(p + 1) * d];
                        for (e, w) in self.route(router, hp) {
                            let y = self.dense_ffn(&gate[e], &up[e], &down[e], hp, 1);
                            out[p * d..(p + 1) * d]
                                .iter_mut()
                                .zip(&y)
                                .for_each(|(o, y)| *o += (w * *y as f64) as f32);
                        }
                    }
                    out
                }
            };
            if let Some((_, post)) = &l.post_norms {
                down = cpu_ref::rmsnorm(&down, post, c.rms_eps);
            }
            add_rows(&mut x, &down);
        }
        let h = cpu_ref::rmsnorm(&x, &self.output_norm, c.rms_eps);
        let head = self.output.as_ref().unwrap_or(&self.embd);
        let logits = cpu_ref::matmul(head, c.vocab_size as usize, d, &h, t);
        logits
            .chunks(c.vocab_size as usize)
            .map(|r| r.to_vec())
            .collect()
    }
}
