//! The row order of llama's query and key projections.
//!
//! Within each head of `hd` rows, Hugging Face stores the rows RoPE rotates together at
//! `i` and `i + hd/2` (half-split RoPE); llama.cpp's converter moves them to `2i` and
//! `2i + 1` (pair-wise RoPE, which Wisp's `rope_kv` kernel applies). The permutation is
//! on whole rows, so it works on any encoding whose rows are whole blocks.

/// Which way rows move.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum RopeOrder {
    /// Hugging Face (half-split) to GGUF (pair-wise).
    ToGguf,
    /// GGUF to Hugging Face.
    ToHf,
}

/// `bytes` holds `heads × hd` rows of `row_bytes` each (`hd` even, checked by the config);
/// returns them re-ordered.
pub(super) fn permute_rows(
    bytes: &[u8],
    row_bytes: usize,
    heads: u32,
    order: RopeOrder,
) -> Vec<u8> {
    let n_rows = bytes.len() / row_bytes;
    let hd = n_rows / heads as usize;
    let half = hd / 2;
    let mut out = vec![0u8; bytes.len()];
    for h in 0..heads as usize {
        for i in 0..half {
            for s in 0..2 {
                let hf = h * hd + s * half + i;
                let gguf = h * hd + 2 * i + s;
                let (src, dst) = match order {
                    RopeOrder::ToGguf => (hf, gguf),
                    RopeOrder::ToHf => (gguf, hf),
                };
                out[dst * row_bytes..(dst + 1) * row_bytes]
                    .copy_from_slice(&bytes[src * row_bytes..(src + 1) * row_bytes]);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_rows_of_each_half_and_inverts() {
        // Two heads of 4 rows, one byte per row: HF [a0 a1 b0 b1] per head (a = first half).
        let hf = [0u8, 1, 2, 3, 10, 11, 12, 13];
        let gguf = permute_rows(&hf, 1, 2, RopeOrder::ToGguf);
        assert_eq!(gguf, [0, 2, 1, 3, 10, 12, 11, 13]);
        assert_eq!(permute_rows(&gguf, 1, 2, RopeOrder::ToHf), hf);
        // Wider rows move whole.
        let rows: Vec<u8> = (0..24).collect();
        let there = permute_rows(&rows, 3, 1, RopeOrder::ToGguf);
        assert_eq!(&there[3..6], &rows[12..15]);
        assert_eq!(permute_rows(&there, 3, 1, RopeOrder::ToHf), rows);
    }
}
