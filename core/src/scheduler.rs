//! Continuous batching, and the only generation loop: several generations share one
//! engine, and every step is one forward pass mixing their prompt chunks and decoded
//! tokens. A generation joins whenever it is submitted and leaves (freeing its KV blocks)
//! as soon as it stops, so the batch changes from step to step. A single run
//! ([`Generator`](crate::generate::Generator)) is a scheduler with one generation;
//! `wisp generate --parallel N` and the server submit several.

use crate::Error;
use crate::engine::{BatchEntry, Engine, EngineError, Logits};
use crate::generate::{GenerateOptions, Generation, StopReason};
use crate::kv::{KvError, SeqId};
use crate::sampling::Sampler;
use crate::sequence::{Ownership, Sequence};
use crate::tokenizer::Tokenizer;

/// What one step did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StepReport {
    /// Prompt tokens processed.
    pub prefilled: usize,
    /// Tokens sampled.
    pub sampled: usize,
    /// Generations in the step.
    pub sequences: usize,
}

/// One generation's part of a step.
struct Planned {
    slot: usize,
    tokens: Vec<u32>,
    wants_logits: bool,
}

/// Generations sharing one engine.
pub struct Scheduler<'a> {
    engine: &'a mut Engine,
    tokenizer: &'a Tokenizer,
    slots: Vec<Sequence<'a>>,
}

impl<'a> Scheduler<'a> {
    pub fn new(engine: &'a mut Engine, tokenizer: &'a Tokenizer) -> Self {
        Scheduler {
            engine,
            tokenizer,
            slots: Vec::new(),
        }
    }

    pub fn engine(&self) -> &Engine {
        self.engine
    }

    pub(crate) fn engine_mut(&mut self) -> &mut Engine {
        self.engine
    }

    /// Adds a generation on a new sequence; it starts at the next step. Returns its index
    /// (the first argument of the text callback, and its place in
    /// [`Scheduler::finish`]). Refuses, changing nothing, a prompt the engine refuses
    /// ([`Engine::check_prompt`]) or invalid sampling options.
    pub fn submit(&mut self, prompt: Vec<u32>, options: &GenerateOptions) -> Result<usize, Error> {
        self.engine.check_prompt(0, &prompt)?;
        let seq = self.engine.create_sequence();
        match Sequence::new(
            seq,
            Ownership::Scheduler,
            prompt,
            0,
            options,
            self.tokenizer,
        ) {
            Ok(s) => Ok(self.push(s)),
            Err(e) => {
                let _ = self.engine.remove_sequence(seq);
                Err(e)
            }
        }
    }

    /// Adds a generation that continues the caller's sequence `seq`, whose first `reused`
    /// tokens are `prompt[..reused]`: the sequence is cut back to them and only the rest
    /// of the prompt is processed. The sequence stays when the generation ends. Refuses,
    /// changing nothing, what [`Scheduler::submit`] refuses.
    pub(crate) fn resume(
        &mut self,
        seq: SeqId,
        prompt: Vec<u32>,
        reused: usize,
        options: &GenerateOptions,
    ) -> Result<usize, Error> {
        let reused = reused.min(prompt.len());
        self.engine.check_prompt(reused, &prompt[reused..])?;
        let s = Sequence::new(
            seq,
            Ownership::Caller,
            prompt,
            reused,
            options,
            self.tokenizer,
        )?;
        self.engine.truncate_sequence(seq, reused as u32)?;
        Ok(self.push(s))
    }

    fn push(&mut self, s: Sequence<'a>) -> usize {
        self.slots.push(s);
        self.slots.len() - 1
    }

