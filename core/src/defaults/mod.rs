//! What a model runs with when nobody says otherwise: its sampling values and its system
//! prompt, each with where it came from.
//!
//! Small models are sensitive to sampling: SmolLM2-135M-Instruct answers "What is the
//! capital of France?" with nonsense at llama.cpp's generic temperature of 0.8 and with
//! "Paris" at its authors' 0.2. So every value is resolved per model, most authoritative
//! first:
//!
//! 1. **Explicit**: a command-line flag, a setting the user changed, a request field
//!    ([`SamplingOverrides`]);
//! 2. **GGUF**: the file's own `general.sampling.*` keys (llama.cpp's names, see
//!    [`gguf_keys`]), written by whoever converted the model;
//! 3. **Known model**: Wisp's table of the models it knows ([`known`]), each value taken from
//!    the authors' `generation_config.json` or model card, and the system prompt from their
//!    chat template;
//! 4. **Generic**: llama.cpp's defaults ([`SamplerConfig::default`]) and no system prompt.
//!
//! Models are recognised from their GGUF metadata (architecture, name, vocabulary), never
//! from a file name, so the browser (which has none) resolves the same defaults as the CLI
//! and the desktop app.

mod gguf_keys;
mod known;

use std::fmt;

use serde::{Deserialize, Serialize, Serializer};

use crate::gguf::Metadata;
use crate::sampling::{SamplerConfig, SamplingError};

pub use gguf_keys::GGUF_SAMPLING_KEYS;
pub use known::{KNOWN_MODEL_DEFAULTS, KnownModelDefaults, Recommended, identify_known_model};

/// Where a value in effect came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Source {
    /// Chosen explicitly: a command-line flag, a setting the user changed, a request field.
    Explicit,
    /// The model file's own `general.sampling.*` key.
    Gguf { key: &'static str },
    /// Wisp's table of known models: which model, and where its authors say so.
    KnownModel {
        model: &'static str,
        reference: &'static str,
    },
    /// llama.cpp's generic default (for the system prompt: none).
    Generic,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Explicit => write!(f, "set explicitly"),
            Source::Gguf { key } => write!(f, "the model file's {key}"),
            Source::KnownModel { model, reference } => {
                write!(f, "known model {model}: {reference}")
            }
            Source::Generic => write!(f, "generic default (llama.cpp's)"),
        }
    }
}

/// A value and where it came from.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Sourced<T> {
    pub value: T,
    pub source: Source,
}

impl<T> Sourced<T> {
    pub fn new(value: T, source: Source) -> Self {
        Sourced { value, source }
    }
}

/// Sampling values chosen explicitly (flags, changed settings, request fields); `None` takes
/// the model's default. Field names are [`SamplerConfig`]'s.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SamplingOverrides {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub top_k: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min_p: Option<f32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub repeat_penalty: Option<f32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub presence_penalty: Option<f32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub frequency_penalty: Option<f32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub penalty_last_n: Option<usize>,
    /// Not a model default: `None` leaves the seed to the caller (a fresh one natively).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
}

impl SamplingOverrides {
    /// Checks the explicit values alone (on top of the generic defaults), so that a bad
    /// flag is reported before a model is opened. The error names the field.
    pub fn validate(&self) -> Result<(), SamplingError> {
        SamplingDefaults::generic()
            .with_overrides(self)
            .config(0)
            .validate()
    }
}

/// The sampling values in effect, each with its source. Field names are [`SamplerConfig`]'s.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SamplingDefaults {
    pub temperature: Sourced<f32>,
    pub top_k: Sourced<usize>,
    pub top_p: Sourced<f32>,
    pub min_p: Sourced<f32>,
    pub repeat_penalty: Sourced<f32>,
    pub presence_penalty: Sourced<f32>,
    pub frequency_penalty: Sourced<f32>,
    pub penalty_last_n: Sourced<usize>,
}

impl SamplingDefaults {
    /// llama.cpp's defaults, all [`Source::Generic`].
    pub fn generic() -> Self {
        let d = SamplerConfig::default();
        let g = |v| Sourced::new(v, Source::Generic);
        SamplingDefaults {
            temperature: g(d.temperature),
            top_k: Sourced::new(d.top_k, Source::Generic),
            top_p: g(d.top_p),
            min_p: g(d.min_p),
            repeat_penalty: g(d.repeat_penalty),
            presence_penalty: g(d.presence_penalty),
            frequency_penalty: g(d.frequency_penalty),
            penalty_last_n: Sourced::new(d.penalty_last_n, Source::Generic),
        }
    }

    /// These values with the explicit ones in place ([`Source::Explicit`]).
    pub fn with_overrides(&self, o: &SamplingOverrides) -> Self {
        fn pick<T: Copy>(default: &Sourced<T>, explicit: Option<T>) -> Sourced<T> {
            match explicit {
                Some(v) => Sourced::new(v, Source::Explicit),
                None => default.clone(),
            }
        }
        SamplingDefaults {
            temperature: pick(&self.temperature, o.temperature),
            top_k: pick(&self.top_k, o.top_k),
            top_p: pick(&self.top_p, o.top_p),
            min_p: pick(&self.min_p, o.min_p),
            repeat_penalty: pick(&self.repeat_penalty, o.repeat_penalty),
            presence_penalty: pick(&self.presence_penalty, o.presence_penalty),
            frequency_penalty: pick(&self.frequency_penalty, o.frequency_penalty),
            penalty_last_n: pick(&self.penalty_last_n, o.penalty_last_n),
        }
    }

