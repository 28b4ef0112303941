//! Text generation and chat sessions over an engine: the layer the CLI, the browser page
//! and the desktop app all drive.
//!
//! - [`Generator`] owns an [`Engine`] and its [`Tokenizer`] and remembers which token ids
//!   are in the KV cache. [`Generator::start`] reuses the longest cached prefix of a new
//!   prompt, then [`Run::next_token`] advances it one sampled token at a time, streaming
//!   text through a callback. [`Generator::generate`] is the whole loop. A run is a
//!   [`Scheduler`] with one generation: the same loop as a batch of many.
//! - [`ChatSession`] keeps a conversation, renders it with the model's chat template (ChatML
//!   when it has none) and, because each turn's rendering starts with the previous one,
//!   prefills only the new messages: that is what keeps multi-turn chat fast.
//!
//! Every [`Generation`] carries its [`GenerationTiming`] (time to the first token, decode
//! time), measured in the loop, so front ends report speed without timing it themselves.

use std::sync::atomic::{AtomicBool, Ordering};

use serde::Serialize;

use crate::Error;
use crate::engine::Engine;
use crate::sampling::{SamplerConfig, TokenLogprobs};
use crate::scheduler::Scheduler;
pub use crate::sequence::GenerationTiming;
use crate::sequence::Sequence;
use crate::speculative::{SpeculationOptions, SpeculationStats};
use crate::tokenizer::{ChatMessage, ChatTemplate, Tokenizer, chat_prompt_ids};

/// What to generate and when to stop.
#[derive(Clone, Debug, PartialEq)]
pub struct GenerateOptions {
    /// The most tokens to sample (an end-of-generation token counts); `usize::MAX` runs
    /// until an end token, a stop string or a full context.
    pub max_tokens: usize,
    pub sampler: SamplerConfig,
    /// Generation stops before the first of these strings; the string itself is not output.
    pub stop: Vec<String>,
    /// Keep going past end-of-generation tokens (benchmarks want a fixed length, as with
    /// llama.cpp's `--ignore-eos`); only `max_tokens`, stop strings or the context end it.
    pub ignore_eos: bool,
    /// Mixed into the prefix cache's block names: generations with different salts never
    /// share cached blocks (a server gives each tenant its own).
    pub cache_salt: Option<String>,
    /// `Some(k)`: record each sampled token's log-probability and the `k` most likely
    /// tokens at its position (`k` at most [`MAX_TOP_LOGPROBS`](crate::sampling::MAX_TOP_LOGPROBS)).
    pub top_logprobs: Option<usize>,
    /// Speculative decoding: a drafter guesses tokens that one step verifies.
    pub speculation: Option<SpeculationOptions>,
}

impl Default for GenerateOptions {
    fn default() -> Self {
        GenerateOptions {
            max_tokens: 256,
            sampler: SamplerConfig::default(),
            stop: Vec::new(),
            ignore_eos: false,
            cache_salt: None,
            top_logprobs: None,
            speculation: None,
        }
    }
}

/// Why a generation ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    /// The model produced an end-of-generation token (EOS, `<|im_end|>`, …).
    EndOfGeneration,
    /// The text reached one of [`GenerateOptions::stop`].
    StopString,
    /// [`GenerateOptions::max_tokens`] tokens were sampled.
    MaxTokens,
    /// The KV cache is full: the last sampled token could not be processed.
    ContextFull,
    /// The caller's cancel flag was set, or the run was finished early.
    Cancelled,
}

impl StopReason {
    /// The reason as the CLI's JSON spells it (`end_of_generation`, `stop_string`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            StopReason::EndOfGeneration => "end_of_generation",
            StopReason::StopString => "stop_string",
            StopReason::MaxTokens => "max_tokens",
            StopReason::ContextFull => "context_full",
            StopReason::Cancelled => "cancelled",
        }
    }
}

