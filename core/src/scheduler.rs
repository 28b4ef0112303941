//! Continuous batching: several generations share one engine, and every step is one
//! forward pass mixing their prompt chunks and decoded tokens. A generation joins
//! whenever it is submitted and leaves (freeing its KV blocks) as soon as it stops, so
//! the batch changes from step to step. This is the loop a server drives; `wisp
//! generate --parallel N` uses it.

use crate::Error;
use crate::engine::{BatchEntry, Engine, EngineError, Logits};
use crate::generate::{GenerateOptions, Generation, StopReason};
use crate::kv::{KvError, SeqId};
use crate::sampling::{Sampler, StopMatcher};
use crate::tokenizer::{StreamDecoder, Tokenizer};

struct Slot<'t> {
    seq: SeqId,
    prompt: Vec<u32>,
    /// Prompt tokens processed so far.
    fed: usize,
    /// The last sampled token, still to be processed.
    pending: Option<u32>,
    ids: Vec<u32>,
    text: String,
    sampler: Sampler,
    stops: StopMatcher,
    decoder: StreamDecoder<'t>,
    max_tokens: usize,
    ignore_eos: bool,
    done: Option<StopReason>,
}

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

/// Generations sharing one engine.
pub struct Scheduler<'a> {
    engine: &'a mut Engine,
    tokenizer: &'a Tokenizer,
    slots: Vec<Slot<'a>>,
}

impl<'a> Scheduler<'a> {
    pub fn new(engine: &'a mut Engine, tokenizer: &'a Tokenizer) -> Self {
        Scheduler {
            engine,
            tokenizer,
            slots: Vec::new(),
        }
    }

    /// Adds a generation; it starts at the next step. Returns its index (the first
    /// argument of the text callback, and its place in [`Scheduler::finish`]).
    pub fn submit(&mut self, prompt: Vec<u32>, options: &GenerateOptions) -> Result<usize, Error> {
        if prompt.is_empty() {
            return Err(EngineError::EmptyPrompt.into());
        }
        if prompt.len() > self.engine.context_size() as usize {
            return Err(EngineError::ContextFull {
                needed: prompt.len(),
                used: 0,
                n_ctx: self.engine.context_size() as usize,
            }
            .into());
        }
        let sampler = Sampler::new(options.sampler)?;
        let seq = self.engine.create_sequence();
        self.slots.push(Slot {
            seq,
            prompt,
            fed: 0,
            pending: None,
            ids: Vec::new(),
            text: String::new(),
            sampler,
            stops: StopMatcher::new(options.stop.iter().cloned()),
            decoder: self.tokenizer.stream_decoder(),
            max_tokens: options.max_tokens,
            ignore_eos: options.ignore_eos,
            done: None,
        });
        Ok(self.slots.len() - 1)
    }

    /// Generations not yet stopped.
    pub fn active(&self) -> usize {
        self.slots.iter().filter(|s| s.done.is_none()).count()
    }

