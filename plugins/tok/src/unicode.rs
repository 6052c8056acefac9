//! Character classes the tokenizers share, in the definitions their reference
//! implementations use (HF `tokenizers` for BERT, llama.cpp for byte-level BPE).

use crate::tables;

/// Whether `c` falls in one of `table`'s inclusive `[first, last]` ranges.
pub(crate) fn in_table(table: &[u32], c: char) -> bool {
    let c = u32::from(c);
    // Index of the first range bound above `c`: odd means inside a range.
    let above = table.partition_point(|&bound| bound < c);
    above % 2 == 1 || table.get(above) == Some(&c)
}

/// BERT's whitespace: `\t`, `\n`, `\r` and Unicode White_Space.
pub(crate) fn is_bert_whitespace(c: char) -> bool {
    c.is_whitespace()
}

/// BERT's "control" (dropped by text cleaning): categories Cc, Cf and Co, except
/// `\t`, `\n` and `\r`, which count as whitespace. Unassigned code points (Cn),
/// which HF also drops, are kept: that would need a table of every assigned one.
pub(crate) fn is_bert_control(c: char) -> bool {
    if matches!(c, '\t' | '\n' | '\r') {
        return false;
    }
    c.is_control()
        || in_table(tables::FORMAT, c)
        || matches!(u32::from(c), 0xE000..=0xF8FF | 0xF_0000..=0xF_FFFD | 0x10_0000..=0x10_FFFD)
}

/// BERT's punctuation: all ASCII symbols (`$`, `+`, `^`, … are not Unicode
/// punctuation but BERT splits on them) and Unicode category P.
pub(crate) fn is_bert_punctuation(c: char) -> bool {
    c.is_ascii_punctuation() || in_table(tables::PUNCTUATION, c)
}

/// llama.cpp's `default` pre-tokenizer's first class,
/// `[\p{P}\$\+<=>\^~\|]+` in its collapsed text: every ASCII symbol but
/// `` ` ``, and past ASCII category P.
pub(crate) fn is_default_punctuation(c: char) -> bool {
    match c.is_ascii() {
        true => c.is_ascii_punctuation() && c != '`',
        false => in_table(tables::PUNCTUATION, c),
    }
}

/// The CJK ideograph blocks BERT surrounds with spaces, so each is its own word.
pub(crate) fn is_cjk(c: char) -> bool {
    matches!(
        u32::from(c),
        0x4E00..=0x9FFF
            | 0x3400..=0x4DBF
            | 0x2_0000..=0x2_A6DF
            | 0x2_A700..=0x2_B73F
            | 0x2_B740..=0x2_B81F
            | 0x2_B920..=0x2_CEAF
            | 0xF900..=0xFAFF
            | 0x2_F800..=0x2_FA1F
    )
}

/// Category Mn, which BERT's accent stripping removes after NFD.
pub(crate) fn is_nonspacing_mark(c: char) -> bool {
    in_table(tables::NONSPACING_MARK, c)
}

/// How the GPT-2 pre-tokenizer sees a character: llama.cpp's categories,
/// of Unicode 15.1 (its version; `std`'s `is_alphabetic` and `is_numeric`
/// answer in a newer one, and `Alphabetic` is not `\p{L}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Class {
    /// `\s`: Unicode White_Space.
    Space,
    /// `\p{L}`.
    Letter,
    /// `\p{N}`.
    Number,
    /// Anything else: punctuation, symbols, marks.
    Other,
}

impl Class {
    /// Classifies `c`: White_Space (as llama.cpp's whitespace set), then
    /// category N, then category L; the three do not overlap.
    pub(crate) fn of(c: char) -> Class {
        if c.is_ascii() {
            return match c {
                'a'..='z' | 'A'..='Z' => Class::Letter,
                '0'..='9' => Class::Number,
                '\t'..='\r' | ' ' => Class::Space,
                _ => Class::Other,
            };
        }
        if c.is_whitespace() {
            Class::Space
        } else if in_table(tables::NUMBER, c) {
            Class::Number
        } else if in_table(tables::LETTER, c) {
            Class::Letter
        } else {
            Class::Other
        }
    }

    /// Whether `c` is `\p{N}`.
    pub(crate) fn is_number(c: char) -> bool {
        Class::of(c) == Class::Number
    }
}

/// How a character stands in llama.cpp's "collapsed" text, which the
/// regexes naming categories (`\p{L}`, `\p{N}`, `\p{P}`, `\p{S}`,
/// `\p{M}`) run over: past ASCII, each character is its category (or
/// `\s` for whitespace); ASCII characters stay themselves, and the
/// categories take the ASCII ranges llama.cpp's `k_ucat_map` gives them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Category {
    /// `\s`.
    Space,
    /// `\p{L}`: ASCII letters, and [`Class::Letter`] past ASCII.
    Letter,
    /// `\p{N}`: ASCII digits, and [`Class::Number`] past ASCII.
    Number,
    /// `\p{P}`: `!"#%&'()*,-./:;?@[\]_{}`, and category P past ASCII.
    Punctuation,
    /// `\p{S}`: `` $+<=>^`|~ ``, and category S past ASCII.
    Symbol,
    /// `\p{M}`: marks, none of them ASCII.
    Mark,
    /// None of those: control characters, unassigned code points.
    Other,
}

