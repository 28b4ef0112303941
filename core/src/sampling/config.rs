//! The sampling parameters and their validation.

use serde::{Deserialize, Serialize};

use super::SamplingError;

/// Parameters of the sampler chain. `Default` is llama.cpp's CLI default.
///
/// Deserialisation fills missing fields from `Default`, so `{"temperature": 0.2}` is a
/// complete configuration.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SamplerConfig {
    /// Divides the logits before the draw; `<= 0` (in practice `0`) means greedy. Must be
    /// finite and not negative.
    pub temperature: f32,
    /// Keep the `top_k` largest logits; `0` turns top-k off.
    pub top_k: usize,
    /// Nucleus sampling: keep the shortest prefix of the sorted distribution whose
    /// cumulative probability is `>= top_p`. In `(0, 1]`; `1` turns it off.
    pub top_p: f32,
    /// Keep tokens with probability `>= min_p · p_max`. In `[0, 1]`; `0` turns it off.
    pub min_p: f32,
    /// Repetition penalty: a penalised token's positive logit is divided by it, a negative
    /// one multiplied. `> 0` and finite; `1` turns it off.
    pub repeat_penalty: f32,
    /// Subtracted once from the logit of every token present in the penalty window. Finite
    /// (negative values encourage repetition, as in the OpenAI API).
    pub presence_penalty: f32,
    /// Subtracted from a token's logit once per occurrence in the penalty window. Finite.
    pub frequency_penalty: f32,
    /// How many of the most recently accepted tokens the penalties look at; `0` turns them
    /// off. llama.cpp's `-1` ("whole context") is the context length here.
    pub penalty_last_n: usize,
    /// Seed of the ChaCha20 RNG: the same seed and the same logits give the same tokens on
    /// every platform. A caller that wants fresh randomness passes a seed it made.
    pub seed: u64,
}

impl Default for SamplerConfig {
    fn default() -> Self {
        // llama.cpp's `common_params_sampling` defaults (the CLI's), seed aside: llama.cpp's
        // default seed means "random", and Wisp has no OS randomness to draw one from.
        Self {
            temperature: 0.8,
            top_k: 40,
            top_p: 0.95,
            min_p: 0.05,
            repeat_penalty: 1.0,
            presence_penalty: 0.0,
            frequency_penalty: 0.0,
            penalty_last_n: 64,
            seed: 0,
        }
    }
}

impl SamplerConfig {
    /// Greedy decoding: always the most likely token (no truncation, no RNG, no penalties).
    pub fn greedy() -> Self {
        Self {
            temperature: 0.0,
            ..Self::default()
        }
    }

    /// Whether the chain reduces to an argmax (done on the GPU).
    pub fn is_greedy(&self) -> bool {
        // `validate` rejects negative and NaN temperatures; `<=` keeps an unvalidated config
        // from sampling at a nonsensical temperature.
        self.temperature <= 0.0
    }

    /// Whether the largest raw logit is the token: greedy, with no penalty to move it.
    /// Such a row needs no logits read back, nor written (`HeadOutput::Argmax`).
    pub fn argmax_suffices(&self) -> bool {
        self.is_greedy() && self.penalties_are_neutral()
    }

    /// The repetition / presence / frequency penalties are all no-ops.
    pub fn penalties_are_neutral(&self) -> bool {
        self.penalty_last_n == 0
            || (self.repeat_penalty == 1.0
                && self.presence_penalty == 0.0
                && self.frequency_penalty == 0.0)
    }

