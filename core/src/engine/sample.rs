//! The sampling tail of a step: penalties and either the greedy argmax or the candidate
//! selection, on the GPU, for every logits row at once, so a token costs a readback of
//! 8 bytes (greedy) or a few kilobytes (sampling), not the whole vocabulary.

use crate::Error;
use crate::gpu::{Gpu, GpuError, Plan, PlanBuilder, StepShape, Variant};
use crate::kernels::{
    ArgmaxFrom, CandidateParams, Kernels, PenaltyEntry, PenaltyParams, RowParams, Tuning,
};
use crate::sampling::{Sampler, SamplingError};
use crate::speculative::verify::Distribution;

use super::activations::Activations;

/// The most candidates one row reads back; more within the cutoff means a full readback
/// of that row.
pub const CANDIDATE_CAP: u32 = 1024;
/// The most (row, token) penalties per step.
pub const MAX_PENALTY_ENTRIES: u32 = 4096;

pub struct SamplerTail {
    greedy: Plan,
    candidates: Plan,
    inputs: TailInputs,
    candidates_out: wgpu::Buffer,
    staging_result: wgpu::Buffer,
    staging_candidates: wgpu::Buffer,
    vocab: u32,
    max_rows: u32,
}

/// Words of one row of `candidates.wgsl`'s output: its count, the bits of its largest
/// logit, then (token, bits of logit) pairs up to the cap.
fn row_words() -> u64 {
    2 + 2 * CANDIDATE_CAP as u64
}

/// Bytes of `candidates.wgsl`'s output for `rows` rows.
fn candidate_bytes(rows: u64) -> u64 {
    4 * row_words() * rows
}

/// Bytes of `argmax.wgsl`'s output for `rows` rows: (token, bits of its logit) per row.
fn argmax_bytes(rows: u64) -> u64 {
    8 * rows
}

/// The buffers the CPU writes before each sampling pass, read by both plans: the penalty
/// parameters, the penalised (row, token) entries and each row's sampler parameters.
struct TailInputs {
    penalty_params: wgpu::Buffer,
    penalty_entries: wgpu::Buffer,
    /// Entries `penalty_entries` holds (fewer than MAX_PENALTY_ENTRIES only when the
    /// binding limit is tiny).
    penalty_cap: u32,
    row_params: wgpu::Buffer,
}

impl TailInputs {
    async fn new(gpu: &Gpu, rows: u64) -> Result<TailInputs, GpuError> {
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
        Ok(TailInputs {
            penalty_params,
            penalty_entries,
            penalty_cap,
            row_params,
        })
    }

    /// Records the penalties pass over `logits`, which both plans start with.
    async fn record_penalties(
        &self,
        k: &Kernels<'_>,
        b: &mut PlanBuilder,
        logits: &wgpu::Buffer,
    ) -> Result<(), GpuError> {
        k.penalties(
            b,
            &self.penalty_params,
            &self.penalty_entries,
            &self.row_params,
            logits,
            self.penalty_cap,
        )
        .await
    }

    /// Writes the step's inputs; the entries only when there are any, since the pass reads
    /// no more than `n_entries` of them.
    fn write(&self, gpu: &Gpu, vocab: u32, row_params: &[RowParams], entries: &[PenaltyEntry]) {
        let params = PenaltyParams {
            n_entries: entries.len() as u32,
            n: vocab,
            _pad: [0; 2],
        };
        gpu.write(&self.penalty_params, 0, bytemuck::bytes_of(&params));
        gpu.write(&self.row_params, 0, bytemuck::cast_slice(row_params));
        if !entries.is_empty() {
            gpu.write(&self.penalty_entries, 0, bytemuck::cast_slice(entries));
        }
    }

    /// Keeps at most `penalty_cap` entries. Over the cap only with thousands of recent
    /// tokens per row: keep the first ones, which the sampler lists by token id, and say so.
    fn cap_entries(&self, entries: &mut Vec<PenaltyEntry>) {
        if entries.len() > self.penalty_cap as usize {
            tracing::warn!(
                "{} penalised tokens in one step; only {} are applied",
                entries.len(),
                self.penalty_cap
            );
            entries.truncate(self.penalty_cap as usize);
        }
    }
}

/// The candidate kernel's fixed parameters: the vocabulary and the cap never change after
/// load, so the uniform is written once.
async fn candidate_params(gpu: &Gpu, vocab: u32) -> Result<wgpu::Buffer, GpuError> {
    let buffer = gpu
        .uniform("candidate parameters", size_of::<CandidateParams>() as u64)
        .await?;
    gpu.write(
        &buffer,
        0,
        bytemuck::bytes_of(&CandidateParams {
            n: vocab,
            cap: CANDIDATE_CAP,
            _pad: [0; 2],
        }),
    );
    Ok(buffer)
}

