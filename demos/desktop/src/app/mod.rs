//! [`DesktopApp`]: the window's state and what the user can do with it. Drawing is split
//! by area (`top_bar`, `sidebar`, `chat_view`, `settings_panel`); everything that touches
//! the model goes to the engine thread as a command, and its events come back here.

mod chat_view;
mod settings_panel;
mod sidebar;
mod top_bar;

use std::path::PathBuf;
use std::sync::mpsc::{Receiver, channel};
use std::time::Instant;

use eframe::egui;
use wisp_core::defaults::ModelDefaults;

use crate::automation::Script;
use crate::engine_thread::{
    AdapterSummary, Command, EngineHandle, Event, LoadPhase, ModelSummary, ReplyStats,
};
use crate::history::{Conversation, History};
use crate::prefs::{Prefs, PrefsFile};

/// Where the model is.
pub enum ModelState {
    None,
    Loading {
        what: String,
        phase: LoadPhase,
        since: Instant,
    },
    Ready(ModelSummary),
    Failed(String),
}

/// The reply being streamed.
pub struct PendingReply {
    pub conversation: String,
    pub text: String,
}

pub struct DesktopApp {
    engine: EngineHandle,
    history: History,
    prefs: Prefs,
    prefs_file: PrefsFile,
    /// Newest first.
    conversations: Vec<Conversation>,
    selected: Option<String>,
    input: String,
    model: ModelState,
    /// The model being loaded, recorded in the settings once it is ready.
    loading_spec: Option<String>,
    adapter: Option<Result<AdapterSummary, String>>,
    reply: Option<PendingReply>,
    last_stats: Option<ReplyStats>,
    /// Errors and warnings shown above the conversation until dismissed.
    notices: Vec<String>,
    /// The model path typed in the model bar.
    model_input: String,
    /// An open file dialog's answer.
    picked: Option<Receiver<Option<PathBuf>>>,
    show_settings: bool,
    script: Option<Script>,
}

/// What `main` hands the app.
pub struct Startup {
    pub data_dir: PathBuf,
    pub adapter: Option<String>,
    /// `-m`: overrides the model of the settings for this start.
    pub model: Option<String>,
    pub sampling_override: Box<dyn FnOnce(&mut Prefs)>,
    pub script: Option<Script>,
}

impl DesktopApp {
    pub fn new(ctx: &egui::Context, startup: Startup) -> anyhow::Result<DesktopApp> {
        let repaint = ctx.clone();
        let engine = EngineHandle::spawn(startup.adapter, move || repaint.request_repaint())?;
        let history = History::open(&startup.data_dir)?;
        let (prefs_file, prefs_problem) = PrefsFile::load(&startup.data_dir);
        let mut prefs = prefs_file.saved().clone();
        (startup.sampling_override)(&mut prefs);
        let mut notices = Vec::new();
        if let Err(problem) = prefs_problem {
            notices.push(format!("The settings could not be read: {problem}"));
        }
        let listing = history.list()?;
        for bad in &listing.unreadable {
            notices.push(format!(
                "A saved conversation could not be read (left as it is): {bad}"
            ));
        }
        tracing::info!(
            "history: {} conversations in {}",
            listing.conversations.len(),
            history.dir().display()
        );
        let mut app = DesktopApp {
            engine,
            history,
            selected: listing.conversations.first().map(|c| c.id.clone()),
            conversations: listing.conversations,
            prefs,
            prefs_file,
            input: String::new(),
            model: ModelState::None,
            loading_spec: None,
            adapter: None,
            reply: None,
            last_stats: None,
            notices,
            model_input: String::new(),
            picked: None,
            show_settings: false,
            script: startup.script,
        };
        let model = startup.model.or_else(|| app.prefs.model.clone());
        app.load_model(model);
        Ok(app)
    }

    // ---- actions -----------------------------------------------------------------

    /// Loads a model (`None`: the default one) on the engine thread.
    fn load_model(&mut self, spec: Option<String>) {
        if self.reply.is_some() {
            self.notices
                .push("Stop the reply before loading another model.".into());
            return;
        }
        let what = spec
            .clone()
            .unwrap_or_else(|| format!("{} (default)", wisp::model_cache::DEFAULT_MODEL));
        match self.engine.send(Command::Load(spec.clone())) {
            Ok(()) => {
                self.model = ModelState::Loading {
                    what,
                    phase: LoadPhase::Opening,
                    since: Instant::now(),
                };
                self.loading_spec = spec;
            }
            Err(e) => self.model = ModelState::Failed(e.to_string()),
        }
    }

