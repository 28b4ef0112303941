//! The app's settings (`<data>/settings.json`): sampling, the system prompt new chats
//! start with, the model to load at start and the recently opened ones. Missing fields
//! take their defaults, so older files keep working; an unreadable file is reported and
//! the defaults used, and it is only overwritten once the user changes a setting.
//!
//! Sampling values and the system prompt are stored only once the user sets them: until
//! then they follow the loaded model's defaults (`wisp_core::defaults`), as `wisp chat`
//! does.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use wisp_core::defaults::{ModelDefaults, SamplingDefaults, SamplingOverrides};
use wisp_core::generate::GenerateOptions;
use wisp_core::sampling::SamplerConfig;

/// How replies are sampled.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Sampling {
    /// The values the user set (and the fixed seed); the others are the model's.
    pub overrides: SamplingOverrides,
    /// A fresh seed for every reply (else `overrides.seed`, for repeatable replies).
    pub random_seed: bool,
    /// The most tokens per reply (0: until the model ends its turn or the context is full).
    pub max_tokens: u32,
    /// The whole sampler configuration, as files written before per-model defaults stored
    /// it; read once by [`Sampling::adopt_legacy`], never written.
    #[serde(rename = "sampler", skip_serializing)]
    legacy_sampler: Option<SamplerConfig>,
}

impl Default for Sampling {
    fn default() -> Self {
        Sampling {
            overrides: SamplingOverrides::default(),
            random_seed: true,
            max_tokens: 1024,
            legacy_sampler: None,
        }
    }
}

impl Sampling {
    /// The values in effect on a model with `defaults`, each with its source.
    pub fn in_effect(&self, defaults: &ModelDefaults) -> SamplingDefaults {
        defaults.sampling.with_overrides(&self.overrides)
    }

    /// The options of one reply on a model with `defaults`, validated (an error names the
    /// bad setting).
    pub fn generate_options(&self, defaults: &ModelDefaults) -> Result<GenerateOptions, String> {
        let seed = match self.overrides.seed {
            Some(seed) if !self.random_seed => seed,
            _ => wisp::common::random_seed(),
        };
        let (_, sampler) = defaults
            .sampler(&self.overrides, seed)
            .map_err(|e| e.to_string())?;
        Ok(GenerateOptions {
            max_tokens: if self.max_tokens == 0 {
                usize::MAX
            } else {
                self.max_tokens as usize
            },
            sampler,
            stop: Vec::new(),
            ignore_eos: false,
            ..GenerateOptions::default()
        })
    }

    /// Back to the defaults: the model's sampling values, a fresh seed per reply and the
    /// default reply length (the fixed seed is kept for when it is turned on again).
    pub fn follow_the_model(&mut self) {
        *self = Sampling {
            overrides: SamplingOverrides {
                seed: self.overrides.seed,
                ..SamplingOverrides::default()
            },
            ..Sampling::default()
        };
    }

    /// Takes what an older file's whole `sampler` says: a value other than llama.cpp's
    /// default was the user's choice; one equal to it was only the old default, and now
    /// follows the model.
    fn adopt_legacy(&mut self) {
        let Some(old) = self.legacy_sampler.take() else {
            return;
        };
        let generic = SamplerConfig::default();
        let o = &mut self.overrides;
        let chosen_f32 = |old: f32, generic: f32, current: Option<f32>| {
            current.or((old != generic).then_some(old))
        };
        o.temperature = chosen_f32(old.temperature, generic.temperature, o.temperature);
        o.top_p = chosen_f32(old.top_p, generic.top_p, o.top_p);
        o.min_p = chosen_f32(old.min_p, generic.min_p, o.min_p);
        o.repeat_penalty = chosen_f32(old.repeat_penalty, generic.repeat_penalty, o.repeat_penalty);
        o.presence_penalty = chosen_f32(
            old.presence_penalty,
            generic.presence_penalty,
            o.presence_penalty,
        );
        o.frequency_penalty = chosen_f32(
            old.frequency_penalty,
            generic.frequency_penalty,
            o.frequency_penalty,
        );
        o.top_k = o
            .top_k
            .or((old.top_k != generic.top_k).then_some(old.top_k));
        o.penalty_last_n = o
            .penalty_last_n
            .or((old.penalty_last_n != generic.penalty_last_n).then_some(old.penalty_last_n));
        o.seed = o.seed.or((old.seed != generic.seed).then_some(old.seed));
    }
}

/// Models listed under "Recent".
const RECENT_MODELS: usize = 8;

/// The system prompt new conversations got before they followed the model's default:
/// a file that holds exactly this never had it chosen by the user.
const FORMER_DEFAULT_SYSTEM_PROMPT: &str = "You are a helpful assistant.";

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Prefs {
    pub sampling: Sampling,
    /// The system prompt of new conversations (`None`: the loaded model's default).
    pub system_prompt: Option<String>,
    /// Loaded at start: a path or a known model's name (`None`: the default model).
    pub model: Option<String>,
    /// Recently loaded models, most recent first.
    pub recent_models: Vec<String>,
}

