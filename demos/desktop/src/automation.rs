//! Scripted runs (`--send`, `--step`, `--screenshot`, `--report`, `--quit`): once the model
//! is loaded the app carries out each step as the user would — type a message into the
//! input box and press Send, press Regenerate, press Stop while a reply streams —
//! waiting for each reply to end; then it lets the window draw, saves a PNG of the window
//! as the GPU rendered it, prints what the window shows as JSON, and closes. The desktop
//! test runs this under Xvfb; it is also how to take screenshots for documentation.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use eframe::egui;
use serde::Serialize;

use crate::app::{DesktopApp, ModelState};
use crate::screenshot;

/// Frames drawn after the reply ends and before the screenshot, so the last text and
/// the layout (the scroll to the bottom) have settled.
const SETTLE_FRAMES: u32 = 5;

/// One thing the script does, as `--step` spells it.
#[derive(Clone, Debug, PartialEq)]
pub enum Step {
    /// `send=TEXT`: type TEXT and press Send.
    Send(String),
    /// `regenerate`: press Regenerate (answer the last message again).
    Regenerate,
    /// `send-stop=TEXT`: send TEXT and press Stop as soon as the reply's first text shows.
    SendStop(String),
}

impl std::str::FromStr for Step {
    type Err = String;

    fn from_str(s: &str) -> Result<Step, String> {
        match s.split_once('=') {
            Some(("send", text)) => Ok(Step::Send(text.to_string())),
            Some(("send-stop", text)) => Ok(Step::SendStop(text.to_string())),
            None if s == "regenerate" => Ok(Step::Regenerate),
            _ => Err(format!(
                "unknown step {s:?}: expected send=TEXT, send-stop=TEXT or regenerate"
            )),
        }
    }
}

enum Stage {
    /// Waiting for the model (or its failure).
    WaitModel,
    /// Step `n` is next.
    Next(usize),
    /// Step `n` was carried out; waiting for its reply to end.
    WaitReply(usize),
    Settle(u32),
    /// The screenshot was asked for; waiting for the PNG to be written.
    Shooting,
    Done,
}

pub struct Script {
    steps: Vec<Step>,
    pub screenshot: Option<PathBuf>,
    pub quit: bool,
    pub report: bool,
    pub timeout: Duration,
    started: Instant,
    stage: Stage,
    /// The conversations listed when the window opened (titles), and each step's reply.
    listed_at_start: Option<Vec<String>>,
    replies: Vec<StepReply>,
    frames: Frames,
    /// Set by the screenshot callback (on the render thread): `Ok(path)` or why not.
    shot: Arc<Mutex<Option<Result<PathBuf, String>>>>,
    /// Why the script failed, for `main` to turn into the exit status.
    pub failure: Arc<Mutex<Option<String>>>,
}

/// Frames drawn while the engine worked: a window that froze would draw none, and its
/// longest gap would be the whole load or reply.
#[derive(Default, Serialize)]
struct Frames {
    while_loading: u32,
    while_replying: u32,
    longest_gap_ms: f64,
    #[serde(skip)]
    last: Option<Instant>,
}

impl Frames {
    /// Counts this frame if the engine is loading or replying, and widens the longest gap
    /// between such frames.
    fn count(&mut self, app: &DesktopApp) {
        let loading = matches!(app.model_state(), ModelState::Loading { .. });
        if !(loading || app.busy()) {
            self.last = None;
            return;
        }
        let now = Instant::now();
        if let Some(last) = self.last {
            self.longest_gap_ms = self.longest_gap_ms.max((now - last).as_secs_f64() * 1000.0);
        }
        self.last = Some(now);
        if loading {
            self.while_loading += 1;
        } else {
            self.while_replying += 1;
        }
    }
}

/// A step's reply, as the report gives it.
#[derive(Serialize)]
struct StepReply {
    step: String,
    text: String,
    stats: Option<crate::engine_thread::ReplyStats>,
}

/// What the window shows, as `--report` prints it.
#[derive(Serialize)]
struct Report<'a> {
    listed_at_start: &'a [String],
    frames: &'a Frames,
    replies: &'a [StepReply],
    adapter: Option<String>,
    model: Option<String>,
    conversations: Vec<ListedConversation<'a>>,
    selected: Option<&'a crate::history::Conversation>,
    last_stats: Option<&'a crate::engine_thread::ReplyStats>,
    notices: &'a [String],
    screenshot: Option<String>,
}

#[derive(Serialize)]
struct ListedConversation<'a> {
    id: &'a str,
    title: &'a str,
    messages: usize,
}

impl Script {
    pub fn new(
        steps: Vec<Step>,
        screenshot: Option<PathBuf>,
        quit: bool,
        report: bool,
        timeout: Duration,
    ) -> Script {
        Script {
            steps,
            screenshot,
            quit,
            report,
            timeout,
            started: Instant::now(),
            stage: Stage::WaitModel,
            listed_at_start: None,
            replies: Vec::new(),
            frames: Frames::default(),
            shot: Arc::new(Mutex::new(None)),
            failure: Arc::new(Mutex::new(None)),
        }
    }

    fn fail(&mut self, ctx: &egui::Context, why: String) {
        eprintln!("wisp-desktop: scripted run failed: {why}");
        *self.failure.lock().unwrap_or_else(|e| e.into_inner()) = Some(why);
        self.stage = Stage::Done;
        ctx.send_viewport_cmd(egui::ViewportCommand::Close);
    }

