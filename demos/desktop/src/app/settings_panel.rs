//! The settings panel: the system prompt and how replies are sampled. Changes apply to
//! the next reply and are saved to the settings file. A setting left alone shows, and
//! follows, the loaded model's default; hovering it says where that default comes from.

use std::ops::RangeInclusive;

use eframe::egui;
use wisp_core::defaults::{ModelDefaults, Source, Sourced};

use super::DesktopApp;
use crate::prefs::Sampling;

impl DesktopApp {
    pub(super) fn settings_panel(&mut self, ui: &mut egui::Ui) {
        let defaults = self.model_defaults().clone();
        egui::ScrollArea::vertical().show(ui, |ui| {
            ui.add_space(6.0);
            ui.heading("System prompt");
            self.system_prompt_editor(ui, &defaults);
            ui.separator();
            ui.heading("Sampling");
            match defaults.known_model {
                Some(known) => ui.weak(format!(
                    "Settings you leave alone follow the recommendations for {known}."
                )),
                None => ui.weak("Settings you leave alone follow the model's defaults."),
            };
            sampling_controls(ui, &mut self.prefs.sampling, &defaults);
        });
    }

    /// The selected conversation's system prompt (else the one new chats get): its own, or
    /// the model's default until edited.
    fn system_prompt_editor(&mut self, ui: &mut egui::Ui, defaults: &ModelDefaults) {
        let index = self.selected_index();
        let own = match index {
            Some(i) => &self.conversations[i].system_prompt,
            None => &self.prefs.system_prompt,
        };
        let follows_model = own.is_none();
        let mut text = own
            .clone()
            .or_else(|| defaults.system_prompt.value.clone())
            .unwrap_or_default();
        let response = ui.add(
            egui::TextEdit::multiline(&mut text)
                .desired_rows(4)
                .desired_width(f32::INFINITY),
        );
        let mut changed = response.changed().then_some(Some(text));
        let mut back_to_default = false;
        ui.horizontal(|ui| {
            if follows_model {
                ui.weak(format!(
                    "The model's default ({}).",
                    describe(&defaults.system_prompt.source)
                ));
            } else if ui.small_button("Use the model's default").clicked() {
                changed = Some(None);
                back_to_default = true;
            }
        });
        ui.weak("Applies to this conversation from its next reply, and to new chats.");
        if let Some(own) = changed {
            self.prefs.system_prompt = own.clone();
            if let Some(i) = index {
                self.conversations[i].system_prompt = own;
            }
        }
        // Saved when typing ends (the box loses focus), not on every key; closing the
        // window saves it too.
        if let Some(i) = index
            && (response.lost_focus() || back_to_default)
        {
            self.save(i);
        }
    }
}

/// Where a default comes from, in a few words.
fn describe(source: &Source) -> String {
    match source {
        Source::Generic => "none".into(),
        other => other.to_string(),
    }
}

fn sampling_controls(ui: &mut egui::Ui, s: &mut Sampling, defaults: &ModelDefaults) {
    let in_effect = s.in_effect(defaults);
    let o = &mut s.overrides;
    egui::Grid::new("sampling").num_columns(2).show(ui, |ui| {
        float_row(
            ui,
            "Temperature",
            "0 is greedy: always the most likely token",
            &in_effect.temperature,
            &mut o.temperature,
            0.0..=2.0,
        );
        usize_row(
            ui,
            "Top-k",
            "Keep the k most likely tokens (0: off)",
            &in_effect.top_k,
            &mut o.top_k,
            1000,
        );
        float_row(
            ui,
            "Top-p",
            "Keep the most likely tokens up to this probability mass (1: off)",
            &in_effect.top_p,
            &mut o.top_p,
            0.01..=1.0,
        );
        float_row(
            ui,
            "Min-p",
            "Keep tokens at least this fraction as likely as the best one (0: off)",
            &in_effect.min_p,
            &mut o.min_p,
            0.0..=1.0,
        );
        float_row(
            ui,
            "Repeat penalty",
            "Divide the logits of recent tokens by this (1: off)",
            &in_effect.repeat_penalty,
            &mut o.repeat_penalty,
            0.5..=2.0,
        );
        usize_row(
            ui,
            "Penalty window",
            "How many recent tokens the penalties look at",
            &in_effect.penalty_last_n,
            &mut o.penalty_last_n,
            4096,
        );
        ui.label("Max tokens")
            .on_hover_text("The most tokens per reply (0: until the model stops)");
        ui.add(egui::DragValue::new(&mut s.max_tokens).range(0..=32768));
        ui.end_row();
        ui.label("Seed");
        ui.horizontal(|ui| {
            ui.checkbox(&mut s.random_seed, "random");
            let mut seed = o.seed.unwrap_or(0);
            if ui
                .add_enabled(!s.random_seed, egui::DragValue::new(&mut seed))
                .changed()
            {
                o.seed = Some(seed);
            }
        });
        ui.end_row();
    });
    if ui
        .button("Model defaults")
        .on_hover_text("Forget the values set here: follow the loaded model's")
        .clicked()
    {
        s.follow_the_model();
    }
}

/// The hover text of a setting: what it does and where its value comes from.
fn hint(what: &str, source: &Source) -> String {
    format!("{what}\nNow: {source}")
}

/// One labelled float setting: it shows the value in effect; moving it makes it the user's.
fn float_row(
    ui: &mut egui::Ui,
    label: &str,
    what: &str,
    in_effect: &Sourced<f32>,
    own: &mut Option<f32>,
    range: RangeInclusive<f32>,
) {
    ui.label(label).on_hover_text(hint(what, &in_effect.source));
    let mut value = in_effect.value;
    if ui.add(egui::Slider::new(&mut value, range)).changed() {
        *own = Some(value);
    }
    ui.end_row();
}

/// One labelled integer setting, as [`float_row`], from 0 to `max`.
fn usize_row(
    ui: &mut egui::Ui,
    label: &str,
    what: &str,
    in_effect: &Sourced<usize>,
    own: &mut Option<usize>,
    max: usize,
) {
    ui.label(label).on_hover_text(hint(what, &in_effect.source));
    let mut value = in_effect.value;
    if ui
        .add(egui::DragValue::new(&mut value).range(0..=max))
        .changed()
    {
        *own = Some(value);
    }
    ui.end_row();
}
