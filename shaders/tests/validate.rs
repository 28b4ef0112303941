//! Every declared variant of every kernel is composed and validated by naga; an error
//! is reported at the file and line where the WGSL was written.

use naga::valid::{Capabilities, ValidationFlags, Validator};
use wisp_shaders::{Composed, check_every_variant, compose};

fn locate(c: &Composed, line: Option<usize>) -> String {
    match line.and_then(|l| c.origin(l)) {
        Some((f, l)) => format!("shaders/wgsl/{f}:{l}"),
        None => "unknown location".into(),
    }
}

fn validate(c: &Composed) -> Result<(), String> {
    let module = naga::front::wgsl::parse_str(&c.code).map_err(|e| {
        let line = e.location(&c.code).map(|l| l.line_number as usize);
        format!("{}: {}", locate(c, line), e.emit_to_string(&c.code))
    })?;
    // Subgroup operations and f16 are requested by the engine only where the adapter
    // offers them; validation allows both.
    let caps = Capabilities::SHADER_FLOAT16
        | Capabilities::SHADER_FLOAT16_IN_FLOAT32
        | Capabilities::SUBGROUP;
    Validator::new(ValidationFlags::all(), caps)
        .validate(&module)
        .map_err(|e| {
            let line = e
                .spans()
                .next()
                .map(|(span, _)| span.location(&c.code).line_number as usize);
            // The innermost cause says what is wrong; the report says where.
            let mut cause = String::new();
            let mut source: Option<&dyn std::error::Error> = Some(e.as_inner());
            while let Some(s) = source {
                cause = s.to_string();
                source = s.source();
            }
            format!(
                "{}: {cause}\n{}",
                locate(c, line),
                e.emit_to_string(&c.code)
            )
        })?;
    Ok(())
}

#[test]
fn every_kernel_variant_validates() {
    let (count, failures) = check_every_variant(|name, variant| {
        compose(name, variant)
            .map_err(|e| e.to_string())
            .and_then(|c| validate(&c))
    });
    assert!(count > 100, "only {count} variants registered");
    assert!(
        failures.is_empty(),
        "{} of {count} variants fail:\n{}",
        failures.len(),
        failures[..failures.len().min(5)].join("\n")
    );
}

#[test]
fn compose_refuses_undeclared_values() {
    let err = compose(
        "rmsnorm",
        &[("ACT", "f64"), ("REDUCE", "workgroup"), ("WG", "64")],
    )
    .unwrap_err();
    assert!(err.message.contains("ACT = f64"), "{err}");
    let err = compose("rmsnorm", &[("ACT", "f32"), ("WG", "64")]).unwrap_err();
    assert!(err.message.contains("REDUCE"), "{err}");
    assert!(compose("nope", &[]).is_err());
}
