//! wisp-web: wasm-bindgen bindings over wisp-core.
