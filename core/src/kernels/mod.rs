//! Rust-side descriptions of each GPU kernel: its shader, variants, bindings and parameters.
