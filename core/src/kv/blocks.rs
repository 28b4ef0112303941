//! The block manager of the paged KV cache: fixed-size blocks of positions, a free list,
//! reference counts so forked sequences share their common prefix, per-sequence block
//! tables, and the prefix cache: full blocks named by [`BlockHash`] outlive their
//! sequences and are shared by later sequences that start with the same tokens. It is
//! pure bookkeeping: the engine turns its decisions (which block a position lives in,
//! which blocks to copy before a write) into GPU work.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use super::prefix::BlockHash;

/// A sequence's handle.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SeqId(pub u32);

/// Why a cache operation was refused. Nothing changes when one is returned.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KvError {
    #[error("no sequence {0:?}")]
    NoSequence(SeqId),
    #[error(
        "the KV cache has {free} free blocks of {block_size} positions but {needed} are needed; \
         wait for sequences to finish, or free or preempt one"
    )]
    PoolFull {
        needed: usize,
        free: usize,
        block_size: u32,
    },
    #[error("sequence {seq:?} would reach {needed} positions, over the context of {n_ctx}")]
    ContextFull {
        seq: SeqId,
        needed: usize,
        n_ctx: u32,
    },
}

/// A block that must be copied before a sequence writes into it (copy-on-write).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockCopy {
    pub from: u32,
    pub to: u32,
}

/// Marks a table entry whose block was freed (it left the attention window).
pub const NO_BLOCK: u32 = u32::MAX;

#[derive(Clone, Debug, Default)]
struct Sequence {
    /// Positions written so far.
    len: u32,
    /// Block of each run of `block_size` positions.
    table: Vec<u32>,
}

/// Blocks, their owners and every sequence's table.
#[derive(Clone, Debug)]
pub struct BlockManager {
    block_size: u32,
    n_ctx: u32,
    refs: Vec<u32>,
    /// Unused blocks that hold nothing worth keeping.
    free: Vec<u32>,
    /// The prefix cache: the block holding each named prefix.
    cached: HashMap<BlockHash, u32>,
    /// The name of each block that holds a named prefix.
    names: Vec<Option<BlockHash>>,
    /// Named blocks no sequence uses, least recently released first: they are handed out
    /// (forgetting their name) only when `free` is empty, so a prefix stays reusable
    /// until its room is needed.
    idle: BTreeSet<(u64, u32)>,
    /// When each idle block was released (its key in `idle`).
    idle_since: Vec<u64>,
    clock: u64,
    seqs: BTreeMap<SeqId, Sequence>,
    next_id: u32,
}

impl BlockManager {
    /// `n_blocks` blocks of `block_size` positions; no sequence longer than `n_ctx`.
    pub fn new(n_blocks: u32, block_size: u32, n_ctx: u32) -> Self {
        BlockManager {
            block_size,
            n_ctx,
            refs: vec![0; n_blocks as usize],
            // Popped from the end: hand out low block ids first.
            free: (0..n_blocks).rev().collect(),
            cached: HashMap::new(),
            names: vec![None; n_blocks as usize],
            idle: BTreeSet::new(),
            idle_since: vec![0; n_blocks as usize],
            clock: 0,
            seqs: BTreeMap::new(),
            next_id: 0,
        }
    }

    pub fn block_size(&self) -> u32 {
        self.block_size
    }

    pub fn n_blocks(&self) -> u32 {
        self.refs.len() as u32
    }

    /// Blocks a sequence can be given: the free ones and the idle cached ones.
    pub fn free_blocks(&self) -> u32 {
        (self.free.len() + self.idle.len()) as u32
    }

    /// Blocks no sequence uses that are kept for the prefix cache (counted in
    /// [`free_blocks`](Self::free_blocks) too: they are given away when needed).
    pub fn cached_blocks(&self) -> u32 {
        self.idle.len() as u32
    }

    pub fn used_blocks(&self) -> u32 {
        self.n_blocks() - self.free_blocks()
    }

    /// A new, empty sequence.
    pub fn create(&mut self) -> SeqId {
        let id = SeqId(self.next_id);
        self.next_id += 1;
        self.seqs.insert(id, Sequence::default());
        id
    }

    pub fn exists(&self, id: SeqId) -> bool {
        self.seqs.contains_key(&id)
    }

