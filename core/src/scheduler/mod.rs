//! Continuous batching, and the only generation loop: several generations share one
//! engine, and every step is one forward pass mixing their prompt chunks and decoded
//! tokens, up to the engine's token budget per step. A generation joins whenever it is
//! submitted (and a place is free: [`Scheduler::set_max_running`]) and leaves, freeing
//! its KV blocks, as soon as it stops, so the batch changes from step to step. A single
//! run ([`Generator`](crate::generate::Generator)) is a scheduler with one generation;
//! `wisp generate --parallel N` and the server submit several.
//!
//! Generations the scheduler owns share the prefix cache: a new one starts with the
//! cached blocks of its longest cached prefix, and its own full blocks are offered to the
//! cache as they are written. When the KV pool cannot hold a step, the newest running
//! generation is preempted: its blocks are freed and it waits, to compute its tokens
//! again (mostly from the prefix cache) when room returns; it then goes on with exactly
//! the tokens it would have produced.
//!
//! A generation with speculative decoding ([`crate::speculative`]) feeds, while it
//! decodes, its last token and the drafts of its drafter in one entry, and takes from
//! the step every draft its sampler agrees with plus one token of its own; the rest is
//! cut from its cache. How many it drafts depends on its acceptance so far and on how
//! many generations share the step. Drafts are the first thing dropped when the pool is
//! short.

use crate::Error;
use crate::engine::{BatchEntry, Engine, HeadOutput, KvStats, Logits};
use std::collections::HashMap;

use web_time::Instant;

use crate::generate::{GenerateOptions, Generation, StopReason};
use crate::kv::SeqId;
use crate::sampling::{RowLogprobs, Sampler};
use crate::sequence::{Ownership, Sequence};
use crate::speculative::policy::StepCosts;
use crate::speculative::verify::{Distribution, verify};
use crate::tokenizer::Tokenizer;

mod drafting;

use drafting::{DraftModel, Drafts};

/// What one step did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StepReport {
    /// Prompt tokens processed.
    pub prefilled: usize,
    /// Tokens sampled.
    pub sampled: usize,
    /// Generations in the step.
    pub sequences: usize,
    /// Tokens processed in all.
    pub tokens: usize,
    /// Generations preempted to make room for the step.
    pub preempted: usize,
    /// Drafted tokens the step verified, and how many of them were kept.
    pub drafted: usize,
    pub accepted: usize,
}

/// How the scheduler's generations and the KV pool stand.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SchedulerStats {
    /// Generations holding an engine sequence.
    pub running: usize,
    /// Generations waiting for one (new, or preempted).
    pub waiting: usize,
    /// Preemptions since the scheduler was made.
    pub preemptions: u64,
    pub kv: KvStats,
}

/// One generation's part of a step.
struct Planned {
    slot: usize,
    seq: SeqId,
    /// What it feeds: its next tokens, then its drafts (the last of `tokens`).
    tokens: Vec<u32>,
    wants_logits: bool,
    drafts: Drafts,
}

impl Planned {
    /// Logits rows it wants: one per token from its last known token on.
    fn rows(&self) -> usize {
        if self.wants_logits {
            1 + self.drafts.tokens.len()
        } else {
            0
        }
    }

    /// Drops its drafts: it decodes plainly.
    fn drop_drafts(&mut self) {
        let n = self.tokens.len() - self.drafts.tokens.len();
        self.tokens.truncate(n);
        self.drafts = Drafts::default();
    }
}

/// A generation and its place in the order of service.
struct Slot<'a> {
    sequence: Sequence<'a>,
    /// Submission order: older generations are served, and kept, first (a preempted one
    /// keeps its place).
    arrival: u64,
}

/// Generations sharing one engine.
pub struct Scheduler<'a> {
    engine: &'a mut Engine,
    tokenizer: &'a Tokenizer,
    /// Indexed by what [`Scheduler::submit`] returned; `None` once taken.
    slots: Vec<Option<Slot<'a>>>,
    next_arrival: u64,
    max_running: usize,
    preemptions: u64,
    /// A second model drafting for generations with `DrafterKind::Model`.
    draft_model: Option<DraftModel<'a>>,
    /// What steps of each size took, for the speculative decoding policy.
    step_costs: StepCosts,
}

