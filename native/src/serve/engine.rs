//! The engine thread: it loads the model, then owns the [`Engine`], the [`Tokenizer`] and
//! a long-lived [`Scheduler`] over them, and runs every request's generations in one
//! continuous batch. Jobs arrive on a channel; the loop takes every new one without
//! blocking (it blocks only when idle), starts waiting generations while fewer than
//! `--parallel` run, steps the scheduler once, and sends each request what its
//! generations produced since the last step. A request whose receiver is gone (the client
//! disconnected) is cancelled at once, so its KV blocks are free by the next step.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result};
use tokio::sync::{mpsc, oneshot};
use wisp_core::engine::Engine;
use wisp_core::sampling::TokenLogprobs;
use wisp_core::scheduler::{Scheduler, StepReport};
use wisp_core::tokenizer::Tokenizer;

use super::error::ApiError;
use super::job::{Command, Event, FinishReason, Job, TokenLogprob, Usage};
use super::metrics::Gauges;
use super::model::ServedModel;
use super::response::unix_seconds;
use super::state::Shared;
use crate::common::{self, DeviceArgs, Model, ModelArgs};
use crate::model_cache;
use crate::speculation::{SpeculationArgs, load_draft_model};

/// What the thread loads.
pub struct EngineSetup {
    pub model: ModelArgs,
    pub device: DeviceArgs,
    pub parallel: u32,
    /// The drafter every request gets unless it turns speculation off.
    pub speculation: SpeculationArgs,
}

/// Starts the engine thread. `ended` hears how it ended: `Ok` after a drain, `Err` when the
/// model could not be loaded (or the thread failed).
pub fn spawn(
    setup: EngineSetup,
    commands: mpsc::UnboundedReceiver<Command>,
    shared: Arc<Shared>,
    ended: oneshot::Sender<Result<()>>,
) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("wisp-engine".into())
        .spawn(move || {
            let result = thread_main(setup, commands, &shared);
            let _ = ended.send(result);
        })
        .map(drop)
}

fn thread_main(
    setup: EngineSetup,
    commands: mpsc::UnboundedReceiver<Command>,
    shared: &Shared,
) -> Result<()> {
    let (mut engine, tokenizer, served, mut draft) = load(&setup)?;
    let parallel = setup.parallel as usize;
    tracing::info!(model = %served.id, n_ctx = served.n_ctx, parallel, "model ready");
    // Set only now: /health says "loading" until here.
    let _ = shared.model.set(Arc::new(served));
    let mut worker = Worker {
        shared,
        commands,
        parallel,
        requests: BTreeMap::new(),
        waiting: VecDeque::new(),
        next_id: 0,
        deadline: None,
        draining: false,
    };
    worker.run(&mut engine, &tokenizer, draft.as_mut())?;
    Ok(())
}

/// A draft model and its tokenizer.
type Draft = (Engine, Tokenizer);

/// Opens the model, its tokenizer and the engine (sized for `--parallel` generations),
/// and the draft model when `--draft` names one.
fn load(setup: &EngineSetup) -> Result<(Engine, Arc<Tokenizer>, ServedModel, Option<Draft>)> {
    let spec = setup
        .model
        .model
        .clone()
        .unwrap_or_else(|| model_cache::DEFAULT_MODEL.to_string());
    let model = Model::open(&setup.model)?;
    let defaults = common::model_defaults(&model);
    let tokenizer = Arc::new(model.tokenizer()?);
    let gpu = common::open_gpu(&setup.device)?;
    let source = model.tensor_source();
    let device = DeviceArgs {
        self_draft_layers: setup.speculation.self_draft_layers(),
        ..setup.device.clone()
    };
    let engine = common::load_engine_from(
        &model.file,
        &source,
        &model.path.display().to_string(),
        gpu.clone(),
        &device,
        setup.parallel,
    )
    .context("loading the engine")?;
    let draft = load_draft_model(&setup.speculation, gpu, &setup.device, setup.parallel)?;
    let name = |s: Option<&std::ffi::OsStr>| s.map(|s| s.to_string_lossy().into_owned());
    // A known model is listed by its name, a file by its stem; requests may use either,
    // the file's name or the -m argument as given.
    let id = if std::path::Path::new(&spec).exists() {
        name(model.path.file_stem()).unwrap_or_else(|| spec.clone())
    } else {
        spec.clone()
    };
    let aliases = [
        Some(spec),
        name(model.path.file_name()),
        name(model.path.file_stem()),
    ]
    .into_iter()
    .flatten()
    .collect();
    let served = ServedModel {
        id,
        aliases,
        created: unix_seconds(),
        template: tokenizer.chat_template_or_builtin(),
        tokenizer: tokenizer.clone(),
        defaults,
        n_ctx: engine.context_size() as usize,
        speculation: setup.speculation.options()?,
    };
    Ok((engine, tokenizer, served, draft))
}

