//! What the Rust side of each kernel binds, checked against what its WGSL declares.
//!
//! Bind group layouts are made from naga's reflection of the composed WGSL
//! (`gpu::Reflection`), never from this table. The table says what the dispatch
//! functions in this module pass, binding by binding (name, kind, the Rust struct the
//! buffer holds), and what workgroup size the variant's defines ask for.
//! [`check`] runs whenever a pipeline is fetched, so a kernel whose WGSL and Rust
//! disagree fails to load instead of computing wrong numbers; the tests below run it
//! on every variant the registry (`wisp_shaders::KERNELS`) declares.

use super::layout::{LayoutMismatch, RustLayout, compare};
use super::*;
use crate::gpu::{BindingKind, Reflection, StepParams, StructShape};

/// One binding as the Rust side passes it.
#[derive(Clone, Copy, Debug)]
pub struct Bind {
    /// The WGSL variable's name.
    pub name: &'static str,
    pub kind: BindingKind,
    /// The Rust struct the buffer holds (the whole binding, or each array element).
    pub layout: Option<fn() -> RustLayout>,
    /// Defines and values under all of which the binding is a uniform one instead of
    /// `kind` (matvec's x with `XBIND=uniform`); none: always `kind`.
    pub uniform_when: &'static [(&'static str, &'static str)],
}

impl Bind {
    /// The binding's kind in the variant the defines select.
    fn kind_in(&self, defines: &[(&str, &str)]) -> BindingKind {
        let uniform = !self.uniform_when.is_empty()
            && self.uniform_when.iter().all(|when| defines.contains(when));
        if uniform {
            BindingKind::Uniform
        } else {
            self.kind
        }
    }
}

/// How a kernel's workgroup size follows from its defines.
#[derive(Clone, Copy, Debug)]
pub enum Lanes {
    /// The `WG` define.
    Wg,
    /// A constant of the WGSL source.
    Fixed(u32),
    /// `matmul_tiled`: one lane per TM x TN block of a BM x BN tile.
    Tile,
    /// `flash_attn`: L lanes for each of BQ queries.
    Flash,
}

/// The Rust side of one kernel.
#[derive(Clone, Copy, Debug)]
pub struct Interface {
    pub kernel: &'static str,
    /// Group 0, in binding order.
    pub bindings: &'static [Bind],
    pub lanes: Lanes,
}

/// A struct of the step metadata or of a KV pool slot: the WGSL struct name, its Rust
/// layout and the WGSL constant that holds its size in words (what readers of
/// `array<u32>` step by).
pub struct Record {
    pub wgsl: &'static str,
    pub layout: fn() -> RustLayout,
    pub words: Option<&'static str>,
}

/// Every struct the step metadata and the KV pools hold, wherever a kernel includes its
/// WGSL.
pub static RECORDS: &[Record] = &[
    Record {
        wgsl: "Step",
        layout: RustLayout::of::<StepParams>,
        words: None,
    },
    Record {
        wgsl: "TokenInfo",
        layout: RustLayout::of::<TokenInfo>,
        words: Some("TOKEN_INFO_WORDS"),
    },
    Record {
        wgsl: "EntryInfo",
        layout: RustLayout::of::<EntryInfo>,
        words: Some("ENTRY_INFO_WORDS"),
    },
    Record {
        wgsl: "Work",
        layout: RustLayout::of::<WorkItem>,
        words: Some("WORK_WORDS"),
    },
    Record {
        wgsl: "ReduceItem",
        layout: RustLayout::of::<ReduceItem>,
        words: Some("REDUCE_ITEM_WORDS"),
    },
    // Not step metadata, but read the same way (a Q8_0 KV slot is an array<u32>).
    Record {
        wgsl: "Q8KvBlock",
        layout: RustLayout::of::<Q8KvBlock>,
        words: Some("Q8_KV_BLOCK_WORDS"),
    },
];

const fn bind(name: &'static str, kind: BindingKind) -> Bind {
    Bind {
        name,
        kind,
        layout: None,
        uniform_when: &[],
    }
}

