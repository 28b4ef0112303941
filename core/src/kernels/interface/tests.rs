//! Every variant of every registered kernel, reflected by naga, against its Rust side;
//! and proof that the comparison notices what it exists to notice.

use super::*;
use crate::kernels::layout::gpu_struct;

fn reflect(kernel: &str, defines: &[(&str, &str)]) -> Reflection {
    let composed = wisp_shaders::compose(kernel, defines).unwrap();
    Reflection::of(&composed.code, "main").unwrap()
}

/// Every variant composes, passes naga's validation, and agrees with its Rust side: one
/// parse per variant for both checks (there are a few hundred thousand).
#[test]
fn every_kernel_variant_validates_and_matches_its_rust_side() {
    let (count, failures) = wisp_shaders::check_every_variant(|name, variant| {
        let composed = wisp_shaders::compose(name, variant).map_err(|e| e.to_string())?;
        let module = crate::gpu::validate(&composed)?;
        let reflection = Reflection::of_module(&module, "main").map_err(|e| e.to_string())?;
        check(name, variant, &reflection).map_err(|e| e.to_string())
    });
    assert!(count > 100, "only {count} variants registered");
    assert!(
        failures.is_empty(),
        "{} of {count} variants fail validation or differ from the Rust side:\n{}",
        failures.len(),
        failures[..failures.len().min(10)].join("\n")
    );
    for i in INTERFACES {
        assert!(
            wisp_shaders::kernel(i.kernel).is_some(),
            "interface for unregistered kernel {}",
            i.kernel
        );
    }
}

#[test]
fn every_step_record_is_checked_somewhere() {
    // The records are only compared where a kernel declares them; each must be declared
    // by at least one kernel, or a renamed WGSL struct would silently escape the check.
    let flash = reflect(
        "flash_attn",
        &[
            ("ACT", "f32"),
            ("KV", "f32"),
            ("BLOCK", "16"),
            ("HD", "64"),
            ("BQ", "4"),
            ("BK", "16"),
            ("L", "4"),
        ],
    );
    for record in RECORDS {
        assert!(flash.find_struct(record.wgsl).is_some(), "{}", record.wgsl);
    }
}

gpu_struct! {
    /// `MatParams` with `k` and `n` swapped: what a slip in either file looks like.
    pub struct SwappedMatParams {
        pub n: u32,
        pub k: u32,
        pub row_bytes: u32,
        pub out_offset: u32,
        pub x_stride: u32,
        pub y_stride: u32,
        pub per_row: u32,
        pub eps: f32,
    }
}

const MATVEC: &[(&str, &str)] = &[
    ("WTYPE", "q8_0"),
    ("ACT", "f32"),
    ("OUT", "act"),
    ("REDUCE", "workgroup"),
    ("SPLIT", "1"),
    ("ROWS", "1"),
    ("TB", "1"),
    ("WG", "64"),
    ("XBIND", "storage"),
    ("XIN", "plain"),
];

#[test]
fn a_swapped_field_is_caught_by_name() {
    let wgsl = reflect("matvec", MATVEC);
    let params = wgsl.bindings[0].layout.as_ref().unwrap();
    assert!(compare(&RustLayout::of::<MatParams>(), params).is_ok());
    let err = compare(&RustLayout::of::<SwappedMatParams>(), params).unwrap_err();
    match &err {
        LayoutMismatch::Field {
            field,
            rust_offset,
            wgsl_offset,
            ..
        } => assert_eq!((field.as_str(), *rust_offset, *wgsl_offset), ("k", 4, 0)),
        other => panic!("expected a field mismatch, got {other}"),
    }
    assert!(err.to_string().contains("field k"), "{err}");
    // The same through a whole interface, as the engine checks each pipeline.
    let mut bindings = MATVEC_PRODUCT.to_vec();
    bindings[0].layout = Some(RustLayout::of::<SwappedMatParams>);
    let err = check_bindings("matvec", &bindings, MATVEC, &wgsl).unwrap_err();
    assert!(
        matches!(&err, InterfaceMismatch::Layout { source: LayoutMismatch::Field { field, .. }, .. } if field == "k"),
        "{err}"
    );
}