impl std::fmt::Display for StopReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The outcome of one generation.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Generation {
    /// The whole prompt, including the part served from the cache.
    pub prompt_ids: Vec<u32>,
    /// Every sampled token, an end-of-generation token included.
    pub ids: Vec<u32>,
    /// Each sampled token's log-probabilities, when [`GenerateOptions::top_logprobs`]
    /// asked for them (else empty).
    pub logprobs: Vec<TokenLogprobs>,
    /// The text streamed to the callback: up to (not including) a stop string, without the
    /// text of an end-of-generation token.
    pub text: String,
    pub stop_reason: StopReason,
    /// Prompt tokens already in the cache (not processed again).
    pub n_reused: usize,
    /// Prompt tokens processed by this generation's prefill.
    pub n_prefilled: usize,
    pub timing: GenerationTiming,
    /// What speculative decoding did, when it was on.
    pub speculation: Option<SpeculationStats>,
}

impl Generation {
    pub fn n_prompt(&self) -> usize {
        self.prompt_ids.len()
    }

    pub fn n_generated(&self) -> usize {
        self.ids.len()
    }
}

/// Length of the longest common prefix of two token sequences.
pub fn common_prefix(a: &[u32], b: &[u32]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

/// The token ids in an engine's KV cache, in order, so a new prompt can reuse its prefix.
///
/// Pure bookkeeping (no GPU), kept in step with the engine by [`Generator`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CachedTokens {
    ids: Vec<u32>,
}

impl CachedTokens {
    pub fn ids(&self) -> &[u32] {
        &self.ids
    }

    /// How many cached tokens a prompt can keep: the longest common prefix, but never the
    /// whole prompt. At least its last token must be processed again, because sampling needs
    /// that token's logits and the engine only holds the logits of the last step.
    pub fn reusable(&self, prompt: &[u32]) -> usize {
        common_prefix(&self.ids, prompt).min(prompt.len().saturating_sub(1))
    }

    pub fn truncate(&mut self, len: usize) {
        self.ids.truncate(len);
    }

    pub fn extend(&mut self, ids: &[u32]) {
        self.ids.extend_from_slice(ids);
    }

    pub fn push(&mut self, id: u32) {
        self.ids.push(id);
    }

    /// Forgets everything: the next prompt is processed from position 0.
    pub fn clear(&mut self) {
        self.ids.clear();
    }
}

/// An engine, its tokenizer, and what is in its cache.
pub struct Generator {
    engine: Engine,
    tokenizer: Tokenizer,
    cache: CachedTokens,
    /// A draft model for speculative decoding ([`DrafterKind::Model`](crate::speculative::DrafterKind)).
    draft: Option<(Engine, Tokenizer)>,
}

impl Generator {
    /// Takes over `engine`; whatever its cache held is forgotten.
    pub fn new(mut engine: Engine, tokenizer: Tokenizer) -> Self {
        engine.reset();
        Generator {
            engine,
            tokenizer,
            cache: CachedTokens::default(),
            draft: None,
        }
    }

    /// Gives generations with a draft-model drafter `engine` (with its `tokenizer`) to
    /// draft with. Refuses one on another adapter, with another vocabulary or a shorter
    /// context ([`check_draft_model`](crate::speculative::check_draft_model)).
    pub fn set_draft_model(&mut self, engine: Engine, tokenizer: Tokenizer) -> Result<(), Error> {
        crate::speculative::check_draft_model(&self.engine, &self.tokenizer, &engine, &tokenizer)?;
        self.draft = Some((engine, tokenizer));
        Ok(())
    }

    /// Whether a draft model was set ([`Generator::set_draft_model`]).
    pub fn has_draft_model(&self) -> bool {
        self.draft.is_some()
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The engine, for direct use (logits, perplexity). The generator can no longer vouch
    /// for the cache's contents, so the next prompt is processed from the start.
    pub fn engine_mut(&mut self) -> &mut Engine {
        self.cache.clear();
        &mut self.engine
    }

    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }

    pub fn into_parts(self) -> (Engine, Tokenizer) {
        (self.engine, self.tokenizer)
    }

    /// The token ids in the cache.
    pub fn cached_ids(&self) -> &[u32] {
        self.cache.ids()
    }