const fn holds(name: &'static str, kind: BindingKind, layout: fn() -> RustLayout) -> Bind {
    Bind {
        name,
        kind,
        layout: Some(layout),
        uniform_when: &[],
    }
}

use BindingKind::{Read as R, ReadWrite as RW, Uniform as U};

const STEP: Bind = holds("step", U, RustLayout::of::<StepParams>);
const META: Bind = bind("step_meta", R);

const PRODUCT: &[Bind] = &[
    holds("p", U, RustLayout::of::<MatParams>),
    STEP,
    bind("w", R),
    bind("x", R),
    bind("y", RW),
];

const MATVEC_PRODUCT: &[Bind] = &[
    holds("p", U, RustLayout::of::<MatParams>),
    STEP,
    bind("w", R),
    Bind {
        uniform_when: &[("XBIND", "uniform")],
        ..bind("x", R)
    },
    bind("y", RW),
    Bind {
        uniform_when: &[("XBIND", "uniform"), ("XIN", "rmsnorm")],
        ..bind("norm_w", R)
    },
];

const ATTENTION: &[Bind] = &[
    holds("p", U, RustLayout::of::<AttnParams>),
    STEP,
    bind("qkv", R),
    bind("k_pool", R),
    bind("v_pool", R),
    bind("out", RW),
    META,
];

/// The Rust side of every kernel.
pub static INTERFACES: &[Interface] = &[
    Interface {
        kernel: "matvec",
        bindings: MATVEC_PRODUCT,
        lanes: Lanes::Wg,
    },
    Interface {
        kernel: "matmul_tiled",
        bindings: PRODUCT,
        lanes: Lanes::Tile,
    },
    Interface {
        kernel: "matmul_tokens",
        bindings: PRODUCT,
        lanes: Lanes::Wg,
    },
    Interface {
        kernel: "moe_matvec",
        bindings: &[
            holds("p", U, RustLayout::of::<MatParams>),
            STEP,
            bind("w", R),
            bind("x", R),
            bind("y", RW),
            holds("route", R, RustLayout::of::<MoeRoute>),
            bind("routes", R),
        ],
        lanes: Lanes::Wg,
    },
    Interface {
        kernel: "embed",
        bindings: &[
            holds("p", U, RustLayout::of::<EmbedParams>),
            STEP,
            bind("w", R),
            bind("tokens", R),
            bind("x", RW),
        ],
        lanes: Lanes::Wg,
    },
    Interface {
        kernel: "rmsnorm",
        bindings: &[
            holds("p", U, RustLayout::of::<NormParams>),
            STEP,
            bind("x", R),
            bind("weight", R),
            bind("y", RW),
            META,
        ],
        lanes: Lanes::Wg,
    },
    Interface {
        kernel: "head_norm",
        bindings: &[
            holds("p", U, RustLayout::of::<HeadNormParams>),
            STEP,
            bind("qkv", RW),
            bind("weight", R),
            bind("bias", R),
        ],
        lanes: Lanes::Wg,
    },
    Interface {
        kernel: "rope_kv",
        bindings: &[
            holds("p", U, RustLayout::of::<RopeParams>),
            STEP,
            bind("qkv", RW),
            bind("k_pool", RW),
            bind("v_pool", RW),
            bind("inv_freq", R),
            META,
            bind("bias", R),
        ],
        lanes: Lanes::Wg,
    },
    Interface {
        kernel: "attention",
        bindings: ATTENTION,
        lanes: Lanes::Wg,
    },
    Interface {
        kernel: "attention_lanes",
        bindings: ATTENTION,
        lanes: Lanes::Wg,
    },
    Interface {
        kernel: "flash_attn",
        bindings: &[
            holds("p", U, RustLayout::of::<AttnParams>),
            STEP,
            bind("qkv", R),
            bind("k_pool", R),
            bind("v_pool", R),
            bind("out", RW),
            META,
            bind("partials", RW),
        ],
        lanes: Lanes::Flash,
    },
    Interface {
        kernel: "flash_reduce",
        bindings: &[
            holds("p", U, RustLayout::of::<AttnParams>),
            STEP,
            bind("partials", R),
            bind("out", RW),
            META,
        ],
        lanes: Lanes::Wg,
    },
    Interface {
        kernel: "glu",
        bindings: &[
            holds("p", U, RustLayout::of::<GluParams>),
            STEP,
            bind("gu", R),
            bind("h", RW),
        ],
        lanes: Lanes::Wg,
    },
    Interface {
        kernel: "moe_route",
        bindings: &[
            holds("p", U, RustLayout::of::<MoeRouteParams>),
            STEP,
            bind("scores", R),
            bind("routes", RW),
        ],
        lanes: Lanes::Wg,
    },
    Interface {
        kernel: "moe_combine",
        bindings: &[
            holds("p", U, RustLayout::of::<MoeCombineParams>),
            STEP,
            bind("y", R),
            bind("routes", R),
            bind("x", RW),
        ],
        lanes: Lanes::Wg,
    },
    Interface {
        kernel: "argmax",
        bindings: &[
            holds("p", U, RustLayout::of::<ArgmaxParams>),
            bind("logits", R),
            bind("result", RW),
        ],
        lanes: Lanes::Wg,
    },
    Interface {
        kernel: "penalties",
        bindings: &[
            holds("p", U, RustLayout::of::<PenaltyParams>),
            holds("entries", R, RustLayout::of::<PenaltyEntry>),
            holds("row_params", R, RustLayout::of::<RowParams>),
            bind("logits", RW),
        ],
        lanes: Lanes::Fixed(64),
    },
    Interface {
        kernel: "candidates",
        bindings: &[
            holds("p", U, RustLayout::of::<CandidateParams>),
            holds("row_params", R, RustLayout::of::<RowParams>),
            bind("logits", R),
            bind("out", RW),
        ],
        lanes: Lanes::Wg,
    },
    Interface {
        kernel: "bandwidth",
        bindings: &[
            holds("p", U, RustLayout::of::<BandwidthParams>),
            bind("data", R),
            bind("sink", RW),
        ],
        lanes: Lanes::Wg,
    },
];

