//! The registry of kernels and the axes of their variants.
//!
//! The engine picks one value per axis from the adapter's capabilities (see
//! `wisp_core::gpu::variants`); tests force each value in turn. Values listed here are
//! the only ones `compose` accepts, and every combination is validated by naga in this
//! crate's tests.

use crate::ShaderError;

/// One dimension of a kernel's variant space.
#[derive(Debug)]
pub struct Axis {
    pub name: &'static str,
    pub values: &'static [&'static str],
}

/// Looks up the value an axis takes in one combination.
pub type AxisLookup<'a> = &'a dyn Fn(&str) -> &'static str;

/// A kernel: its entry file and the axes of its variants.
#[derive(Debug)]
pub struct KernelSpec {
    pub name: &'static str,
    pub file: &'static str,
    pub axes: &'static [Axis],
    /// Combinations of axis values that are not meaningful (skipped by validation,
    /// refused by `compose`).
    pub allowed: fn(AxisLookup<'_>) -> bool,
}

impl KernelSpec {
    /// Checks that `defines` gives exactly one declared value for every axis.
    pub fn check(&self, defines: &[(&str, &str)]) -> Result<(), ShaderError> {
        let fail = |message: String| ShaderError {
            file: self.file.to_string(),
            line: 0,
            message,
        };
        for (name, value) in defines {
            let axis = self
                .axes
                .iter()
                .find(|a| a.name == *name)
                .ok_or_else(|| fail(format!("kernel {} has no axis {name}", self.name)))?;
            if !axis.values.contains(value) {
                return Err(fail(format!(
                    "kernel {}: {name} = {value} is not one of {:?}",
                    self.name, axis.values
                )));
            }
        }
        let mut resolved = Vec::new();
        for axis in self.axes {
            let mut given = defines.iter().filter(|(n, _)| *n == axis.name);
            let (Some((_, v)), None) = (given.next(), given.next()) else {
                return Err(fail(format!(
                    "kernel {} needs exactly one value for {}",
                    self.name, axis.name
                )));
            };
            let v = axis
                .values
                .iter()
                .find(|x| *x == v)
                .copied()
                .unwrap_or_default();
            resolved.push((axis.name, v));
        }
        let get = |n: &str| {
            resolved
                .iter()
                .find(|(a, _)| *a == n)
                .map(|(_, v)| *v)
                .unwrap_or("")
        };
        if !(self.allowed)(&get) {
            return Err(fail(format!(
                "kernel {}: combination {defines:?} is not allowed",
                self.name
            )));
        }
        Ok(())
    }

