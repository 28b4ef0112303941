//! Shared helpers for Wisp's integration tests.