    /// One step, run before every frame.
    pub fn step(&mut self, ctx: &egui::Context, app: &mut DesktopApp) {
        if !matches!(self.stage, Stage::Done) && self.started.elapsed() > self.timeout {
            let why = format!("timed out after {} s", self.timeout.as_secs());
            return self.fail(ctx, why);
        }
        // Keep frames coming: nothing else wakes an idle window under Xvfb.
        ctx.request_repaint_after(Duration::from_millis(50));
        self.frames.count(app);
        if self.listed_at_start.is_none() {
            self.listed_at_start = Some(
                app.conversations()
                    .iter()
                    .map(|c| c.title.clone())
                    .collect(),
            );
        }
        match self.stage {
            Stage::WaitModel => self.wait_for_model(ctx, app),
            Stage::Next(n) if n == self.steps.len() => self.stage = Stage::Settle(SETTLE_FRAMES),
            Stage::Next(n) => self.carry_out(ctx, app, n),
            Stage::WaitReply(n) => self.wait_for_reply(ctx, app, n),
            Stage::Settle(0) => match self.screenshot.clone() {
                Some(path) => self.request_screenshot(ctx, path),
                None => self.finish(ctx, app, None),
            },
            Stage::Settle(n) => self.stage = Stage::Settle(n - 1),
            Stage::Shooting => self.collect_screenshot(ctx, app),
            Stage::Done => {}
        }
    }

    fn wait_for_model(&mut self, ctx: &egui::Context, app: &DesktopApp) {
        match app.model_state() {
            ModelState::Ready(_) => self.stage = Stage::Next(0),
            ModelState::Failed(e) => {
                let why = format!("the model did not load: {e}");
                self.fail(ctx, why);
            }
            ModelState::None | ModelState::Loading { .. } => {}
        }
    }

    /// Does step `n` as the user would; a step that starts no reply fails the script.
    fn carry_out(&mut self, ctx: &egui::Context, app: &mut DesktopApp, n: usize) {
        match &self.steps[n] {
            Step::Send(text) | Step::SendStop(text) => {
                app.set_input(text);
                app.submit();
            }
            Step::Regenerate => app.regenerate(),
        }
        if !app.busy() {
            let why = format!(
                "step {:?} started no reply: {:?}",
                self.steps[n],
                app.notices()
            );
            return self.fail(ctx, why);
        }
        self.stage = Stage::WaitReply(n);
    }

    /// Presses Stop for a `send-stop` step once text shows; when the reply has ended,
    /// records it and moves on to the next step.
    fn wait_for_reply(&mut self, ctx: &egui::Context, app: &DesktopApp, n: usize) {
        if matches!(self.steps[n], Step::SendStop(_))
            && app.streamed_text().is_some_and(|t| !t.is_empty())
        {
            app.stop();
        }
        if app.busy() {
            return;
        }
        let last = app
            .selected_conversation()
            .and_then(|c| c.messages.last())
            .filter(|m| m.role == "assistant" && !m.content.is_empty());
        let Some(reply) = last else {
            let why = format!(
                "no reply appeared after step {:?}: {:?}",
                self.steps[n],
                app.notices()
            );
            return self.fail(ctx, why);
        };
        self.replies.push(StepReply {
            step: format!("{:?}", self.steps[n]),
            text: reply.content.clone(),
            stats: app.last_stats().cloned(),
        });
        self.stage = Stage::Next(n + 1);
    }

    /// Asks for the window's image; the render thread saves it to `path` and reports
    /// through `self.shot`.
    fn request_screenshot(&mut self, ctx: &egui::Context, path: PathBuf) {
        let (shot, repaint) = (self.shot.clone(), ctx.clone());
        ctx.request_screenshot(move |image| {
            let result = screenshot::save_png(&image, &path)
                .map(|()| path)
                .map_err(|e| format!("{e:#}"));
            *shot.lock().unwrap_or_else(|e| e.into_inner()) = Some(result);
            repaint.request_repaint();
        });
        self.stage = Stage::Shooting;
    }

    /// Finishes once the screenshot is saved, fails if it could not be.
    fn collect_screenshot(&mut self, ctx: &egui::Context, app: &DesktopApp) {
        let taken = self.shot.lock().unwrap_or_else(|e| e.into_inner()).take();
        match taken {
            Some(Ok(path)) => {
                eprintln!("wisp-desktop: screenshot saved to {}", path.display());
                self.finish(ctx, app, Some(path));
            }
            Some(Err(e)) => self.fail(ctx, format!("the screenshot could not be saved: {e}")),
            None => {}
        }
    }

    fn finish(&mut self, ctx: &egui::Context, app: &DesktopApp, screenshot: Option<PathBuf>) {
        if self.report {
            let report = Report {
                listed_at_start: self.listed_at_start.as_deref().unwrap_or_default(),
                frames: &self.frames,
                replies: &self.replies,
                adapter: app
                    .adapter()
                    .and_then(|a| a.as_ref().ok())
                    .map(|a| format!("{} ({})", a.name, a.backend)),
                model: match app.model_state() {
                    ModelState::Ready(m) => Some(m.name.clone()),
                    _ => None,
                },
                conversations: app
                    .conversations()
                    .iter()
                    .map(|c| ListedConversation {
                        id: &c.id,
                        title: &c.title,
                        messages: c.messages.len(),
                    })
                    .collect(),
                selected: app.selected_conversation(),
                last_stats: app.last_stats(),
                notices: app.notices(),
                screenshot: screenshot.map(|p| p.display().to_string()),
            };
            match serde_json::to_string(&report) {
                Ok(json) => println!("{json}"),
                Err(e) => return self.fail(ctx, format!("the report could not be written: {e}")),
            }
        }
        self.stage = Stage::Done;
        if self.quit {
            ctx.send_viewport_cmd(egui::ViewportCommand::Close);
        }
    }
}