impl<'a> Scheduler<'a> {
    pub fn new(engine: &'a mut Engine, tokenizer: &'a Tokenizer) -> Self {
        let step_costs = StepCosts::new(f64::from(engine.tuning().extra_token_cost) / 100.0);
        Scheduler {
            engine,
            tokenizer,
            slots: Vec::new(),
            next_arrival: 0,
            max_running: usize::MAX,
            preemptions: 0,
            draft_model: None,
            step_costs,
        }
    }

    pub fn engine(&self) -> &Engine {
        self.engine
    }

    pub(crate) fn engine_mut(&mut self) -> &mut Engine {
        self.engine
    }

    /// At most `n` generations (at least one) hold engine sequences at once; the others
    /// wait in submission order.
    pub fn set_max_running(&mut self, n: usize) {
        self.max_running = n.max(1);
    }

    /// Adds a generation; it starts at a step when a place and KV blocks are free.
    /// Returns its index (the first argument of the text callback, and its place in
    /// [`Scheduler::finish`]). Refuses, changing nothing, a prompt the engine refuses
    /// ([`Engine::check_prompt`]) or invalid sampling options.
    pub fn submit(&mut self, prompt: Vec<u32>, options: &GenerateOptions) -> Result<usize, Error> {
        self.engine.check_prompt(0, &prompt)?;
        self.check_drafter(options)?;
        let block = self.engine.kv_stats().block_size;
        let s = Sequence::new(
            None,
            Ownership::Scheduler,
            prompt,
            0,
            options,
            self.tokenizer,
            block,
        )?;
        Ok(self.push(s))
    }

    /// Adds a generation that continues the caller's sequence `seq`, whose first `reused`
    /// tokens are `prompt[..reused]`: the sequence is cut back to them and only the rest
    /// of the prompt is processed. The sequence stays when the generation ends, and is
    /// never preempted. Refuses, changing nothing, what [`Scheduler::submit`] refuses.
    pub(crate) fn resume(
        &mut self,
        seq: SeqId,
        prompt: Vec<u32>,
        reused: usize,
        options: &GenerateOptions,
    ) -> Result<usize, Error> {
        let reused = reused.min(prompt.len());
        self.engine.check_prompt(reused, &prompt[reused..])?;
        self.check_drafter(options)?;
        let block = self.engine.kv_stats().block_size;
        let s = Sequence::new(
            Some(seq),
            Ownership::Caller,
            prompt,
            reused,
            options,
            self.tokenizer,
            block,
        )?;
        self.engine.truncate_sequence(seq, reused as u32)?;
        Ok(self.push(s))
    }

    fn push(&mut self, sequence: Sequence<'a>) -> usize {
        let slot = Slot {
            sequence,
            arrival: self.next_arrival,
        };
        self.next_arrival += 1;
        match self.slots.iter().position(Option::is_none) {
            Some(i) => {
                self.slots[i] = Some(slot);
                i
            }
            None => {
                self.slots.push(Some(slot));
                self.slots.len() - 1
            }
        }
    }