    /// Every allowed combination of axis values.
    pub fn variants(&self) -> Vec<Vec<(&'static str, &'static str)>> {
        let mut all: Vec<Vec<(&'static str, &'static str)>> = vec![Vec::new()];
        for axis in self.axes {
            all = all
                .into_iter()
                .flat_map(|prefix| {
                    axis.values.iter().map(move |v| {
                        let mut next = prefix.clone();
                        next.push((axis.name, *v));
                        next
                    })
                })
                .collect();
        }
        all.retain(|combo| {
            let get = |n: &str| {
                combo
                    .iter()
                    .find(|(a, _)| *a == n)
                    .map(|(_, v)| *v)
                    .unwrap_or("")
            };
            (self.allowed)(&get)
        });
        all
    }
}

/// Runs `check` on every allowed variant of every kernel, spread over the machine's
/// cores (there are a few hundred thousand), and returns how many ran and the failures
/// as "kernel [defines]: error" lines. The registry tests (naga's validation, the
/// engine's interface check) each run through it.
pub fn check_every_variant<F>(check: F) -> (usize, Vec<String>)
where
    F: Fn(&str, &[(&str, &str)]) -> Result<(), String> + Sync,
{
    let all: Vec<(&str, Vec<(&str, &str)>)> = KERNELS
        .iter()
        .flat_map(|spec| spec.variants().into_iter().map(|v| (spec.name, v)))
        .collect();
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let check = &check;
    let failures = std::thread::scope(|s| {
        let workers: Vec<_> = all
            .chunks(all.len().div_ceil(threads).max(1))
            .map(|part| {
                s.spawn(move || {
                    part.iter()
                        .filter_map(|(name, v)| {
                            check(name, v).err().map(|e| format!("{name} {v:?}: {e}"))
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().expect("a variant check panicked"))
            .collect()
    });
    (all.len(), failures)
}

const ACT: Axis = Axis {
    name: "ACT",
    values: &["f32", "f16"],
};
const REDUCE: Axis = Axis {
    name: "REDUCE",
    values: &["subgroup", "workgroup"],
};
/// Weight formats with GPU kernels. Add a `quant/<type>.wgsl` file to add one.
const WTYPE: Axis = Axis {
    name: "WTYPE",
    values: &[
        "f32", "f16", "bf16", "q4_0", "q4_1", "q5_0", "q5_1", "q8_0", "q2_k", "q3_k", "q4_k",
        "q5_k", "q6_k", "iq4_nl",
    ],
};
const KV: Axis = Axis {
    name: "KV",
    values: &["f32", "f16", "q8_0"],
};
/// Positions per block of the paged KV cache.
const BLOCK: Axis = Axis {
    name: "BLOCK",
    values: &["16", "32"],
};
const OUT: Axis = Axis {
    name: "OUT",
    values: &["act", "f32", "f32_add"],
};
/// matvec's outputs: the products' three, and the LM head's argmax epilogue.
const MATVEC_OUT: Axis = Axis {
    name: "OUT",
    values: &["act", "f32", "f32_add", "argmax"],
};

fn any(_: AxisLookup<'_>) -> bool {
    true
}

fn split_le_wg(get: AxisLookup<'_>) -> bool {
    let split: u32 = get("SPLIT").parse().unwrap_or(0);
    let wg: u32 = get("WG").parse().unwrap_or(0);
    // Without a split there is nothing to reduce: one REDUCE value stands for both.
    split <= wg && (split > 1 || get("REDUCE") == "workgroup")
}

/// A matvec variant: its split fits the workgroup, a lane keeps at most 16
/// accumulators (ROWS rows x TB tokens), and x is a uniform binding only with f32
/// elements (uniform arrays need 16-byte elements: vec4<f32>, not vec4<f16>; the norm
/// prologue reads the f32 residual stream whatever ACT is). The norm prologue feeds
/// products that write activations (Q/K/V, gate/up), the gate prologue the down
/// product, which writes f32 (into the residual stream or a post-norm's input). The
/// argmax epilogue ends the LM head, whose input is the normalised stream as it is.
fn matvec_fits(get: AxisLookup<'_>) -> bool {
    let rows: u32 = get("ROWS").parse().unwrap_or(0);
    let tokens: u32 = get("TB").parse().unwrap_or(0);
    let xin = get("XIN");
    let x_is_f32 = get("ACT") == "f32" || xin == "rmsnorm";
    let prologue_fits = match xin {
        "rmsnorm" => get("OUT") == "act",
        "glu_silu" | "glu_gelu_tanh" => matches!(get("OUT"), "f32" | "f32_add"),
        _ => true,
    };
    split_le_wg(get)
        && rows * tokens <= 16
        && (get("XBIND") == "storage" || x_is_f32)
        && prologue_fits
}

/// Workgroup memory of a flash_attn tile configuration, in bytes (query tile, key or
/// value tile, probabilities, key slots).
pub fn flash_tile_bytes(hd: u32, bq: u32, bk: u32) -> u32 {
    4 * (bq * hd + bk * hd + bq * bk + bk)
}

fn flash_tiles_fit(get: AxisLookup<'_>) -> bool {
    let n = |a: &str| get(a).parse::<u32>().unwrap_or(0);
    let (hd, bq, bk, l) = (n("HD"), n("BQ"), n("BK"), n("L"));
    // Every lane owns HD / L dimensions; 32 KiB is the most workgroup memory any
    // adapter we tune for offers (the engine also checks the adapter's own limit).
    hd % l == 0 && flash_tile_bytes(hd, bq, bk) <= 32768 && bq * l <= 256
}

fn matmul_tile_fits(get: AxisLookup<'_>) -> bool {
    let n = |a: &str| get(a).parse::<u32>().unwrap_or(0);
    let (bm, bn, tm, tn) = (n("BM"), n("BN"), n("TM"), n("TN"));
    let wg = (bm / tm) * (bn / tn);
    // Each of the first BM + BN lanes fetches one row or token; 256 lanes is WebGPU's
    // guaranteed limit; the tiles' 16 * 8 * (BM + BN) bytes stay within its 16 KiB.
    wg >= bm + bn && wg <= 256 && 128 * (bm + bn) <= 16384
}

pub static KERNELS: &[KernelSpec] = &[
    KernelSpec {
        name: "matvec",
        file: "matvec.wgsl",
        axes: &[
            WTYPE,
            ACT,
            MATVEC_OUT,
            REDUCE,
            Axis {
                name: "SPLIT",
                values: &["1", "4", "8", "16", "32"],
            },
            Axis {
                name: "ROWS",
                values: &["1", "2", "4", "8"],
            },
            Axis {
                name: "TB",
                values: &["1", "2", "4"],
            },
            Axis {
                name: "WG",
                values: &["8", "16", "32", "64", "128", "256"],
            },
            Axis {
                name: "XBIND",
                values: &["storage", "uniform"],
            },
            Axis {
                name: "XIN",
                values: &["plain", "rmsnorm", "glu_silu", "glu_gelu_tanh"],
            },
        ],
        allowed: matvec_fits,
    },
    KernelSpec {
        name: "matmul_tiled",
        file: "matmul_tiled.wgsl",
        axes: &[
            WTYPE,
            ACT,
            OUT,
            Axis {
                name: "BM",
                values: &["32", "64"],
            },
            Axis {
                name: "BN",
                values: &["16", "32", "64"],
            },
            Axis {
                name: "TM",
                values: &["2", "4"],
            },
            Axis {
                name: "TN",
                values: &["1", "2", "4"],
            },
        ],
        allowed: matmul_tile_fits,
    },
    KernelSpec {
        name: "matmul_tokens",
        file: "matmul_tokens.wgsl",
        axes: &[
            WTYPE,
            ACT,
            OUT,
            Axis {
                name: "RN",
                values: &["4", "8", "16", "32"],
            },
            Axis {
                name: "TN",
                values: &["1", "2", "4"],
            },
            Axis {
                name: "WG",
                values: &["4", "8", "16", "32", "64"],
            },
        ],
        allowed: any,
    },
    KernelSpec {
        name: "embed",
        file: "embed.wgsl",
        axes: &[
            WTYPE,
            Axis {
                name: "WG",
                values: &["64"],
            },
        ],
        allowed: any,
    },
    KernelSpec {
        name: "rmsnorm",
        file: "rmsnorm.wgsl",
        axes: &[
            ACT,
            REDUCE,
            Axis {
                name: "OUT",
                values: &["act", "f32_add"],
            },
            Axis {
                name: "WG",
                values: &["64", "128", "256"],
            },
        ],
        allowed: any,
    },
    KernelSpec {
        name: "head_norm",
        file: "head_norm.wgsl",
        axes: &[
            ACT,
            REDUCE,
            Axis {
                name: "WG",
                values: &["32", "64"],
            },
        ],
        allowed: any,
    },
    KernelSpec {
        name: "rope_kv",
        file: "rope_kv.wgsl",
        axes: &[
            ACT,
            KV,
            BLOCK,
            Axis {
                name: "WG",
                values: &["64"],
            },
        ],
        allowed: any,
    },
    KernelSpec {
        name: "attention",
        file: "attention.wgsl",
        axes: &[
            ACT,
            KV,
            BLOCK,
            REDUCE,
            Axis {
                name: "HD",
                values: &[
                    "16", "32", "48", "64", "80", "96", "112", "128", "192", "256",
                ],
            },
            Axis {
                name: "WG",
                values: &["32", "64", "128"],
            },
            // Query heads per workgroup (sharing one KV head).
            Axis {
                name: "G",
                values: &["1", "2", "3", "4", "5", "6", "7", "8"],
            },
        ],
        allowed: any,
    },
    KernelSpec {
        name: "attention_lanes",
        file: "attention_lanes.wgsl",
        axes: &[
            ACT,
            KV,
            BLOCK,
            Axis {
                name: "HD",
                values: &[
                    "16", "32", "48", "64", "80", "96", "112", "128", "192", "256",
                ],
            },
            Axis {
                name: "WG",
                values: &["4", "8", "16", "32"],
            },
        ],
        allowed: any,
    },
    KernelSpec {
        name: "flash_attn",
        file: "flash_attn.wgsl",
        axes: &[
            ACT,
            KV,
            BLOCK,
            Axis {
                name: "HD",
                values: &[
                    "16", "32", "48", "64", "80", "96", "112", "128", "192", "256",
                ],
            },
            Axis {
                name: "BQ",
                values: &["1", "2", "4", "8", "16"],
            },
            Axis {
                name: "BK",
                values: &["8", "16", "32"],
            },
            Axis {
                name: "L",
                values: &["4", "8", "16"],
            },
        ],
        allowed: flash_tiles_fit,
    },
    KernelSpec {
        name: "flash_reduce",
        file: "flash_reduce.wgsl",
        axes: &[
            ACT,
            Axis {
                name: "HD",
                values: &[
                    "16", "32", "48", "64", "80", "96", "112", "128", "192", "256",
                ],
            },
            Axis {
                name: "WG",
                values: &["32", "64"],
            },
        ],
        allowed: any,
    },
    KernelSpec {
        name: "glu",
        file: "glu.wgsl",
        axes: &[
            ACT,
            Axis {
                name: "GATE",
                values: &["silu", "gelu_tanh"],
            },
            Axis {
                name: "WG",
                values: &["64"],
            },
        ],
        allowed: any,
    },
    KernelSpec {
        name: "moe_route",
        file: "moe_route.wgsl",
        axes: &[
            Axis {
                name: "GATING",
                values: &["softmax", "sigmoid"],
            },
            Axis {
                name: "WG",
                values: &["64"],
            },
        ],
        allowed: any,
    },
    KernelSpec {
        name: "moe_matvec",
        file: "moe_matvec.wgsl",
        axes: &[
            WTYPE,
            ACT,
            Axis {
                name: "OUT",
                values: &["act", "f32"],
            },
            Axis {
                name: "WG",
                values: &["32", "64"],
            },
        ],
        allowed: any,
    },
    KernelSpec {
        name: "moe_combine",
        file: "moe_combine.wgsl",
        axes: &[Axis {
            name: "WG",
            values: &["64"],
        }],
        allowed: any,
    },
    KernelSpec {
        name: "argmax",
        file: "argmax.wgsl",
        axes: &[
            REDUCE,
            Axis {
                name: "FROM",
                values: &["logits", "pairs"],
            },
            Axis {
                name: "WG",
                values: &["64", "256"],
            },
        ],
        allowed: any,
    },
    KernelSpec {
        name: "penalties",
        file: "penalties.wgsl",
        axes: &[],
        allowed: any,
    },
    KernelSpec {
        name: "bandwidth",
        file: "bandwidth.wgsl",
        axes: &[Axis {
            name: "WG",
            values: &["64", "256"],
        }],
        allowed: any,
    },
    KernelSpec {
        name: "candidates",
        file: "candidates.wgsl",
        axes: &[
            REDUCE,
            Axis {
                name: "WG",
                values: &["64", "256"],
            },
        ],
        allowed: any,
    },
];
