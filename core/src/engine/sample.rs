//! The sampling tail of a step: penalties and either the greedy argmax or the candidate
//! selection, on the GPU, for every logits row at once, so a token costs a readback of
//! 8 bytes (greedy) or a few kilobytes (sampling), not the whole vocabulary.

use crate::Error;
use crate::gpu::{Gpu, GpuError, Plan, StepShape, Variant};
use crate::kernels::{CandidateParams, Kernels, PenaltyEntry, PenaltyParams, RowParams, Tuning};
use crate::sampling::{Sampler, SamplingError};

use super::activations::Activations;

/// The most candidates one row reads back; more within the cutoff means a full readback
/// of that row.
pub const CANDIDATE_CAP: u32 = 1024;
/// The most (row, token) penalties per step.
pub const MAX_PENALTY_ENTRIES: u32 = 4096;

pub struct SamplerTail {
    greedy: Plan,
    candidates: Plan,
    penalty_params: wgpu::Buffer,
    penalty_entries: wgpu::Buffer,
    /// Entries `penalty_entries` holds (fewer than MAX_PENALTY_ENTRIES only when the
    /// binding limit is tiny).
    penalty_cap: u32,
    row_params: wgpu::Buffer,
    result: wgpu::Buffer,
    candidates_out: wgpu::Buffer,
    staging_result: wgpu::Buffer,
    staging_candidates: wgpu::Buffer,
    vocab: u32,
    max_rows: u32,
}

fn row_words() -> u64 {
    2 + 2 * CANDIDATE_CAP as u64
}

impl SamplerTail {
    pub async fn new(
        gpu: &Gpu,
        variant: Variant,
        tuning: Tuning,
        acts: &Activations,
        vocab: u32,
        max_rows: u32,
    ) -> Result<SamplerTail, GpuError> {
        let k = Kernels::with_tuning(gpu, variant, tuning);
        let rows = max_rows as u64;
        let penalty_params = gpu
            .uniform("penalty parameters", size_of::<PenaltyParams>() as u64)
            .await?;
        let entry = size_of::<PenaltyEntry>() as u64;
        // One entry short of the binding limit, as room for the buffer's padding.
        let penalty_cap = MAX_PENALTY_ENTRIES
            .min((gpu.caps.max_storage_binding.saturating_sub(entry) / entry) as u32);
        let penalty_entries = gpu
            .storage("penalised tokens", entry * penalty_cap as u64)
            .await?;
        let row_params = gpu
            .storage(
                "sampling parameters per row",
                size_of::<RowParams>() as u64 * rows,
            )
            .await?;
        let candidate_params = gpu
            .uniform("candidate parameters", size_of::<CandidateParams>() as u64)
            .await?;
        gpu.write(
            &candidate_params,
            0,
            bytemuck::bytes_of(&CandidateParams {
                n: vocab,
                cap: CANDIDATE_CAP,
                _pad: [0; 2],
            }),
        );
        let result = gpu.storage("argmax results", 8 * rows).await?;
        let candidates_out = gpu
            .storage("sampling candidates", 4 * row_words() * rows)
            .await?;
        let mut b = k.stepless_plan();
        k.penalties(
            &mut b,
            &penalty_params,
            &penalty_entries,
            &row_params,
            &acts.logits,
            penalty_cap,
        )
        .await?;
        k.argmax(&mut b, &acts.logits, &result, vocab).await?;
        let greedy = b.finish(gpu, "greedy sampling").await?;

        let mut b = k.stepless_plan();
        k.penalties(
            &mut b,
            &penalty_params,
            &penalty_entries,
            &row_params,
            &acts.logits,
            penalty_cap,
        )
        .await?;
        k.candidates(
            &mut b,
            &candidate_params,
            &row_params,
            &acts.logits,
            &candidates_out,
        )
        .await?;
        let candidates = b.finish(gpu, "candidate selection").await?;

        Ok(SamplerTail {
            greedy,
            candidates,
            penalty_params,
            penalty_entries,
            penalty_cap,
            row_params,
            staging_result: gpu.staging("argmax readback", 8 * rows).await?,
            staging_candidates: gpu
                .staging("candidates readback", 4 * row_words() * rows)
                .await?,
            result,
            candidates_out,
            vocab,
            max_rows,
        })
    }

