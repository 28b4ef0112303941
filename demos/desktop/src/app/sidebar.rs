//! The saved conversations, newest first: pick one, start a new one, delete one.

use eframe::egui;

use super::DesktopApp;

impl DesktopApp {
    pub(super) fn sidebar(&mut self, ui: &mut egui::Ui) {
        ui.add_space(6.0);
        if ui
            .add_enabled(!self.busy(), egui::Button::new("New chat"))
            .clicked()
        {
            // An empty conversation already on top is reused rather than stacked.
            match self.conversations.first() {
                Some(c) if c.messages.is_empty() => self.selected = Some(c.id.clone()),
                _ => {
                    self.new_conversation();
                }
            }
        }
        ui.separator();
        ui.weak(format!("{} conversations", self.conversations.len()));
        let mut select = None;
        let mut delete = None;
        egui::ScrollArea::vertical()
            .auto_shrink(false)
            .show(ui, |ui| {
                for c in &self.conversations {
                    let current = self.selected.as_deref() == Some(c.id.as_str());
                    let streaming = self.reply.as_ref().is_some_and(|r| r.conversation == c.id);
                    ui.horizontal(|ui| {
                        let title = if streaming {
                            format!("{} …", c.title)
                        } else {
                            c.title.clone()
                        };
                        let entry = ui.selectable_label(current, title).on_hover_text(format!(
                            "{} messages{}",
                            c.messages.len(),
                            c.model
                                .as_deref()
                                .map(|m| format!(" · {m}"))
                                .unwrap_or_default()
                        ));
                        // Switching is allowed while a reply streams: it keeps streaming into its
                        // own conversation.
                        if entry.clicked() {
                            select = Some(c.id.clone());
                        }
                        if !streaming
                            && ui
                                .small_button("x")
                                .on_hover_text("Delete this conversation")
                                .clicked()
                        {
                            delete = Some(c.id.clone());
                        }
                    });
                }
            });
        if let Some(id) = select {
            self.selected = Some(id);
        }
        if let Some(id) = delete {
            self.delete_conversation(&id);
        }
    }
}
