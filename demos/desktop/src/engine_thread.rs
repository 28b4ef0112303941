//! The engine's own thread: it opens the adapter, loads models and generates replies,
//! so the window never waits on the GPU. The UI sends [`Command`]s and reads
//! [`Event`]s; `notify` (the window's repaint request) is called after each event so the
//! UI wakes up for it. A reply is stopped through a shared flag, checked before every
//! token, because the thread does not read commands while it generates.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::thread::JoinHandle;
use std::time::Instant;

use anyhow::{Context, Result};
use wisp::common::{self, DeviceArgs, Model};
use wisp::model_cache;
use wisp::settings::EnvSettings;
use wisp_core::defaults::ModelDefaults;
use wisp_core::generate::{ChatSession, GenerateOptions, Generator, StopReason};
use wisp_core::gpu::Gpu;
use wisp_core::model::Counted;
use wisp_core::tokenizer::ChatMessage;

/// What the UI asks of the engine.
pub enum Command {
    /// Load a model (a GGUF file, a Hugging Face folder or a known model's name; `None`:
    /// the default model), replacing the one loaded.
    Load(Option<String>),
    /// Answer the last message of `messages` (a user message; a system message may come
    /// first), streaming the text back as [`Event::Text`].
    Reply {
        conversation: String,
        messages: Vec<ChatMessage>,
        options: GenerateOptions,
    },
}

/// Where a model load is.
#[derive(Clone, Debug, PartialEq)]
pub enum LoadPhase {
    /// Downloading a known model into the cache (no byte count: pip reports none).
    Fetching(String),
    /// Reading the file's header and tokenizer.
    Opening,
    /// Weights on their way to the GPU.
    Weights { done: u64, total: u64 },
    /// Building the compute pipelines (long on a software adapter the first time).
    Kernels,
}

/// The adapter the engine runs on.
#[derive(Clone, Debug)]
pub struct AdapterSummary {
    pub name: String,
    pub backend: String,
    /// The kernel variant taken there (activations/reduction/tier).
    pub variant: String,
    /// Why this adapter was chosen.
    pub reason: String,
}

/// A loaded model.
#[derive(Clone, Debug)]
pub struct ModelSummary {
    /// The file or folder name.
    pub name: String,
    pub path: PathBuf,
    pub architecture: String,
    pub context: u32,
    pub file_bytes: u64,
    pub load_seconds: f64,
    /// What replies run with when a setting is left alone, and the system prompt of a
    /// conversation that has none of its own. Boxed: it is large, and events carry this.
    pub defaults: Box<ModelDefaults>,
}

/// How a reply went.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct ReplyStats {
    pub prompt_tokens: usize,
    pub reused_tokens: usize,
    pub generated_tokens: usize,
    pub prefill_tokens_per_second: f64,
    pub decode_tokens_per_second: f64,
    /// `None` when the reply could not start.
    pub stop_reason: Option<StopReason>,
}

/// What the engine tells the UI.
pub enum Event {
    Adapter(Result<AdapterSummary, String>),
    Loading(LoadPhase),
    Loaded(ModelSummary),
    LoadFailed(String),
    /// More text of the reply in progress.
    Text {
        conversation: String,
        text: String,
    },
    /// The reply ended (also when stopped or failed: `error` says why it failed; the
    /// text streamed so far stays the reply).
    ReplyDone {
        conversation: String,
        stats: ReplyStats,
        error: Option<String>,
    },
}

/// The UI's side of the engine thread.
pub struct EngineHandle {
    commands: Sender<Command>,
    events: Receiver<Event>,
    cancel: Arc<AtomicBool>,
    _thread: JoinHandle<()>,
}

impl EngineHandle {
    /// Starts the thread, which opens `adapter` (as `wisp --adapter` takes it; `None`: the
    /// best one) and then waits for commands.
    pub fn spawn(
        adapter: Option<String>,
        notify: impl Fn() + Send + 'static,
    ) -> Result<EngineHandle> {
        let (commands, command_rx) = channel();
        let (event_tx, events) = channel();
        let cancel = Arc::new(AtomicBool::new(false));
        let worker = Worker {
            events: event_tx,
            notify: Box::new(notify),
            cancel: cancel.clone(),
            session: None,
        };
        let thread = std::thread::Builder::new()
            .name("wisp-engine".into())
            .spawn(move || worker.run(adapter, command_rx))
            .context("starting the engine thread")?;
        Ok(EngineHandle {
            commands,
            events,
            cancel,
            _thread: thread,
        })
    }

    /// Queues a command. The thread only ends with the handle, so sending cannot fail
    /// unless it panicked; that is reported as an error event by the caller.
    pub fn send(&self, command: Command) -> Result<()> {
        if matches!(command, Command::Reply { .. }) {
            self.cancel.store(false, Ordering::SeqCst);
        }
        self.commands
            .send(command)
            .map_err(|_| anyhow::anyhow!("the engine thread has stopped"))
    }

    /// Stops the reply in progress before its next token.
    pub fn stop(&self) {
        self.cancel.store(true, Ordering::SeqCst);
    }

    /// The events that arrived since the last call.
    pub fn events(&self) -> impl Iterator<Item = Event> + '_ {
        self.events.try_iter()
    }
}

struct Worker {
    events: Sender<Event>,
    notify: Box<dyn Fn() + Send>,
    cancel: Arc<AtomicBool>,
    session: Option<ChatSession>,
}

impl Worker {
    fn emit(&self, event: Event) {
        // The UI went away (the window closed): nothing left to tell.
        let _ = self.events.send(event);
        (self.notify)();
    }