    /// Forgets the cache.
    pub fn reset(&mut self) {
        self.cache.clear();
        self.engine.reset();
    }

    /// Starts a generation of `prompt_ids` that reuses the cached prefix; its prefill
    /// runs in the first [`Run::next_token`]. Refuses, with the cache unchanged, what the
    /// engine refuses ([`Engine::check_prompt`]: an empty prompt, one longer than the
    /// context, an id outside the vocabulary) and invalid sampling options.
    pub fn start(
        &mut self,
        prompt_ids: &[u32],
        options: &GenerateOptions,
    ) -> Result<Run<'_>, Error> {
        // The mirror must describe the engine; if someone moved the engine behind our back,
        // reuse nothing.
        if self.cache.ids().len() != self.engine.position() as usize {
            self.cache.clear();
        }
        let keep = self.cache.reusable(prompt_ids);
        let seq = self.engine.default_sequence();
        let mut scheduler = Scheduler::new(&mut self.engine, &self.tokenizer);
        if let Some((engine, tokenizer)) = &mut self.draft {
            scheduler.set_draft_model(engine, tokenizer)?;
        }
        scheduler.resume(seq, prompt_ids.to_vec(), keep, options)?;
        self.cache.truncate(keep);
        Ok(Run {
            scheduler,
            cache: &mut self.cache,
            cancel: None,
        })
    }

    /// Runs `prompt_ids` and generates until a stop condition, calling `on_text` with each
    /// piece of text as soon as it is final. `cancel` is checked before every token.
    pub async fn generate(
        &mut self,
        prompt_ids: &[u32],
        options: &GenerateOptions,
        cancel: &AtomicBool,
        on_text: &mut dyn FnMut(&str),
    ) -> Result<Generation, Error> {
        let mut run = self.start(prompt_ids, options)?.with_cancel(cancel);
        while run.next_token(on_text).await?.is_some() {}
        Ok(run.finish())
    }
}

/// One generation in progress: a [`Scheduler`] holding one generation on the generator's
/// sequence, stepped until it samples a token.
pub struct Run<'g> {
    scheduler: Scheduler<'g>,
    cache: &'g mut CachedTokens,
    cancel: Option<&'g AtomicBool>,
}

/// The run's generation in its scheduler.
const RUN: usize = 0;

impl<'g> Run<'g> {
    /// Checks `cancel` before every token: once it is set, the run stops with
    /// [`StopReason::Cancelled`] (the flag is left as it is; the caller clears it).
    pub fn with_cancel(mut self, cancel: &'g AtomicBool) -> Self {
        self.cancel = Some(cancel);
        self
    }