    /// The sampler configuration these values make, with `seed` (not validated: call
    /// [`SamplerConfig::validate`], or let [`crate::sampling::Sampler::new`] do it).
    pub fn config(&self, seed: u64) -> SamplerConfig {
        SamplerConfig {
            temperature: self.temperature.value,
            top_k: self.top_k.value,
            top_p: self.top_p.value,
            min_p: self.min_p.value,
            repeat_penalty: self.repeat_penalty.value,
            presence_penalty: self.presence_penalty.value,
            frequency_penalty: self.frequency_penalty.value,
            penalty_last_n: self.penalty_last_n.value,
            seed,
        }
    }

    /// Each field's name (as in [`SamplerConfig`]), value (formatted) and source, in the
    /// order of the sampler chain; for listings such as `wisp info`.
    pub fn rows(&self) -> Vec<(&'static str, String, Source)> {
        vec![
            (
                "temperature",
                self.temperature.value.to_string(),
                self.temperature.source,
            ),
            ("top_k", self.top_k.value.to_string(), self.top_k.source),
            ("top_p", self.top_p.value.to_string(), self.top_p.source),
            ("min_p", self.min_p.value.to_string(), self.min_p.source),
            (
                "repeat_penalty",
                self.repeat_penalty.value.to_string(),
                self.repeat_penalty.source,
            ),
            (
                "presence_penalty",
                self.presence_penalty.value.to_string(),
                self.presence_penalty.source,
            ),
            (
                "frequency_penalty",
                self.frequency_penalty.value.to_string(),
                self.frequency_penalty.source,
            ),
            (
                "penalty_last_n",
                self.penalty_last_n.value.to_string(),
                self.penalty_last_n.source,
            ),
        ]
    }
}

/// A `general.sampling.*` key that could not be used; the value falls back to the next
/// source. Reported, never fatal: the model still runs.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum DefaultsWarning {
    #[error("GGUF key {key} is {found}, expected {expected}; ignored")]
    WrongType {
        key: &'static str,
        found: &'static str,
        expected: &'static str,
    },
    #[error("GGUF key {key} = {value} is out of range (expected {expected}); ignored")]
    OutOfRange {
        key: &'static str,
        value: String,
        expected: &'static str,
    },
    #[error("GGUF key {key} = {value} asks for a sampler Wisp does not have; ignored")]
    Unsupported { key: &'static str, value: String },
}

impl Serialize for DefaultsWarning {
    /// As its message: the reader is a person (`wisp info --json`, the web page).
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// Everything a model runs with by default, resolved from its GGUF metadata.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ModelDefaults {
    /// The entry of Wisp's table this model was recognised as, if any.
    pub known_model: Option<&'static str>,
    pub sampling: SamplingDefaults,
    /// The system message a conversation starts with when the user gives none (`None`:
    /// no system message; the chat template decides).
    pub system_prompt: Sourced<Option<String>>,
    /// `general.sampling.*` keys that were present but unusable.
    pub warnings: Vec<DefaultsWarning>,
}

impl ModelDefaults {
    /// Generic defaults only: for a model nothing is known about.
    pub fn generic() -> Self {
        ModelDefaults {
            known_model: None,
            sampling: SamplingDefaults::generic(),
            system_prompt: Sourced::new(None, Source::Generic),
            warnings: Vec::new(),
        }
    }

    /// The defaults of the model whose GGUF metadata is `metadata`: its `general.sampling.*`
    /// keys, else its entry in the known-model table, else the generic defaults.
    pub fn for_model(metadata: &Metadata) -> Self {
        let mut defaults = ModelDefaults::generic();
        if let Some(known) = identify_known_model(metadata) {
            known.apply_to(&mut defaults, metadata);
        }
        gguf_keys::apply(metadata, &mut defaults);
        defaults
    }

    /// The sampling values in effect with `overrides` on top (each with its source) and the
    /// sampler configuration they make with `seed`, validated: an error names the bad field.
    /// Every front end (CLI, desktop app, web engine) builds its sampler here.
    pub fn sampler(
        &self,
        overrides: &SamplingOverrides,
        seed: u64,
    ) -> Result<(SamplingDefaults, SamplerConfig), SamplingError> {
        let sampling = self.sampling.with_overrides(overrides);
        let config = sampling.config(seed);
        config.validate()?;
        Ok((sampling, config))
    }

    /// The system prompt to use: `explicit` when given, else the model's default.
    pub fn system_prompt_or(&self, explicit: Option<&str>) -> Option<String> {
        explicit
            .map(str::to_string)
            .or_else(|| self.system_prompt.value.clone())
    }
}

#[cfg(test)]
mod tests;
