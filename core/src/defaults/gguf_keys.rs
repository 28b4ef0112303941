//! The `general.sampling.*` keys: sampling values a GGUF file recommends for its model.
//!
//! The names and types are llama.cpp's (`gguf-py/gguf/constants.py` `Keys.General.SAMPLING_*`,
//! `src/llama-arch.cpp` `LLM_KV_GENERAL_SAMPLING_*`; `gguf_writer.py` writes `top_k`,
//! `penalty_last_n` and `mirostat` as i32 and the others as f32). Any numeric type is
//! accepted, as llama.cpp does (it reads them through their text form). Wisp's sampler
//! chain has a fixed order, so `general.sampling.sequence` is not read; the samplers Wisp
//! does not have (Mirostat, XTC) are reported when a file turns them on.

use crate::gguf::{Metadata, Value};

use super::{DefaultsWarning, ModelDefaults, Source, Sourced};

/// Every key this module reads.
pub const GGUF_SAMPLING_KEYS: &[&str] = &[
    TEMP,
    TOP_K,
    TOP_P,
    MIN_P,
    PENALTY_REPEAT,
    PENALTY_LAST_N,
    MIROSTAT,
    XTC_PROBABILITY,
];

const TEMP: &str = "general.sampling.temp";
const TOP_K: &str = "general.sampling.top_k";
const TOP_P: &str = "general.sampling.top_p";
const MIN_P: &str = "general.sampling.min_p";
const PENALTY_REPEAT: &str = "general.sampling.penalty_repeat";
const PENALTY_LAST_N: &str = "general.sampling.penalty_last_n";
const MIROSTAT: &str = "general.sampling.mirostat";
const XTC_PROBABILITY: &str = "general.sampling.xtc_probability";

/// Puts the usable keys of `metadata` into `defaults` (they beat the known-model table) and
/// records a warning for each unusable one.
pub(super) fn apply(metadata: &Metadata, defaults: &mut ModelDefaults) {
    let mut keys = Keys {
        metadata,
        warnings: &mut defaults.warnings,
    };
    let s = &mut defaults.sampling;
    if let Some(v) = keys.float(TEMP, "a number >= 0 (0 = greedy)", |t| t >= 0.0) {
        s.temperature = gguf(TEMP, v);
    }
    // llama.cpp: "<= 0 to use vocab size", i.e. off, which is 0 here.
    if let Some(k) = keys.integer(TOP_K, "an integer", |_| true) {
        s.top_k = gguf(TOP_K, usize::try_from(k).unwrap_or(0));
    }
    if let Some(p) = keys.float(TOP_P, "a number in (0, 1]", |p| p > 0.0 && p <= 1.0) {
        s.top_p = gguf(TOP_P, p);
    }
    if let Some(p) = keys.float(MIN_P, "a number in [0, 1]", |p| (0.0..=1.0).contains(&p)) {
        s.min_p = gguf(MIN_P, p);
    }
    if let Some(r) = keys.float(PENALTY_REPEAT, "a number > 0 (1 = off)", |r| r > 0.0) {
        s.repeat_penalty = gguf(PENALTY_REPEAT, r);
    }
    if let Some(n) = keys.integer(
        PENALTY_LAST_N,
        "an integer >= -1 (-1 = the whole context)",
        |n| n >= -1,
    ) {
        match usize::try_from(n) {
            Ok(n) => s.penalty_last_n = gguf(PENALTY_LAST_N, n),
            // -1 is llama.cpp's "whole context": the training context, when the file has one.
            Err(_) => match context_length(metadata) {
                Some(n_ctx) => s.penalty_last_n = gguf(PENALTY_LAST_N, n_ctx),
                None => keys.warnings.push(DefaultsWarning::OutOfRange {
                    key: PENALTY_LAST_N,
                    value: n.to_string(),
                    expected: "a window size (-1 needs the model's context_length key)",
                }),
            },
        }
    }
    if let Some(m) = keys.integer(MIROSTAT, "an integer (0 = off)", |_| true)
        && m != 0
    {
        keys.warnings.push(DefaultsWarning::Unsupported {
            key: MIROSTAT,
            value: m.to_string(),
        });
    }
    if let Some(p) = keys.float(XTC_PROBABILITY, "a number in [0, 1]", |p| {
        (0.0..=1.0).contains(&p)
    }) && p > 0.0
    {
        keys.warnings.push(DefaultsWarning::Unsupported {
            key: XTC_PROBABILITY,
            value: p.to_string(),
        });
    }
}

fn gguf<T>(key: &'static str, value: T) -> Sourced<T> {
    Sourced::new(value, Source::Gguf { key })
}

/// `{arch}.context_length`, when present and sane.
fn context_length(metadata: &Metadata) -> Option<usize> {
    let arch = metadata.get("general.architecture")?.as_str()?;
    let n = metadata.get(&format!("{arch}.context_length"))?.as_u64()?;
    usize::try_from(n).ok().filter(|&n| n > 0)
}

/// Typed reads of optional keys that record why a present key is unusable.
struct Keys<'a> {
    metadata: &'a Metadata,
    warnings: &'a mut Vec<DefaultsWarning>,
}

impl Keys<'_> {
    /// A finite number within `ok`, from any numeric type.
    fn float(
        &mut self,
        key: &'static str,
        expected: &'static str,
        ok: impl Fn(f32) -> bool,
    ) -> Option<f32> {
        let value = self.metadata.get(key)?;
        let Some(x) = value.as_f64() else {
            self.warnings.push(wrong_type(key, value, "a number"));
            return None;
        };
        let x = x as f32;
        if x.is_finite() && ok(x) {
            Some(x)
        } else {
            self.warnings.push(DefaultsWarning::OutOfRange {
                key,
                value: value.summary(),
                expected,
            });
            None
        }
    }

    /// An integer within `ok`, from an integer type or a float with no fraction.
    fn integer(
        &mut self,
        key: &'static str,
        expected: &'static str,
        ok: impl Fn(i64) -> bool,
    ) -> Option<i64> {
        let value = self.metadata.get(key)?;
        let n = match value {
            Value::F32(_) | Value::F64(_) => value
                .as_f64()
                .filter(|x| x.fract() == 0.0 && x.abs() < 1e15)
                .map(|x| x as i64),
            // An integer of any width; None for a u64 beyond i64 (out of range below).
            _ if value.as_i64().is_some() || value.as_u64().is_some() => value.as_i64(),
            _ => {
                self.warnings.push(wrong_type(key, value, "an integer"));
                return None;
            }
        };
        match n {
            Some(n) if ok(n) => Some(n),
            _ => {
                self.warnings.push(DefaultsWarning::OutOfRange {
                    key,
                    value: value.summary(),
                    expected,
                });
                None
            }
        }
    }
}

fn wrong_type(key: &'static str, value: &Value, expected: &'static str) -> DefaultsWarning {
    DefaultsWarning::WrongType {
        key,
        found: value.value_type().name(),
        expected,
    }
}