    fn sequence(&self) -> &Sequence<'g> {
        self.scheduler
            .sequence(RUN)
            .expect("a run holds one generation")
    }

    pub fn prompt_ids(&self) -> &[u32] {
        self.sequence().prompt_ids()
    }

    /// The tokens sampled so far.
    pub fn ids(&self) -> &[u32] {
        self.sequence().ids()
    }

    /// The text emitted so far.
    pub fn text(&self) -> &str {
        self.sequence().text()
    }

    pub fn n_reused(&self) -> usize {
        self.sequence().n_reused()
    }

    /// Why the run ended, once it has.
    pub fn stop_reason(&self) -> Option<StopReason> {
        self.sequence().stop_reason()
    }

    /// Steps the scheduler until it samples a token (the first call prefills the prompt;
    /// with speculative decoding one step may take several) and returns the last one. Text that is complete UTF-8 and can no longer be part of a
    /// stop string goes to `on_text`. `None` once the run has ended (then
    /// [`stop_reason`](Self::stop_reason) says why).
    pub async fn next_token(
        &mut self,
        on_text: &mut dyn FnMut(&str),
    ) -> Result<Option<u32>, Error> {
        loop {
            if self.sequence().is_done() {
                return Ok(None);
            }
            if self.cancel.is_some_and(|c| c.load(Ordering::Relaxed)) {
                self.scheduler.cancel(RUN, on_text)?;
                return Ok(None);
            }
            let report = match self.scheduler.step(&mut |_, text| on_text(text)).await {
                Ok(report) => report,
                Err(e) => return Err(self.fail(e)),
            };
            self.mirror_cache();
            if report.sampled > 0 {
                return Ok(self.ids().last().copied());
            }
            if report.sequences == 0 && !self.sequence().is_done() {
                // Not reachable (a running generation has a prompt chunk or a sampled
                // token to feed), but never spin: end the run.
                self.scheduler.cancel(RUN, on_text)?;
            }
        }
    }

    /// After a failed step the cache may hold anything: forget it, and end the run.
    fn fail(&mut self, error: Error) -> Error {
        self.cache.clear();
        self.scheduler.engine_mut().reset();
        let _ = self.scheduler.cancel(RUN, &mut |_| {});
        error
    }

    /// Brings the generator's record of the cache up to what the steps have processed.
    fn mirror_cache(&mut self) {
        let have = self.cache.ids().len();
        let s = self
            .scheduler
            .sequence(RUN)
            .expect("a run holds one generation");
        for id in s.cached_tokens().skip(have) {
            self.cache.push(id);
        }
    }

    /// Ends the run now, as if cancelled, flushing held-back text to `on_text`.
    pub fn cancel(&mut self, on_text: &mut dyn FnMut(&str)) -> Result<(), Error> {
        self.scheduler.cancel(RUN, on_text)
    }

    /// The result. A run that has not ended is cancelled first; text it held back goes
    /// into [`Generation::text`] only (there is no callback here).
    pub fn finish(self) -> Generation {
        let mut generations = self.scheduler.finish();
        generations.pop().expect("a run holds one generation")
    }
}

/// A conversation with one model: the messages so far, rendered with the model's chat
/// template, with the KV cache reused from one turn to the next.
pub struct ChatSession {
    generator: Generator,
    template: ChatTemplate,
    /// The system message, kept across [`clear`](Self::clear).
    system: Option<String>,
    messages: Vec<ChatMessage>,
}

impl ChatSession {
    /// A conversation with an optional system message. Uses the model's chat template,
    /// or a built-in one that fits its vocabulary when the model ships none.
    pub fn new(generator: Generator, system: Option<String>) -> Self {
        let template = generator.tokenizer().chat_template_or_builtin();
        let mut session = ChatSession {
            generator,
            template,
            system,
            messages: Vec::new(),
        };
        session.clear();
        session
    }

    pub fn generator(&self) -> &Generator {
        &self.generator
    }

    pub fn generator_mut(&mut self) -> &mut Generator {
        &mut self.generator
    }

    pub fn into_generator(self) -> Generator {
        self.generator
    }

    pub fn messages(&self) -> &[ChatMessage] {
        &self.messages
    }

    pub fn template(&self) -> &ChatTemplate {
        &self.template
    }

    /// Forgets the conversation but the system message. The cache is left alone: the next
    /// turn reuses whatever prefix (the system prompt) still matches.
    pub fn clear(&mut self) {
        self.messages.clear();
        if let Some(system) = &self.system {
            self.messages
                .push(ChatMessage::new("system", system.clone()));
        }
    }

    /// Replaces the whole conversation (system message included), e.g. with a saved one
    /// reopened, or one whose last reply is to be answered again. The KV cache is kept:
    /// the next turn reuses the prefix its rendering shares with the cached tokens.
    pub fn set_messages(&mut self, messages: Vec<ChatMessage>) {
        self.messages = messages;
    }

    /// The token ids of the conversation so far, ready for the assistant's reply: the
    /// template's markup as control tokens, the messages' text as text
    /// ([`chat_prompt_ids`]).
    pub fn prompt_ids(&self) -> Result<Vec<u32>, Error> {
        Ok(chat_prompt_ids(
            self.generator.tokenizer(),
            &self.template,
            &self.messages,
            true,
        )?)
    }