#[test]
fn wrong_kinds_names_and_sizes_are_caught() {
    let wgsl = reflect("matvec", MATVEC);
    let mut bindings = MATVEC_PRODUCT.to_vec();
    bindings[4].kind = BindingKind::Read;
    let err = check_bindings("matvec", &bindings, MATVEC, &wgsl).unwrap_err();
    assert!(
        matches!(err, InterfaceMismatch::Kind { index: 4, .. }),
        "{err}"
    );

    let mut bindings = MATVEC_PRODUCT.to_vec();
    bindings.swap(2, 3);
    let err = check_bindings("matvec", &bindings, MATVEC, &wgsl).unwrap_err();
    assert!(
        matches!(err, InterfaceMismatch::Name { index: 2, .. }),
        "{err}"
    );

    let err = check_bindings("matvec", &MATVEC_PRODUCT[..5], MATVEC, &wgsl).unwrap_err();
    assert!(matches!(err, InterfaceMismatch::Count { .. }), "{err}");

    // x is a uniform binding in the XBIND=uniform variant: matvec's interface says so,
    // the plain product's (a storage x) is caught.
    let mut uniform_x = MATVEC.to_vec();
    uniform_x[8] = ("XBIND", "uniform");
    let wgsl_uniform = reflect("matvec", &uniform_x);
    assert_eq!(wgsl_uniform.bindings[3].kind, BindingKind::Uniform);
    check_bindings("matvec", MATVEC_PRODUCT, &uniform_x, &wgsl_uniform).unwrap();
    check_bindings("matvec", MATVEC_PRODUCT, MATVEC, &wgsl).unwrap();
    let mut storage_x = MATVEC_PRODUCT.to_vec();
    storage_x[3].uniform_when = &[];
    let err = check_bindings("matvec", &storage_x, &uniform_x, &wgsl_uniform).unwrap_err();
    assert!(
        matches!(err, InterfaceMismatch::Kind { index: 3, .. }),
        "{err}"
    );

    // The defines asking for another workgroup size than the shader compiled.
    let mut defines = MATVEC.to_vec();
    defines[6] = ("WG", "128");
    let err = check("matvec", &defines, &wgsl).unwrap_err();
    assert!(matches!(err, InterfaceMismatch::Workgroup { .. }), "{err}");
}

#[test]
fn reflection_reads_kinds_workgroup_and_records() {
    let wgsl = reflect("matvec", MATVEC);
    assert_eq!(
        wgsl.kinds(),
        [
            BindingKind::Uniform,
            BindingKind::Uniform,
            BindingKind::Read,
            BindingKind::Read,
            BindingKind::ReadWrite,
            BindingKind::Read
        ]
    );
    assert_eq!(wgsl.workgroup_size, [64, 1, 1]);
    assert_eq!(wgsl.constant("TOKEN_INFO_WORDS"), Some(2));
    let step = wgsl.find_struct("Step").unwrap();
    assert_eq!(step.size as usize, std::mem::size_of::<StepParams>());
}

#[test]
fn a_swapped_wgsl_member_is_caught() {
    // The same slip on the WGSL side: `k` moved after `n` in the composed source.
    let composed = wisp_shaders::compose("matvec", MATVEC).unwrap();
    let swapped = composed.code.replacen("    k: u32,\n", "", 1).replacen(
        "    n: u32,\n",
        "    n: u32,\n    k: u32,\n",
        1,
    );
    assert_ne!(swapped, composed.code);
    let wgsl = Reflection::of(&swapped, "main").unwrap();
    let err = check("matvec", MATVEC, &wgsl).unwrap_err();
    // WGSL members are compared in their order: `n`, now first, is the first one out of
    // place.
    assert!(
        matches!(&err, InterfaceMismatch::Layout { source: LayoutMismatch::Field { field, .. }, .. } if field == "n"),
        "{err}"
    );
}
