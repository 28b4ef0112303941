//! One generation's state, whichever front end drives it: its prompt and how much of it
//! the KV cache holds, the sampler with its penalty window, the stop strings, the stream
//! decoder and a timing record. The [`Scheduler`](crate::scheduler::Scheduler) is the only
//! loop that advances these; a single run is a scheduler with one of them.

use serde::Serialize;
use web_time::Instant;

use crate::Error;
use crate::generate::{GenerateOptions, Generation, StopReason};
use crate::kv::{BlockHash, BlockHasher, SeqId};
use crate::sampling::{Sampler, SamplerConfig, SamplingError, StopMatcher, TokenLogprobs};
use crate::speculative::policy::{self, Acceptance, StepCosts, StepLoad};
use crate::speculative::verify::Distribution;
use crate::speculative::{DrafterKind, SpeculationOptions, SpeculationStats, lookup};
use crate::tokenizer::{StreamDecoder, Tokenizer};

/// Who frees a sequence's KV blocks once its generation ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Ownership {
    /// The scheduler created it and removes it when the generation stops, so its blocks
    /// go back to the pool for the others.
    Scheduler,
    /// The caller's (a [`Generator`](crate::generate::Generator) keeps its cache for the
    /// next prompt to reuse).
    Caller,
}

/// How long a generation took, measured where it runs (wall clock, as a user sees it).
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct GenerationTiming {
    /// From submission to the first sampled token: the prefill of the prompt's new tokens
    /// (and any wait for a place in the batch) plus one sample.
    pub first_token_s: f64,
    /// From the first sampled token to the last.
    pub decode_s: f64,
}

impl GenerationTiming {
    /// Prompt tokens processed per second, counting until the first token.
    pub fn prefill_tokens_per_second(&self, prefilled: usize) -> f64 {
        rate(prefilled, self.first_token_s)
    }

    /// Tokens sampled per second after the first (whose time is the prefill's).
    pub fn decode_tokens_per_second(&self, generated: usize) -> f64 {
        rate(generated.saturating_sub(1), self.decode_s)
    }
}

fn rate(n: usize, seconds: f64) -> f64 {
    if seconds > 0.0 {
        n as f64 / seconds
    } else {
        0.0
    }
}

/// When a generation was submitted and when its first and latest tokens came.
#[derive(Clone, Copy, Debug)]
struct Clock {
    submitted: Instant,
    first_token: Option<Instant>,
    last_token: Option<Instant>,
}

impl Clock {
    fn start() -> Self {
        Clock {
            submitted: Instant::now(),
            first_token: None,
            last_token: None,
        }
    }

    fn token(&mut self) {
        let now = Instant::now();
        self.first_token.get_or_insert(now);
        self.last_token = Some(now);
    }

    fn timing(&self) -> GenerationTiming {
        let seconds = |from: Instant, to: Option<Instant>| {
            to.map_or(0.0, |t| t.duration_since(from).as_secs_f64())
        };
        GenerationTiming {
            first_token_s: seconds(self.submitted, self.first_token),
            decode_s: self
                .first_token
                .map_or(0.0, |first| seconds(first, self.last_token)),
        }
    }
}

/// What a sequence feeds the engine in a step.
pub(crate) struct StepInput {
    pub tokens: Vec<u32>,
    /// The step reaches the last token known (the end of the prompt, or the token just
    /// sampled): its logits are sampled.
    pub wants_logits: bool,
}

/// A generation's speculative decoding: its options, how well its drafts have fared,
/// and what speculation did.
struct Speculation {
    options: SpeculationOptions,
    acceptance: Acceptance,
    stats: SpeculationStats,
    /// Steps since the policy last let this generation draft.
    idle_steps: u32,
    /// Draws drafted tokens from the drafter's distributions, with a generator of its
    /// own: the rule's exactness needs the drafts independent of the draws that verify
    /// them.
    draft_sampler: Sampler,
}

/// Mixed into the seed of a generation's draft sampler.
const DRAFT_SEED_MIX: u64 = 0x9e37_79b9_7f4a_7c15;

/// A generation the policy stopped from drafting for poor acceptance tries again with
/// the shortest draft after this many steps, when few others share the step, so that
/// its estimate can recover.
const PROBE_AFTER_IDLE_STEPS: u32 = 16;

