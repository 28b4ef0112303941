//! The selected conversation: its messages, the reply streaming in, the input box with
//! Send / Stop / Regenerate, and the last reply's speed.

use eframe::egui;
use wisp_core::generate::StopReason;

use super::{DesktopApp, ModelState};

/// The input box, found again by id to catch Enter before the text edit sees it.
const INPUT_ID: &str = "message_input";

fn message(ui: &mut egui::Ui, role: &str, text: &str, streaming: bool) {
    let (who, fill) = match role {
        "user" => ("You", ui.visuals().faint_bg_color),
        _ => ("Assistant", ui.visuals().extreme_bg_color),
    };
    egui::Frame::group(ui.style()).fill(fill).show(ui, |ui| {
        ui.set_width(ui.available_width());
        ui.horizontal(|ui| {
            ui.strong(who);
            if streaming {
                ui.spinner();
            }
        });
        if text.is_empty() && streaming {
            ui.weak("reading the prompt…");
        } else {
            ui.add(egui::Label::new(text).selectable(true).wrap());
        }
    });
    ui.add_space(4.0);
}

/// Why a reply ended, in words.
fn ending(reason: StopReason) -> &'static str {
    match reason {
        StopReason::EndOfGeneration => "the model ended its turn",
        StopReason::StopString => "a stop string",
        StopReason::MaxTokens => "the token limit (see Settings)",
        StopReason::ContextFull => "the context is full: start a new chat",
        StopReason::Cancelled => "stopped",
    }
}

impl DesktopApp {
    pub(super) fn chat_view(&mut self, ui: &mut egui::Ui) {
        egui::Panel::bottom("input").show(ui, |ui| self.input_area(ui));
        egui::CentralPanel::default().show(ui, |ui| {
            egui::ScrollArea::vertical()
                .auto_shrink(false)
                .stick_to_bottom(true)
                .show(ui, |ui| {
                    let Some(index) = self.selected_index() else {
                        ui.weak("Start a conversation: type a message below.");
                        return;
                    };
                    let conversation = &self.conversations[index];
                    let system = conversation
                        .effective_system_prompt(
                            self.model_defaults().system_prompt.value.as_deref(),
                        )
                        .unwrap_or_default();
                    if !system.is_empty() {
                        let whose = if conversation.system_prompt.is_none() {
                            " (the model's default)"
                        } else {
                            ""
                        };
                        ui.weak(format!("System{whose}: {system}"));
                        ui.add_space(4.0);
                    }
                    for m in &conversation.messages {
                        message(ui, &m.role, &m.content, false);
                    }
                    if let Some(reply) = self
                        .reply
                        .as_ref()
                        .filter(|r| r.conversation == conversation.id)
                    {
                        message(ui, "assistant", &reply.text, true);
                    }
                });
        });
    }

    fn input_area(&mut self, ui: &mut egui::Ui) {
        ui.add_space(6.0);
        let input_id = egui::Id::unique(INPUT_ID);
        // Enter sends, Shift+Enter is a new line: take the key before the text edit does.
        let enter = ui.memory(|m| m.has_focus(input_id))
            && ui.input_mut(|i| i.consume_key(egui::Modifiers::NONE, egui::Key::Enter));
        let hint = match &self.model {
            ModelState::Ready(_) => "Message (Enter sends, Shift+Enter for a new line)",
            _ => "Load a model to chat",
        };
        ui.add(
            egui::TextEdit::multiline(&mut self.input)
                .id(input_id)
                .hint_text(hint)
                .desired_rows(3)
                .desired_width(f32::INFINITY),
        );
        ui.horizontal(|ui| {
            let can_send = self.model_ready() && !self.busy() && !self.input.trim().is_empty();
            if ui.add_enabled(can_send, egui::Button::new("Send")).clicked() || (enter && can_send) {
                self.submit();
            }
            if ui.add_enabled(self.busy(), egui::Button::new("Stop")).clicked() {
                self.stop();
            }
            let can_regenerate = self.model_ready()
                && !self.busy()
                && self.selected_index().is_some_and(|i| !self.conversations[i].messages.is_empty());
            if ui.add_enabled(can_regenerate, egui::Button::new("Regenerate")).on_hover_text("Answer the last message again").clicked() {
                self.regenerate();
            }
            ui.separator();
            if let Some(s) = &self.last_stats {
                ui.weak(format!(
                    "prompt {} tokens ({} cached) at {:.1} tok/s · reply {} tokens at {:.1} tok/s{}",
                    s.prompt_tokens,
                    s.reused_tokens,
                    s.prefill_tokens_per_second,
                    s.generated_tokens,
                    s.decode_tokens_per_second,
                    s.stop_reason.map(|r| format!(" · {}", ending(r))).unwrap_or_default()
                ));
            }
        });
        ui.add_space(4.0);
    }
}