    /// The generation at `index` (as [`Scheduler::submit`] returned it), until taken.
    pub fn sequence(&self, index: usize) -> Option<&Sequence<'a>> {
        self.slots.get(index)?.as_ref().map(|s| &s.sequence)
    }

    fn seq_mut(&mut self, index: usize) -> &mut Sequence<'a> {
        &mut self.slots[index].as_mut().expect("a live slot").sequence
    }

    /// Removes the ended generation at `index` and returns it; its index may be given to
    /// a later submission. `None` if it has not ended (or was taken).
    pub fn take(&mut self, index: usize) -> Option<Generation> {
        match self.slots.get(index)? {
            Some(s) if s.sequence.is_done() => {}
            _ => return None,
        }
        let slot = self.slots[index].take().expect("checked");
        Some(slot.sequence.into_generation())
    }

    /// Generations not yet stopped.
    pub fn active(&self) -> usize {
        self.live().filter(|(_, s)| !s.sequence.is_done()).count()
    }

    pub fn stats(&self) -> SchedulerStats {
        let count =
            |f: fn(&Sequence<'a>) -> bool| self.live().filter(|(_, s)| f(&s.sequence)).count();
        SchedulerStats {
            running: count(Sequence::is_running),
            waiting: count(Sequence::is_waiting),
            preemptions: self.preemptions,
            kv: self.engine.kv_stats(),
        }
    }

    fn live(&self) -> impl Iterator<Item = (usize, &Slot<'a>)> {
        self.slots
            .iter()
            .enumerate()
            .filter_map(|(i, s)| s.as_ref().map(|s| (i, s)))
    }

    /// Indices of the generations for which `keep` holds, oldest first.
    fn by_arrival(&self, keep: impl Fn(&Sequence<'a>) -> bool) -> Vec<usize> {
        let mut v: Vec<(u64, usize)> = self
            .live()
            .filter(|(_, s)| keep(&s.sequence))
            .map(|(i, s)| (s.arrival, i))
            .collect();
        v.sort_unstable();
        v.into_iter().map(|(_, i)| i).collect()
    }

    /// Stops the generation at `index` now, flushing its held-back text to `on_text`; its
    /// blocks go back to the pool at once.
    pub fn cancel(&mut self, index: usize, on_text: &mut dyn FnMut(&str)) -> Result<(), Error> {
        match self.sequence(index) {
            Some(s) if !s.is_done() => self.stop(index, StopReason::Cancelled, on_text),
            _ => Ok(()),
        }
    }

    /// Ends generation `index` and gives its blocks back if the scheduler owns them.
    fn stop(
        &mut self,
        index: usize,
        reason: StopReason,
        on_text: &mut dyn FnMut(&str),
    ) -> Result<(), Error> {
        let ended = self.seq_mut(index).end(reason, on_text);
        self.release(index)?;
        ended
    }

    /// Gives an ended generation's blocks back to the pool if the scheduler owns them
    /// (its full blocks stay in the prefix cache).
    fn release(&mut self, index: usize) -> Result<(), Error> {
        let s = self.seq_mut(index);
        if s.ownership() == Ownership::Scheduler
            && let Some(seq) = s.preempt()
        {
            self.engine.remove_sequence(seq)?;
        }
        Ok(())
    }

    /// Runs one step over the running generations (as many as the step's limits take,
    /// oldest first; new ones join while places and blocks are free) and samples their
    /// next tokens. Text goes to `on_text(index, text)`.
    pub async fn step(
        &mut self,
        on_text: &mut dyn FnMut(usize, &str),
    ) -> Result<StepReport, Error> {
        for i in self.by_arrival(|s| !s.is_done() && s.out_of_tokens()) {
            self.stop(i, StopReason::MaxTokens, &mut |t| on_text(i, t))?;
        }
        self.admit()?;
        let drafts = self.draft().await?;
        let mut plan = self.plan(drafts);
        let mut report = StepReport {
            preempted: self.make_room(&mut plan, on_text)?,
            ..Default::default()
        };
        if plan.is_empty() {
            return Ok(report);
        }
        let started = Instant::now();
        self.submit_step(&plan)?;
        report.sequences = plan.len();
        for p in &plan {
            report.tokens += p.tokens.len();
            report.drafted += p.drafts.tokens.len();
            // Fields, not `seq_mut`: the sequence and the engine are borrowed together.
            let s = &mut self.slots[p.slot].as_mut().expect("live").sequence;
            // Drafts count once verified (`take_tokens`).
            report.prefilled += s.processed(p.tokens.len() - p.drafts.tokens.len());
            let (first, names) = s.newly_full_blocks();
            if !names.is_empty() {
                self.engine.name_blocks(p.seq, first, names)?;
            }
        }
        if plan.iter().any(|p| p.wants_logits) {
            let (sampled, accepted) = self.sample(&plan, on_text).await?;
            report.sampled = sampled;
            report.accepted = accepted;
            // Steps that sample are the ones speculation adds tokens to.
            let seconds = started.elapsed().as_secs_f64();
            self.step_costs.record(report.tokens, seconds);
        }
        Ok(report)
    }

    /// Gives waiting generations, oldest first, an engine sequence (with their longest
    /// cached prefix) while places are free and the pool holds their next chunk.
    fn admit(&mut self) -> Result<(), Error> {
        let block = self.engine.kv_stats().block_size;
        let budget = self.engine.max_batch() as usize;
        let places = self.max_running.saturating_sub(self.stats().running);
        for i in self
            .by_arrival(Sequence::is_waiting)
            .into_iter()
            .take(places)
        {
            let s = &self.slots[i].as_ref().expect("live").sequence;
            let seq = self
                .engine
                .create_sequence_from_prefix(s.block_hashes(), s.reusable_blocks(block));
            let cached = self.engine.sequence_len(seq)? as usize;
            self.seq_mut(i).start(seq, cached);
            let chunk = self
                .seq_mut(i)
                .step_input(budget)
                .map_or(0, |c| c.tokens.len());
            if self.engine.blocks_needed(seq, chunk as u32)?
                > self.engine.kv_stats().free_blocks as usize
            {
                // No room yet: wait (the prefix blocks go back to the cache).
                self.seq_mut(i).preempt();
                self.engine.remove_sequence(seq)?;
                break;
            }
        }
        Ok(())
    }

    /// The step's entries while the engine's limits on tokens, entries and logits rows
    /// allow: first every running generation with one token to feed (decoding), then
    /// the others' next chunks (prompts, or tokens computed again after a preemption),
    /// oldest first in each group. Decoding first means a long prompt arriving takes
    /// only the budget the others leave, and never stalls them.
    fn plan(&self, mut drafts: HashMap<usize, Drafts>) -> Vec<Planned> {
        let mut budget = self.engine.max_batch() as usize;
        let max_rows = self.engine.max_rows() as usize;
        let max_entries = self.engine.max_entries() as usize;
        let mut plan = Vec::new();
        let mut rows = 0;
        let mut order = self.by_arrival(Sequence::is_running);
        // Stable: arrival order stays within each group.
        order.sort_by_key(|&i| {
            self.slots[i]
                .as_ref()
                .is_some_and(|s| s.sequence.to_feed() > 1)
        });
        for slot in order {
            if plan.len() == max_entries || rows == max_rows {
                break;
            }
            let s = &self.slots[slot].as_ref().expect("live").sequence;
            let (Some(seq), Some(input)) = (s.seq(), s.step_input(budget)) else {
                continue;
            };
            let mut entry = Planned {
                slot,
                seq,
                tokens: input.tokens,
                wants_logits: input.wants_logits,
                drafts: drafts.remove(&slot).unwrap_or_default(),
            };
            // Drafts only where the step has room for their tokens and rows.
            if !entry.wants_logits
                || budget < entry.tokens.len() + entry.drafts.tokens.len()
                || rows + entry.rows() > max_rows
            {
                entry.drafts = Drafts::default();
            }
            entry.tokens.extend_from_slice(&entry.drafts.tokens);
            budget -= entry.tokens.len();
            rows += entry.rows();
            plan.push(entry);
        }
        plan
    }

    /// Frees KV blocks until the plan fits in the pool: drops every draft, then preempts the newest running
    /// generation the scheduler owns (dropping it from the plan) but the oldest one in
    /// the plan, and if that one cannot fit even alone, ends it as out of context (the
    /// pool is its limit).
    /// Returns how many generations were preempted.
    fn make_room(
        &mut self,
        plan: &mut Vec<Planned>,
        on_text: &mut dyn FnMut(usize, &str),
    ) -> Result<usize, Error> {
        let mut preempted = 0;
        loop {
            let mut needed = 0;
            for p in plan.iter() {
                needed += self.engine.blocks_needed(p.seq, p.tokens.len() as u32)?;
            }
            if needed <= self.engine.kv_stats().free_blocks as usize {
                return Ok(preempted);
            }
            // Drafts are a bet, not work owed: they go before anyone is preempted.
            if plan.iter().any(|p| !p.drafts.tokens.is_empty()) {
                plan.iter_mut().for_each(Planned::drop_drafts);
                continue;
            }
            let oldest = plan
                .iter()
                .map(|p| p.slot)
                .min_by_key(|&i| self.slots[i].as_ref().map(|s| s.arrival))
                .expect("a plan that does not fit is not empty");
            let victim = self
                .by_arrival(|s| s.is_running() && s.ownership() == Ownership::Scheduler)
                .into_iter()
                .rev()
                .find(|&i| i != oldest);
            match victim {
                Some(i) => {
                    if !self.seq_mut(i).is_starting() {
                        preempted += 1;
                        self.preemptions += 1;
                    }
                    let seq = self.seq_mut(i).preempt().expect("running");
                    self.engine.remove_sequence(seq)?;
                    plan.retain(|p| p.slot != i);
                }
                None => {
                    self.stop(oldest, StopReason::ContextFull, &mut |t| on_text(oldest, t))?;
                    plan.retain(|p| p.slot != oldest);
                    if plan.is_empty() {
                        return Ok(preempted);
                    }
                }
            }
        }
    }

    /// Submits the step (the plan fits: [`make_room`](Self::make_room)).
    fn submit_step(&mut self, plan: &[Planned]) -> Result<(), Error> {
        let batch: Vec<BatchEntry<'_>> = plan
            .iter()
            .map(|p| BatchEntry {
                seq: p.seq,
                tokens: &p.tokens,
                logits: match (p.wants_logits, p.drafts.tokens.is_empty()) {
                    (false, _) => Logits::None,
                    (true, true) => Logits::Last,
                    (true, false) => Logits::All,
                },
            })
            .collect();
        self.engine.step_to(&batch, self.head_output(plan))?;
        Ok(())
    }

    /// What the step's sampling needs of its head: only the argmaxes where every row
    /// wanted is greedy without penalties and nobody asked for log-probabilities.
    fn head_output(&self, plan: &[Planned]) -> HeadOutput {
        let wanted: Vec<&Sequence> = plan
            .iter()
            .filter(|p| p.wants_logits)
            .filter_map(|p| self.sequence(p.slot))
            .collect();
        if wanted.iter().any(|s| s.top_logprobs().is_some()) {
            return HeadOutput::Logits;
        }
        HeadOutput::needed_by(wanted.iter().map(|s| s.sampler().config()))
    }

    /// Samples the next tokens of each generation in `plan` that wants logits (their
    /// rows come in plan order): one token, or for a generation with drafts the drafts
    /// its sampler keeps and one token of its own, after which its cache is cut back to
    /// them. Hands each token to its generation. Returns how many tokens were sampled and
    /// how many drafts kept.
    async fn sample(
        &mut self,
        plan: &[Planned],
        on_text: &mut dyn FnMut(usize, &str),
    ) -> Result<(usize, usize), Error> {
        let wanted: Vec<&Planned> = plan.iter().filter(|p| p.wants_logits).collect();
        let logprob_rows = self.read_logprob_rows(&wanted).await?;
        let dists = self.row_distributions(&wanted).await?;
        let mut rows = dists.into_iter().zip(logprob_rows);
        let (mut sampled, mut kept) = (0, 0);
        for p in wanted {
            let (dists, logprobs): (Vec<_>, Vec<_>) = rows.by_ref().take(p.rows()).unzip();
            let s = self.seq_mut(p.slot);
            let rule = s.speculation().map(|o| o.resample).unwrap_or_default();
            let sampler = s.sampler_mut();
            let drafts = &p.drafts.tokens;
            let verdict = verify(&dists, drafts, p.drafts.proposal.as_deref(), sampler, rule)?;
            let mut tokens = drafts[..verdict.accepted].to_vec();
            tokens.push(verdict.next);
            let taken = self.take_tokens(p.slot, &tokens, logprobs, on_text)?;
            self.trim_draft_sequence(p.slot)?;
            sampled += taken;
            if !drafts.is_empty() {
                kept += verdict.accepted;
                self.seq_mut(p.slot)
                    .record_verification(drafts.len(), verdict.accepted, taken);
            }
        }
        Ok((sampled, kept))
    }

    /// Each wanted row's final distribution under its generation's sampler. A row after
    /// drafted tokens is weighed with the penalties those drafts would add, as plain
    /// decoding would weigh it.
    async fn row_distributions(&mut self, wanted: &[&Planned]) -> Result<Vec<Distribution>, Error> {
        let mut drafting: Vec<Sampler> = Vec::new();
        for p in wanted.iter().filter(|p| !p.drafts.tokens.is_empty()) {
            let mut s = self.sequence(p.slot).expect("live").sampler().clone();
            drafting.push(s.clone());
            for &t in &p.drafts.tokens {
                s.accept(t);
                drafting.push(s.clone());
            }
        }
        let mut drafting = drafting.iter();
        let mut samplers: Vec<&Sampler> = Vec::new();
        for p in wanted {
            if p.drafts.tokens.is_empty() {
                samplers.push(
                    self.slots[p.slot]
                        .as_ref()
                        .expect("live")
                        .sequence
                        .sampler(),
                );
            } else {
                samplers.extend(drafting.by_ref().take(p.rows()));
            }
        }
        self.engine.row_distributions(&samplers).await
    }

    /// Hands generation `slot` the tokens one step sampled for it, in order, until it
    /// stops, with each one's log-probabilities row; then cuts its cache back to the
    /// tokens it kept (drafts past a rejection, or past a stop). Returns how many it took.
    fn take_tokens(
        &mut self,
        slot: usize,
        tokens: &[u32],
        logprob_rows: Vec<Option<RowLogprobs>>,
        on_text: &mut dyn FnMut(usize, &str),
    ) -> Result<usize, Error> {
        let n_ctx = self.engine.context_size();
        let tokenizer = self.tokenizer;
        let s = self.seq_mut(slot);
        let seq = s.seq().expect("running");
        // The step fed the last known token: the cache holds every token before the
        // first new one.
        let before = s.n_cached();
        let mut taken = 0;
        let mut stopped = false;
        for (&token, row) in tokens.iter().zip(logprob_rows) {
            let s = self.seq_mut(slot);
            s.sampler_mut().accept(token);
            let logprobs = row.zip(s.top_logprobs()).map(|(r, k)| r.token(token, k));
            let cache_len = (before + taken) as u32;
            taken += 1;
            let stop = s.accept(token, logprobs, tokenizer, cache_len, n_ctx, &mut |t| {
                on_text(slot, t)
            })?;
            if stop.is_some() {
                stopped = true;
                break;
            }
        }
        // Every token but the last taken is in the cache now; drafts after them go.
        self.seq_mut(slot).processed(taken - 1);
        if stopped && self.seq_mut(slot).ownership() == Ownership::Scheduler {
            self.release(slot)?;
        } else {
            let cached = self.seq_mut(slot).n_cached() as u32;
            if self.engine.sequence_len(seq)? > cached {
                self.engine.truncate_sequence(seq, cached)?;
            }
        }
        Ok(taken)
    }

    /// The log-softmax of each wanted row (in plan order, one per row) whose generation
    /// asked for log-probabilities, read before sampling, which applies penalties to the
    /// rows in place.
    async fn read_logprob_rows(
        &self,
        wanted: &[&Planned],
    ) -> Result<Vec<Option<RowLogprobs>>, Error> {
        let wants: Vec<bool> = wanted
            .iter()
            .flat_map(|p| {
                let w = self
                    .sequence(p.slot)
                    .and_then(Sequence::top_logprobs)
                    .is_some();
                std::iter::repeat_n(w, p.rows())
            })
            .collect();
        let (Some(first), Some(last)) = (
            wants.iter().position(|&w| w),
            wants.iter().rposition(|&w| w),
        ) else {
            return Ok(wants.iter().map(|_| None).collect());
        };
        // One readback from the first row wanted to the last, not one per row.
        let mut read = self
            .engine
            .read_logits(first as u32..last as u32 + 1)
            .await?
            .into_iter();
        Ok(wants
            .iter()
            .enumerate()
            .map(|(row, &w)| {
                let logits = if (first..=last).contains(&row) {
                    read.next()
                } else {
                    None
                };
                logits.filter(|_| w).map(RowLogprobs::new)
            })
            .collect())
    }

    /// Stops every generation still running and returns all not taken, in index order.
    pub fn finish(mut self) -> Vec<Generation> {
        for i in 0..self.slots.len() {
            if self.sequence(i).is_some_and(|s| !s.is_done()) {
                let _ = self.stop(i, StopReason::Cancelled, &mut |_| {});
            }
        }
        if let Some(d) = &mut self.draft_model {
            d.engine.remove_all_sequences();
        }
        self.slots
            .into_iter()
            .flatten()
            .map(|s| s.sequence.into_generation())
            .collect()
    }
}
