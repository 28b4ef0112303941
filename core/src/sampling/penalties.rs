//! Repetition, presence and frequency penalties: the data the GPU kernel takes and the CPU
//! reference of its rule.

use bytemuck::{Pod, Zeroable};

/// One distinct token of the penalty window and how often it occurs there. Uploaded as is to
/// the GPU (`array<vec2<u32>>` in WGSL).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Pod, Zeroable)]
pub struct PenaltyEntry {
    /// The token id.
    pub token: u32,
    /// Occurrences among the last `penalty_last_n` accepted tokens.
    pub count: u32,
}

/// The three penalty factors, in the order the kernel's uniform holds them.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Pod, Zeroable)]
pub struct PenaltyParams {
    /// Positive logits are divided by it, the others multiplied (`1` = off).
    pub repeat_penalty: f32,
    /// Subtracted once per present token (`0` = off).
    pub presence_penalty: f32,
    /// Subtracted once per occurrence (`0` = off).
    pub frequency_penalty: f32,
}

/// Applies the penalties to `logits` in place, exactly as the GPU kernel does (llama.cpp's
/// rule), for every entry:
///
/// ```text
/// logit = logit > 0 ? logit / repeat : logit * repeat
/// logit = logit - (f32(count) * frequency + f32(count > 0) * presence)
/// ```
///
/// The second line's grouping is llama.cpp's; a kernel that wants bit-identical results uses
/// the same grouping (FMA contraction may still differ by an ulp, so compare with a tolerance).
/// Entries whose token is outside `logits` are ignored rather than trusted, so a stale list can
/// never write out of bounds.
pub fn apply_penalties(logits: &mut [f32], entries: &[PenaltyEntry], p: &PenaltyParams) {
    for entry in entries {
        let Some(logit) = usize::try_from(entry.token)
            .ok()
            .and_then(|i| logits.get_mut(i))
        else {
            continue;
        };
        // Dividing a negative logit would make the token *more* likely; llama.cpp multiplies
        // it instead, and so do we (the GPU kernel mirrors this).
        if *logit > 0.0 {
            *logit /= p.repeat_penalty;
        } else {
            *logit *= p.repeat_penalty;
        }
        let present = if entry.count > 0 { 1.0 } else { 0.0 };
        *logit -= entry.count as f32 * p.frequency_penalty + present * p.presence_penalty;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hand_computed_values() {
        let mut logits = vec![2.0, -3.0, 0.0, 5.0, 1.0];
        let entries = [
            PenaltyEntry { token: 0, count: 1 },
            PenaltyEntry { token: 1, count: 3 },
            PenaltyEntry { token: 2, count: 2 },
            // Out of range: ignored.
            PenaltyEntry {
                token: 99,
                count: 1,
            },
        ];
        let p = PenaltyParams {
            repeat_penalty: 2.0,
            presence_penalty: 0.5,
            frequency_penalty: 0.25,
        };
        apply_penalties(&mut logits, &entries, &p);
        // token 0: 2 / 2 = 1; 1 - (1*0.25 + 0.5) = 0.25
        // token 1: -3 * 2 = -6; -6 - (3*0.25 + 0.5) = -7.25
        // token 2: 0 * 2 = 0 (0 is not > 0: multiplied); 0 - (2*0.25 + 0.5) = -1
        // tokens 3, 4: untouched.
        assert_eq!(logits, vec![0.25, -7.25, -1.0, 5.0, 1.0]);
    }

    #[test]
    fn neutral_params_change_nothing_and_zero_count_skips_presence() {
        let mut logits = vec![1.5, -0.5];
        let entries = [
            PenaltyEntry { token: 0, count: 4 },
            PenaltyEntry { token: 1, count: 0 },
        ];
        let neutral = PenaltyParams {
            repeat_penalty: 1.0,
            presence_penalty: 0.0,
            frequency_penalty: 0.0,
        };
        apply_penalties(&mut logits, &entries, &neutral);
        assert_eq!(logits, vec![1.5, -0.5]);
        let presence = PenaltyParams {
            repeat_penalty: 1.0,
            presence_penalty: 1.0,
            frequency_penalty: 0.0,
        };
        apply_penalties(&mut logits, &entries, &presence);
        assert_eq!(logits, vec![0.5, -0.5]);
    }

    #[test]
    fn entry_is_gpu_ready() {
        assert_eq!(std::mem::size_of::<PenaltyEntry>(), 8);
        let entries = [PenaltyEntry { token: 7, count: 2 }];
        let words: &[u32] = bytemuck::cast_slice(&entries);
        assert_eq!(words, &[7, 2]);
        assert_eq!(std::mem::size_of::<PenaltyParams>(), 12);
    }
}