/// One generation in progress.
///
/// Its tokens are the prompt followed by every sampled token; the KV cache holds the
/// first `cached` of them. Each step feeds the next ones (a prompt chunk, the token just
/// sampled, or after a preemption everything again), and the step that reaches the last
/// token samples the next.
pub struct Sequence<'t> {
    /// The engine's sequence, while the generation holds one (not while it waits to
    /// start, or again after a preemption).
    seq: Option<SeqId>,
    ownership: Ownership,
    prompt: Vec<u32>,
    ids: Vec<u32>,
    /// Tokens (prompt, then sampled) whose KV is in the cache.
    cached: usize,
    /// Prompt tokens that were already in the cache when the generation started.
    reused: usize,
    /// Prompt tokens this generation processed (again, after a preemption).
    prefilled: usize,
    /// Names of the full blocks of the tokens, for the prefix cache (sequences the
    /// scheduler owns only).
    hasher: Option<BlockHasher>,
    /// Blocks of the engine sequence already offered to the prefix cache.
    named: usize,
    text: String,
    sampler: Sampler,
    /// `Some(k)`: record each sampled token's log-probability and the `k` best.
    top_logprobs: Option<usize>,
    logprobs: Vec<TokenLogprobs>,
    stops: StopMatcher,
    decoder: StreamDecoder<'t>,
    max_tokens: usize,
    ignore_eos: bool,
    done: Option<StopReason>,
    clock: Clock,
    speculation: Option<Speculation>,
}

impl<'t> Sequence<'t> {
    /// A generation of `prompt`. A caller's sequence comes with `seq` and the number of
    /// prompt tokens its cache already holds (`reused`); one the scheduler owns starts
    /// without (`None`, 0) and names its blocks for the prefix cache in blocks of
    /// `block_size`. Fails on invalid sampling options.
    pub(crate) fn new(
        seq: Option<SeqId>,
        ownership: Ownership,
        prompt: Vec<u32>,
        reused: usize,
        options: &GenerateOptions,
        tokenizer: &'t Tokenizer,
        block_size: u32,
    ) -> Result<Self, Error> {
        let mut sampler = Sampler::new(options.sampler)?;
        if let Some(spec) = &options.speculation {
            spec.validate()?;
        }
        // Prompt tokens count for the penalties, as in llama.cpp's CLI and server.
        let window = options.sampler.penalty_last_n.min(prompt.len());
        for &id in &prompt[prompt.len() - window..] {
            sampler.accept(id);
        }
        let hasher = (ownership == Ownership::Scheduler).then(|| {
            let mut h = BlockHasher::new(block_size, options.cache_salt.as_deref());
            h.push(&prompt);
            h
        });
        Ok(Sequence {
            seq,
            ownership,
            reused,
            cached: reused,
            prefilled: 0,
            prompt,
            ids: Vec::new(),
            hasher,
            named: 0,
            text: String::new(),
            sampler,
            top_logprobs: options.top_logprobs,
            logprobs: Vec::new(),
            stops: StopMatcher::new(options.stop.iter().cloned()),
            decoder: tokenizer.stream_decoder(),
            max_tokens: options.max_tokens,
            ignore_eos: options.ignore_eos,
            done: None,
            clock: Clock::start(),
            speculation: match &options.speculation {
                Some(spec) => Some(Speculation {
                    options: spec.clone(),
                    acceptance: Acceptance::default(),
                    stats: SpeculationStats::default(),
                    idle_steps: 0,
                    draft_sampler: Sampler::new(SamplerConfig {
                        seed: options.sampler.seed ^ DRAFT_SEED_MIX,
                        ..options.sampler
                    })?,
                }),
                None => None,
            },
        })
    }

    /// The engine's sequence, while the generation holds one.
    pub(crate) fn seq(&self) -> Option<SeqId> {
        self.seq
    }

    pub(crate) fn ownership(&self) -> Ownership {
        self.ownership
    }

    pub(crate) fn sampler(&self) -> &Sampler {
        &self.sampler
    }

    pub(crate) fn sampler_mut(&mut self) -> &mut Sampler {
        &mut self.sampler
    }

    pub fn prompt_ids(&self) -> &[u32] {
        &self.prompt
    }

    /// The tokens sampled so far.
    pub fn ids(&self) -> &[u32] {
        &self.ids
    }

    /// The text emitted so far.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// Prompt tokens that came from the cache (a caller's cache or the prefix cache)
    /// when the generation started.
    pub fn n_reused(&self) -> usize {
        self.reused
    }

