//! How a KV pool slot (one position's keys or values, `stride` of them) is stored, as
//! `common/kv_access.wgsl` writes and reads it. f32 and f16 slots are plain arrays; a
//! Q8_0 slot is `stride / 32` [`Q8KvBlock`]s in a row. The reflection test compares the
//! block with its WGSL struct (`interface::RECORDS`).

use super::layout::gpu_struct;

/// Values in one Q8_0 block (GGML's Q8_0: one scale per 32 values).
pub const Q8_KV_BLOCK_VALUES: u32 = 32;

gpu_struct! {
    /// 32 values of a Q8_0 KV slot: signed bytes, four to a word (the first value in the
    /// low byte), and their scale, the f16-rounded amax / 127 stored as an f32 so every
    /// access is a whole word.
    pub struct Q8KvBlock {
        pub quants: [u32; 8],
        pub scale: f32,
    }
}

impl Q8KvBlock {
    /// The block's 32 values.
    pub fn values(&self) -> [f32; 32] {
        let mut out = [0.0; 32];
        for (i, v) in out.iter_mut().enumerate() {
            let byte = self.quants[i / 4].to_le_bytes()[i % 4];
            *v = f32::from(byte as i8) * self.scale;
        }
        out
    }

    /// A block from 32 quantized values and their scale.
    pub fn new(quants: &[i8; 32], scale: f32) -> Q8KvBlock {
        let mut words = [0u32; 8];
        for (w, four) in words.iter_mut().zip(quants.chunks(4)) {
            *w = u32::from_le_bytes([four[0] as u8, four[1] as u8, four[2] as u8, four[3] as u8]);
        }
        Q8KvBlock {
            quants: words,
            scale,
        }
    }
}

/// Bytes of one Q8_0 slot of `stride` values (a multiple of 32).
pub fn q8_slot_bytes(stride: u32) -> u64 {
    (stride / Q8_KV_BLOCK_VALUES) as u64 * std::mem::size_of::<Q8KvBlock>() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_block_round_trips_its_quants_and_takes_nine_words() {
        let quants: [i8; 32] = std::array::from_fn(|i| (i as i32 * 8 - 128) as i8);
        let block = Q8KvBlock::new(&quants, 0.5);
        let expected: Vec<f32> = quants.iter().map(|&q| f32::from(q) * 0.5).collect();
        assert_eq!(block.values().to_vec(), expected);
        assert_eq!(std::mem::size_of::<Q8KvBlock>(), 9 * 4);
        // 4.5 bits per value more than 8: a 64-wide slot takes 72 bytes.
        assert_eq!(q8_slot_bytes(64), 72);
    }
}
