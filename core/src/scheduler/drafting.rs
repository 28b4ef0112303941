//! Drafting: what each speculating generation proposes for a step. Prompt lookup runs on
//! the CPU; self-drafting runs the target's first layers and a draft model runs a second,
//! smaller engine, both token by token for all their generations together, each draft
//! drawn from the drafting head's distribution under the generation's sampler chain.

use std::collections::HashMap;

use web_time::Instant;

use super::Scheduler;
use crate::Error;
use crate::engine::{BatchEntry, Engine, HeadOutput, Logits};
use crate::generate::GenerateOptions;
use crate::kv::SeqId;
use crate::sampling::Sampler;
use crate::speculative::policy::{DraftWork, StepLoad};
use crate::speculative::verify::Distribution;
use crate::speculative::{DrafterKind, SpeculationError, check_draft_model};
use crate::tokenizer::Tokenizer;

/// A decoding generation's guesses at its next tokens, for one step to verify.
#[derive(Default)]
pub(super) struct Drafts {
    pub tokens: Vec<u32>,
    /// The drafter's distribution at each drafted token (`None`: point masses).
    pub proposal: Option<Vec<Distribution>>,
}

/// A second model drafting for a scheduler's generations. Each has a sequence of its own
/// in the draft engine, holding a prefix of the generation's tokens: it catches up before
/// drafting, and is cut back to the kept tokens after each verification.
pub(super) struct DraftModel<'a> {
    pub engine: &'a mut Engine,
    /// By slot: the draft engine's sequence and the arrival of the generation it serves
    /// (a slot is given to later submissions).
    seqs: HashMap<usize, (SeqId, u64)>,
}

/// The drafting steps `jobs` take: as many as the longest draft.
fn longest(jobs: &[Job]) -> usize {
    jobs.iter().map(|j| j.k).max().unwrap_or(0)
}

/// One generation's drafting in a step.
struct Job {
    slot: usize,
    /// Its sequence in the engine that drafts.
    seq: SeqId,
    k: usize,
    /// Its sampler, with each draft accepted in turn (the penalties plain decoding would
    /// apply after them).
    sampler: Sampler,
    /// The token fed first: the last known one.
    last: u32,
    drafts: Drafts,
}

impl<'a> Scheduler<'a> {
    /// Lets generations with [`DrafterKind::Model`] draft with `engine`: a smaller model
    /// on the same adapter, with the target's vocabulary (its `tokenizer`) and at least
    /// its context. The scheduler takes the whole engine: its sequences are removed now
    /// and when the scheduler finishes.
    pub fn set_draft_model(
        &mut self,
        engine: &'a mut Engine,
        tokenizer: &Tokenizer,
    ) -> Result<(), Error> {
        check_draft_model(self.engine, self.tokenizer, engine, tokenizer)?;
        engine.remove_all_sequences();
        self.draft_model = Some(DraftModel {
            engine,
            seqs: HashMap::new(),
        });
        Ok(())
    }

    /// Refuses a drafter the scheduler cannot run: self-drafting at a depth the engine has
    /// no drafting pass for, or a draft model it was not given.
    pub(super) fn check_drafter(&self, options: &GenerateOptions) -> Result<(), Error> {
        let Some(spec) = &options.speculation else {
            return Ok(());
        };
        match spec.drafter {
            DrafterKind::SelfDraft { layers } => match self.engine.self_draft_layers() {
                None => Err(SpeculationError::NoDraftPass.into()),
                Some(loaded) if loaded != layers => Err(SpeculationError::DraftPassDepth {
                    asked: layers,
                    loaded,
                }
                .into()),
                Some(_) => Ok(()),
            },
            DrafterKind::Model if self.draft_model.is_none() => {
                Err(SpeculationError::NoDraftModel.into())
            }
            _ => Ok(()),
        }
    }

