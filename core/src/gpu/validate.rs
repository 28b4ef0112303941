//! naga's validation of a composed kernel, with each error placed at the file and line of
//! `shaders/wgsl/` where the WGSL was written.

use naga::valid::{Capabilities, ValidationFlags, Validator};

use wisp_shaders::Composed;

/// Parses and validates `c`, giving its module, or the error at its source file and line.
/// Subgroup operations and f16 are allowed: the engine asks for them only where the
/// adapter offers them.
pub fn validate(c: &Composed) -> Result<naga::Module, String> {
    let module = naga::front::wgsl::parse_str(&c.code).map_err(|e| {
        let line = e.location(&c.code).map(|l| l.line_number as usize);
        format!("{}: {}", locate(c, line), e.emit_to_string(&c.code))
    })?;
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
    Ok(module)
}

fn locate(c: &Composed, line: Option<usize>) -> String {
    match line.and_then(|l| c.origin(l)) {
        Some((f, l)) => format!("shaders/wgsl/{f}:{l}"),
        None => "unknown location".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mistake_is_reported_at_the_file_and_line_that_has_it() {
        // A kernel whose included file assigns a float to a u32 on its third line.
        let sources: &[(&str, &str)] = &[
            (
                "k.wgsl",
                "#include \"inc.wgsl\"\n@compute @workgroup_size(1)\nfn main() { f(); }\n",
            ),
            ("inc.wgsl", "fn f() {\n    var a = 1u;\n    a = 1.5;\n}\n"),
        ];
        let composed = wisp_shaders::preprocess(sources, "k.wgsl", &[]).expect("composes");
        let err = validate(&composed).unwrap_err();
        assert!(err.starts_with("shaders/wgsl/inc.wgsl:3: "), "{err}");
        // A variant of a real kernel validates, and gives its module.
        let defines = [
            ("ACT", "f32"),
            ("OUT", "act"),
            ("REDUCE", "workgroup"),
            ("WG", "64"),
        ];
        let rmsnorm = wisp_shaders::compose("rmsnorm", &defines).expect("composes");
        let module = validate(&rmsnorm).expect("validates");
        assert!(module.entry_points.iter().any(|e| e.name == "main"));
    }
}