    /// Adds a user message and starts the assistant's reply. On error the message is taken
    /// back, leaving the conversation as it was.
    pub fn send(&mut self, user: &str, options: &GenerateOptions) -> Result<ChatTurn<'_>, Error> {
        self.messages.push(ChatMessage::new("user", user));
        let ids = match self.prompt_ids() {
            Ok(ids) => ids,
            Err(e) => {
                self.messages.pop();
                return Err(e);
            }
        };
        match self.generator.start(&ids, options) {
            Ok(run) => Ok(ChatTurn {
                run,
                messages: &mut self.messages,
            }),
            Err(e) => {
                self.messages.pop();
                Err(e)
            }
        }
    }

    /// Drops the last assistant reply (if any) and answers the last user message again.
    /// `None` when there is no user message to answer (the conversation is unchanged);
    /// on error the dropped reply is put back.
    pub fn regenerate(&mut self, options: &GenerateOptions) -> Result<Option<ChatTurn<'_>>, Error> {
        let removed = match self.messages.last() {
            Some(m) if m.role == "assistant" => self.messages.pop(),
            _ => None,
        };
        if self.messages.last().is_none_or(|m| m.role != "user") {
            self.messages.extend(removed);
            return Ok(None);
        }
        let ids = match self.prompt_ids() {
            Ok(ids) => ids,
            Err(e) => {
                self.messages.extend(removed);
                return Err(e);
            }
        };
        match self.generator.start(&ids, options) {
            Ok(run) => Ok(Some(ChatTurn {
                run,
                messages: &mut self.messages,
            })),
            Err(e) => {
                self.messages.extend(removed);
                Err(e)
            }
        }
    }

    /// Sends `user` and generates the whole reply (see [`Generator::generate`]).
    pub async fn reply(
        &mut self,
        user: &str,
        options: &GenerateOptions,
        cancel: &AtomicBool,
        on_text: &mut dyn FnMut(&str),
    ) -> Result<Generation, Error> {
        let mut turn = self.send(user, options)?.with_cancel(cancel);
        while turn.next_token(on_text).await?.is_some() {}
        Ok(turn.finish())
    }
}

/// The assistant's reply in progress; [`finish`](Self::finish) adds it to the conversation.
pub struct ChatTurn<'s> {
    run: Run<'s>,
    messages: &'s mut Vec<ChatMessage>,
}

impl<'s> ChatTurn<'s> {
    pub fn with_cancel(mut self, cancel: &'s AtomicBool) -> Self {
        self.run = self.run.with_cancel(cancel);
        self
    }