/// How a kernel's WGSL and its Rust side disagree.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum InterfaceMismatch {
    #[error("no Rust interface for kernel {0} (add it to kernels::interface::INTERFACES)")]
    Unknown(String),
    #[error("{kernel}: WGSL has {wgsl} bindings, Rust passes {rust}")]
    Count {
        kernel: String,
        wgsl: usize,
        rust: usize,
    },
    #[error("{kernel}: binding {index} is {wgsl:?} in WGSL, Rust passes {rust:?} there")]
    Name {
        kernel: String,
        index: usize,
        wgsl: String,
        rust: String,
    },
    #[error("{kernel}: binding {index} ({name}) is {wgsl:?} in WGSL, {rust:?} in Rust")]
    Kind {
        kernel: String,
        index: usize,
        name: String,
        wgsl: BindingKind,
        rust: BindingKind,
    },
    #[error("{kernel}: binding {name} holds {wgsl} in WGSL, {rust} in Rust")]
    Holds {
        kernel: String,
        name: String,
        wgsl: String,
        rust: String,
    },
    #[error("{kernel}: {source}")]
    Layout {
        kernel: String,
        source: LayoutMismatch,
    },
    #[error("{kernel}: WGSL constant {name} is {wgsl} words, the Rust struct {rust}")]
    Words {
        kernel: String,
        name: String,
        wgsl: u32,
        rust: u32,
    },
    #[error("{kernel}: compiled workgroup size is {wgsl:?}, the defines ask for {rust:?}")]
    Workgroup {
        kernel: String,
        wgsl: [u32; 3],
        rust: [u32; 3],
    },
}

/// The Rust side of `kernel`.
pub fn interface(kernel: &str) -> Option<&'static Interface> {
    INTERFACES.iter().find(|i| i.kernel == kernel)
}