    pub fn sequences(&self) -> impl Iterator<Item = SeqId> + '_ {
        self.seqs.keys().copied()
    }

    fn seq(&self, id: SeqId) -> Result<&Sequence, KvError> {
        self.seqs.get(&id).ok_or(KvError::NoSequence(id))
    }

    /// Positions written in the sequence.
    pub fn len(&self, id: SeqId) -> Result<u32, KvError> {
        Ok(self.seq(id)?.len)
    }

    /// The sequence's block table (one entry per `block_size` positions).
    pub fn table(&self, id: SeqId) -> Result<&[u32], KvError> {
        Ok(&self.seq(id)?.table)
    }

    /// A new sequence sharing every block of `src`: nothing is copied until one of them
    /// writes into a shared block.
    pub fn fork(&mut self, src: SeqId) -> Result<SeqId, KvError> {
        let s = self.seq(src)?.clone();
        for &b in s.table.iter().filter(|&&b| b != NO_BLOCK) {
            self.refs[b as usize] += 1;
        }
        let id = SeqId(self.next_id);
        self.next_id += 1;
        self.seqs.insert(id, s);
        Ok(id)
    }

    fn release(&mut self, block: u32) {
        if block == NO_BLOCK {
            return;
        }
        let b = block as usize;
        self.refs[b] -= 1;
        if self.refs[b] == 0 {
            if self.names[b].is_some() {
                self.idle.insert((self.clock, block));
                self.idle_since[b] = self.clock;
                self.clock += 1;
            } else {
                self.free.push(block);
            }
        }
    }

    /// A block for a sequence to write into: a free one, else the least recently used
    /// idle cached one, whose name is forgotten. The caller has checked there is one.
    fn take_block(&mut self) -> u32 {
        let block = match self.free.pop() {
            Some(b) => b,
            None => {
                let (_, b) = self.idle.pop_first().expect("counted by the caller");
                self.forget_name(b);
                b
            }
        };
        self.refs[block as usize] = 1;
        block
    }

    /// One more user of `block` (a cached block handed to a new sequence).
    fn acquire(&mut self, block: u32) {
        let b = block as usize;
        if self.refs[b] == 0 {
            self.idle.remove(&(self.idle_since[b], block));
        }
        self.refs[b] += 1;
    }

    /// The block no longer holds the prefix it was named for.
    fn forget_name(&mut self, block: u32) {
        if let Some(name) = self.names[block as usize].take() {
            self.cached.remove(&name);
        }
    }

    /// Names blocks `first..` of `id` after `hashes` (`hashes[k]` names block
    /// `first + k`, as [`BlockHasher`](super::BlockHasher) computes them), so later
    /// sequences can share them. Only blocks whose positions are all written are named;
    /// a name already held by another block is left to that block.
    pub fn name_blocks(
        &mut self,
        id: SeqId,
        first: usize,
        hashes: &[BlockHash],
    ) -> Result<(), KvError> {
        let s = self.seqs.get(&id).ok_or(KvError::NoSequence(id))?;
        let full = (s.len / self.block_size) as usize;
        let blocks = s.table.get(first..full.max(first)).unwrap_or_default();
        for (&block, hash) in blocks.iter().zip(hashes) {
            if block == NO_BLOCK
                || self.names[block as usize].is_some()
                || self.cached.contains_key(hash)
            {
                continue;
            }
            self.names[block as usize] = Some(*hash);
            self.cached.insert(*hash, block);
        }
        Ok(())
    }

    /// How many of `hashes`' blocks, from the first on, the prefix cache holds.
    pub fn cached_prefix(&self, hashes: &[BlockHash]) -> usize {
        hashes
            .iter()
            .take_while(|h| self.cached.contains_key(*h))
            .count()
    }

    /// A new sequence holding the first `n_blocks` cached blocks of `hashes` (at most
    /// [`cached_prefix`](Self::cached_prefix) of them): its first
    /// `n_blocks × block_size` positions are already written.
    pub fn create_from_prefix(&mut self, hashes: &[BlockHash], n_blocks: usize) -> SeqId {
        let n = n_blocks.min(self.cached_prefix(hashes));
        let table: Vec<u32> = hashes[..n].iter().map(|h| self.cached[h]).collect();
        for &b in &table {
            self.acquire(b);
        }
        let id = self.create();
        let s = self.seqs.get_mut(&id).expect("just created");
        s.len = n as u32 * self.block_size;
        s.table = table;
        id
    }

    /// Drops a sequence and releases its blocks.
    pub fn remove(&mut self, id: SeqId) -> Result<(), KvError> {
        let s = self.seqs.remove(&id).ok_or(KvError::NoSequence(id))?;
        for b in s.table {
            self.release(b);
        }
        Ok(())
    }

    /// Forgets positions from `len` on, releasing blocks no longer needed.
    pub fn truncate(&mut self, id: SeqId, len: u32) -> Result<(), KvError> {
        let bs = self.block_size;
        let keep = len.div_ceil(bs) as usize;
        let s = self.seqs.get_mut(&id).ok_or(KvError::NoSequence(id))?;
        if len >= s.len {
            return Ok(());
        }
        s.len = len;
        let dropped: Vec<u32> = s.table.drain(keep.min(s.table.len())..).collect();
        let partial = (!len.is_multiple_of(bs))
            .then(|| s.table.last().copied())
            .flatten();
        for b in dropped {
            self.release(b);
        }
        // The sequence will write into its now partial last block: if it alone holds it,
        // it is no longer the full block its name says (shared ones are copied first).
        if let Some(b) = partial.filter(|&b| b != NO_BLOCK && self.refs[b as usize] == 1) {
            self.forget_name(b);
        }
        Ok(())
    }

    /// Blocks that `append(id, n)` would take from the free list.
    pub fn blocks_needed(&self, id: SeqId, n: u32) -> Result<usize, KvError> {
        let s = self.seq(id)?;
        let bs = self.block_size;
        let new_blocks = (s.len + n).div_ceil(bs) as usize - s.table.len();
        // The partly filled last block needs a private copy if it is shared.
        let cow = (!s.len.is_multiple_of(bs) && n > 0)
            .then(|| s.table.last().copied())
            .flatten()
            .filter(|&b| b != NO_BLOCK && self.refs[b as usize] > 1)
            .is_some();
        Ok(new_blocks + cow as usize)
    }

    /// Makes room for `n` more positions: allocates blocks, and gives the sequence its
    /// own copy of a shared block it is about to write into. Returns the copies the GPU
    /// must make before the write. Either everything happens or nothing does.
    pub fn append(&mut self, id: SeqId, n: u32) -> Result<Vec<BlockCopy>, KvError> {
        let len = self.len(id)?;
        if (len + n) as usize > self.n_ctx as usize {
            return Err(KvError::ContextFull {
                seq: id,
                needed: (len + n) as usize,
                n_ctx: self.n_ctx,
            });
        }
        let needed = self.blocks_needed(id, n)?;
        let free = self.free_blocks() as usize;
        if needed > free {
            return Err(KvError::PoolFull {
                needed,
                free,
                block_size: self.block_size,
            });
        }
        let bs = self.block_size;
        let mut copies = Vec::new();
        let last_shared = {
            let s = &self.seqs[&id];
            (!s.len.is_multiple_of(bs) && n > 0)
                .then(|| s.table.last().copied())
                .flatten()
                .filter(|&b| b != NO_BLOCK && self.refs[b as usize] > 1)
        };
        if let Some(from) = last_shared {
            let to = self.take_block();
            self.refs[from as usize] -= 1;
            copies.push(BlockCopy { from, to });
            let s = self.seqs.get_mut(&id).expect("checked");
            *s.table.last_mut().expect("non-empty") = to;
        }
        let target = (len + n).div_ceil(bs) as usize;
        while self.seqs[&id].table.len() < target {
            let b = self.take_block();
            self.seqs.get_mut(&id).expect("checked").table.push(b);
        }
        self.seqs.get_mut(&id).expect("checked").len = len + n;
        Ok(copies)
    }

    /// Releases the blocks of `id` that hold only positions before `first_needed`
    /// (they left the attention window of every layer). Their table entries become
    /// [`NO_BLOCK`]. Returns how many blocks were released.
    pub fn release_before(&mut self, id: SeqId, first_needed: u32) -> Result<u32, KvError> {
        let full = (first_needed / self.block_size) as usize;
        let s = self.seqs.get_mut(&id).ok_or(KvError::NoSequence(id))?;
        let mut gone = Vec::new();
        for entry in s.table.iter_mut().take(full) {
            if *entry != NO_BLOCK {
                gone.push(*entry);
                *entry = NO_BLOCK;
            }
        }
        let n = gone.len() as u32;
        for b in gone {
            self.release(b);
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn append_allocates_blocks_as_positions_cross_boundaries() {
        let mut m = BlockManager::new(8, 16, 1000);
        let a = m.create();
        assert!(m.append(a, 1).unwrap().is_empty());
        assert_eq!(m.table(a).unwrap().len(), 1);
        m.append(a, 15).unwrap();
        assert_eq!(m.table(a).unwrap().len(), 1);
        m.append(a, 1).unwrap();
        assert_eq!(m.table(a).unwrap(), &[0, 1]);
        assert_eq!((m.used_blocks(), m.free_blocks()), (2, 6));
        assert_eq!(m.len(a).unwrap(), 17);
    }

    #[test]
    fn fork_shares_blocks_and_copies_the_partial_one_on_write() {
        let mut m = BlockManager::new(8, 4, 1000);
        let a = m.create();
        m.append(a, 6).unwrap(); // blocks 0 (full) and 1 (half)
        let b = m.fork(a).unwrap();
        assert_eq!(m.table(b).unwrap(), m.table(a).unwrap());
        assert_eq!(m.used_blocks(), 2);
        // b writes position 6: block 1 is shared and half full, so b gets a copy.
        let copies = m.append(b, 1).unwrap();
        assert_eq!(copies, vec![BlockCopy { from: 1, to: 2 }]);
        assert_eq!(m.table(b).unwrap(), &[0, 2]);
        // a now owns block 1 alone: writing into it copies nothing.
        assert!(m.append(a, 1).unwrap().is_empty());
        assert_eq!(m.table(a).unwrap(), &[0, 1]);
        // The full block 0 stays shared until both are gone.
        m.remove(a).unwrap();
        assert_eq!(m.used_blocks(), 2);
        m.remove(b).unwrap();
        assert_eq!((m.used_blocks(), m.free_blocks()), (0, 8));
    }

    #[test]
    fn a_fork_at_a_block_boundary_copies_nothing() {
        let mut m = BlockManager::new(8, 4, 1000);
        let a = m.create();
        m.append(a, 8).unwrap();
        let b = m.fork(a).unwrap();
        assert!(m.append(b, 3).unwrap().is_empty());
        assert!(m.append(a, 1).unwrap().is_empty());
        assert_eq!(m.used_blocks(), 4);
    }

    #[test]
    fn refusals_change_nothing() {
        let mut m = BlockManager::new(3, 4, 10);
        let a = m.create();
        m.append(a, 8).unwrap();
        let before = (
            m.used_blocks(),
            m.len(a).unwrap(),
            m.table(a).unwrap().to_vec(),
        );
        assert!(matches!(
            m.append(a, 3),
            Err(KvError::ContextFull { needed: 11, .. })
        ));
        let b = m.create();
        m.append(b, 4).unwrap();
        let c = m.create();
        let e = m.append(c, 1).unwrap_err();
        assert!(
            matches!(
                e,
                KvError::PoolFull {
                    needed: 1,
                    free: 0,
                    ..
                }
            ),
            "{e}"
        );
        assert!(e.to_string().contains("wait for sequences to finish"));
        assert_eq!(
            (
                m.used_blocks(),
                m.len(a).unwrap(),
                m.table(a).unwrap().to_vec()
            ),
            (3, before.1, before.2)
        );
        assert!(matches!(
            m.append(SeqId(99), 1),
            Err(KvError::NoSequence(_))
        ));
    }

    #[test]
    fn truncate_and_window_release_return_blocks() {
        let mut m = BlockManager::new(8, 4, 1000);
        let a = m.create();
        m.append(a, 14).unwrap();
        assert_eq!(m.used_blocks(), 4);
        m.truncate(a, 5).unwrap();
        assert_eq!((m.len(a).unwrap(), m.used_blocks()), (5, 2));
        m.append(a, 9).unwrap();
        // Positions 0..9 left the window: blocks 0 and 1 (positions 0..8) go.
        assert_eq!(m.release_before(a, 9).unwrap(), 2);
        assert_eq!(m.table(a).unwrap()[..2], [NO_BLOCK, NO_BLOCK]);
        assert_eq!(m.used_blocks(), 2);
        // Released blocks are reused by others.
        let b = m.create();
        m.append(b, 8).unwrap();
        assert_eq!(m.free_blocks(), 4);
        m.remove(a).unwrap();
        assert_eq!(m.free_blocks(), 6);
    }

    fn named(tokens: &[u32]) -> Vec<BlockHash> {
        let mut h = super::super::BlockHasher::new(4, None);
        h.push(tokens);
        h.hashes().to_vec()
    }

    #[test]
    fn named_blocks_outlive_their_sequence_and_are_shared() {
        let mut m = BlockManager::new(6, 4, 1000);
        let prompt: Vec<u32> = (0..10).collect();
        let hashes = named(&prompt);
        let a = m.create();
        m.append(a, 10).unwrap();
        m.name_blocks(a, 0, &hashes).unwrap();
        assert_eq!(m.cached_prefix(&hashes), 2);
        m.remove(a).unwrap();
        // Blocks 0 and 1 stay as cached; the partial block 2 is free.
        assert_eq!(
            (m.used_blocks(), m.cached_blocks(), m.free_blocks()),
            (0, 2, 6)
        );
        let b = m.create_from_prefix(&hashes, 2);
        assert_eq!((m.len(b).unwrap(), m.table(b).unwrap()), (8, &[0, 1][..]));
        assert_eq!((m.used_blocks(), m.cached_blocks()), (2, 0));
        // Writing on from a block boundary copies nothing.
        assert!(m.append(b, 3).unwrap().is_empty());
        // A second user of the same prefix shares the blocks.
        let c = m.create_from_prefix(&hashes, 1);
        assert_eq!(m.table(c).unwrap(), &[0]);
        assert_eq!(m.used_blocks(), 3);
    }

    #[test]
    fn idle_cached_blocks_are_given_away_least_recently_used_first() {
        let mut m = BlockManager::new(4, 4, 1000);
        let (x, y): (Vec<u32>, Vec<u32>) = ((0..8).collect(), (100..108).collect());
        for tokens in [&x, &y] {
            let s = m.create();
            m.append(s, 8).unwrap();
            m.name_blocks(s, 0, &named(tokens)).unwrap();
            m.remove(s).unwrap();
        }
        assert_eq!((m.cached_blocks(), m.free_blocks()), (4, 4));
        // Three new blocks: x's two (released first) and then y's first go.
        let s = m.create();
        m.append(s, 12).unwrap();
        assert_eq!(m.cached_prefix(&named(&x)), 0);
        // y's first block was given away, so y's second is unreachable.
        assert_eq!(m.cached_prefix(&named(&y)), 0);
        assert_eq!(m.cached_blocks(), 1);
    }

    #[test]
    fn a_block_written_again_loses_its_name() {
        let mut m = BlockManager::new(4, 4, 1000);
        let tokens: Vec<u32> = (0..8).collect();
        let a = m.create();
        m.append(a, 8).unwrap();
        m.name_blocks(a, 0, &named(&tokens)).unwrap();
        // Cut back into block 1: a alone holds it, and will overwrite positions 6 and 7.
        m.truncate(a, 6).unwrap();
        assert_eq!(m.cached_prefix(&named(&tokens)), 1);
        // A shared named block keeps its name; the writer gets a copy.
        let b = m.create_from_prefix(&named(&tokens), 1);
        m.append(b, 4).unwrap();
        m.name_blocks(b, 0, &named(&[0, 1, 2, 3, 9, 9, 9, 9]))
            .unwrap();
        m.truncate(b, 2).unwrap();
        assert_eq!(m.append(b, 1).unwrap(), vec![BlockCopy { from: 0, to: 3 }]);
        assert_eq!(m.cached_prefix(&named(&tokens)), 1);
    }

    #[test]
    fn a_name_held_by_one_block_is_not_given_to_another() {
        let mut m = BlockManager::new(4, 4, 1000);
        let hashes = named(&[1, 2, 3, 4]);
        let (a, b) = (m.create(), m.create());
        m.append(a, 4).unwrap();
        m.append(b, 4).unwrap();
        m.name_blocks(a, 0, &hashes).unwrap();
        m.name_blocks(b, 0, &hashes).unwrap();
        m.remove(b).unwrap();
        // b's block held no name: it is free, not cached.
        assert_eq!((m.cached_blocks(), m.used_blocks()), (0, 1));
        let c = m.create_from_prefix(&hashes, 1);
        assert_eq!(m.table(c).unwrap(), m.table(a).unwrap());
    }

    #[test]
    fn naming_from_a_later_block_names_only_those() {
        let mut m = BlockManager::new(4, 4, 1000);
        let tokens: Vec<u32> = (0..12).collect();
        let hashes = named(&tokens);
        let a = m.create();
        m.append(a, 10).unwrap();
        // Blocks 1.. : block 1 is full and named, block 2 is not full yet.
        m.name_blocks(a, 1, &hashes[1..]).unwrap();
        assert_eq!(m.cached_prefix(&hashes), 0, "block 0 has no name");
        m.name_blocks(a, 0, &hashes[..1]).unwrap();
        assert_eq!(m.cached_prefix(&hashes), 2);
    }
}