    /// Runs one step over every active generation (as many as the step's limits take,
    /// oldest first) and samples their next tokens. Text goes to `on_text(index, text)`.
    pub async fn step(
        &mut self,
        on_text: &mut dyn FnMut(usize, &str),
    ) -> Result<StepReport, Error> {
        let mut budget = self.engine.max_batch() as usize;
        let (max_rows, max_entries) = (
            self.engine.max_rows() as usize,
            self.engine.max_entries() as usize,
        );
        // (slot, tokens, wants logits)
        let mut plan: Vec<(usize, Vec<u32>, bool)> = Vec::new();
        let mut rows = 0;
        for (i, s) in self.slots.iter().enumerate() {
            if s.done.is_some() || budget == 0 || plan.len() == max_entries || rows == max_rows {
                continue;
            }
            let tokens: Vec<u32> = if s.fed < s.prompt.len() {
                let n = (s.prompt.len() - s.fed).min(budget);
                s.prompt[s.fed..s.fed + n].to_vec()
            } else if let Some(t) = s.pending {
                vec![t]
            } else {
                continue;
            };
            let wants = s.fed + tokens.len() >= s.prompt.len();
            budget -= tokens.len();
            rows += wants as usize;
            plan.push((i, tokens, wants));
        }
        if plan.is_empty() {
            return Ok(StepReport::default());
        }
        // A full KV pool makes the newest entries wait for a later step.
        loop {
            let batch: Vec<BatchEntry<'_>> = plan
                .iter()
                .map(|(i, t, wants)| BatchEntry {
                    seq: self.slots[*i].seq,
                    tokens: t,
                    logits: if *wants { Logits::Last } else { Logits::None },
                })
                .collect();
            match self.engine.step(&batch) {
                Ok(_) => break,
                Err(Error::Engine(EngineError::Kv(KvError::PoolFull { .. }))) if plan.len() > 1 => {
                    plan.pop();
                }
                Err(e) => return Err(e),
            }
        }
        let mut report = StepReport {
            sequences: plan.len(),
            ..Default::default()
        };
        for (i, tokens, _) in &plan {
            let s = &mut self.slots[*i];
            if s.fed < s.prompt.len() {
                s.fed += tokens.len();
                report.prefilled += tokens.len();
            } else {
                s.pending = None;
            }
        }
        let sampled: Vec<usize> = plan.iter().filter(|p| p.2).map(|p| p.0).collect();
        if sampled.is_empty() {
            return Ok(report);
        }
        let tokens = {
            let mut samplers: Vec<&mut Sampler> = Vec::with_capacity(sampled.len());
            let mut rest: &mut [Slot<'a>] = &mut self.slots;
            let mut base = 0;
            for &i in &sampled {
                let (_, tail) = rest.split_at_mut(i - base);
                let (slot, after) = tail.split_first_mut().expect("in range");
                samplers.push(&mut slot.sampler);
                rest = after;
                base = i + 1;
            }
            self.engine.sample_rows(&mut samplers).await?
        };
        report.sampled = tokens.len();
        let n_ctx = self.engine.context_size();
        for (&i, &token) in sampled.iter().zip(&tokens) {
            let s = &mut self.slots[i];
            s.ids.push(token);
            let stop = if !s.ignore_eos && self.tokenizer.is_end_of_generation(token) {
                Some(StopReason::EndOfGeneration)
            } else {
                let mut stop = None;
                if let Some(piece) = s.decoder.push(token)? {
                    let out = s.stops.push(&piece);
                    emit(i, s, &out.text, on_text);
                    if out.is_stopped() {
                        stop = Some(StopReason::StopString);
                    }
                }
                let len = self.engine.sequence_len(s.seq)?;
                stop.or(if s.ids.len() >= s.max_tokens {
                    Some(StopReason::MaxTokens)
                } else if len >= n_ctx {
                    Some(StopReason::ContextFull)
                } else {
                    None
                })
            };
            match stop {
                Some(reason) => {
                    end(i, s, reason, on_text)?;
                    // Its blocks go back to the pool for the others.
                    self.engine.remove_sequence(s.seq)?;
                }
                None => s.pending = Some(token),
            }
        }
        Ok(report)
    }

    /// Stops every generation still running and returns all of them, in submission order.
    pub fn finish(mut self) -> Vec<Generation> {
        for i in 0..self.slots.len() {
            let s = &mut self.slots[i];
            if s.done.is_none() {
                let _ = end(i, s, StopReason::Cancelled, &mut |_, _| {});
                let _ = self.engine.remove_sequence(s.seq);
            }
        }
        self.slots
            .into_iter()
            .map(|s| Generation {
                n_prefilled: s.fed,
                prompt_ids: s.prompt,
                ids: s.ids,
                text: s.text,
                stop_reason: s.done.unwrap_or(StopReason::Cancelled),
                n_reused: 0,
            })
            .collect()
    }
}

fn emit(i: usize, s: &mut Slot<'_>, text: &str, on_text: &mut dyn FnMut(usize, &str)) {
    if !text.is_empty() {
        s.text.push_str(text);
        on_text(i, text);
    }
}

/// Flushes held-back text and records why the generation stopped.
fn end(
    i: usize,
    s: &mut Slot<'_>,
    mut reason: StopReason,
    on_text: &mut dyn FnMut(usize, &str),
) -> Result<(), Error> {
    s.done = Some(reason);
    if reason != StopReason::StopString {
        if let Some(rest) = s.decoder.flush()? {
            let out = s.stops.push(&rest);
            emit(i, s, &out.text, on_text);
            if out.is_stopped() {
                reason = StopReason::StopString;
            }
        }
        let tail = s.stops.finish();
        emit(i, s, &tail.text, on_text);
    }
    s.done = Some(reason);
    Ok(())
}