    /// The generation at `index` (as [`Scheduler::submit`] returned it).
    pub fn sequence(&self, index: usize) -> Option<&Sequence<'a>> {
        self.slots.get(index)
    }

    /// Generations not yet stopped.
    pub fn active(&self) -> usize {
        self.slots.iter().filter(|s| !s.is_done()).count()
    }

    /// Stops the generation at `index` now, flushing its held-back text to `on_text`.
    pub fn cancel(&mut self, index: usize, on_text: &mut dyn FnMut(&str)) -> Result<(), Error> {
        match self.slots.get(index) {
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
        let s = &mut self.slots[index];
        let ended = s.end(reason, on_text);
        if s.ownership() == Ownership::Scheduler {
            // Its blocks go back to the pool for the others.
            self.engine.remove_sequence(s.seq())?;
        }
        ended
    }

    /// Runs one step over every active generation (as many as the step's limits take,
    /// oldest first) and samples their next tokens. Text goes to `on_text(index, text)`.
    pub async fn step(
        &mut self,
        on_text: &mut dyn FnMut(usize, &str),
    ) -> Result<StepReport, Error> {
        for i in 0..self.slots.len() {
            if !self.slots[i].is_done() && self.slots[i].out_of_tokens() {
                self.stop(i, StopReason::MaxTokens, &mut |t| on_text(i, t))?;
            }
        }
        let mut plan = self.plan();
        if plan.is_empty() {
            return Ok(StepReport::default());
        }
        self.submit_step(&mut plan)?;
        let mut report = StepReport {
            sequences: plan.len(),
            ..Default::default()
        };
        for p in &plan {
            report.prefilled += self.slots[p.slot].processed(p.tokens.len());
        }
        let sampled: Vec<usize> = plan
            .iter()
            .filter(|p| p.wants_logits)
            .map(|p| p.slot)
            .collect();
        if !sampled.is_empty() {
            report.sampled = self.sample(&sampled, on_text).await?;
        }
        Ok(report)
    }

    /// The step's entries: every generation with something to feed, oldest first, while
    /// the engine's limits on tokens, entries and logits rows allow.
    fn plan(&self) -> Vec<Planned> {
        let mut budget = self.engine.max_batch() as usize;
        let max_rows = self.engine.max_rows() as usize;
        let max_entries = self.engine.max_entries() as usize;
        let mut plan = Vec::new();
        let mut rows = 0;
        for (slot, s) in self.slots.iter().enumerate() {
            if plan.len() == max_entries || rows == max_rows {
                break;
            }
            let Some(input) = s.step_input(budget) else {
                continue;
            };
            budget -= input.tokens.len();
            rows += usize::from(input.wants_logits);
            plan.push(Planned {
                slot,
                tokens: input.tokens.to_vec(),
                wants_logits: input.wants_logits,
            });
        }
        plan
    }

    /// Submits the step; a full KV pool makes the newest entries wait for a later step.
    fn submit_step(&mut self, plan: &mut Vec<Planned>) -> Result<(), Error> {
        loop {
            let batch: Vec<BatchEntry<'_>> = plan
                .iter()
                .map(|p| BatchEntry {
                    seq: self.slots[p.slot].seq(),
                    tokens: &p.tokens,
                    logits: if p.wants_logits {
                        Logits::Last
                    } else {
                        Logits::None
                    },
                })
                .collect();
            match self.engine.step(&batch) {
                Ok(_) => return Ok(()),
                Err(Error::Engine(EngineError::Kv(KvError::PoolFull { .. }))) if plan.len() > 1 => {
                    plan.pop();
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Samples the next token of each generation in `sampled` (ascending slot indices, in
    /// the order of the step's logits rows) and hands each to its generation. Returns how
    /// many were sampled.
    async fn sample(
        &mut self,
        sampled: &[usize],
        on_text: &mut dyn FnMut(usize, &str),
    ) -> Result<usize, Error> {
        let tokens = {
            let mut samplers: Vec<&mut Sampler> = self
                .slots
                .iter_mut()
                .enumerate()
                .filter(|(i, _)| sampled.binary_search(i).is_ok())
                .map(|(_, s)| s.sampler_mut())
                .collect();
            self.engine.sample_rows(&mut samplers).await?
        };
        let n_ctx = self.engine.context_size();
        for (&i, &token) in sampled.iter().zip(&tokens) {
            let cache_len = self.engine.sequence_len(self.slots[i].seq())?;
            let stop = self.slots[i].accept(token, self.tokenizer, cache_len, n_ctx, &mut |t| {
                on_text(i, t)
            })?;
            if stop.is_some() && self.slots[i].ownership() == Ownership::Scheduler {
                self.engine.remove_sequence(self.slots[i].seq())?;
            }
        }
        Ok(tokens.len())
    }

    /// Stops every generation still running and returns all of them, in submission order.
    pub fn finish(mut self) -> Vec<Generation> {
        for i in 0..self.slots.len() {
            if !self.slots[i].is_done() {
                let _ = self.stop(i, StopReason::Cancelled, &mut |_| {});
            }
        }
        self.slots
            .into_iter()
            .map(Sequence::into_generation)
            .collect()
    }
}