    /// Opens the system's file dialog on its own thread (a portal or zenity on Linux may
    /// take a while), for a GGUF file or, with `folder`, a Hugging Face model folder.
    fn pick_model(&mut self, ctx: &egui::Context, folder: bool) {
        let (tx, rx) = channel();
        let dialog = rfd::AsyncFileDialog::new().set_title(if folder {
            "Open a model folder"
        } else {
            "Open a GGUF model"
        });
        let ctx = ctx.clone();
        let pick = async move {
            let handle = if folder {
                dialog.pick_folder().await
            } else {
                dialog.add_filter("GGUF model", &["gguf"]).pick_file().await
            };
            let _ = tx.send(handle.map(|h| h.path().to_path_buf()));
            ctx.request_repaint();
        };
        std::thread::spawn(move || pollster::block_on(pick));
        self.picked = Some(rx);
    }

    pub fn model_ready(&self) -> bool {
        matches!(self.model, ModelState::Ready(_))
    }

    pub fn busy(&self) -> bool {
        self.reply.is_some()
    }

    fn selected_index(&self) -> Option<usize> {
        let id = self.selected.as_deref()?;
        self.conversations.iter().position(|c| c.id == id)
    }

    fn new_conversation(&mut self) -> usize {
        let conversation =
            Conversation::new(self.history.new_id(), self.prefs.system_prompt.clone());
        self.selected = Some(conversation.id.clone());
        self.conversations.insert(0, conversation);
        0
    }

    fn save(&mut self, index: usize) {
        if let Err(e) = self.history.save(&self.conversations[index]) {
            self.notices
                .push(format!("The conversation could not be saved: {e:#}"));
        }
    }

    /// Sends the input box's text as the user's message (what Enter and "Send" do).
    pub fn submit(&mut self) {
        let text = self.input.trim().to_string();
        if text.is_empty() || self.busy() || !self.model_ready() {
            return;
        }
        let index = match self.selected_index() {
            Some(i) => i,
            None => self.new_conversation(),
        };
        self.conversations[index].push("user", &text);
        // The message is on disk before the model sees it: nothing typed is lost.
        self.save(index);
        self.input.clear();
        self.start_reply(index);
    }

    /// Answers the last user message of the selected conversation again.
    pub fn regenerate(&mut self) {
        let Some(index) = self.selected_index() else {
            return;
        };
        if self.busy() || !self.model_ready() {
            return;
        }
        let conversation = &mut self.conversations[index];
        if conversation
            .messages
            .last()
            .is_some_and(|m| m.role == "assistant")
        {
            conversation.messages.pop();
        }
        if conversation
            .messages
            .last()
            .is_some_and(|m| m.role == "user")
        {
            self.save(index);
            self.start_reply(index);
        }
    }

    /// The loaded model's defaults (generic ones while none is loaded).
    pub fn model_defaults(&self) -> &ModelDefaults {
        static GENERIC: std::sync::LazyLock<ModelDefaults> =
            std::sync::LazyLock::new(ModelDefaults::generic);
        match &self.model {
            ModelState::Ready(m) => &m.defaults,
            _ => &GENERIC,
        }
    }

    fn start_reply(&mut self, index: usize) {
        let defaults = self.model_defaults();
        let options = self.prefs.sampling.generate_options(defaults);
        let conversation = &self.conversations[index];
        let messages = conversation.prompt_messages(defaults.system_prompt.value.as_deref());
        let options = match options {
            Ok(o) => o,
            Err(e) => {
                self.notices
                    .push(format!("Check the sampling settings: {e}"));
                return;
            }
        };
        let conversation = &self.conversations[index];
        let command = Command::Reply {
            conversation: conversation.id.clone(),
            messages,
            options,
        };
        match self.engine.send(command) {
            Ok(()) => {
                self.reply = Some(PendingReply {
                    conversation: conversation.id.clone(),
                    text: String::new(),
                })
            }
            Err(e) => self.notices.push(e.to_string()),
        }
    }

    /// Stops the reply in progress before its next token.
    pub fn stop(&self) {
        self.engine.stop();
    }

    fn delete_conversation(&mut self, id: &str) {
        if self.reply.as_ref().is_some_and(|r| r.conversation == id) {
            return;
        }
        if let Err(e) = self.history.delete(id) {
            self.notices.push(format!("{e:#}"));
            return;
        }
        self.conversations.retain(|c| c.id != id);
        if self.selected.as_deref() == Some(id) {
            self.selected = self.conversations.first().map(|c| c.id.clone());
        }
    }

    /// Ends the reply in progress into its conversation (as far as it got) and saves it.
    fn finish_reply(&mut self, conversation: &str, error: Option<String>) {
        let Some(reply) = self.reply.take_if(|r| r.conversation == conversation) else {
            return;
        };
        let model = match &self.model {
            ModelState::Ready(m) => Some(m.name.clone()),
            _ => None,
        };
        if let Some(index) = self.conversations.iter().position(|c| c.id == conversation) {
            if !reply.text.is_empty() {
                self.conversations[index].push("assistant", &reply.text);
                self.conversations[index].model = model;
            }
            self.save(index);
        }
        if let Some(e) = error {
            self.notices.push(format!("The reply failed: {e}"));
        }
    }

    // ---- events --------------------------------------------------------------------