    /// Log-probabilities of the sampled tokens, one per token, when they were asked for
    /// ([`GenerateOptions::top_logprobs`]); empty otherwise.
    pub fn logprobs(&self) -> &[TokenLogprobs] {
        &self.logprobs
    }

    /// How many alternatives each sampled token's log-probability record lists, when
    /// log-probabilities are asked for.
    pub(crate) fn top_logprobs(&self) -> Option<usize> {
        self.top_logprobs
    }

    /// Why the generation ended, once it has.
    pub fn stop_reason(&self) -> Option<StopReason> {
        self.done
    }

    pub fn is_done(&self) -> bool {
        self.done.is_some()
    }

    /// Not ended, and holding an engine sequence.
    pub fn is_running(&self) -> bool {
        self.done.is_none() && self.seq.is_some()
    }

    /// Not ended, and waiting for an engine sequence (to start, or to go on after a
    /// preemption).
    pub fn is_waiting(&self) -> bool {
        self.done.is_none() && self.seq.is_none()
    }

    /// Whether the generation processed nothing since it was given its sequence (a
    /// preemption then costs nothing but the wait).
    pub(crate) fn is_starting(&self) -> bool {
        self.prefilled == 0 && self.ids.is_empty()
    }

    /// The prompt and the sampled tokens.
    fn tokens(&self) -> impl Iterator<Item = u32> + '_ {
        self.prompt.iter().chain(&self.ids).copied()
    }

    fn n_tokens(&self) -> usize {
        self.prompt.len() + self.ids.len()
    }

    /// The tokens in the cache, in order: the prompt, then every sampled token that was
    /// processed (all but the last, until the next step).
    pub fn cached_tokens(&self) -> impl Iterator<Item = u32> + '_ {
        self.tokens().take(self.cached)
    }

    /// The names of the full blocks of the tokens (empty for a caller's sequence).
    pub(crate) fn block_hashes(&self) -> &[BlockHash] {
        self.hasher.as_ref().map_or(&[], |h| h.hashes())
    }

    /// The blocks that became full in the cache since the last call, to offer to the
    /// prefix cache: the index of the first and their names. Empty for a caller's
    /// sequence.
    pub(crate) fn newly_full_blocks(&mut self) -> (usize, &[BlockHash]) {
        let Some(h) = &self.hasher else {
            return (0, &[]);
        };
        let first = self.named;
        let full = (self.cached / h.block_size()).min(h.hashes().len());
        self.named = full.max(first);
        (first, &h.hashes()[first..self.named])
    }

    /// The cached blocks worth taking when the generation (re)starts: all full blocks
    /// but the one holding the last token, whose logits the next step must compute.
    pub(crate) fn reusable_blocks(&self, block_size: u32) -> usize {
        (self.n_tokens().saturating_sub(1) / block_size as usize).min(self.block_hashes().len())
    }

    /// Gives the generation the engine sequence `seq`, which holds its first `cached`
    /// tokens.
    pub(crate) fn start(&mut self, seq: SeqId, cached: usize) {
        if self.is_starting() && self.seq.is_none() {
            self.reused = cached.min(self.prompt.len());
        }
        self.seq = Some(seq);
        self.cached = cached;
        // Blocks from the prefix cache have their names already.
        self.named = self.hasher.as_ref().map_or(0, |h| cached / h.block_size());
    }

    /// Takes the engine sequence away (the scheduler frees its blocks); the generation
    /// waits, and computes its tokens' KV again when it goes on.
    pub(crate) fn preempt(&mut self) -> Option<SeqId> {
        self.cached = 0;
        self.named = 0;
        self.seq.take()
    }

    /// Tokens not in the cache yet (1 while decoding).
    pub(crate) fn to_feed(&self) -> usize {
        self.n_tokens().saturating_sub(self.cached)
    }

    /// What to feed in the next step with room for `budget` tokens: the next tokens not
    /// in the cache. `None` when there is nothing to feed.
    pub(crate) fn step_input(&self, budget: usize) -> Option<StepInput> {
        if self.done.is_some() || self.seq.is_none() || budget == 0 {
            return None;
        }
        let left = self.to_feed();
        if left == 0 {
            return None;
        }
        let n = left.min(budget);
        Some(StepInput {
            tokens: self.tokens().skip(self.cached).take(n).collect(),
            wants_logits: n == left,
        })
    }

    /// Records that the first `n` tokens of [`step_input`](Self::step_input) were
    /// processed. Returns how many of them were prompt tokens.
    pub(crate) fn processed(&mut self, n: usize) -> usize {
        let prompt = (self.cached + n)
            .min(self.prompt.len())
            .saturating_sub(self.cached);
        self.cached += n;
        self.prefilled += prompt;
        prompt
    }

    /// The drafter, for a decoding generation with speculation on.
    pub(crate) fn drafter(&self) -> Option<DrafterKind> {
        let spec = self.speculation.as_ref()?;
        (self.is_running() && self.to_feed() == 1).then_some(spec.options.drafter)
    }

    /// How many tokens to draft this step, joining a step of `load`, with steps costing
    /// what `costs` says and room in the context for `room` more tokens: what the policy
    /// gains most with (every step `max_draft` when not adaptive), within what the
    /// generation may still sample. 0: decode plainly.
    pub(crate) fn draft_len(&mut self, load: StepLoad, costs: &StepCosts, room: usize) -> usize {
        let left = self.max_tokens.saturating_sub(self.ids.len());
        let Some(spec) = &mut self.speculation else {
            return 0;
        };
        let o = &spec.options;
        // The step samples up to k + 1 tokens and feeds k + 1.
        let cap = o
            .max_draft
            .min(left.saturating_sub(1))
            .min(room.saturating_sub(1));
        let k = if o.adaptive {
            policy::draft_len(
                o.min_draft,
                o.max_draft,
                spec.acceptance.rate(),
                load,
                o.drafter.work(),
                costs,
            )
        } else {
            o.max_draft
        };
        let k = if k == 0 && o.adaptive {
            spec.idle_steps += 1;
            // A probe only helps where the acceptance is what stops drafting: when even
            // drafts that are always kept cannot pay for their cost, it only costs.
            let probe = spec.idle_steps >= PROBE_AFTER_IDLE_STEPS
                && load.busy <= 2
                && policy::draft_len(o.min_draft, o.max_draft, 1.0, load, o.drafter.work(), costs)
                    > 0;
            if probe { o.min_draft } else { 0 }
        } else {
            k
        };
        if k > 0 {
            spec.idle_steps = 0;
        }
        let k = k.min(cap);
        if k < o.min_draft { 0 } else { k }
    }

    /// Up to `k` tokens from prompt lookup over the prompt and the output so far (none
    /// for other drafters, or fewer than `--draft-min` found).
    pub(crate) fn lookup_drafts(&self, k: usize) -> Vec<u32> {
        let Some(spec) = &self.speculation else {
            return Vec::new();
        };
        let DrafterKind::Lookup { ngram } = spec.options.drafter else {
            return Vec::new();
        };
        let context: Vec<u32> = self.tokens().collect();
        let drafts = lookup::propose(&context, ngram, k);
        if drafts.len() < spec.options.min_draft {
            Vec::new()
        } else {
            drafts
        }
    }

    /// The prompt and the sampled tokens.
    pub(crate) fn known_tokens(&self) -> Vec<u32> {
        self.tokens().collect()
    }

    /// The last token known (the prompt's, or the latest sampled one).
    pub(crate) fn last_token(&self) -> Option<u32> {
        self.ids.last().or(self.prompt.last()).copied()
    }

    /// Draws a drafted token from the drafter's distribution `dist`.
    pub(crate) fn draw_draft(&mut self, dist: &Distribution) -> Result<u32, SamplingError> {
        match &mut self.speculation {
            Some(spec) => spec.draft_sampler.draw(dist),
            None => Err(SamplingError::NoCandidates),
        }
    }

    /// The speculation options, when on.
    pub(crate) fn speculation(&self) -> Option<&SpeculationOptions> {
        self.speculation.as_ref().map(|s| &s.options)
    }

    /// Records a verification step that kept `accepted` of `drafted` tokens and handed
    /// the generation `produced` tokens (fewer than `accepted + 1` when it stopped).
    pub(crate) fn record_verification(&mut self, drafted: usize, accepted: usize, produced: usize) {
        if let Some(spec) = &mut self.speculation {
            spec.acceptance.record(accepted, drafted);
            spec.stats.steps += 1;
            spec.stats.drafted += drafted as u64;
            spec.stats.accepted += accepted as u64;
            spec.stats.produced += produced as u64;
        }
    }

    /// What speculation did so far, when on.
    pub fn speculation_stats(&self) -> Option<SpeculationStats> {
        self.speculation.as_ref().map(|s| s.stats)
    }

    /// Tokens in the cache.
    pub(crate) fn n_cached(&self) -> usize {
        self.cached
    }

    /// Whether the sampling budget is spent before another token is sampled (only a
    /// `max_tokens` of 0 gets here: later tokens stop when they are sampled).
    pub(crate) fn out_of_tokens(&self) -> bool {
        self.ids.len() >= self.max_tokens
    }

    /// Takes a sampled token (with its log-probabilities when they were asked for):
    /// streams its text and decides whether the generation stops. `cache_len` is the
    /// sequence's length in the cache and `n_ctx` the context size. Returns the reason
    /// it stopped, or `None` (the token is then fed in the next step).
    pub(crate) fn accept(
        &mut self,
        token: u32,
        logprobs: Option<TokenLogprobs>,
        tokenizer: &Tokenizer,
        cache_len: u32,
        n_ctx: u32,
        on_text: &mut dyn FnMut(&str),
    ) -> Result<Option<StopReason>, Error> {
        self.clock.token();
        self.ids.push(token);
        self.logprobs.extend(logprobs);
        if let Some(h) = &mut self.hasher {
            h.push(&[token]);
        }
        let stop = if !self.ignore_eos && tokenizer.is_end_of_generation(token) {
            Some(StopReason::EndOfGeneration)
        } else if self.stream(token, on_text)? {
            Some(StopReason::StopString)
        } else if self.ids.len() >= self.max_tokens {
            Some(StopReason::MaxTokens)
        } else if cache_len >= n_ctx {
            // Sampled from the last position's logits, but there is no room to process
            // it: stop here, with the cache intact.
            Some(StopReason::ContextFull)
        } else {
            None
        };
        if let Some(reason) = stop {
            self.end(reason, on_text)?;
        }
        Ok(stop)
    }

    /// Decodes `token` and passes the text that is final to `on_text`. True when the text
    /// reached a stop string.
    fn stream(&mut self, token: u32, on_text: &mut dyn FnMut(&str)) -> Result<bool, Error> {
        let Some(piece) = self.decoder.push(token)? else {
            return Ok(false);
        };
        let out = self.stops.push(&piece);
        self.emit(&out.text, on_text);
        Ok(out.is_stopped())
    }

    fn emit(&mut self, text: &str, on_text: &mut dyn FnMut(&str)) {
        if !text.is_empty() {
            self.text.push_str(text);
            on_text(text);
        }
    }

    /// Ends the generation: flushes the decoder (an unfinished character becomes U+FFFD)
    /// and the stop matcher's held text to `on_text`, then records `reason`. Ending an
    /// ended generation does nothing.
    pub(crate) fn end(
        &mut self,
        mut reason: StopReason,
        on_text: &mut dyn FnMut(&str),
    ) -> Result<(), Error> {
        if self.done.is_some() {
            return Ok(());
        }
        // Set first, so the generation counts as ended even if flushing fails.
        self.done = Some(reason);
        if reason != StopReason::StopString {
            if let Some(rest) = self.decoder.flush()? {
                let out = self.stops.push(&rest);
                self.emit(&out.text, on_text);
                if out.is_stopped() {
                    reason = StopReason::StopString;
                }
            }
            let tail = self.stops.finish();
            self.emit(&tail.text, on_text);
        }
        self.done = Some(reason);
        Ok(())
    }

    /// The result; a generation still running counts as cancelled (text it held back
    /// goes into [`Generation::text`] only).
    pub(crate) fn into_generation(mut self) -> Generation {
        // Flushing cannot fail for byte-level tokenizers; for others an undecodable tail
        // is dropped rather than failing a finished generation.
        let _ = self.end(StopReason::Cancelled, &mut |_| {});
        Generation {
            timing: self.clock.timing(),
            n_prefilled: self.prefilled,
            n_reused: self.reused,
            prompt_ids: self.prompt,
            ids: self.ids,
            logprobs: self.logprobs,
            text: self.text,
            stop_reason: self.done.unwrap_or(StopReason::Cancelled),
            speculation: self.speculation.map(|s| s.stats),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timing_rates_count_the_first_token_as_prefill() {
        let t = GenerationTiming {
            first_token_s: 0.5,
            decode_s: 2.0,
        };
        assert_eq!(t.prefill_tokens_per_second(100), 200.0);
        // 9 tokens after the first, in 2 s.
        assert_eq!(t.decode_tokens_per_second(10), 4.5);
        assert_eq!(GenerationTiming::default().decode_tokens_per_second(1), 0.0);
    }
}