    fn run(
        &self,
        gpu: &Gpu,
        plan: &Plan,
        rows: u32,
        src: &wgpu::Buffer,
        staging: &wgpu::Buffer,
        bytes: u64,
    ) {
        let mut enc = gpu
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("sample"),
            });
        {
            let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: Some("sample"),
                timestamp_writes: None,
            });
            plan.encode(
                &mut pass,
                StepShape {
                    tokens: rows,
                    rows,
                    work: 0,
                    reduce: 0,
                },
            );
        }
        enc.copy_buffer_to_buffer(src, 0, staging, 0, bytes);
        gpu.queue.submit([enc.finish()]);
    }

    /// Samples a token for each of the first `samplers.len()` logits rows (row i with
    /// `samplers[i]`) and accepts each into its sampler.
    pub async fn sample(
        &self,
        gpu: &Gpu,
        acts: &Activations,
        samplers: &mut [&mut Sampler],
    ) -> Result<Vec<u32>, Error> {
        let rows = samplers.len() as u32;
        if rows == 0 || rows > self.max_rows {
            return Err(SamplingError::NoCandidates.into());
        }
        let mut entries = Vec::new();
        let mut row_params = Vec::with_capacity(samplers.len());
        for (row, s) in samplers.iter().enumerate() {
            row_params.push(s.row_params());
            if !s.config().penalties_are_neutral() {
                entries.extend(s.penalty_list().into_iter().map(|e| PenaltyEntry {
                    row: row as u32,
                    ..e
                }));
            }
        }
        // Over the cap only with thousands of recent tokens per row: keep the first ones,
        // which the sampler lists by token id, and say so.
        if entries.len() > self.penalty_cap as usize {
            tracing::warn!(
                "{} penalised tokens in one step; only {} are applied",
                entries.len(),
                self.penalty_cap
            );
            entries.truncate(self.penalty_cap as usize);
        }
        let params = PenaltyParams {
            n_entries: entries.len() as u32,
            n: self.vocab,
            _pad: [0; 2],
        };
        gpu.write(&self.penalty_params, 0, bytemuck::bytes_of(&params));
        gpu.write(&self.row_params, 0, bytemuck::cast_slice(&row_params));
        if !entries.is_empty() {
            gpu.write(&self.penalty_entries, 0, bytemuck::cast_slice(&entries));
        }

        let mut tokens = Vec::with_capacity(samplers.len());
        if samplers.iter().all(|s| s.config().is_greedy()) {
            let bytes = 8 * rows as u64;
            self.run(
                gpu,
                &self.greedy,
                rows,
                &self.result,
                &self.staging_result,
                bytes,
            );
            let read = gpu.read_staging(&self.staging_result, bytes).await?;
            let r: &[u32] = bytemuck::cast_slice(&read);
            for row in 0..rows as usize {
                if r[2 * row] >= self.vocab {
                    return Err(SamplingError::NoCandidates.into());
                }
                tokens.push(r[2 * row]);
            }
        } else {
            let bytes = 4 * row_words() * rows as u64;
            self.run(
                gpu,
                &self.candidates,
                rows,
                &self.candidates_out,
                &self.staging_candidates,
                bytes,
            );
            let read = gpu.read_staging(&self.staging_candidates, bytes).await?;
            let words: &[u32] = bytemuck::cast_slice(&read);
            for (row, sampler) in samplers.iter_mut().enumerate() {
                let w = &words[row * row_words() as usize..(row + 1) * row_words() as usize];
                let count = w[0];
                let chosen = if count <= CANDIDATE_CAP {
                    let mut cands: Vec<(u32, f32)> = w[2..2 + 2 * count as usize]
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
                let token = match chosen {
                    Some(t) => t,
                    None => {
                        // Too many tokens are in play: read this row's (penalised) logits whole.
                        let offset = row as u64 * self.vocab as u64 * 4;
                        let bytes = gpu
                            .read_buffer(&acts.logits, offset, self.vocab as u64 * 4)
                            .await?;
                        sampler.sample_logits(bytemuck::cast_slice(&bytes))?
                    }
                };
                tokens.push(token);
            }
        }
        for (s, &t) in samplers.iter_mut().zip(&tokens) {
            s.accept(t);
        }
        Ok(tokens)
    }
}