    fn handle_events(&mut self) {
        let events: Vec<Event> = self.engine.events().collect();
        for event in events {
            match event {
                Event::Adapter(adapter) => {
                    if let Err(e) = &adapter {
                        self.notices
                            .push(format!("No GPU adapter could be opened: {e}"));
                    }
                    self.adapter = Some(adapter);
                }
                Event::Loading(phase) => {
                    if let ModelState::Loading { phase: p, .. } = &mut self.model {
                        *p = phase;
                    }
                }
                Event::Loaded(summary) => {
                    tracing::info!(
                        "model {} loaded in {:.1} s",
                        summary.path.display(),
                        summary.load_seconds
                    );
                    for warning in &summary.defaults.warnings {
                        self.notices.push(format!("{}: {warning}", summary.name));
                    }
                    let spec = self.loading_spec.take();
                    self.prefs.remember_model(spec.as_deref());
                    self.model = ModelState::Ready(summary);
                }
                Event::LoadFailed(e) => {
                    self.loading_spec = None;
                    self.model = ModelState::Failed(e);
                }
                Event::Text { conversation, text } => {
                    if let Some(reply) = self
                        .reply
                        .as_mut()
                        .filter(|r| r.conversation == conversation)
                    {
                        reply.text.push_str(&text);
                    }
                }
                Event::ReplyDone {
                    conversation,
                    stats,
                    error,
                } => {
                    self.last_stats = Some(stats);
                    self.finish_reply(&conversation, error);
                }
            }
        }
        if let Some(picked) = &self.picked
            && let Ok(path) = picked.try_recv()
        {
            self.picked = None;
            if let Some(path) = path {
                self.load_model(Some(path.display().to_string()));
            }
        }
    }

    fn save_prefs(&mut self) {
        if let Err(e) = self.prefs_file.save_if_changed(&self.prefs) {
            let message = format!("The settings could not be saved: {e:#}");
            if !self.notices.contains(&message) {
                self.notices.push(message);
            }
        }
    }

    fn notices_bar(&mut self, ui: &mut egui::Ui) {
        let mut dismissed = None;
        for (i, notice) in self.notices.iter().enumerate() {
            ui.horizontal(|ui| {
                ui.colored_label(ui.visuals().warn_fg_color, notice);
                if ui.small_button("Dismiss").clicked() {
                    dismissed = Some(i);
                }
            });
        }
        if let Some(i) = dismissed {
            self.notices.remove(i);
        }
    }
}

impl eframe::App for DesktopApp {
    fn logic(&mut self, ctx: &egui::Context, _frame: &mut eframe::Frame) {
        self.handle_events();
        if let Some(mut script) = self.script.take() {
            script.step(ctx, self);
            self.script = Some(script);
        }
        self.save_prefs();
        // While a model loads or a reply streams, events wake the UI; the spinners want
        // frames in between too.
        if self.busy() || matches!(self.model, ModelState::Loading { .. }) {
            ctx.request_repaint_after(std::time::Duration::from_millis(100));
        }
    }

    fn ui(&mut self, ui: &mut egui::Ui, _frame: &mut eframe::Frame) {
        egui::Panel::top("model_bar").show(ui, |ui| self.top_bar(ui));
        egui::Panel::left("conversations")
            .resizable(true)
            .default_size(220.0)
            .show(ui, |ui| self.sidebar(ui));
        if self.show_settings {
            egui::Panel::right("settings")
                .resizable(true)
                .default_size(280.0)
                .show(ui, |ui| self.settings_panel(ui));
        }
        egui::CentralPanel::default().show(ui, |ui| {
            self.notices_bar(ui);
            self.chat_view(ui);
        });
    }

    fn on_exit(&mut self) {
        // A reply cut short by closing the window is kept, as far as it got.
        if let Some(reply) = &self.reply {
            let id = reply.conversation.clone();
            self.stop();
            self.finish_reply(&id, None);
        } else if let Some(i) = self.selected_index()
            && !self.conversations[i].messages.is_empty()
        {
            // An edited system prompt still in its box.
            self.save(i);
        }
        self.save_prefs();
    }
}

/// What the scripted run (and its test) reads of the app.
impl DesktopApp {
    pub fn set_input(&mut self, text: &str) {
        self.input = text.to_string();
    }

    /// The text of the reply streaming in, if one is.
    pub fn streamed_text(&self) -> Option<&str> {
        self.reply.as_ref().map(|r| r.text.as_str())
    }

    pub fn model_state(&self) -> &ModelState {
        &self.model
    }

    pub fn conversations(&self) -> &[Conversation] {
        &self.conversations
    }

    pub fn selected_conversation(&self) -> Option<&Conversation> {
        self.selected_index().map(|i| &self.conversations[i])
    }

    pub fn adapter(&self) -> Option<&Result<AdapterSummary, String>> {
        self.adapter.as_ref()
    }

    pub fn last_stats(&self) -> Option<&ReplyStats> {
        self.last_stats.as_ref()
    }

    pub fn notices(&self) -> &[String] {
        &self.notices
    }
}