/// One choice of a request, as the thread follows it.
#[derive(Default)]
struct Choice {
    /// Its index in the scheduler, once it runs (`None` while it waits).
    slot: Option<usize>,
    /// How much of its ids and text the request has been sent.
    sent_ids: usize,
    sent_text: usize,
    last_token: Option<Instant>,
    ended: bool,
    generated: usize,
    reused: usize,
}

/// A request in progress.
struct Request {
    job: Job,
    choices: Vec<Choice>,
}

impl Request {
    fn send(&self, event: Event) {
        // A closed channel is noticed (and the request cancelled) at the next look.
        let _ = self.job.events.send(event);
    }

    fn waiting_choices(&self) -> usize {
        self.choices
            .iter()
            .filter(|c| c.slot.is_none() && !c.ended)
            .count()
    }

    fn is_over(&self) -> bool {
        self.choices.iter().all(|c| c.ended)
    }

    fn usage(&self) -> Usage {
        Usage::new(
            self.job.prompt.len(),
            self.choices.iter().map(|c| c.generated).sum(),
            // The prompt is counted once; the first choice's cache hit is the request's.
            self.choices.first().map_or(0, |c| c.reused),
        )
    }
}

/// Why [`Worker::serve`] returned.
enum Outcome {
    /// Drained (or every sender is gone): the thread ends.
    Exit,
    /// A step failed; every request was told, and the engine must be reset.
    Failed,
}

struct Worker<'s> {
    shared: &'s Shared,
    commands: mpsc::UnboundedReceiver<Command>,
    parallel: usize,
    requests: BTreeMap<u64, Request>,
    /// Choices waiting to start, in order of arrival: (request, choice).
    waiting: VecDeque<(u64, usize)>,
    next_id: u64,
    /// When running generations are cut short (after SIGTERM).
    deadline: Option<Instant>,
    draining: bool,
}

