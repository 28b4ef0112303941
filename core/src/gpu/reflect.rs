//! What a composed kernel declares, read from naga's module of its WGSL: its bindings in
//! group 0 (kind, access, the struct each one holds), its compiled workgroup size, its
//! named structs and constants. Bind group layouts are built from this, so the WGSL is
//! the only place a kernel's bindings are written; the Rust side is checked against it
//! (`kernels::interface`).

use naga::{AddressSpace, ArraySize, Expression, Literal, Module, StorageAccess, TypeInner};

/// Why a kernel's interface could not be read from its WGSL.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ReflectError {
    #[error("naga could not parse the composed shader: {0}")]
    Parse(String),
    #[error("the shader has no compute entry point {0:?}")]
    NoEntryPoint(String),
    #[error("binding {name:?} is in group {group}; kernels bind group 0 only")]
    Group { name: String, group: u32 },
    #[error("group 0 has no binding {0}: bindings must be numbered 0, 1, 2, ... in order")]
    Gap(u32),
    #[error("binding {name:?} is in address space {space}, not uniform or storage")]
    Space { name: String, space: String },
}

/// How a kernel uses one binding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BindingKind {
    Uniform,
    /// `var<storage, read>`.
    Read,
    /// `var<storage, read_write>`.
    ReadWrite,
}

impl BindingKind {
    /// The binding type of a bind group layout entry.
    pub fn wgpu(self) -> wgpu::BufferBindingType {
        match self {
            BindingKind::Uniform => wgpu::BufferBindingType::Uniform,
            BindingKind::Read => wgpu::BufferBindingType::Storage { read_only: true },
            BindingKind::ReadWrite => wgpu::BufferBindingType::Storage { read_only: false },
        }
    }
}

/// One member of a WGSL struct, as laid out in memory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    pub name: String,
    pub offset: u32,
    pub size: u32,
}

/// A WGSL struct's memory layout.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StructShape {
    pub name: String,
    /// Bytes, with the trailing padding of its alignment.
    pub size: u32,
    pub members: Vec<Member>,
}

/// One binding of group 0.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Binding {
    pub index: u32,
    /// The WGSL variable's name.
    pub name: String,
    pub kind: BindingKind,
    /// The struct it holds: the variable's own type, or the element of an array.
    pub layout: Option<StructShape>,
    /// Bytes the binding needs at least (a runtime-sized array's fixed part, or one element).
    pub min_size: u64,
}

/// A compute kernel's interface as its WGSL declares it.
#[derive(Clone, Debug)]
pub struct Reflection {
    /// Group 0's bindings, by index from 0.
    pub bindings: Vec<Binding>,
    pub workgroup_size: [u32; 3],
    /// Every named struct of the module (shared layouts such as `Step` and `Work`).
    pub structs: Vec<StructShape>,
    /// Module-scope `u32` constants (sizes the WGSL uses in its own address arithmetic).
    pub constants: Vec<(String, u32)>,
}

impl Reflection {
    /// Parses `code` and reads the interface of its compute entry point `entry`.
    pub fn of(code: &str, entry: &str) -> Result<Reflection, ReflectError> {
        let module = naga::front::wgsl::parse_str(code)
            .map_err(|e| ReflectError::Parse(e.emit_to_string(code)))?;
        Self::of_module(&module, entry)
    }

    /// The same, from a parsed module.
    pub fn of_module(module: &Module, entry: &str) -> Result<Reflection, ReflectError> {
        let ep = module
            .entry_points
            .iter()
            .find(|e| e.name == entry && e.stage == naga::ShaderStage::Compute)
            .ok_or_else(|| ReflectError::NoEntryPoint(entry.to_string()))?;
        Ok(Reflection {
            bindings: bindings(module)?,
            workgroup_size: ep.workgroup_size,
            structs: named_structs(module),
            constants: constants(module),
        })
    }

    /// The named struct `name`, if the module declares it.
    pub fn find_struct(&self, name: &str) -> Option<&StructShape> {
        self.structs.iter().find(|s| s.name == name)
    }

    /// The module-scope `u32` constant `name`, if declared.
    pub fn constant(&self, name: &str) -> Option<u32> {
        self.constants
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| *v)
    }

    /// The kinds of group 0's bindings, in binding order.
    pub fn kinds(&self) -> Vec<BindingKind> {
        self.bindings.iter().map(|b| b.kind).collect()
    }
}

fn bindings(module: &Module) -> Result<Vec<Binding>, ReflectError> {
    let mut out = Vec::new();
    for (_, var) in module.global_variables.iter() {
        let Some(rb) = &var.binding else { continue };
        let name = var.name.clone().unwrap_or_default();
        if rb.group != 0 {
            return Err(ReflectError::Group {
                name,
                group: rb.group,
            });
        }
        let kind = match var.space {
            AddressSpace::Uniform => BindingKind::Uniform,
            AddressSpace::Storage { access } if access.contains(StorageAccess::STORE) => {
                BindingKind::ReadWrite
            }
            AddressSpace::Storage { .. } => BindingKind::Read,
            other => {
                return Err(ReflectError::Space {
                    name,
                    space: format!("{other:?}"),
                });
            }
        };
        let (layout, min_size) = held(module, var.ty);
        out.push(Binding {
            index: rb.binding,
            name,
            kind,
            layout,
            min_size,
        });
    }
    out.sort_by_key(|b| b.index);
    for (i, b) in out.iter().enumerate() {
        if b.index != i as u32 {
            return Err(ReflectError::Gap(i as u32));
        }
    }
    Ok(out)
}

/// The struct a binding of type `ty` holds, and the least bytes it needs.
fn held(module: &Module, ty: naga::Handle<naga::Type>) -> (Option<StructShape>, u64) {
    let gctx = module.to_ctx();
    match &module.types[ty].inner {
        TypeInner::Array { base, size, stride } => {
            let count = match size {
                ArraySize::Constant(n) => n.get(),
                _ => 1,
            };
            (shape(module, *base), u64::from(*stride) * u64::from(count))
        }
        inner => (shape(module, ty), u64::from(inner.size(gctx))),
    }
}

fn shape(module: &Module, ty: naga::Handle<naga::Type>) -> Option<StructShape> {
    let t = &module.types[ty];
    let TypeInner::Struct { members, span } = &t.inner else {
        return None;
    };
    let gctx = module.to_ctx();
    Some(StructShape {
        name: t.name.clone().unwrap_or_default(),
        size: *span,
        members: members
            .iter()
            .map(|m| Member {
                name: m.name.clone().unwrap_or_default(),
                offset: m.offset,
                size: module.types[m.ty].inner.size(gctx),
            })
            .collect(),
    })
}

fn named_structs(module: &Module) -> Vec<StructShape> {
    module
        .types
        .iter()
        .filter(|(_, t)| t.name.is_some())
        .filter_map(|(h, _)| shape(module, h))
        .collect()
}

fn constants(module: &Module) -> Vec<(String, u32)> {
    module
        .constants
        .iter()
        .filter_map(|(_, c)| {
            let name = c.name.clone()?;
            match module.global_expressions[c.init] {
                Expression::Literal(Literal::U32(v)) => Some((name, v)),
                _ => None,
            }
        })
        .collect()
}
