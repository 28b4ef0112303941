//! What a step costs in memory traffic and arithmetic, from the uploaded weights: the
//! numbers a benchmark divides by its times (GB/s against the adapter's ceiling for
//! decoding, FLOP/s for prefill).

use crate::gpu::{KvType, QMatrix};

use super::{FeedForward, ModelConfig, ModelWeights};

/// Per-step costs of one model on one KV-cache type.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub struct ModelCost {
    /// Weight bytes one decode step reads whatever its batch: every layer matrix (for a
    /// mixture of experts, the experts a token uses) and the LM head.
    pub weight_bytes_per_step: f64,
    /// KV-cache bytes read per attended position, over all layers (keys and values).
    pub kv_bytes_per_position: f64,
    /// Multiply-adds × 2 of the layer matrices per token (experts used only).
    pub matmul_flops_per_token: f64,
    /// Multiply-adds × 2 of the LM head for one token.
    pub head_flops_per_token: f64,
    /// Multiply-adds × 2 of attention (scores and weighted values) per token per attended
    /// position, over all layers.
    pub attention_flops_per_position: f64,
}

fn elements(m: &QMatrix) -> f64 {
    m.n as f64 * m.k as f64
}

impl ModelCost {
    pub fn new(config: &ModelConfig, weights: &ModelWeights, kv: KvType) -> ModelCost {
        let (mut bytes, mut flops) = (0.0, 0.0);
        let mut add = |m: &QMatrix, share: f64| {
            bytes += m.bytes() as f64 * share;
            flops += 2.0 * elements(m) * share;
        };
        for l in &weights.layers {
            l.qkv.parts.iter().for_each(|(m, _)| add(m, 1.0));
            add(&l.attn_out, 1.0);
            match &l.ffn {
                FeedForward::Dense { gate_up, down } => {
                    gate_up.parts.iter().for_each(|(m, _)| add(m, 1.0));
                    add(down, 1.0);
                }
                FeedForward::Experts {
                    router,
                    gate,
                    up,
                    down,
                } => {
                    add(router, 1.0);
                    // Each token runs `n_used` of the experts.
                    let used = config
                        .experts
                        .map_or(1.0, |x| x.n_used as f64 / x.n_expert as f64);
                    gate.iter().chain(up).chain(down).for_each(|m| add(m, used));
                }
            }
        }
        let head = weights.lm_head();
        ModelCost {
            weight_bytes_per_step: bytes + head.bytes() as f64,
            kv_bytes_per_position: 2.0
                * config.n_layer as f64
                * kv.bytes_per_position(config.kv_dim()) as f64,
            matmul_flops_per_token: flops,
            head_flops_per_token: 2.0 * elements(head),
            attention_flops_per_position: 4.0
                * config.n_layer as f64
                * config.n_head as f64
                * config.head_dim as f64,
        }
    }

    /// Bytes each token of a decode step of `batch` sequences moves, each attending to
    /// `positions` cached positions on average: its share of the weights plus its KV.
    pub fn decode_bytes_per_token(&self, batch: u32, positions: f64) -> f64 {
        self.weight_bytes_per_step / batch.max(1) as f64 + self.kv_bytes_per_position * positions
    }

    /// Arithmetic of a prefill of `tokens` tokens after `depth` cached ones (logits for
    /// the last token only).
    pub fn prefill_flops(&self, tokens: u32, depth: u32) -> f64 {
        let t = tokens as f64;
        // Token i attends to depth + i + 1 positions.
        let attended = t * depth as f64 + t * (t + 1.0) / 2.0;
        self.matmul_flops_per_token * t
            + self.attention_flops_per_position * attended
            + self.head_flops_per_token
    }
}
