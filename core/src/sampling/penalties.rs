//! Repetition, presence and frequency penalties: the CPU reference of the GPU kernel's rule.
//! The data both read are the kernel's own structs: [`PenaltyEntry`] (a token and its count
//! in the window) and [`RowParams`] (the row's factors).

pub use crate::kernels::{PenaltyEntry, RowParams};

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
pub fn apply_penalties(logits: &mut [f32], entries: &[PenaltyEntry], p: &RowParams) {
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
            *logit /= p.repeat;
        } else {
            *logit *= p.repeat;
        }
        let present = if entry.count > 0 { 1.0 } else { 0.0 };
        *logit -= entry.count as f32 * p.frequency + present * p.presence;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hand_computed_values() {
        let mut logits = vec![2.0, -3.0, 0.0, 5.0, 1.0];
        let entries = [
            PenaltyEntry::new(0, 1),
            PenaltyEntry::new(1, 3),
            PenaltyEntry::new(2, 2),
            // Out of range: ignored.
            PenaltyEntry::new(99, 1),
        ];
        let p = RowParams {
            repeat: 2.0,
            frequency: 0.25,
            presence: 0.5,
            cutoff: 0.0,
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
        let entries = [PenaltyEntry::new(0, 4), PenaltyEntry::new(1, 0)];
        let neutral = RowParams {
            repeat: 1.0,
            frequency: 0.0,
            presence: 0.0,
            cutoff: 0.0,
        };
        apply_penalties(&mut logits, &entries, &neutral);
        assert_eq!(logits, vec![1.5, -0.5]);
        let presence = RowParams {
            repeat: 1.0,
            frequency: 0.0,
            presence: 1.0,
            cutoff: 0.0,
        };
        apply_penalties(&mut logits, &entries, &presence);
        assert_eq!(logits, vec![0.5, -0.5]);
    }

    #[test]
    fn entry_is_gpu_ready() {
        // The layout the kernel reads (token, count, row, padding); the reflection test
        // (`kernels::interface`) checks it against penalties.wgsl.
        let entries = [PenaltyEntry {
            row: 1,
            ..PenaltyEntry::new(7, 2)
        }];
        let words: &[u32] = bytemuck::cast_slice(&entries);
        assert_eq!(words, &[7, 2, 1, 0]);
    }
}
