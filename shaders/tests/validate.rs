//! Composition refuses what the registry does not declare. (Every declared variant is
//! validated with naga by the engine's interface test, `core/src/kernels/interface/tests.rs`,
//! which parses each once to validate it and to check it against its Rust side.)

use wisp_shaders::compose;

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