    /// Each decoding generation's drafts for this step, by slot, as long as its policy
    /// says what it gains is worth the verification.
    pub(super) async fn draft(&mut self) -> Result<HashMap<usize, Drafts>, Error> {
        self.forget_stale_draft_sequences()?;
        let busy = self.stats().running;
        // Each generation's drafts join the step as the ones before it left it.
        let mut load = StepLoad { busy, tokens: busy };
        let n_ctx = self.engine.context_size() as usize;
        let mut drafts = HashMap::new();
        let (mut by_layers, mut by_model) = (Vec::new(), Vec::new());
        for i in self.by_arrival(|s| s.drafter().is_some()) {
            let s = &mut self.slots[i].as_mut().expect("live").sequence;
            let room = n_ctx.saturating_sub(s.n_cached());
            let k = s.draft_len(load, &self.step_costs, room);
            if k == 0 {
                continue;
            }
            match s.drafter() {
                Some(DrafterKind::Lookup { .. }) => {
                    let tokens = s.lookup_drafts(k);
                    load.tokens += tokens.len();
                    if !tokens.is_empty() {
                        let proposal = None;
                        drafts.insert(i, Drafts { tokens, proposal });
                    }
                }
                Some(DrafterKind::SelfDraft { .. }) => {
                    load.tokens += k;
                    by_layers.push((i, k));
                }
                Some(DrafterKind::Model) => {
                    load.tokens += k;
                    by_model.push((i, k));
                }
                None => {}
            }
        }
        if !by_layers.is_empty() {
            let jobs = self.layer_jobs(by_layers)?;
            drafts.extend(self.draft_by_steps(DraftWork::TargetLayers, jobs).await?);
        }
        if !by_model.is_empty() {
            let jobs = self.model_jobs(by_model).await?;
            drafts.extend(self.draft_by_steps(DraftWork::DraftModel, jobs).await?);
        }
        Ok(drafts)
    }

    /// A new drafting job for generation `slot` on `seq`.
    fn job(&self, slot: usize, seq: SeqId, k: usize) -> Job {
        let s = self.sequence(slot).expect("live");
        Job {
            slot,
            seq,
            k,
            sampler: s.sampler().clone(),
            last: s.last_token().expect("a prompt is never empty"),
            drafts: Drafts {
                tokens: Vec::new(),
                proposal: Some(Vec::new()),
            },
        }
    }

    /// Self-drafting jobs, for the generations whose drafts and verification both fit
    /// in the pool now.
    fn layer_jobs(&self, wanted: Vec<(usize, usize)>) -> Result<Vec<Job>, Error> {
        let mut free = self.engine.kv_stats().free_blocks as usize;
        let mut jobs = Vec::new();
        for (slot, k) in wanted {
            let seq = self.sequence(slot).and_then(|s| s.seq()).expect("running");
            let needed = self.engine.blocks_needed(seq, k as u32 + 1)?;
            if needed <= free && jobs.len() < self.engine.max_rows() as usize {
                free -= needed;
                jobs.push(self.job(slot, seq, k));
            }
        }
        Ok(jobs)
    }

    /// Draft-model jobs: each generation's sequence in the draft engine (made when
    /// missing) catches up with every token before its last known one, where the draft
    /// pool has room for that and the drafts.
    async fn model_jobs(&mut self, wanted: Vec<(usize, usize)>) -> Result<Vec<Job>, Error> {
        let mut jobs = Vec::new();
        for (slot, k) in wanted {
            let known: Vec<u32> = self.sequence(slot).expect("live").known_tokens();
            let arrival = self.slots[slot].as_ref().expect("live").arrival;
            let dm = self.draft_model.as_mut().expect("checked at submission");
            if jobs.len() == dm.engine.max_rows() as usize {
                break;
            }
            let seq = match dm.seqs.get(&slot) {
                Some(&(seq, _)) => seq,
                None => {
                    let seq = dm.engine.create_sequence();
                    dm.seqs.insert(slot, (seq, arrival));
                    seq
                }
            };
            let have = dm.engine.sequence_len(seq)? as usize;
            let before_last = known.len() - 1;
            let missing = before_last.saturating_sub(have);
            let needed = dm.engine.blocks_needed(seq, (missing + k) as u32)?;
            if have > before_last
                || needed > dm.engine.kv_stats().free_blocks as usize
                || before_last + k > dm.engine.context_size() as usize
            {
                continue;
            }
            let max_batch = dm.engine.max_batch() as usize;
            for chunk in known[have..before_last].chunks(max_batch) {
                dm.engine.step(&[BatchEntry {
                    seq,
                    tokens: chunk,
                    logits: Logits::None,
                }])?;
            }
            jobs.push(self.job(slot, seq, k));
        }
        Ok(jobs)
    }

