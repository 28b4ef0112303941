//! The `wisp` command's library: one module per subcommand (`cmd_*.rs`, `bench/`) and
//! what they share, opening models (files, folders, known models fetched into the cache)
//! and engines. The desktop app (`demos/desktop`) opens models through it too, so both
//! find the same cache, known models and stored pipelines.

pub mod bench;
pub mod cmd_chat;
pub mod cmd_convert;
pub mod cmd_fetch;
pub mod cmd_generate;
pub mod cmd_info;
pub mod cmd_logits;
pub mod cmd_perplexity;
pub mod common;
pub mod hf_folder;
pub mod model_cache;
pub mod pipeline_store;
pub mod serve;
pub mod settings;
pub mod speculation;
