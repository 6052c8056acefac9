//! GPT-2's byte-to-Unicode mapping: byte-level BPE vocabularies spell every byte
//! as a printable character, so that a token's text is always valid UTF-8.

/// Bytes that stand for themselves: `!`..=`~`, `¡`..=`¬`, `®`..=`ÿ`.
fn is_printable(b: u8) -> bool {
    matches!(b, b'!'..=b'~' | 0xA1..=0xAC | 0xAE..=0xFF)
}

/// Both directions of the mapping, built once per tokenizer.
#[derive(Debug, Clone)]
pub(crate) struct ByteMap {
    to_char: [char; 256],
    /// Indexed by code point; every mapped character is below 0x144.
    to_byte: Vec<Option<u8>>,
}

impl ByteMap {
    /// The mapping: printable bytes map to the same code point, the other 68 to
    /// U+0100 onwards in byte order (so space, 0x20, is `Ġ`, U+0120).
    pub(crate) fn new() -> Self {
        let mut to_char = ['\0'; 256];
        let mut to_byte = vec![None; 0x144];
        let mut next = 0x100u32;
        for b in 0..=255u8 {
            let cp = if is_printable(b) {
                u32::from(b)
            } else {
                next += 1;
                next - 1
            };
            let c = char::from_u32(cp).expect("below U+0144");
            to_char[usize::from(b)] = c;
            to_byte[cp as usize] = Some(b);
        }
        ByteMap { to_char, to_byte }
    }

    /// The character that spells `b`.
    pub(crate) fn char(&self, b: u8) -> char {
        self.to_char[usize::from(b)]
    }

    /// The byte `c` spells, if it is one of the 256 mapped characters.
    pub(crate) fn byte(&self, c: char) -> Option<u8> {
        self.to_byte.get(c as usize).copied().flatten()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_gpt2() {
        let map = ByteMap::new();
        assert_eq!(map.char(b' '), 'Ġ');
        assert_eq!(map.char(b'\n'), 'Ċ');
        assert_eq!(map.char(b'a'), 'a');
        assert_eq!(map.char(0), 'Ā');
        assert_eq!(
            map.char(0xAD),
            '\u{143}',
            "the last of the 68 remapped bytes"
        );
        for b in 0..=255u8 {
            assert_eq!(map.byte(map.char(b)), Some(b));
        }
        assert_eq!(map.byte('€'), None);
    }
}
