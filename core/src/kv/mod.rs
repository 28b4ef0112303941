//! The paged KV cache: fixed-size blocks of positions in one pool per layer, block
//! tables per sequence, copy-on-write sharing between forked sequences, and a prefix
//! cache of full blocks named by their tokens.

mod blocks;
mod pool;
mod prefix;

pub use blocks::*;
pub use pool::KvPool;
pub use prefix::{BlockHash, BlockHasher};