impl Prefs {
    /// Reads what files written before per-model defaults meant (see the fields).
    fn adopt_older_fields(&mut self) {
        self.sampling.adopt_legacy();
        if self.system_prompt.as_deref() == Some(FORMER_DEFAULT_SYSTEM_PROMPT) {
            self.system_prompt = None;
        }
    }

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
            Ok(bytes) => match serde_json::from_slice::<Prefs>(&bytes) {
                Ok(mut p) => {
                    p.adopt_older_fields();
                    (p, Ok(()))
                }
                Err(e) => (
                    Prefs::default(),
                    Err(format!("{}: {e} (the defaults are used)", path.display())),
                ),
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
        std::fs::rename(&tmp, &self.path)
            .with_context(|| format!("replacing {}", self.path.display()))?;
        self.saved = prefs.clone();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use wisp_core::defaults::{Source, Sourced};

    use super::*;

    #[test]
    fn settings_round_trip_and_partial_files_take_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let (mut file, problem) = PrefsFile::load(dir.path());
        assert!(problem.is_ok());
        assert_eq!(*file.saved(), Prefs::default());
        let mut prefs = Prefs::default();
        prefs.sampling.overrides.temperature = Some(0.0);
        prefs.remember_model(Some("/models/a.gguf"));
        prefs.remember_model(Some("/models/b.gguf"));
        prefs.remember_model(Some("/models/a.gguf"));
        assert_eq!(prefs.recent_models, ["/models/a.gguf", "/models/b.gguf"]);
        file.save_if_changed(&prefs).unwrap();
        assert_eq!(*PrefsFile::load(dir.path()).0.saved(), prefs);
        // Only what was set is written.
        let written: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.path().join("settings.json")).unwrap())
                .unwrap();
        assert_eq!(
            written["sampling"]["overrides"],
            serde_json::json!({"temperature": 0.0})
        );

        std::fs::write(
            dir.path().join("settings.json"),
            br#"{"system_prompt": "Be terse."}"#,
        )
        .unwrap();
        let (file, problem) = PrefsFile::load(dir.path());
        assert!(problem.is_ok());
        assert_eq!(file.saved().system_prompt.as_deref(), Some("Be terse."));
        assert_eq!(file.saved().sampling, Sampling::default());
    }

    #[test]
    fn unset_values_follow_the_model_and_set_ones_win() {
        let mut defaults = ModelDefaults::generic();
        defaults.sampling.temperature = Sourced::new(0.2, Source::Generic);
        defaults.sampling.top_p = Sourced::new(0.9, Source::Generic);
        let mut s = Sampling {
            random_seed: false,
            ..Sampling::default()
        };
        s.overrides.top_p = Some(0.5);
        s.overrides.seed = Some(11);
        let o = s.generate_options(&defaults).unwrap();
        assert_eq!(
            (o.sampler.temperature, o.sampler.top_p, o.sampler.seed),
            (0.2, 0.5, 11)
        );
        assert_eq!(s.in_effect(&defaults).top_p.source, Source::Explicit);
    }

    #[test]
    fn files_from_before_per_model_defaults_keep_only_what_the_user_chose() {
        let dir = tempfile::tempdir().unwrap();
        let old = br#"{"sampling": {"sampler": {"temperature": 0.0, "top_k": 40, "top_p": 0.95, "min_p": 0.05,
            "repeat_penalty": 1.0, "presence_penalty": 0.0, "frequency_penalty": 0.0, "penalty_last_n": 64, "seed": 5},
            "random_seed": false, "max_tokens": 24}, "system_prompt": "You are a helpful assistant."}"#;
        std::fs::write(dir.path().join("settings.json"), old).unwrap();
        let (file, problem) = PrefsFile::load(dir.path());
        assert!(problem.is_ok());
        let prefs = file.saved();
        assert_eq!(
            prefs.sampling.overrides,
            SamplingOverrides {
                temperature: Some(0.0),
                seed: Some(5),
                ..Default::default()
            }
        );
        assert_eq!(
            (prefs.sampling.random_seed, prefs.sampling.max_tokens),
            (false, 24)
        );
        assert_eq!(prefs.system_prompt, None);
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
        let defaults = ModelDefaults::generic();
        let mut s = Sampling::default();
        s.overrides.top_p = Some(0.0);
        assert!(
            s.generate_options(&defaults).unwrap_err().contains("top_p"),
            "{:?}",
            s.generate_options(&defaults)
        );
        s.overrides.top_p = Some(1.0);
        s.max_tokens = 0;
        assert_eq!(
            s.generate_options(&defaults).unwrap().max_tokens,
            usize::MAX
        );
    }
}