    /// Checks every field; the error names the first offending field and its value.
    pub fn validate(&self) -> Result<(), SamplingError> {
        fn invalid(name: &'static str, value: f32, expected: &'static str) -> SamplingError {
            SamplingError::InvalidParameter {
                name,
                value: value.to_string(),
                expected,
            }
        }
        // Each test is written so that NaN fails it (comparisons with NaN are false).
        if !(self.temperature >= 0.0 && self.temperature.is_finite()) {
            return Err(invalid(
                "temperature",
                self.temperature,
                "a finite number >= 0 (0 = greedy)",
            ));
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return Err(invalid("top_p", self.top_p, "a number in (0, 1]"));
        }
        if !(self.min_p >= 0.0 && self.min_p <= 1.0) {
            return Err(invalid("min_p", self.min_p, "a number in [0, 1]"));
        }
        // 0 would turn every penalised positive logit into +inf.
        if !(self.repeat_penalty > 0.0 && self.repeat_penalty.is_finite()) {
            return Err(invalid(
                "repeat_penalty",
                self.repeat_penalty,
                "a finite number > 0 (1 = off)",
            ));
        }
        if !self.presence_penalty.is_finite() {
            return Err(invalid(
                "presence_penalty",
                self.presence_penalty,
                "a finite number",
            ));
        }
        if !self.frequency_penalty.is_finite() {
            return Err(invalid(
                "frequency_penalty",
                self.frequency_penalty,
                "a finite number",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn expect_invalid(config: SamplerConfig, field: &str) {
        match config.validate() {
            Err(SamplingError::InvalidParameter { name, value, .. }) => {
                assert_eq!(name, field);
                let message = config.validate().unwrap_err().to_string();
                assert!(message.contains(field), "{message}");
                assert!(message.contains(&value), "{message}");
            }
            other => panic!("{field}: expected InvalidParameter, got {other:?}"),
        }
    }

    #[test]
    fn defaults_match_llama_cpp_and_validate() {
        let d = SamplerConfig::default();
        assert_eq!(d.temperature, 0.8);
        assert_eq!(d.top_k, 40);
        assert_eq!(d.top_p, 0.95);
        assert_eq!(d.min_p, 0.05);
        assert_eq!(d.repeat_penalty, 1.0);
        assert_eq!(d.presence_penalty, 0.0);
        assert_eq!(d.frequency_penalty, 0.0);
        assert_eq!(d.penalty_last_n, 64);
        d.validate().unwrap();
        assert!(!d.is_greedy());
        assert!(d.penalties_are_neutral());
        let g = SamplerConfig::greedy();
        g.validate().unwrap();
        assert!(g.is_greedy());
    }

    #[test]
    fn invalid_configs_name_the_parameter() {
        let d = SamplerConfig::default();
        let cases: Vec<(SamplerConfig, &str)> = vec![
            (
                SamplerConfig {
                    temperature: f32::NAN,
                    ..d
                },
                "temperature",
            ),
            (
                SamplerConfig {
                    temperature: -0.5,
                    ..d
                },
                "temperature",
            ),
            (
                SamplerConfig {
                    temperature: f32::INFINITY,
                    ..d
                },
                "temperature",
            ),
            (SamplerConfig { top_p: 0.0, ..d }, "top_p"),
            (SamplerConfig { top_p: 1.5, ..d }, "top_p"),
            (
                SamplerConfig {
                    top_p: f32::NAN,
                    ..d
                },
                "top_p",
            ),
            (SamplerConfig { min_p: -0.1, ..d }, "min_p"),
            (SamplerConfig { min_p: 1.01, ..d }, "min_p"),
            (
                SamplerConfig {
                    min_p: f32::NAN,
                    ..d
                },
                "min_p",
            ),
            (
                SamplerConfig {
                    repeat_penalty: 0.0,
                    ..d
                },
                "repeat_penalty",
            ),
            (
                SamplerConfig {
                    repeat_penalty: -1.1,
                    ..d
                },
                "repeat_penalty",
            ),
            (
                SamplerConfig {
                    repeat_penalty: f32::NAN,
                    ..d
                },
                "repeat_penalty",
            ),
            (
                SamplerConfig {
                    presence_penalty: f32::NAN,
                    ..d
                },
                "presence_penalty",
            ),
            (
                SamplerConfig {
                    frequency_penalty: f32::INFINITY,
                    ..d
                },
                "frequency_penalty",
            ),
        ];
        for (config, field) in cases {
            expect_invalid(config, field);
        }
        // Boundary values that are allowed.
        for ok in [
            SamplerConfig {
                top_p: 1.0,
                min_p: 0.0,
                ..d
            },
            SamplerConfig { min_p: 1.0, ..d },
            SamplerConfig {
                presence_penalty: -2.0,
                frequency_penalty: -2.0,
                ..d
            },
            SamplerConfig {
                temperature: 0.0,
                ..d
            },
        ] {
            ok.validate().unwrap();
        }
    }

    #[test]
    fn serde_round_trip_and_partial_input() {
        let c = SamplerConfig {
            seed: 42,
            top_k: 7,
            ..SamplerConfig::default()
        };
        let json = serde_json::to_string(&c).unwrap();
        let back: SamplerConfig = serde_json::from_str(&json).unwrap();
        assert_eq!(back, c);
        let partial: SamplerConfig = serde_json::from_str(r#"{"temperature": 0.2}"#).unwrap();
        assert_eq!(
            partial,
            SamplerConfig {
                temperature: 0.2,
                ..SamplerConfig::default()
            }
        );
    }
}