/// Each row's sampler parameters and its penalised tokens tagged with the row, asked of
/// each sampler in turn.
fn collect_inputs(samplers: &[&Sampler]) -> (Vec<RowParams>, Vec<PenaltyEntry>) {
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
    (row_params, entries)
}

/// The final distribution of one row of `candidates.wgsl`'s output (`words`) under
/// `sampler`'s chain, or `None` where the row needs its full logits: more candidates than
/// the cap, or too few for the sampler's cutoffs.
fn distribution_from_candidates(
    sampler: &Sampler,
    words: &[u32],
) -> Result<Option<Distribution>, Error> {
    let count = words[0];
    if count > CANDIDATE_CAP {
        return Ok(None);
    }
    let mut cands: Vec<(u32, f32)> = words[2..2 + 2 * count as usize]
        .chunks_exact(2)
        .map(|p| (p[0], f32::from_bits(p[1])))
        .collect();
    match sampler.distribution_of_candidates(&mut cands) {
        Ok(d) => Ok(Some(d)),
        Err(SamplingError::CandidatesInsufficient) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

impl SamplerTail {
    /// The buffers and the two plans (greedy, candidates) for up to `max_rows` logits rows
    /// of `vocab` entries in `acts.logits`.
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
        let inputs = TailInputs::new(gpu, rows).await?;
        let candidate_params = candidate_params(gpu, vocab).await?;
        let candidates_out = gpu
            .storage("sampling candidates", candidate_bytes(rows))
            .await?;
        let greedy = Self::greedy_plan(gpu, &k, &inputs, &acts.logits, &acts.argmax, vocab).await?;
        let candidates = Self::candidate_plan(
            gpu,
            &k,
            &inputs,
            &acts.logits,
            &candidate_params,
            &candidates_out,
        )
        .await?;

        Ok(SamplerTail {
            greedy,
            candidates,
            inputs,
            staging_result: gpu.staging("argmax readback", argmax_bytes(rows)).await?,
            staging_candidates: gpu
                .staging("candidates readback", candidate_bytes(rows))
                .await?,
            candidates_out,
            vocab,
            max_rows,
        })
    }

    /// Penalties, then each row's argmax into `result`.
    async fn greedy_plan(
        gpu: &Gpu,
        k: &Kernels<'_>,
        inputs: &TailInputs,
        logits: &wgpu::Buffer,
        result: &wgpu::Buffer,
        vocab: u32,
    ) -> Result<Plan, GpuError> {
        let mut b = k.stepless_plan();
        inputs.record_penalties(k, &mut b, logits).await?;
        k.argmax(&mut b, ArgmaxFrom::Logits, logits, result, vocab)
            .await?;
        b.finish(gpu, "greedy sampling").await
    }

    /// Penalties, then each row's candidates into `out`.
    async fn candidate_plan(
        gpu: &Gpu,
        k: &Kernels<'_>,
        inputs: &TailInputs,
        logits: &wgpu::Buffer,
        params: &wgpu::Buffer,
        out: &wgpu::Buffer,
    ) -> Result<Plan, GpuError> {
        let mut b = k.stepless_plan();
        inputs.record_penalties(k, &mut b, logits).await?;
        k.candidates(&mut b, params, &inputs.row_params, logits, out)
            .await?;
        b.finish(gpu, "candidate selection").await
    }

    /// Runs `plan` over `rows` rows and reads back the first `bytes` of `src` (through
    /// `staging`).
    async fn run_and_read(
        &self,
        gpu: &Gpu,
        plan: &Plan,
        rows: u32,
        (src, staging): (&wgpu::Buffer, &wgpu::Buffer),
        bytes: u64,
    ) -> Result<Vec<u8>, Error> {
        self.run(gpu, plan, rows, src, staging, bytes);
        Ok(gpu.read_staging(staging, bytes).await?)
    }

    /// Encodes `plan` over `rows` rows and the copy of `bytes` of `src` into `staging` in
    /// one submission, so the readback that follows waits for both.
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
        let dists = {
            let rows: Vec<&Sampler> = samplers.iter().map(|s| &**s).collect();
            self.distributions(gpu, acts, &rows).await?
        };
        let mut tokens = Vec::with_capacity(dists.len());
        for (s, dist) in samplers.iter_mut().zip(&dists) {
            let t = s.draw(dist)?;
            s.accept(t);
            tokens.push(t);
        }
        Ok(tokens)
    }

    /// The final distribution of each of the first `samplers.len()` logits rows, row i
    /// under `samplers[i]`'s penalties and chain (a point mass at the argmax for a greedy
    /// one), reading back only what they need: the argmaxes when every row is greedy,
    /// else the candidates (and a row's full logits where they do not suffice).
    pub async fn distributions(
        &self,
        gpu: &Gpu,
        acts: &Activations,
        samplers: &[&Sampler],
    ) -> Result<Vec<Distribution>, Error> {
        let rows = samplers.len() as u32;
        if rows == 0 || rows > self.max_rows {
            return Err(SamplingError::NoCandidates.into());
        }
        let (row_params, mut entries) = collect_inputs(samplers);
        self.inputs.cap_entries(&mut entries);
        self.inputs.write(gpu, self.vocab, &row_params, &entries);

        // Greedy rows need only the argmax; one sampling row makes every row read back
        // its candidates, since one pass serves the whole step.
        if samplers.iter().all(|s| s.config().is_greedy()) {
            let tokens = self.argmaxes(gpu, acts, rows).await?;
            Ok(tokens.into_iter().map(|t| vec![(t, 1.0)]).collect())
        } else {
            self.candidate_distributions(gpu, acts, samplers).await
        }
    }

    /// Runs the greedy plan and reads back each row's argmax.
    async fn argmaxes(&self, gpu: &Gpu, acts: &Activations, rows: u32) -> Result<Vec<u32>, Error> {
        let bytes = argmax_bytes(rows as u64);
        let buffers = (&acts.argmax, &self.staging_result);
        let read = self
            .run_and_read(gpu, &self.greedy, rows, buffers, bytes)
            .await?;
        self.tokens_of_argmaxes(&read)
    }

    /// Reads back the argmax of each of the first `rows` rows that an argmax head
    /// ([`HeadOutput::Argmax`](super::HeadOutput)) left.
    pub async fn head_argmaxes(
        &self,
        gpu: &Gpu,
        acts: &Activations,
        rows: u32,
    ) -> Result<Vec<u32>, Error> {
        let bytes = argmax_bytes(rows as u64);
        let mut enc = gpu
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("argmax readback"),
            });
        enc.copy_buffer_to_buffer(&acts.argmax, 0, &self.staging_result, 0, bytes);
        gpu.queue.submit([enc.finish()]);
        let read = gpu.read_staging(&self.staging_result, bytes).await?;
        self.tokens_of_argmaxes(&read)
    }

    /// The tokens of read-back (index, bits) pairs, one per row.
    fn tokens_of_argmaxes(&self, read: &[u8]) -> Result<Vec<u32>, Error> {
        let r: &[u32] = bytemuck::cast_slice(read);
        let mut tokens = Vec::with_capacity(r.len() / 2);
        for pair in r.chunks_exact(2) {
            // A row with no logit above -3.4e38 (all -inf or NaN) keeps argmax.wgsl's
            // out-of-vocabulary initial index.
            if pair[0] >= self.vocab {
                return Err(SamplingError::NoCandidates.into());
            }
            tokens.push(pair[0]);
        }
        Ok(tokens)
    }

    /// Runs the candidate plan, reads back each row's candidates and makes each row's
    /// distribution under its sampler, from its full logits where the candidates do not
    /// suffice.
    async fn candidate_distributions(
        &self,
        gpu: &Gpu,
        acts: &Activations,
        samplers: &[&Sampler],
    ) -> Result<Vec<Distribution>, Error> {
        let rows = samplers.len() as u32;
        let bytes = candidate_bytes(rows as u64);
        let buffers = (&self.candidates_out, &self.staging_candidates);
        let read = self
            .run_and_read(gpu, &self.candidates, rows, buffers, bytes)
            .await?;
        let words: &[u32] = bytemuck::cast_slice(&read);
        let mut dists = Vec::with_capacity(samplers.len());
        for (row, sampler) in samplers.iter().enumerate() {
            let w = &words[row * row_words() as usize..(row + 1) * row_words() as usize];
            let dist = match distribution_from_candidates(sampler, w)? {
                Some(d) => d,
                None => self.full_row_distribution(gpu, acts, row, sampler).await?,
            };
            dists.push(dist);
        }
        Ok(dists)
    }

    /// Too many tokens are in play: reads this row's (penalised) logits whole and makes
    /// its distribution from them.
    async fn full_row_distribution(
        &self,
        gpu: &Gpu,
        acts: &Activations,
        row: usize,
        sampler: &Sampler,
    ) -> Result<Distribution, Error> {
        let offset = row as u64 * self.vocab as u64 * 4;
        let bytes = gpu
            .read_buffer(&acts.logits, offset, self.vocab as u64 * 4)
            .await?;
        Ok(sampler.distribution_of(bytemuck::cast_slice(&bytes))?)
    }
}