    fn run(mut self, adapter: Option<String>, commands: Receiver<Command>) {
        let device = DeviceArgs {
            adapter,
            ctx: 0,
            kv_type: None,
            kv_pool: 0,
            kv_block: 16,
            batch_tokens: None,
            self_draft_layers: None,
        };
        let gpu = common::open_gpu(&device);
        self.emit(Event::Adapter(match &gpu {
            Ok(gpu) => describe_adapter(gpu).map_err(|e| format!("{e:#}")),
            Err(e) => Err(format!("{e:#}")),
        }));
        for command in commands {
            match command {
                Command::Load(spec) => {
                    // The old model's buffers go before the new ones are made.
                    self.session = None;
                    let loaded = match &gpu {
                        Ok(gpu) => self.load(spec.as_deref(), gpu.clone(), &device),
                        Err(e) => Err(anyhow::anyhow!("no adapter: {e:#}")),
                    };
                    match loaded {
                        Ok((session, summary)) => {
                            self.session = Some(session);
                            self.emit(Event::Loaded(summary));
                        }
                        Err(e) => self.emit(Event::LoadFailed(format!("{e:#}"))),
                    }
                }
                Command::Reply {
                    conversation,
                    messages,
                    options,
                } => {
                    let (stats, error) = self.reply(&conversation, messages, &options);
                    self.emit(Event::ReplyDone {
                        conversation,
                        stats,
                        error,
                    });
                }
            }
        }
    }

    fn load(
        &self,
        spec: Option<&str>,
        gpu: Arc<Gpu>,
        device: &DeviceArgs,
    ) -> Result<(ChatSession, ModelSummary)> {
        let t0 = Instant::now();
        let name = spec.unwrap_or(model_cache::DEFAULT_MODEL);
        if let Some(known) = model_cache::find_known(name).filter(|k| !model_cache::is_cached(k)) {
            self.emit(Event::Loading(LoadPhase::Fetching(known.name.to_string())));
        } else {
            self.emit(Event::Loading(LoadPhase::Opening));
        }
        let model = Model::open_with(Some(name), None)?;
        self.emit(Event::Loading(LoadPhase::Opening));
        let tokenizer = model.tokenizer()?;
        let source = model.tensor_source();
        let on_bytes = |done: u64, total: u64| {
            self.emit(Event::Loading(if done < total {
                LoadPhase::Weights { done, total }
            } else {
                LoadPhase::Kernels
            }));
        };
        let counted = Counted::new(&source, &model.file, &on_bytes);
        let engine = common::load_engine_from(
            &model.file,
            &counted,
            &model.path.display().to_string(),
            gpu,
            device,
            1,
        )?;
        let summary = ModelSummary {
            name: model.path.file_name().map_or_else(
                || model.path.display().to_string(),
                |n| n.to_string_lossy().into_owned(),
            ),
            path: model.path.clone(),
            architecture: engine.config.architecture.clone(),
            context: engine.context_size(),
            file_bytes: model.file_bytes(),
            load_seconds: t0.elapsed().as_secs_f64(),
            defaults: Box::new(ModelDefaults::for_model(&model.file.metadata)),
        };
        Ok((
            ChatSession::new(Generator::new(engine, tokenizer), None),
            summary,
        ))
    }

    fn reply(
        &mut self,
        conversation: &str,
        messages: Vec<ChatMessage>,
        options: &GenerateOptions,
    ) -> (ReplyStats, Option<String>) {
        let Some(mut session) = self.session.take() else {
            return (ReplyStats::default(), Some("no model is loaded".into()));
        };
        let result = self.stream_reply(&mut session, conversation, messages, options);
        self.session = Some(session);
        match result {
            Ok(done) => done,
            Err(e) => (ReplyStats::default(), Some(e.to_string())),
        }
    }

    /// Runs one reply; `Err` when it could not start (nothing was generated).
    fn stream_reply(
        &self,
        session: &mut ChatSession,
        conversation: &str,
        messages: Vec<ChatMessage>,
        options: &GenerateOptions,
    ) -> Result<(ReplyStats, Option<String>), wisp_core::Error> {
        session.set_messages(messages);
        let Some(turn) = session.regenerate(options)? else {
            return Ok((
                ReplyStats::default(),
                Some("the conversation has no message to answer".into()),
            ));
        };
        let mut turn = turn.with_cancel(&self.cancel);
        let mut on_text = |text: &str| {
            if !text.is_empty() {
                self.emit(Event::Text {
                    conversation: conversation.to_string(),
                    text: text.to_string(),
                });
            }
        };
        let mut failure = None;
        while failure.is_none() {
            match pollster::block_on(turn.next_token(&mut on_text)) {
                Ok(Some(_)) => {}
                Ok(None) => break,
                Err(e) => failure = Some(e),
            }
        }
        let generation = turn.finish();
        let timing = generation.timing;
        let stats = ReplyStats {
            prompt_tokens: generation.n_prefilled,
            reused_tokens: generation.n_reused,
            generated_tokens: generation.n_generated(),
            prefill_tokens_per_second: timing.prefill_tokens_per_second(generation.n_prefilled),
            decode_tokens_per_second: timing.decode_tokens_per_second(generation.n_generated()),
            stop_reason: Some(generation.stop_reason),
        };
        Ok((stats, failure.map(|e| e.to_string())))
    }
}

fn describe_adapter(gpu: &Gpu) -> Result<AdapterSummary> {
    let variant = EnvSettings::from_env()?
        .variant
        .resolve(&gpu.caps, &gpu.adapter_name())?;
    Ok(AdapterSummary {
        name: gpu.info.name.clone(),
        backend: format!("{:?}", gpu.info.backend),
        variant: variant.to_string(),
        reason: gpu.choice_reason.clone(),
    })
}
