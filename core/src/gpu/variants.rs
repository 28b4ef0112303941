//! Kernel variants: which activation type, reduction kind and kernel shapes run on an
//! adapter. Chosen from its capabilities, each part forcible for tests and debugging
//! through the engine options (which the native crate fills from the `WISP_ACT`,
//! `WISP_REDUCE` and `WISP_TIER` variables, and the web page from its load request).

use super::{Capabilities, GpuError};

/// The storage type of activations and of the KV cache.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
pub enum Act {
    F32,
    F16,
}

/// The storage type of the KV cache.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
pub enum KvType {
    F32,
    F16,
    /// GGML's Q8_0 arithmetic: signed bytes with an f16-rounded scale per 32 values,
    /// stored as 4 bytes per 4 values plus a 4-byte scale per 32 (4.5 bits per value
    /// more than 8, against 16 for f16).
    Q8_0,
}

impl KvType {
    pub fn wgsl(self) -> &'static str {
        match self {
            KvType::F32 => "f32",
            KvType::F16 => "f16",
            KvType::Q8_0 => "q8_0",
        }
    }

    /// Bytes one position takes with `stride` values (kv heads × head dimension).
    pub fn bytes_per_position(self, stride: u32) -> u64 {
        let n = stride as u64;
        match self {
            KvType::F32 => 4 * n,
            KvType::F16 => 2 * n,
            KvType::Q8_0 => crate::kernels::q8_slot_bytes(stride),
        }
    }

    /// f16 where the adapter has shader-f16 (half the memory and traffic), else f32.
    pub fn default_for(caps: &Capabilities) -> KvType {
        if caps.shader_f16 {
            KvType::F16
        } else {
            KvType::F32
        }
    }
}

impl std::str::FromStr for KvType {
    type Err = GpuError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "f32" => Ok(KvType::F32),
            "f16" => Ok(KvType::F16),
            "q8_0" => Ok(KvType::Q8_0),
            _ => Err(GpuError::InvalidSetting {
                name: "KV type".into(),
                value: s.into(),
                expected: "one of f32, f16, q8_0".into(),
            }),
        }
    }
}

/// How kernels reduce across lanes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
pub enum Reduce {
    /// Subgroup operations, then workgroup memory across subgroups.
    Subgroup,
    /// Workgroup memory and barriers only: works everywhere.
    Workgroup,
}

/// The family of kernel shapes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
pub enum Tier {
    /// CPU adapters: whole rows per lane, register blocking, no barriers.
    CpuLike,
    /// GPUs: rows split across lanes and reduced, wider workgroups.
    Gpu,
}

/// One complete choice of variants.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
pub struct Variant {
    pub act: Act,
    pub reduce: Reduce,
    pub tier: Tier,
}

/// Partial overrides; `None` means "choose from the adapter".
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VariantOverrides {
    pub act: Option<Act>,
    pub reduce: Option<Reduce>,
    pub tier: Option<Tier>,
}

impl Act {
    pub fn wgsl(self) -> &'static str {
        match self {
            Act::F32 => "f32",
            Act::F16 => "f16",
        }
    }
    /// Bytes per element.
    pub fn size(self) -> u64 {
        match self {
            Act::F32 => 4,
            Act::F16 => 2,
        }
    }
}

impl Reduce {
    pub fn wgsl(self) -> &'static str {
        match self {
            Reduce::Subgroup => "subgroup",
            Reduce::Workgroup => "workgroup",
        }
    }
}

impl std::fmt::Display for Variant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let tier = match self.tier {
            Tier::CpuLike => "cpu",
            Tier::Gpu => "gpu",
        };
        write!(f, "{}/{}/{tier}", self.act.wgsl(), self.reduce.wgsl())
    }
}

impl VariantOverrides {
    /// The overrides from their names (`f32|f16`, `subgroup|workgroup`, `cpu|gpu`), as
    /// the environment or a web page gives them; `None` chooses automatically. An error
    /// names the setting `act`, `reduce` or `tier`; callers rename it to what they read.
    pub fn parse(
        act: Option<&str>,
        reduce: Option<&str>,
        tier: Option<&str>,
    ) -> Result<Self, GpuError> {
        let bad = |name: &str, value: &str, expected: &str| GpuError::InvalidSetting {
            name: name.to_string(),
            value: value.to_string(),
            expected: expected.to_string(),
        };
        let act = match act {
            None => None,
            Some("f32") => Some(Act::F32),
            Some("f16") => Some(Act::F16),
            Some(v) => return Err(bad("act", v, "one of f32, f16")),
        };
        let reduce = match reduce {
            None => None,
            Some("subgroup") => Some(Reduce::Subgroup),
            Some("workgroup") => Some(Reduce::Workgroup),
            Some(v) => return Err(bad("reduce", v, "one of subgroup, workgroup")),
        };
        let tier = match tier {
            None => None,
            Some("cpu") => Some(Tier::CpuLike),
            Some("gpu") => Some(Tier::Gpu),
            Some(v) => return Err(bad("tier", v, "one of cpu, gpu")),
        };
        Ok(VariantOverrides { act, reduce, tier })
    }

    /// Fills the gaps from the adapter; refuses a forced variant the adapter cannot run.
    pub fn resolve(self, caps: &Capabilities, adapter: &str) -> Result<Variant, GpuError> {
        let variant = Variant {
            // On CPU adapters f16 storage costs conversions and saves no bandwidth that
            // matters, so f32 is the default there.
            act: self.act.unwrap_or(if caps.shader_f16 && !caps.cpu_like {
                Act::F16
            } else {
                Act::F32
            }),
            reduce: self.reduce.unwrap_or(if caps.subgroups {
                Reduce::Subgroup
            } else {
                Reduce::Workgroup
            }),
            tier: self.tier.unwrap_or(if caps.cpu_like {
                Tier::CpuLike
            } else {
                Tier::Gpu
            }),
        };
        let missing = |feature| GpuError::MissingFeature {
            adapter: adapter.to_string(),
            feature,
            variant: variant.to_string(),
        };
        if variant.act == Act::F16 && !caps.shader_f16 {
            return Err(missing("shader-f16"));
        }
        if variant.reduce == Reduce::Subgroup && !caps.subgroups {
            return Err(missing("subgroup operations"));
        }
        Ok(variant)
    }
}

impl Variant {
    /// Every variant an adapter with these capabilities can run (what the tests sweep).
    pub fn all_supported(caps: &Capabilities) -> Vec<Variant> {
        let mut out = Vec::new();
        for act in [Act::F32, Act::F16] {
            for reduce in [Reduce::Subgroup, Reduce::Workgroup] {
                for tier in [Tier::CpuLike, Tier::Gpu] {
                    let o = VariantOverrides {
                        act: Some(act),
                        reduce: Some(reduce),
                        tier: Some(tier),
                    };
                    if let Ok(v) = o.resolve(caps, "") {
                        out.push(v);
                    }
                }
            }
        }
        out
    }
}