impl Category {
    /// Categorises `c` as llama.cpp's collapsed text does.
    pub(crate) fn of(c: char) -> Category {
        if c.is_ascii() {
            return match c {
                '\t'..='\r' | ' ' => Category::Space,
                'a'..='z' | 'A'..='Z' => Category::Letter,
                '0'..='9' => Category::Number,
                '$' | '+' | '<' | '=' | '>' | '^' | '`' | '|' | '~' => Category::Symbol,
                c if c.is_ascii_punctuation() => Category::Punctuation,
                _ => Category::Other,
            };
        }
        match Class::of(c) {
            Class::Space => Category::Space,
            Class::Letter => Category::Letter,
            Class::Number => Category::Number,
            Class::Other if in_table(tables::PUNCTUATION, c) => Category::Punctuation,
            Class::Other if in_table(tables::SYMBOL, c) => Category::Symbol,
            Class::Other if in_table(tables::MARK, c) => Category::Mark,
            Class::Other => Category::Other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_are_searched_inclusively() {
        for c in ['!', '/', '「', '»', '¿', '\u{2014}'] {
            assert!(is_bert_punctuation(c), "{c:?}");
        }
        for c in ['$', '+', '^', '`', '~'] {
            assert!(is_bert_punctuation(c), "ASCII symbol {c:?}");
        }
        for c in ['a', 'é', '0', ' ', '中', '€'] {
            assert!(!is_bert_punctuation(c), "{c:?}");
        }
        assert!(is_nonspacing_mark('\u{301}'));
        assert!(!is_nonspacing_mark('\u{93E}'), "Mc is kept");
        assert!(is_bert_control('\u{200D}') && is_bert_control('\u{AD}'));
        assert!(is_bert_control('\u{7}') && is_bert_control('\u{E000}'));
        assert!(!is_bert_control('\n') && !is_bert_control('a'));
    }

    #[test]
    fn collapsed_categories() {
        for (c, category) in [
            ('a', Category::Letter),
            ('é', Category::Letter),
            ('5', Category::Number),
            ('٣', Category::Number),
            ('!', Category::Punctuation),
            ('_', Category::Punctuation),
            ('«', Category::Punctuation),
            ('$', Category::Symbol),
            ('`', Category::Symbol),
            ('€', Category::Symbol),
            ('😀', Category::Symbol),
            ('Ⓐ', Category::Symbol),
            ('\u{301}', Category::Mark),
            ('\u{93E}', Category::Mark),
            ('~', Category::Symbol),
            ('\0', Category::Other),
            ('\u{1F}', Category::Other),
            ('\u{3000}', Category::Space),
            ('\u{B}', Category::Space),
            // Unicode 15.0's shaking face; Unicode 16.0's Garay letter, which
            // llama.cpp's 15.1 does not know yet (`std` does).
            ('\u{1FAE8}', Category::Symbol),
            ('\u{10D4A}', Category::Other),
        ] {
            assert_eq!(Category::of(c), category, "{c:?}");
        }
    }

    /// Every code point's category as llama.cpp's own table has it
    /// (`scripts/reference.py --only unicode` reads it out of libllama):
    /// what its regexes see, `\s` first.
    #[test]
    fn categories_are_llama_cpp_s() {
        #[derive(serde::Deserialize)]
        struct Table {
            ranges: Vec<(u32, u16)>,
        }
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../host/nn/tests/data/llama_cpp_unicode.json"
        );
        let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{path}: {e}"));
        let table: Table = serde_json::from_slice(&bytes).expect("llama_cpp_unicode.json");
        assert_eq!(
            table.ranges.last().map(|r| r.0),
            Some(0x11_0000),
            "the table runs to the end"
        );
        let mut wrong = Vec::new();
        for pair in table.ranges.windows(2) {
            let ((first, flags), (next, _)) = (pair[0], pair[1]);
            let (class, category) = match flags {
                2 => (Class::Number, Category::Number),
                4 => (Class::Letter, Category::Letter),
                16 => (Class::Other, Category::Mark),
                32 => (Class::Other, Category::Punctuation),
                64 => (Class::Other, Category::Symbol),
                _ => (Class::Other, Category::Other),
            };
            for c in (first..next).filter_map(char::from_u32) {
                let (class, category) = match c.is_whitespace() {
                    true => (Class::Space, Category::Space),
                    false => (class, category),
                };
                if Class::of(c) != class || Category::of(c) != category {
                    wrong.push((c, Class::of(c), Category::of(c), class, category));
                }
            }
        }
        assert!(
            wrong.is_empty(),
            "{} differ from llama.cpp's, first {:?}",
            wrong.len(),
            &wrong[..wrong.len().min(8)]
        );
    }

    #[test]
    fn gpt2_classes() {
        assert_eq!(Class::of('x'), Class::Letter);
        assert_eq!(Class::of('ß'), Class::Letter);
        assert_eq!(Class::of('中'), Class::Letter);
        assert_eq!(Class::of('7'), Class::Number);
        assert_eq!(Class::of('Ⅻ'), Class::Number);
        assert_eq!(Class::of('²'), Class::Number);
        assert_eq!(Class::of('\u{A0}'), Class::Space);
        assert_eq!(Class::of('\u{93E}'), Class::Other);
        assert_eq!(Class::of('Ⓐ'), Class::Other);
        assert_eq!(Class::of('!'), Class::Other);
        assert_eq!(Class::of('😀'), Class::Other);
    }
}
