//! Rust structs shared with WGSL, and the check that both sides lay them out alike.
//!
//! Every struct the GPU reads (parameter blocks, step metadata records, sampling rows)
//! is declared with [`gpu_struct!`], which also records each field's name, offset and
//! size, so [`compare`] can match it member by member against naga's layout of the WGSL
//! struct. Members whose names start with `_` are padding on either side: only the
//! total size has to agree for them.

use crate::gpu::StructShape;

/// One field of a Rust struct the GPU reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Field {
    pub name: &'static str,
    pub offset: u32,
    pub size: u32,
}

/// A `#[repr(C)]` struct whose bytes a kernel reads, with its fields' layout.
pub trait GpuStruct: bytemuck::Pod {
    /// The fields in declaration order.
    fn fields() -> Vec<Field>;
}

/// The layout of one Rust struct, as a value (for tables of kernel interfaces).
#[derive(Clone, Copy, Debug)]
pub struct RustLayout {
    pub name: &'static str,
    pub size: u32,
    pub fields: fn() -> Vec<Field>,
}

impl RustLayout {
    pub fn of<T: GpuStruct>() -> RustLayout {
        RustLayout {
            name: std::any::type_name::<T>(),
            size: std::mem::size_of::<T>() as u32,
            fields: T::fields,
        }
    }
}

/// Declares a `#[repr(C)]`, `Pod` struct and records its fields for [`compare`].
macro_rules! gpu_struct {
    (
        $(#[$m:meta])*
        pub struct $name:ident {
            $( $(#[$fm:meta])* pub $f:ident : $t:ty ),* $(,)?
        }
    ) => {
        $(#[$m])*
        #[repr(C)]
        #[derive(Clone, Copy, Debug, Default, bytemuck::Pod, bytemuck::Zeroable)]
        pub struct $name {
            $( $(#[$fm])* pub $f: $t ),*
        }

        impl $crate::kernels::GpuStruct for $name {
            fn fields() -> Vec<$crate::kernels::Field> {
                vec![$($crate::kernels::Field {
                    name: stringify!($f),
                    offset: std::mem::offset_of!($name, $f) as u32,
                    size: std::mem::size_of::<$t>() as u32,
                }),*]
            }
        }
    };
}
pub(crate) use gpu_struct;

/// How a Rust struct differs from the WGSL struct it mirrors.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LayoutMismatch {
    #[error("{rust} has no field {member} (WGSL struct {wgsl})")]
    MissingInRust {
        rust: String,
        wgsl: String,
        member: String,
    },
    #[error("WGSL struct {wgsl} has no member {field} ({rust} has)")]
    MissingInWgsl {
        rust: String,
        wgsl: String,
        field: String,
    },
    #[error(
        "field {field}: {rust} puts it at byte {rust_offset} ({rust_size} bytes), WGSL struct \
         {wgsl} at byte {wgsl_offset} ({wgsl_size} bytes)"
    )]
    Field {
        rust: String,
        wgsl: String,
        field: String,
        rust_offset: u32,
        rust_size: u32,
        wgsl_offset: u32,
        wgsl_size: u32,
    },
    #[error("{rust} is {rust_size} bytes, WGSL struct {wgsl} {wgsl_size}")]
    Size {
        rust: String,
        wgsl: String,
        rust_size: u32,
        wgsl_size: u32,
    },
}

fn is_padding(name: &str) -> bool {
    name.starts_with('_')
}

/// Checks that `rust` lays out every named member of `wgsl` at the same offset and size,
/// has no named field the WGSL lacks, and has the same total size.
pub fn compare(rust: &RustLayout, wgsl: &StructShape) -> Result<(), LayoutMismatch> {
    let fields = (rust.fields)();
    let (r, w) = (rust.name.to_string(), wgsl.name.clone());
    for m in wgsl.members.iter().filter(|m| !is_padding(&m.name)) {
        let f = fields.iter().find(|f| f.name == m.name).ok_or_else(|| {
            LayoutMismatch::MissingInRust {
                rust: r.clone(),
                wgsl: w.clone(),
                member: m.name.clone(),
            }
        })?;
        if (f.offset, f.size) != (m.offset, m.size) {
            return Err(LayoutMismatch::Field {
                rust: r,
                wgsl: w,
                field: m.name.clone(),
                rust_offset: f.offset,
                rust_size: f.size,
                wgsl_offset: m.offset,
                wgsl_size: m.size,
            });
        }
    }
    if let Some(f) = fields
        .iter()
        .find(|f| !is_padding(f.name) && !wgsl.members.iter().any(|m| m.name == f.name))
    {
        return Err(LayoutMismatch::MissingInWgsl {
            rust: r,
            wgsl: w,
            field: f.name.to_string(),
        });
    }
    if rust.size != wgsl.size {
        return Err(LayoutMismatch::Size {
            rust: r,
            wgsl: w,
            rust_size: rust.size,
            wgsl_size: wgsl.size,
        });
    }
    Ok(())
}
