//! Prefix caching's block identities: every full block of a sequence is named by a hash
//! of its tokens and of the block before it, so two sequences whose first `k` blocks hold
//! the same tokens (a shared system prompt, a conversation that grew by one turn) name
//! those blocks alike, and the second can use the first's KV instead of computing it.
//!
//! The hash is SHA-256, not a fast non-cryptographic one: with a predictable hash a
//! client could craft a prompt whose block collides with another client's and so read or
//! poison that client's cache (vLLM's GHSA-rm76-4mrf-v9r8). A per-request salt keeps
//! clients that must not share anything apart: different salts never share a block.

use sha2::{Digest, Sha256};

/// The identity of one full block: its tokens, everything before them, and the salt.
pub type BlockHash = [u8; 32];

/// Names the full blocks of a growing token sequence, as its tokens arrive.
#[derive(Clone, Debug)]
pub struct BlockHasher {
    block_size: usize,
    /// The hash the first block chains from: the salt's.
    root: BlockHash,
    hashes: Vec<BlockHash>,
    /// Tokens of the block being filled.
    partial: Vec<u32>,
}

impl BlockHasher {
    /// A hasher for blocks of `block_size` tokens; sequences with different salts never
    /// name a block alike.
    pub fn new(block_size: u32, salt: Option<&str>) -> Self {
        let mut root = Sha256::new();
        root.update(b"wisp prefix cache v1\0");
        if let Some(salt) = salt {
            root.update((salt.len() as u64).to_le_bytes());
            root.update(salt.as_bytes());
        }
        BlockHasher {
            block_size: block_size.max(1) as usize,
            root: root.finalize().into(),
            hashes: Vec::new(),
            partial: Vec::with_capacity(block_size as usize),
        }
    }

    /// Appends tokens, naming each block they fill.
    pub fn push(&mut self, tokens: &[u32]) {
        for &t in tokens {
            self.partial.push(t);
            if self.partial.len() == self.block_size {
                let mut h = Sha256::new();
                h.update(self.hashes.last().unwrap_or(&self.root));
                for t in self.partial.drain(..) {
                    h.update(t.to_le_bytes());
                }
                self.hashes.push(h.finalize().into());
            }
        }
    }

    /// Tokens per block.
    pub fn block_size(&self) -> usize {
        self.block_size
    }

    /// The names of the full blocks so far, first block first.
    pub fn hashes(&self) -> &[BlockHash] {
        &self.hashes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hashes(salt: Option<&str>, tokens: &[u32]) -> Vec<BlockHash> {
        let mut h = BlockHasher::new(4, salt);
        h.push(tokens);
        h.hashes().to_vec()
    }

    #[test]
    fn only_full_blocks_are_named_however_the_tokens_arrive() {
        let tokens: Vec<u32> = (0..11).collect();
        assert_eq!(hashes(None, &tokens).len(), 2);
        let mut h = BlockHasher::new(4, None);
        h.push(&tokens[..5]);
        assert_eq!(h.hashes().len(), 1);
        h.push(&tokens[5..]);
        assert_eq!(h.hashes(), hashes(None, &tokens).as_slice());
    }

    #[test]
    fn a_block_is_named_by_everything_before_it() {
        let a = hashes(None, &[1, 2, 3, 4, 5, 6, 7, 8]);
        let b = hashes(None, &[9, 2, 3, 4, 5, 6, 7, 8]);
        // Same tokens in block 1, different block 0: block 1 differs too.
        assert_ne!(a[0], b[0]);
        assert_ne!(a[1], b[1]);
        let c = hashes(None, &[1, 2, 3, 4, 5, 6, 7, 9]);
        assert_eq!(a[0], c[0]);
        assert_ne!(a[1], c[1]);
    }

    #[test]
    fn salts_keep_clients_apart() {
        let tokens = [1, 2, 3, 4];
        assert_ne!(hashes(Some("a"), &tokens), hashes(Some("b"), &tokens));
        assert_ne!(hashes(Some("a"), &tokens), hashes(None, &tokens));
        assert_eq!(hashes(Some("a"), &tokens), hashes(Some("a"), &tokens));
        // An empty salt is still a salt.
        assert_ne!(hashes(Some(""), &tokens), hashes(None, &tokens));
    }
}
