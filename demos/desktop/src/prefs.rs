//! The app's settings (`<data>/settings.json`): sampling, the system prompt new chats
//! start with, the model to load at start and the recently opened ones. Missing fields
//! take their defaults, so older files keep working; an unreadable file is reported and
//! the defaults used, and it is only overwritten once the user changes a setting.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use wisp_core::generate::GenerateOptions;
use wisp_core::sampling::SamplerConfig;

/// How replies are sampled.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Sampling {
    pub sampler: SamplerConfig,
    /// A fresh seed for every reply (else `sampler.seed`, for repeatable replies).
    pub random_seed: bool,
    /// The most tokens per reply (0: until the model ends its turn or the context is full).
    pub max_tokens: u32,
}

impl Default for Sampling {
    fn default() -> Self {
        Sampling { sampler: SamplerConfig::default(), random_seed: true, max_tokens: 1024 }
    }
}

impl Sampling {
    /// The options of one reply, validated (an error names the bad setting).
    pub fn generate_options(&self) -> Result<GenerateOptions, String> {
        let mut sampler = self.sampler;
        if self.random_seed {
            sampler.seed = wisp::common::random_seed();
        }
        sampler.validate().map_err(|e| e.to_string())?;
        Ok(GenerateOptions {
            max_tokens: if self.max_tokens == 0 { usize::MAX } else { self.max_tokens as usize },
            sampler,
            stop: Vec::new(),
            ignore_eos: false,
        })
    }
}

/// Models listed under "Recent".
const RECENT_MODELS: usize = 8;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Prefs {
    pub sampling: Sampling,
    /// The system prompt of new conversations.
    pub system_prompt: String,
    /// Loaded at start: a path or a known model's name (`None`: the default model).
    pub model: Option<String>,
    /// Recently loaded models, most recent first.
    pub recent_models: Vec<String>,
}

impl Default for Prefs {
    fn default() -> Self {
        Prefs { sampling: Sampling::default(), system_prompt: "You are a helpful assistant.".into(), model: None, recent_models: Vec::new() }
    }
}

impl Prefs {
    /// Records `model` as the one to load next time and the most recent.
    pub fn remember_model(&mut self, model: Option<&str>) {
        self.model = model.map(str::to_string);
        if let Some(m) = model {
            self.recent_models.retain(|r| r != m);
            self.recent_models.insert(0, m.to_string());
            self.recent_models.truncate(RECENT_MODELS);
        }
    }
}

/// Where the settings live, and what was last written there.
pub struct PrefsFile {
    path: PathBuf,
    saved: Prefs,
}

impl PrefsFile {
    /// Reads `<data>/settings.json`; with no file, the defaults. `Err` carries the defaults
    /// too, with why the file was not used.
    pub fn load(data_dir: &Path) -> (PrefsFile, Result<(), String>) {
        let path = data_dir.join("settings.json");
        let (prefs, problem) = match std::fs::read(&path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => (Prefs::default(), Ok(())),
            Err(e) => (Prefs::default(), Err(format!("{}: {e}", path.display()))),
            Ok(bytes) => match serde_json::from_slice(&bytes) {
                Ok(p) => (p, Ok(())),
                Err(e) => (Prefs::default(), Err(format!("{}: {e} (the defaults are used)", path.display()))),
            },
        };
        (PrefsFile { path, saved: prefs }, problem)
    }

    /// The settings as read (or last saved).
    pub fn saved(&self) -> &Prefs {
        &self.saved
    }

    /// Writes `prefs` when they differ from what is on disk.
    pub fn save_if_changed(&mut self, prefs: &Prefs) -> Result<()> {
        if *prefs == self.saved {
            return Ok(());
        }
        let json = serde_json::to_vec_pretty(prefs).context("encoding the settings")?;
        let tmp = self.path.with_extension("json.tmp");
        std::fs::write(&tmp, json).with_context(|| format!("writing {}", tmp.display()))?;
        std::fs::rename(&tmp, &self.path).with_context(|| format!("replacing {}", self.path.display()))?;
        self.saved = prefs.clone();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_round_trip_and_partial_files_take_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let (mut file, problem) = PrefsFile::load(dir.path());
        assert!(problem.is_ok());
        assert_eq!(*file.saved(), Prefs::default());
        let mut prefs = Prefs::default();
        prefs.sampling.sampler.temperature = 0.0;
        prefs.remember_model(Some("/models/a.gguf"));
        prefs.remember_model(Some("/models/b.gguf"));
        prefs.remember_model(Some("/models/a.gguf"));
        assert_eq!(prefs.recent_models, ["/models/a.gguf", "/models/b.gguf"]);
        file.save_if_changed(&prefs).unwrap();
        assert_eq!(*PrefsFile::load(dir.path()).0.saved(), prefs);

        std::fs::write(dir.path().join("settings.json"), br#"{"system_prompt": "Be terse."}"#).unwrap();
        let (file, problem) = PrefsFile::load(dir.path());
        assert!(problem.is_ok());
        assert_eq!(file.saved().system_prompt, "Be terse.");
        assert_eq!(file.saved().sampling, Sampling::default());
    }

    #[test]
    fn a_corrupt_file_is_reported_and_kept_until_a_change() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("settings.json");
        std::fs::write(&path, b"{\"sampling\": [").unwrap();
        let (mut file, problem) = PrefsFile::load(dir.path());
        assert!(problem.unwrap_err().contains("settings.json"));
        file.save_if_changed(&Prefs::default()).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"{\"sampling\": [");
    }

    #[test]
    fn bad_sampling_settings_are_named() {
        let mut s = Sampling::default();
        s.sampler.top_p = 0.0;
        assert!(s.generate_options().unwrap_err().contains("top_p"), "{:?}", s.generate_options());
        s.sampler.top_p = 1.0;
        s.max_tokens = 0;
        assert_eq!(s.generate_options().unwrap().max_tokens, usize::MAX);
    }
}
