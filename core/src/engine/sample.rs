//! The sampling tail of a step: penalties and either the greedy argmax or the candidate
//! selection, on the GPU, so a token costs a readback of 8 bytes (greedy) or a few
//! kilobytes (sampling), not the whole vocabulary.

use crate::gpu::{Gpu, GpuError, Plan, PlanBuilder, Variant};
use crate::kernels::{CandidateParams, Kernels, PenaltyParams};
use crate::sampling::{Sampler, SamplingError};
use crate::Error;

use super::activations::Activations;

/// The most candidates one step reads back; more within the cutoff means a full readback.
pub const CANDIDATE_CAP: u32 = 1024;
/// The most distinct recent tokens penalised per step.
pub const MAX_PENALTY_ENTRIES: u32 = 1024;

pub struct SamplerTail {
    greedy: Plan,
    candidates: Plan,
    penalty_params: wgpu::Buffer,
    penalty_entries: wgpu::Buffer,
    candidate_params: wgpu::Buffer,
    result: wgpu::Buffer,
    candidates_out: wgpu::Buffer,
    staging_result: wgpu::Buffer,
    staging_candidates: wgpu::Buffer,
    vocab: u32,
}

fn candidates_bytes() -> u64 {
    8 + 8 * CANDIDATE_CAP as u64
}

impl SamplerTail {
    pub async fn new(gpu: &Gpu, variant: Variant, acts: &Activations, vocab: u32) -> Result<SamplerTail, GpuError> {
        let k = Kernels::new(gpu, variant);
        let penalty_params = gpu.uniform("penalty parameters", 16).await?;
        let penalty_entries = gpu.storage("penalised tokens", 8 * MAX_PENALTY_ENTRIES as u64).await?;
        let candidate_params = gpu.uniform("candidate parameters", 16).await?;
        let result = gpu.storage("argmax result", 8).await?;
        let candidates_out = gpu.storage("sampling candidates", candidates_bytes()).await?;
        // These plans read no per-step values; the builder needs some uniform for that.
        let unused_step = gpu.uniform("unused step", 16).await?;

        let mut b = PlanBuilder::new(gpu, unused_step.clone());
        k.penalties(&mut b, &penalty_params, &penalty_entries, &acts.logits, MAX_PENALTY_ENTRIES).await?;
        k.argmax(&mut b, &acts.logits, &result, vocab).await?;
        let greedy = b.finish(gpu, "greedy sampling").await?;

        let mut b = PlanBuilder::new(gpu, unused_step);
        k.penalties(&mut b, &penalty_params, &penalty_entries, &acts.logits, MAX_PENALTY_ENTRIES).await?;
        k.candidates(&mut b, &candidate_params, &acts.logits, &candidates_out).await?;
        let candidates = b.finish(gpu, "candidate selection").await?;

        Ok(SamplerTail {
            greedy,
            candidates,
            penalty_params,
            penalty_entries,
            candidate_params,
            staging_result: gpu.staging("argmax readback", 8).await?,
            staging_candidates: gpu.staging("candidates readback", candidates_bytes()).await?,
            result,
            candidates_out,
            vocab,
        })
    }

    fn run(&self, gpu: &Gpu, plan: &Plan, src: &wgpu::Buffer, staging: &wgpu::Buffer, bytes: u64) {
        let mut enc = gpu.device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("sample") });
        {
            let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor { label: Some("sample"), timestamp_writes: None });
            plan.encode(&mut pass, 1);
        }
        enc.copy_buffer_to_buffer(src, 0, staging, 0, bytes);
        gpu.queue.submit([enc.finish()]);
    }

    /// Samples the next token from the logits in `acts` and accepts it into `sampler`.
    pub async fn sample(&self, gpu: &Gpu, acts: &Activations, sampler: &mut Sampler) -> Result<u32, Error> {
        let mut entries = sampler.penalty_list();
        entries.truncate(MAX_PENALTY_ENTRIES as usize);
        let pp = sampler.penalty_params();
        let params = PenaltyParams {
            n_entries: if sampler.config().penalties_are_neutral() { 0 } else { entries.len() as u32 },
            repeat: pp.repeat_penalty,
            frequency: pp.frequency_penalty,
            presence: pp.presence_penalty,
        };
        gpu.write(&self.penalty_params, 0, bytemuck::bytes_of(&params));
        if !entries.is_empty() {
            gpu.write(&self.penalty_entries, 0, bytemuck::cast_slice(&entries));
        }

        let token = if sampler.config().is_greedy() {
            self.run(gpu, &self.greedy, &self.result, &self.staging_result, 8);
            let bytes = gpu.read_staging(&self.staging_result, 8).await?;
            let r: &[u32] = bytemuck::cast_slice(&bytes);
            if r[0] >= self.vocab {
                return Err(SamplingError::NoCandidates.into());
            }
            r[0]
        } else {
            let cutoff = sampler.candidate_cutoff();
            let cp = CandidateParams { n: self.vocab, cutoff, cap: CANDIDATE_CAP, _pad: 0 };
            gpu.write(&self.candidate_params, 0, bytemuck::bytes_of(&cp));
            self.run(gpu, &self.candidates, &self.candidates_out, &self.staging_candidates, candidates_bytes());
            let bytes = gpu.read_staging(&self.staging_candidates, candidates_bytes()).await?;
            let words: &[u32] = bytemuck::cast_slice(&bytes);
            let count = words[0];
            let fallback = if count <= CANDIDATE_CAP {
                let mut cands: Vec<(u32, f32)> = words[2..2 + 2 * count as usize]
                    .chunks_exact(2)
                    .map(|p| (p[0], f32::from_bits(p[1])))
                    .collect();
                match sampler.sample(&mut cands) {
                    Ok(t) => Some(t),
                    Err(SamplingError::CandidatesInsufficient) => None,
                    Err(e) => return Err(e.into()),
                }
            } else {
                None
            };
            match fallback {
                Some(t) => t,
                None => {
                    // Too many tokens are in play: read the (penalised) logits back whole.
                    let bytes = gpu.read_buffer(&acts.logits, 0, self.vocab as u64 * 4).await?;
                    sampler.sample_logits(bytemuck::cast_slice(&bytes))?
                }
            }
        };
        sampler.accept(token);
        Ok(token)
    }
}