impl Lanes {
    /// The workgroup size `define` (a variant's values by axis name) asks for.
    fn size(self, define: &dyn Fn(&str) -> u32) -> [u32; 3] {
        let x = match self {
            Lanes::Wg => define("WG"),
            Lanes::Fixed(n) => n,
            Lanes::Tile => (define("BM") / define("TM")) * (define("BN") / define("TN")),
            Lanes::Flash => define("BQ") * define("L"),
        };
        [x, 1, 1]
    }
}

/// Checks the reflection of `kernel` composed with `defines` against its Rust side:
/// binding names, kinds and held structs, the step metadata records, and the
/// workgroup size.
pub fn check(
    kernel: &str,
    defines: &[(&str, &str)],
    wgsl: &Reflection,
) -> Result<(), InterfaceMismatch> {
    let rust = interface(kernel).ok_or_else(|| InterfaceMismatch::Unknown(kernel.into()))?;
    check_bindings(kernel, rust.bindings, defines, wgsl)?;
    check_records(kernel, wgsl)?;
    let define = |name: &str| {
        defines
            .iter()
            .find(|(n, _)| *n == name)
            .and_then(|(_, v)| v.parse().ok())
            .unwrap_or(0)
    };
    let want = rust.lanes.size(&define);
    if wgsl.workgroup_size != want {
        return Err(InterfaceMismatch::Workgroup {
            kernel: kernel.into(),
            wgsl: wgsl.workgroup_size,
            rust: want,
        });
    }
    Ok(())
}

fn check_bindings(
    kernel: &str,
    rust: &[Bind],
    defines: &[(&str, &str)],
    wgsl: &Reflection,
) -> Result<(), InterfaceMismatch> {
    if rust.len() != wgsl.bindings.len() {
        return Err(InterfaceMismatch::Count {
            kernel: kernel.into(),
            wgsl: wgsl.bindings.len(),
            rust: rust.len(),
        });
    }
    for (index, (r, w)) in rust.iter().zip(&wgsl.bindings).enumerate() {
        if r.name != w.name {
            return Err(InterfaceMismatch::Name {
                kernel: kernel.into(),
                index,
                wgsl: w.name.clone(),
                rust: r.name.into(),
            });
        }
        let kind = r.kind_in(defines);
        if kind != w.kind {
            return Err(InterfaceMismatch::Kind {
                kernel: kernel.into(),
                index,
                name: w.name.clone(),
                wgsl: w.kind,
                rust: kind,
            });
        }
        check_held(kernel, r, w.layout.as_ref())?;
    }
    Ok(())
}

fn check_held(
    kernel: &str,
    rust: &Bind,
    wgsl: Option<&StructShape>,
) -> Result<(), InterfaceMismatch> {
    match (rust.layout, wgsl) {
        (None, None) => Ok(()),
        (Some(layout), Some(shape)) => {
            compare(&layout(), shape).map_err(|source| InterfaceMismatch::Layout {
                kernel: kernel.into(),
                source,
            })
        }
        (r, w) => Err(InterfaceMismatch::Holds {
            kernel: kernel.into(),
            name: rust.name.into(),
            wgsl: w.map_or("no struct".into(), |s| format!("struct {}", s.name)),
            rust: r.map_or("no struct".into(), |l| l().name.to_string()),
        }),
    }
}

/// Every step metadata struct the module declares matches its Rust record, and so does
/// the constant its readers step by.
fn check_records(kernel: &str, wgsl: &Reflection) -> Result<(), InterfaceMismatch> {
    for record in RECORDS {
        let Some(shape) = wgsl.find_struct(record.wgsl) else {
            continue;
        };
        let layout = (record.layout)();
        compare(&layout, shape).map_err(|source| InterfaceMismatch::Layout {
            kernel: kernel.into(),
            source,
        })?;
        let Some(name) = record.words else { continue };
        let words = wgsl.constant(name);
        if words != Some(layout.size / 4) {
            return Err(InterfaceMismatch::Words {
                kernel: kernel.into(),
                name: name.into(),
                wgsl: words.unwrap_or(0),
                rust: layout.size / 4,
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
