//! The model bar: which model is loaded (or how far its load is), the ways to pick
//! another (file dialog, folder dialog, a typed path, known and recent models), and the
//! adapter the engine runs on.

use eframe::egui;
use wisp::model_cache::{self, KNOWN_MODELS};

use super::{DesktopApp, ModelState};
use crate::engine_thread::LoadPhase;

fn megabytes(bytes: u64) -> f64 {
    bytes as f64 / 1e6
}

impl DesktopApp {
    pub(super) fn top_bar(&mut self, ui: &mut egui::Ui) {
        ui.add_space(4.0);
        ui.horizontal(|ui| {
            ui.strong("Model");
            let idle = !self.busy() && !matches!(self.model, ModelState::Loading { .. });
            ui.add_enabled_ui(idle, |ui| self.model_picker(ui));
            ui.with_layout(egui::Layout::right_to_left(egui::Align::Center), |ui| {
                let label = if self.show_settings {
                    "Hide settings"
                } else {
                    "Settings"
                };
                if ui.button(label).clicked() {
                    self.show_settings = !self.show_settings;
                }
            });
        });
        ui.horizontal(|ui| self.model_status(ui));
        ui.horizontal(|ui| {
            ui.label("Adapter:");
            match &self.adapter {
                None => {
                    ui.spinner();
                    ui.label("opening…");
                }
                Some(Ok(a)) => {
                    ui.label(egui::RichText::new(format!("{} ({})", a.name, a.backend)).strong())
                        .on_hover_text(format!("{}\nkernels: {}", a.reason, a.variant));
                    ui.weak(format!("kernels {}", a.variant));
                }
                Some(Err(e)) => {
                    ui.colored_label(ui.visuals().error_fg_color, e);
                }
            }
        });
        ui.add_space(4.0);
    }

    fn model_picker(&mut self, ui: &mut egui::Ui) {
        if ui
            .button("Open file…")
            .on_hover_text("A GGUF model file")
            .clicked()
        {
            self.pick_model(ui.ctx(), false);
        }
        if ui
            .button("Open folder…")
            .on_hover_text(
                "A Hugging Face model folder (config.json, *.safetensors, tokenizer.json)",
            )
            .clicked()
        {
            self.pick_model(ui.ctx(), true);
        }
        let mut chosen: Option<Option<String>> = None;
        egui::ComboBox::from_id_salt("models")
            .selected_text("Models")
            .show_ui(ui, |ui| {
                let default = model_cache::default_model();
                if ui
                    .button(format!("{} (default)", default.name))
                    .on_hover_text(default.description)
                    .clicked()
                {
                    chosen = Some(None);
                }
                ui.separator();
                for known in KNOWN_MODELS.iter().filter(|k| k.name != default.name) {
                    let cached = if model_cache::is_cached(known) {
                        ""
                    } else {
                        " (download)"
                    };
                    if ui
                        .button(format!("{}{cached}", known.name))
                        .on_hover_text(known.description)
                        .clicked()
                    {
                        chosen = Some(Some(known.name.to_string()));
                    }
                }
                if !self.prefs.recent_models.is_empty() {
                    ui.separator();
                    ui.weak("Recent");
                    for recent in &self.prefs.recent_models {
                        if ui.button(recent).clicked() {
                            chosen = Some(Some(recent.clone()));
                        }
                    }
                }
            });
        let typed = ui.add(
            egui::TextEdit::singleline(&mut self.model_input)
                .hint_text("or a path / name")
                .desired_width(180.0),
        );
        let enter = typed.lost_focus() && ui.input(|i| i.key_pressed(egui::Key::Enter));
        if (ui.button("Load").clicked() || enter) && !self.model_input.trim().is_empty() {
            chosen = Some(Some(self.model_input.trim().to_string()));
        }
        if let Some(spec) = chosen {
            self.load_model(spec);
        }
    }

    fn model_status(&mut self, ui: &mut egui::Ui) {
        match &self.model {
            ModelState::None => {
                ui.weak("no model loaded");
            }
            ModelState::Loading { what, phase, since } => {
                ui.spinner();
                let secs = since.elapsed().as_secs();
                match phase {
                    LoadPhase::Fetching(name) => {
                        ui.label(format!("downloading {name} into the cache… ({secs} s)"));
                    }
                    LoadPhase::Opening => {
                        ui.label(format!("opening {what}…"));
                    }
                    LoadPhase::Weights { done, total } => {
                        let fraction = if *total > 0 {
                            *done as f32 / *total as f32
                        } else {
                            0.0
                        };
                        ui.add(egui::ProgressBar::new(fraction).desired_width(220.0).text(
                            format!(
                                "weights {:.0} / {:.0} MB",
                                megabytes(*done),
                                megabytes(*total)
                            ),
                        ));
                    }
                    LoadPhase::Kernels => {
                        ui.label(format!("building the GPU kernels… ({secs} s)"));
                    }
                }
            }
            ModelState::Ready(m) => {
                ui.label(egui::RichText::new(&m.name).strong())
                    .on_hover_text(m.path.display().to_string());
                ui.weak(format!(
                    "{} · {:.0} MB · context {} · loaded in {:.1} s",
                    m.architecture,
                    megabytes(m.file_bytes),
                    m.context,
                    m.load_seconds
                ));
            }
            ModelState::Failed(e) => {
                ui.colored_label(ui.visuals().error_fg_color, format!("could not load: {e}"));
            }
        }
    }
}
