//! The engine settings that come from the environment, read in one place: `WISP_ACT`,
//! `WISP_REDUCE` and `WISP_TIER` (kernel variants), `WISP_TUNE` (tuning overrides) and
//! `WISP_LOOP_BOUNDING` (naga's loop counters), and `WISP_PIPELINE_CACHE` (the driver's
//! pipeline cache on disk, `pipeline_store.rs`). `wisp-core` reads no environment (the
//! browser has none); these are handed to it in `DeviceOptions` and `EngineOptions`.
//! A value that is set but not valid is an error naming the variable and what it takes,
//! never a silent default.

use wisp_core::gpu::{GpuError, LoopBounding, VariantOverrides};
use wisp_core::kernels::TuningOverrides;

/// What the `WISP_*` variables ask of the device and the engine.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EnvSettings {
    pub variant: VariantOverrides,
    pub tuning: TuningOverrides,
    pub loop_bounding: LoopBounding,
    pub pipeline_cache: PipelineCacheFile,
}

/// Whether the driver's pipeline cache is read from and written to disk.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum PipelineCacheFile {
    #[default]
    Kept,
    Off,
}

impl EnvSettings {
    /// Reads the process environment. A value that is not Unicode is invalid, not unset.
    pub fn from_env() -> Result<EnvSettings, GpuError> {
        Self::from_lookup(|name| std::env::var_os(name).map(|v| v.to_string_lossy().into_owned()))
    }

    /// Reads the variables through `var` (the environment, or a table in tests). Unset
    /// and empty variables keep the defaults.
    pub fn from_lookup(var: impl Fn(&str) -> Option<String>) -> Result<EnvSettings, GpuError> {
        let var = |name: &str| var(name).filter(|v| !v.is_empty());
        let (act, reduce, tier) = (var("WISP_ACT"), var("WISP_REDUCE"), var("WISP_TIER"));
        let variant = VariantOverrides::parse(act.as_deref(), reduce.as_deref(), tier.as_deref())
            .map_err(|e| renamed(e, |name| format!("WISP_{}", name.to_uppercase())))?;
        let tuning = match var("WISP_TUNE") {
            Some(spec) => spec
                .parse()
                .map_err(|e| renamed(e, |_| "WISP_TUNE".into()))?,
            None => TuningOverrides::default(),
        };
        let loop_bounding = match var("WISP_LOOP_BOUNDING").as_deref() {
            None | Some("0") => LoopBounding::Off,
            Some("1") => LoopBounding::On,
            Some(other) => {
                return Err(GpuError::InvalidSetting {
                    name: "WISP_LOOP_BOUNDING".into(),
                    value: other.into(),
                    expected: "one of 0, 1".into(),
                });
            }
        };
        let pipeline_cache = match var("WISP_PIPELINE_CACHE").as_deref() {
            None | Some("on" | "1") => PipelineCacheFile::Kept,
            Some("off" | "0") => PipelineCacheFile::Off,
            Some(other) => {
                return Err(GpuError::InvalidSetting {
                    name: "WISP_PIPELINE_CACHE".into(),
                    value: other.into(),
                    expected: "one of on, off, 1, 0".into(),
                });
            }
        };
        Ok(EnvSettings {
            variant,
            tuning,
            loop_bounding,
            pipeline_cache,
        })
    }
}

/// `error` with its setting named as the environment names it (core calls the settings
/// `act`, `tune`… after the web page's fields).
fn renamed(error: GpuError, name: impl Fn(&str) -> String) -> GpuError {
    match error {
        GpuError::InvalidSetting {
            name: setting,
            value,
            expected,
        } => GpuError::InvalidSetting {
            name: name(&setting),
            value,
            expected,
        },
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wisp_core::gpu::{Act, Reduce, Tier};

    fn settings(vars: &[(&str, &str)]) -> Result<EnvSettings, String> {
        EnvSettings::from_lookup(|name| {
            vars.iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| v.to_string())
        })
        .map_err(|e| e.to_string())
    }

    #[test]
    fn unset_and_empty_variables_keep_the_defaults() {
        assert_eq!(settings(&[]), Ok(EnvSettings::default()));
        let empty = [
            "WISP_ACT",
            "WISP_REDUCE",
            "WISP_TIER",
            "WISP_TUNE",
            "WISP_LOOP_BOUNDING",
            "WISP_PIPELINE_CACHE",
        ]
        .map(|n| (n, ""));
        assert_eq!(settings(&empty), Ok(EnvSettings::default()));
    }

    #[test]
    fn valid_values_reach_the_options() {
        let s = settings(&[
            ("WISP_ACT", "f16"),
            ("WISP_REDUCE", "workgroup"),
            ("WISP_TIER", "cpu"),
            ("WISP_TUNE", "matvec_wg=64,attn_flash=0"),
            ("WISP_LOOP_BOUNDING", "1"),
        ])
        .unwrap();
        assert_eq!(
            s.variant,
            VariantOverrides {
                act: Some(Act::F16),
                reduce: Some(Reduce::Workgroup),
                tier: Some(Tier::CpuLike),
            }
        );
        assert_eq!(
            s.tuning,
            "matvec_wg=64,attn_flash=0"
                .parse::<TuningOverrides>()
                .unwrap()
        );
        assert_eq!(s.loop_bounding, LoopBounding::On);
        let off = settings(&[("WISP_LOOP_BOUNDING", "0"), ("WISP_PIPELINE_CACHE", "off")]).unwrap();
        assert_eq!(off.loop_bounding, LoopBounding::Off);
        assert_eq!(off.pipeline_cache, PipelineCacheFile::Off);
        let on = settings(&[("WISP_PIPELINE_CACHE", "on")]).unwrap();
        assert_eq!(on.pipeline_cache, PipelineCacheFile::Kept);
    }

    #[test]
    fn an_invalid_value_is_an_error_naming_the_variable_and_what_it_takes() {
        let cases = [
            ("WISP_ACT", "bf16", "expected one of f32, f16"),
            ("WISP_REDUCE", "warp", "expected one of subgroup, workgroup"),
            ("WISP_TIER", "fast", "expected one of cpu, gpu"),
            ("WISP_LOOP_BOUNDING", "yes", "expected one of 0, 1"),
            ("WISP_PIPELINE_CACHE", "no", "expected one of on, off, 1, 0"),
            (
                "WISP_TUNE",
                "fast",
                "with names among matvec_split, matvec_rows",
            ),
            (
                "WISP_TUNE",
                "matvec_wg=lots",
                "(\"matvec_wg=lots\" is not one)",
            ),
        ];
        for (name, value, expected) in cases {
            let e = settings(&[(name, value)]).unwrap_err();
            assert!(
                e.starts_with(&format!("{name}={value} is not valid: ")) && e.contains(expected),
                "{e}"
            );
        }
    }
}
