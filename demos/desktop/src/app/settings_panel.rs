//! The settings panel: the system prompt and how replies are sampled. Changes apply to
//! the next reply and are saved to the settings file.

use eframe::egui;
use wisp_core::sampling::SamplerConfig;

use super::DesktopApp;
use crate::prefs::Sampling;

impl DesktopApp {
    pub(super) fn settings_panel(&mut self, ui: &mut egui::Ui) {
        egui::ScrollArea::vertical().show(ui, |ui| {
            ui.add_space(6.0);
            ui.heading("System prompt");
            let index = self.selected_index();
            let text = match index {
                Some(i) => &mut self.conversations[i].system_prompt,
                None => &mut self.prefs.system_prompt,
            };
            let response = ui.add(egui::TextEdit::multiline(text).desired_rows(4).desired_width(f32::INFINITY));
            ui.weak("Applies to this conversation from its next reply, and to new chats.");
            if let Some(i) = index {
                if response.changed() {
                    self.prefs.system_prompt = self.conversations[i].system_prompt.clone();
                }
                // Saved when typing ends (the box loses focus), not on every key; closing
                // the window saves it too.
                if response.lost_focus() {
                    self.save(i);
                }
            }
            ui.separator();
            ui.heading("Sampling");
            sampling_controls(ui, &mut self.prefs.sampling);
        });
    }
}

fn sampling_controls(ui: &mut egui::Ui, s: &mut Sampling) {
    let defaults = SamplerConfig::default();
    let c = &mut s.sampler;
    egui::Grid::new("sampling").num_columns(2).show(ui, |ui| {
        row(ui, "Temperature", "0 is greedy: always the most likely token", egui::Slider::new(&mut c.temperature, 0.0..=2.0));
        row(ui, "Top-k", "Keep the k most likely tokens (0: off)", egui::DragValue::new(&mut c.top_k).range(0..=1000));
        row(ui, "Top-p", "Keep the most likely tokens up to this probability mass (1: off)", egui::Slider::new(&mut c.top_p, 0.01..=1.0));
        row(ui, "Min-p", "Keep tokens at least this fraction as likely as the best one (0: off)", egui::Slider::new(&mut c.min_p, 0.0..=1.0));
        row(ui, "Repeat penalty", "Divide the logits of recent tokens by this (1: off)", egui::Slider::new(&mut c.repeat_penalty, 0.5..=2.0));
        row(ui, "Penalty window", "How many recent tokens the penalties look at", egui::DragValue::new(&mut c.penalty_last_n).range(0..=4096));
        row(ui, "Max tokens", "The most tokens per reply (0: until the model stops)", egui::DragValue::new(&mut s.max_tokens).range(0..=32768));
        ui.label("Seed");
        ui.horizontal(|ui| {
            ui.checkbox(&mut s.random_seed, "random");
            ui.add_enabled(!s.random_seed, egui::DragValue::new(&mut c.seed));
        });
        ui.end_row();
    });
    if ui.button("Defaults").clicked() {
        *s = Sampling { sampler: SamplerConfig { seed: s.sampler.seed, ..defaults }, ..Sampling::default() };
    }
}

/// One labelled setting of the grid.
fn row(ui: &mut egui::Ui, label: &str, hint: &str, widget: impl egui::Widget) {
    ui.label(label).on_hover_text(hint);
    ui.add(widget);
    ui.end_row();
}