    /// The generation underneath (its prompt, the ids and text so far, why it stopped).
    pub fn run(&self) -> &Run<'s> {
        &self.run
    }

    /// See [`Run::next_token`].
    pub async fn next_token(
        &mut self,
        on_text: &mut dyn FnMut(&str),
    ) -> Result<Option<u32>, Error> {
        self.run.next_token(on_text).await
    }

    /// See [`Run::cancel`].
    pub fn cancel(&mut self, on_text: &mut dyn FnMut(&str)) -> Result<(), Error> {
        self.run.cancel(on_text)
    }

    /// Ends the reply and records it as the assistant's message, also when it was cut short
    /// (the user saw it, and the next turn's rendering includes it).
    pub fn finish(self) -> Generation {
        let generation = self.run.finish();
        self.messages
            .push(ChatMessage::new("assistant", generation.text.clone()));
        generation
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache(ids: &[u32]) -> CachedTokens {
        let mut c = CachedTokens::default();
        c.extend(ids);
        c
    }

    #[test]
    fn common_prefix_of_plain_sequences() {
        assert_eq!(common_prefix(&[], &[1, 2]), 0);
        assert_eq!(common_prefix(&[1, 2, 3], &[1, 2, 3]), 3);
        assert_eq!(common_prefix(&[1, 2, 3], &[1, 2]), 2);
        assert_eq!(common_prefix(&[1, 2, 3], &[1, 9, 3]), 1);
        assert_eq!(common_prefix(&[7], &[8]), 0);
    }

    #[test]
    fn empty_cache_reuses_nothing() {
        assert_eq!(CachedTokens::default().reusable(&[1, 2, 3]), 0);
        assert_eq!(CachedTokens::default().reusable(&[]), 0);
    }

    #[test]
    fn identical_prompt_keeps_all_but_the_last_token() {
        // The last token is processed again so its logits exist for sampling.
        assert_eq!(cache(&[1, 2, 3]).reusable(&[1, 2, 3]), 2);
        assert_eq!(cache(&[1]).reusable(&[1]), 0);
    }

    /// Token ids standing for a ChatML conversation: S = system, U/A = user/assistant
    /// headers, E = end of turn, the rest message text.
    const S: u32 = 100;
    const U: u32 = 101;
    const A: u32 = 102;
    const E: u32 = 103;

    /// Plays the generator's bookkeeping for one turn: keep the reusable prefix, prefill
    /// the rest, then decode every generated token but the last (it is sampled but never
    /// fed back when the run stops). Returns how many prompt tokens were prefilled.
    fn turn(c: &mut CachedTokens, prompt: &[u32], generated: &[u32]) -> usize {
        let keep = c.reusable(prompt);
        c.truncate(keep);
        c.extend(&prompt[keep..]);
        if let Some((_, fed)) = generated.split_last() {
            c.extend(fed);
        }
        prompt.len() - keep
    }

    #[test]
    fn second_chat_turn_prefills_only_the_new_messages() {
        let mut c = CachedTokens::default();
        let turn1 = [S, 1, E, U, 2, 3, E, A];
        assert_eq!(turn(&mut c, &turn1, &[4, 5, E]), turn1.len());
        assert_eq!(c.ids(), &[S, 1, E, U, 2, 3, E, A, 4, 5]);
        // The rendering of the next turn contains the reply and its end token.
        let turn2 = [S, 1, E, U, 2, 3, E, A, 4, 5, E, U, 6, E, A];
        assert_eq!(turn(&mut c, &turn2, &[7, E]), 5);
        assert_eq!(c.ids(), &[S, 1, E, U, 2, 3, E, A, 4, 5, E, U, 6, E, A, 7]);
    }

    #[test]
    fn regenerate_drops_the_reply_and_keeps_the_question() {
        let mut c = cache(&[S, U, 2, E, A, 4, 5]);
        // Regenerating renders the conversation without the reply: everything up to the
        // assistant header stays, only the header itself is processed again.
        let again = [S, U, 2, E, A];
        assert_eq!(c.reusable(&again), 4);
        assert_eq!(turn(&mut c, &again, &[8, E]), 1);
        assert_eq!(c.ids(), &[S, U, 2, E, A, 8]);
    }

    #[test]
    fn retokenized_reply_diverges_where_the_ids_differ() {
        // The reply was generated as [4, 5] but its text tokenizes as [45]: the cache is
        // cut at the first difference and the rest processed again.
        let c = cache(&[S, U, 2, E, A, 4, 5]);
        let next = [S, U, 2, E, A, 45, E, U, 6, E, A];
        assert_eq!(c.reusable(&next), 5);
    }

    #[test]
    fn clear_keeps_the_system_prompt_prefix() {
        let c = cache(&[S, 1, E, U, 2, E, A, 4, 5]);
        assert_eq!(c.reusable(&[S, 1, E, U, 9, E, A]), 4);
        // A different system prompt reuses nothing.
        assert_eq!(c.reusable(&[S, 7, E, U, 9, E, A]), 1);
        assert_eq!(c.reusable(&[U, 9, E, A]), 0);
    }

    #[test]
    fn stop_reasons_spell_as_in_json() {
        assert_eq!(StopReason::MaxTokens.as_str(), "max_tokens");
        assert_eq!(
            serde_json::to_string(&StopReason::EndOfGeneration).unwrap(),
            "\"end_of_generation\""
        );
        assert_eq!(StopReason::ContextFull.to_string(), "context_full");
    }
}