    /// Runs `jobs` token by token on `on`'s engine: each step feeds every job still
    /// drafting its latest token (first the last known one), and draws the next draft
    /// from the drafting head's distribution. Self-drafted positions are cut from the
    /// target's caches again (the verification step rewrites them); a draft model's
    /// stay until verification says which to keep.
    async fn draft_by_steps(
        &mut self,
        on: DraftWork,
        mut jobs: Vec<Job>,
    ) -> Result<HashMap<usize, Drafts>, Error> {
        let engine: &mut Engine = match on {
            DraftWork::TargetLayers => self.engine,
            DraftWork::DraftModel => self.draft_model.as_mut().expect("checked").engine,
        };
        let mut start = Vec::with_capacity(jobs.len());
        for j in &jobs {
            start.push(engine.sequence_len(j.seq)?);
        }
        // Timed for the policy's cost of a drafting step (a draft model's catching up is
        // not: after a pause it is long, while drafting it is one token per verification,
        // which the policy counts as one more drafting step).
        let started = Instant::now();
        let steps = longest(&jobs);
        for step in 0..steps {
            let active: Vec<usize> = (0..jobs.len()).filter(|&j| jobs[j].k > step).collect();
            let inputs: Vec<[u32; 1]> = active
                .iter()
                .map(|&j| [*jobs[j].drafts.tokens.last().unwrap_or(&jobs[j].last)])
                .collect();
            let batch: Vec<BatchEntry<'_>> = active
                .iter()
                .zip(&inputs)
                .map(|(&j, tokens)| BatchEntry {
                    seq: jobs[j].seq,
                    tokens,
                    logits: Logits::Last,
                })
                .collect();
            let rows: Vec<&Sampler> = active.iter().map(|&j| &jobs[j].sampler).collect();
            let output = HeadOutput::needed_by(rows.iter().map(|s| s.config()));
            match on {
                DraftWork::TargetLayers => engine.draft_step(&batch, output)?,
                DraftWork::DraftModel => engine.step_to(&batch, output)?,
            };
            let dists = engine.row_distributions(&rows).await?;
            for (&j, dist) in active.iter().zip(dists) {
                let job = &mut jobs[j];
                let sequence = &mut self.slots[job.slot].as_mut().expect("live").sequence;
                let token = sequence.draw_draft(&dist)?;
                job.sampler.accept(token);
                job.drafts.tokens.push(token);
                job.drafts.proposal.get_or_insert_with(Vec::new).push(dist);
            }
        }
        if on == DraftWork::TargetLayers {
            for (j, &len) in jobs.iter().zip(&start) {
                engine.truncate_sequence(j.seq, len)?;
            }
        }
        let seconds = started.elapsed().as_secs_f64();
        self.step_costs.record_drafting(on, steps, seconds);
        Ok(jobs.into_iter().map(|j| (j.slot, j.drafts)).collect())
    }

    /// After a verification: cuts generation `slot`'s draft-model sequence back to the
    /// tokens the generation kept (or removes it, if the generation no longer runs).
    pub(super) fn trim_draft_sequence(&mut self, slot: usize) -> Result<(), Error> {
        let kept = self
            .sequence(slot)
            .filter(|s| s.is_running())
            .map(|s| s.n_cached() as u32);
        let Some(dm) = &mut self.draft_model else {
            return Ok(());
        };
        let Some(&(seq, _)) = dm.seqs.get(&slot) else {
            return Ok(());
        };
        match kept {
            Some(kept) => {
                if dm.engine.sequence_len(seq)? > kept {
                    dm.engine.truncate_sequence(seq, kept)?;
                }
            }
            None => {
                dm.seqs.remove(&slot);
                dm.engine.remove_sequence(seq)?;
            }
        }
        Ok(())
    }

    /// Removes the draft-model sequences of generations that ended or were taken (their
    /// slot may serve a later submission by now).
    fn forget_stale_draft_sequences(&mut self) -> Result<(), Error> {
        let Some(dm) = &mut self.draft_model else {
            return Ok(());
        };
        let stale: Vec<usize> = dm
            .seqs
            .iter()
            .filter(|&(&slot, &(_, arrival))| {
                !self
                    .slots
                    .get(slot)
                    .and_then(Option::as_ref)
                    .is_some_and(|s| s.arrival == arrival && !s.sequence.is_done())
            })
            .map(|(&slot, _)| slot)
            .collect();
        for slot in stale {
            let (seq, _) = dm.seqs.remove(&slot).expect("listed");
            dm.engine.remove_sequence(seq)?;
        }
        Ok(())
    }
}
