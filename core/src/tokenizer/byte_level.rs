//! GPT-2's byte-level alphabet: byte-level BPE vocabularies spell every byte as a printable
//! character, so that token texts never hold raw spaces or control bytes.
//!
//! Printable bytes (`!`..=`~`, `¡`..=`¬`, `®`..=`ÿ`) stand for themselves; the other 68
//! bytes, in increasing order, are spelled U+0100, U+0101, … (so a space is `Ġ`, U+0120).

/// The byte a byte-level character stands for, or `None` for a character outside the alphabet.
pub(crate) fn char_to_byte(c: char) -> Option<u8> {
    let c = c as u32;
    if is_printable(c) {
        return u8::try_from(c).ok();
    }
    // The n-th non-printable byte: 0..=32, then 127..=160, then 173.
    let n = c.checked_sub(0x100)?;
    match n {
        0..=32 => u8::try_from(n).ok(),
        33..=66 => u8::try_from(127 + (n - 33)).ok(),
        67 => Some(173),
        _ => None,
    }
}

fn is_printable(c: u32) -> bool {
    matches!(c, 0x21..=0x7E | 0xA1..=0xAC | 0xAE..=0xFF)
}

/// The bytes a byte-level token text spells. A text with a character outside the alphabet
/// is not byte-level (an added token stored as plain text): its UTF-8 bytes are returned,
/// as the `tokenizers` ByteLevel decoder does.
pub(crate) fn text_to_bytes(text: &str) -> Vec<u8> {
    text.chars()
        .map(char_to_byte)
        .collect::<Option<Vec<u8>>>()
        .unwrap_or_else(|| text.as_bytes().to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The forward map, written the way GPT-2's `bytes_to_unicode` does, to check the inverse.
    fn byte_to_char(b: u8) -> char {
        let mut n = 0u32;
        for x in 0..=255u32 {
            if is_printable(x) {
                if x == b as u32 {
                    return char::from_u32(x).unwrap();
                }
            } else {
                if x == b as u32 {
                    return char::from_u32(0x100 + n).unwrap();
                }
                n += 1;
            }
        }
        unreachable!()
    }

    #[test]
    fn every_byte_round_trips() {
        for b in 0..=255u8 {
            assert_eq!(char_to_byte(byte_to_char(b)), Some(b), "byte {b}");
        }
        assert_eq!(byte_to_char(b' '), 'Ġ');
        assert_eq!(byte_to_char(b'\n'), 'Ċ');
        assert_eq!(char_to_byte('ŀ'), Some(158)); // the run 127..=160 ends at U+0142
        assert_eq!(char_to_byte('ł'), Some(160));
        assert_eq!(char_to_byte('Ń'), Some(173)); // the last non-printable byte
        assert_eq!(char_to_byte('ń'), None);
        assert_eq!(char_to_byte('你'), None);
    }

    #[test]
    fn texts_outside_the_alphabet_stay_utf8() {
        assert_eq!(text_to_bytes("Ġthe"), b" the");
        assert_eq!(text_to_bytes("<fim prefix>"), b"<fim prefix>");
        assert_eq!(text_to_bytes("ä½ł"), "你".as_bytes());
    }
}