impl Worker<'_> {
    fn run(
        &mut self,
        engine: &mut Engine,
        tokenizer: &Tokenizer,
        mut draft: Option<&mut Draft>,
    ) -> Result<()> {
        loop {
            let mut scheduler = Scheduler::new(engine, tokenizer);
            if let Some((engine, tokenizer)) = draft.as_deref_mut() {
                scheduler.set_draft_model(engine, tokenizer)?;
            }
            // Generations beyond --parallel wait here rather than in the scheduler, so
            // that the queue's length is known to the HTTP side (429s); the limit also
            // bounds generations the scheduler takes back after preempting them.
            scheduler.set_max_running(self.parallel);
            let outcome = self.serve(&mut scheduler, tokenizer);
            // After a failed (or panicked) step the scheduler may be in any state: ending
            // it must not take the thread down with it.
            let ended =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || scheduler.finish()));
            drop(ended);
            match outcome {
                Outcome::Exit => return Ok(()),
                // Whatever the failed step left in the cache is forgotten.
                Outcome::Failed => engine.reset(),
            }
        }
    }

    /// Runs requests on `scheduler` until the thread should end or a step fails.
    fn serve(&mut self, scheduler: &mut Scheduler<'_>, tokenizer: &Tokenizer) -> Outcome {
        loop {
            let idle = self.requests.is_empty();
            if !self.take_commands(idle && !self.draining) && idle {
                return Outcome::Exit;
            }
            self.drop_abandoned(scheduler);
            self.cut_at_deadline(scheduler);
            self.admit(scheduler);
            if scheduler.active() > 0 {
                match step(scheduler) {
                    Ok(report) => {
                        self.shared.metrics.step(
                            report.sequences,
                            report.sampled,
                            report.drafted,
                            report.accepted,
                        );
                        if report.sequences == 0 {
                            // Not reachable (a running generation always has something
                            // to feed), but never spin: end them.
                            self.cancel_running(scheduler);
                        }
                    }
                    Err(e) => {
                        tracing::error!("engine step failed: {e}");
                        self.fail_all(&ApiError::internal(format!("The engine failed: {e}")));
                        return Outcome::Failed;
                    }
                }
            }
            self.report(scheduler, tokenizer);
            self.set_gauges(scheduler);
            if self.requests.is_empty() && self.draining {
                return Outcome::Exit;
            }
        }
    }

    /// Takes every command there is, first waiting for one when `block`. False when every
    /// sender is gone.
    fn take_commands(&mut self, block: bool) -> bool {
        if block {
            match self.commands.blocking_recv() {
                Some(command) => self.command(command),
                None => return false,
            }
        }
        loop {
            match self.commands.try_recv() {
                Ok(command) => self.command(command),
                Err(mpsc::error::TryRecvError::Empty) => return true,
                Err(mpsc::error::TryRecvError::Disconnected) => return false,
            }
        }
    }

    fn command(&mut self, command: Command) {
        match command {
            Command::Run(job) => {
                let id = self.next_id;
                self.next_id += 1;
                self.shared.metrics.prompt_tokens(job.prompt.len());
                let n = job.choices.len();
                self.waiting.extend((0..n).map(|c| (id, c)));
                let choices = (0..n).map(|_| Choice::default()).collect();
                self.requests.insert(id, Request { job, choices });
            }
            Command::Drain { deadline } => {
                self.draining = true;
                self.deadline = Some(self.deadline.map_or(deadline, |d| d.min(deadline)));
            }
        }
    }

    /// Cancels the requests whose client went away.
    fn drop_abandoned(&mut self, scheduler: &mut Scheduler<'_>) {
        let gone: Vec<u64> = self
            .requests
            .iter()
            .filter(|(_, r)| r.job.events.is_closed())
            .map(|(&id, _)| id)
            .collect();
        for id in gone {
            tracing::debug!(request = id, "client gone: cancelling");
            self.remove(id, scheduler);
        }
    }

    /// Removes a request: its running generations are cancelled (their blocks freed now)
    /// and its waiting ones given back to the queue's count.
    fn remove(&mut self, id: u64, scheduler: &mut Scheduler<'_>) {
        let Some(request) = self.requests.remove(&id) else {
            return;
        };
        self.shared.admission.release(request.waiting_choices());
        for choice in &request.choices {
            if let Some(slot) = choice.slot {
                let _ = scheduler.cancel(slot, &mut |_| {});
                scheduler.take(slot);
            }
        }
        self.waiting.retain(|&(r, _)| r != id);
    }

    /// After the drain deadline: everything still running or waiting ends now.
    fn cut_at_deadline(&mut self, scheduler: &mut Scheduler<'_>) {
        if self.deadline.is_none_or(|d| Instant::now() < d) {
            return;
        }
        if !self.requests.is_empty() {
            tracing::warn!(
                requests = self.requests.len(),
                "drain deadline passed: cutting the remaining generations short"
            );
        }
        self.waiting.clear();
        for request in self.requests.values_mut() {
            self.shared.admission.release(request.waiting_choices());
            for (i, choice) in request.choices.iter_mut().enumerate() {
                match (choice.slot, choice.ended) {
                    (_, true) => {}
                    (Some(slot), false) => {
                        // Reported (with its last text) by the next look at the scheduler.
                        let _ = scheduler.cancel(slot, &mut |_| {});
                    }
                    (None, false) => {
                        choice.ended = true;
                        let _ = request.job.events.send(Event::ChoiceEnd {
                            choice: i,
                            finish_reason: FinishReason::Length,
                        });
                    }
                }
            }
        }
    }

    /// Starts waiting generations, oldest first, while fewer than `--parallel` run.
    fn admit(&mut self, scheduler: &mut Scheduler<'_>) {
        while scheduler.active() < self.parallel {
            let Some((id, c)) = self.waiting.pop_front() else {
                return;
            };
            let Some(request) = self.requests.get_mut(&id) else {
                continue;
            };
            self.shared.admission.release(1);
            let options = &request.job.choices[c];
            match scheduler.submit(request.job.prompt.clone(), options) {
                Ok(slot) => request.choices[c].slot = Some(slot),
                Err(e) => {
                    // Checked before queueing, so only the engine's own limits get here.
                    // Its place was given back above: `remove` must not count it again.
                    request.choices[c].ended = true;
                    request.send(Event::Failed(ApiError::bad_request(format!(
                        "The engine refused the request: {e}"
                    ))));
                    self.remove(id, scheduler);
                }
            }
        }
    }

    /// Ends every running generation (the step made no progress).
    fn cancel_running(&mut self, scheduler: &mut Scheduler<'_>) {
        for request in self.requests.values() {
            for choice in &request.choices {
                if let (Some(slot), false) = (choice.slot, choice.ended) {
                    let _ = scheduler.cancel(slot, &mut |_| {});
                }
            }
        }
    }

    /// Tells every request of a failed step, and forgets them all.
    fn fail_all(&mut self, error: &ApiError) {
        for request in std::mem::take(&mut self.requests).into_values() {
            self.shared.admission.release(request.waiting_choices());
            request.send(Event::Failed(error.clone()));
        }
        self.waiting.clear();
    }

    /// Sends each request what its generations did since the last look, takes the ended
    /// generations out of the scheduler, and ends the requests whose choices have all ended.
    fn report(&mut self, scheduler: &mut Scheduler<'_>, tokenizer: &Tokenizer) {
        let metrics = &self.shared.metrics;
        let mut over = Vec::new();
        for (&id, request) in &mut self.requests {
            for (i, choice) in request.choices.iter_mut().enumerate() {
                let (Some(slot), false) = (choice.slot, choice.ended) else {
                    continue;
                };
                let Some(seq) = scheduler.sequence(slot) else {
                    continue;
                };
                let ids = seq.ids();
                if ids.len() > choice.sent_ids {
                    let now = Instant::now();
                    let since = choice.last_token.unwrap_or(request.job.received);
                    let seconds = now.duration_since(since).as_secs_f64();
                    match choice.last_token {
                        None => metrics.first_token(seconds),
                        Some(_) => metrics.next_token(seconds),
                    }
                    choice.last_token = Some(now);
                }
                let text = seq.text().get(choice.sent_text..).unwrap_or_default();
                if ids.len() > choice.sent_ids || !text.is_empty() {
                    let logprobs = seq
                        .logprobs()
                        .get(choice.sent_ids..)
                        .unwrap_or_default()
                        .iter()
                        .map(|t| token_logprob(tokenizer, t))
                        .collect();
                    let _ = request.job.events.send(Event::Tokens {
                        choice: i,
                        text: text.to_string(),
                        logprobs,
                    });
                    choice.sent_ids = ids.len();
                    choice.sent_text = seq.text().len();
                }
                if let Some(reason) = seq.stop_reason() {
                    choice.ended = true;
                    choice.generated = ids.len();
                    choice.reused = seq.n_reused();
                    let _ = request.job.events.send(Event::ChoiceEnd {
                        choice: i,
                        finish_reason: reason.into(),
                    });
                    // Its index is free for a later generation from here on.
                    scheduler.take(slot);
                    choice.slot = None;
                }
            }
            if request.is_over() {
                request.send(Event::Done {
                    usage: request.usage(),
                });
                over.push(id);
            }
        }
        for id in over {
            self.requests.remove(&id);
        }
    }

    fn set_gauges(&self, scheduler: &Scheduler<'_>) {
        let stats = scheduler.stats();
        self.shared.metrics.preemptions(stats.preemptions);
        self.shared.metrics.gauges(Gauges {
            queue_depth: self.waiting.len() + stats.waiting,
            running: stats.running,
            kv_blocks_used: stats.kv.used_blocks,
            kv_blocks_free: stats.kv.free_blocks,
            kv_blocks_cached: stats.kv.cached_blocks,
        });
    }
}

/// One scheduler step. A panic in it (a bug) fails the step like an error, so that the
/// requests in it are answered 500 and the server goes on with a reset engine.
fn step(scheduler: &mut Scheduler<'_>) -> Result<StepReport, String> {
    let stepped = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        pollster::block_on(scheduler.step(&mut |_, _| {}))
    }));
    match stepped {
        Ok(Ok(report)) => Ok(report),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("the engine panicked (a bug: see the server's log)".to_string()),
    }
}

/// A sampled token's log-probabilities with the tokens' texts and bytes.
fn token_logprob(tokenizer: &Tokenizer, t: &TokenLogprobs) -> TokenLogprob {
    let piece = |id: u32| {
        (
            tokenizer.token_piece(id).unwrap_or_default(),
            tokenizer.piece_bytes(id).unwrap_or_default(),
        )
    };
    let (token, bytes) = piece(t.id);
    TokenLogprob {
        bytes,
        token,
        logprob: t.logprob,
        top: t
            .top
            .iter()
            .map(|&(id, logprob)| {
                let (text, bytes) = piece(id);
                (text, bytes, logprob)
            })
            .collect(),
    }
}
