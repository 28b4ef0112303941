//! The paged KV cache: fixed-size blocks of positions in one pool per layer, block
//! tables per sequence, copy-on-write sharing between forked sequences.

mod blocks;
mod pool;

pub use blocks::*;
pub use pool::KvPool;
