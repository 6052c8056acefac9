//! The GPT-2 pre-tokenizer, by hand: the pieces the regex
//! `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`
//! finds, following llama.cpp's `unicode_regex_split_custom_gpt2` step by step.

use crate::unicode::Class;

/// Which pre-tokenizer a vocabulary was trained with.
///
/// # Example
///
/// ```
/// use tok::PreTokenizer;
///
/// assert_eq!(PreTokenizer::Gpt2.split("it's 2024!"), ["it", "'s", " 2024", "!"]);
/// assert_eq!(PreTokenizer::SmolLm.split("it's 2024!"), ["it", "'s", " ", "2", "0", "2", "4", "!"]);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PreTokenizer {
    /// The GPT-2 regex alone (llama.cpp `gpt2`).
    Gpt2,
    /// Every `\p{N}` character on its own first, then the GPT-2 regex on the text
    /// between (llama.cpp `smollm`, also StarCoder's; HF
    /// `Digits(individual_digits)` then `ByteLevel`).
    SmolLm,
}

impl PreTokenizer {
    /// The pre-tokenizer llama.cpp uses for a GGUF `tokenizer.ggml.pre` name, for
    /// the names that use the GPT-2 regex.
    ///
    /// # Example
    ///
    /// ```
    /// assert_eq!(tok::PreTokenizer::from_name("smollm"), Some(tok::PreTokenizer::SmolLm));
    /// assert_eq!(tok::PreTokenizer::from_name("llama3"), None);
    /// ```
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "gpt2" | "default" | "mpt" | "olmo" | "jais" | "trillion" => Some(PreTokenizer::Gpt2),
            "smollm" | "starcoder" | "refact" | "command-r" | "codeshell" | "exaone"
            | "minerva" => Some(PreTokenizer::SmolLm),
            _ => None,
        }
    }

    /// Splits `text` into the pieces BPE then runs on, in order; the pieces
    /// concatenate back to `text`.
    ///
    /// # Example
    ///
    /// ```
    /// let pieces = tok::PreTokenizer::Gpt2.split("Hello  world\n");
    /// assert_eq!(pieces, ["Hello", " ", " world", "\n"]);
    /// ```
    pub fn split(self, text: &str) -> Vec<&str> {
        let mut pieces = Vec::new();
        match self {
            PreTokenizer::Gpt2 => split_gpt2(text, &mut pieces),
            PreTokenizer::SmolLm => {
                let mut start = 0;
                for (at, c) in text.char_indices() {
                    if c.is_numeric() {
                        split_gpt2(&text[start..at], &mut pieces);
                        pieces.push(&text[at..at + c.len_utf8()]);
                        start = at + c.len_utf8();
                    }
                }
                split_gpt2(&text[start..], &mut pieces);
            }
        }
        pieces
    }
}

/// Appends the GPT-2 regex's matches in `text` to `pieces`. Lookahead stops at
/// the end of `text`, as llama.cpp's does at the end of an earlier split.
fn split_gpt2<'a>(text: &'a str, pieces: &mut Vec<&'a str>) {
    let chars: Vec<(usize, char)> = text.char_indices().collect();
    let n = chars.len();
    let class = |i: usize| chars.get(i).map(|&(_, c)| Class::of(c));
    let offset = |i: usize| chars.get(i).map_or(text.len(), |&(at, _)| at);
    let mut pos = 0;
    while pos < n {
        let start = pos;
        let c = chars[pos].1;
        pos = 'matched: {
            // 's|'t|'re|'ve|'m|'ll|'d
            if c == '\'' {
                let next = chars.get(pos + 1).map(|&(_, c)| c);
                let after = chars.get(pos + 2).map(|&(_, c)| c);
                match (next, after) {
                    (Some('s' | 't' | 'm' | 'd'), _) => break 'matched pos + 2,
                    (Some('r' | 'v'), Some('e')) | (Some('l'), Some('l')) => {
                        break 'matched pos + 3;
                    }
                    _ => {}
                }
            }
            // ` ?\p{L}+`, ` ?\p{N}+`, ` ?[^\s\p{L}\p{N}]+`
            let lead = if c == ' ' { pos + 1 } else { pos };
            if let Some(kind @ (Class::Letter | Class::Number | Class::Other)) = class(lead) {
                let mut end = lead;
                while class(end) == Some(kind) {
                    end += 1;
                }
                break 'matched end;
            }
            // `\s+(?!\S)` leaves the last space of a run before a non-space to
            // start the next piece; `\s+` takes a run that ends the text.
            let mut spaces = 0;
            while class(pos + spaces) == Some(Class::Space) {
                spaces += 1;
            }
            if spaces > 1 && pos + spaces < n {
                break 'matched pos + spaces - 1;
            }
            pos + spaces.max(1)
        };
        pieces.push(&text[offset(start)..offset(pos)]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gpt2(text: &str) -> Vec<&str> {
        PreTokenizer::Gpt2.split(text)
    }

    #[test]
    fn contractions_letters_numbers_symbols() {
        assert_eq!(
            gpt2("I'm here, they'll see"),
            ["I", "'m", " here", ",", " they", "'ll", " see"]
        );
        assert_eq!(gpt2("'re're x'"), ["'re", "'re", " x", "'"]);
        assert_eq!(gpt2("don't"), ["don", "'t"]);
        assert_eq!(
            gpt2("DON'T"),
            ["DON", "'", "T"],
            "case-sensitive, as in GPT-2"
        );
        assert_eq!(gpt2("abc123def"), ["abc", "123", "def"]);
        assert_eq!(gpt2(" ?!x"), [" ?!", "x"]);
        assert_eq!(gpt2("über straße"), ["über", " straße"]);
        assert_eq!(gpt2("a'"), ["a", "'"]);
    }

    #[test]
    fn whitespace_runs() {
        assert_eq!(gpt2("a   b"), ["a", "  ", " b"]);
        assert_eq!(gpt2("a\n\nb"), ["a", "\n", "\n", "b"]);
        assert_eq!(gpt2("a \n b"), ["a", " \n", " b"]);
        assert_eq!(gpt2("a  "), ["a", "  "]);
        assert_eq!(gpt2("\n"), ["\n"]);
        assert_eq!(gpt2(" "), [" "]);
        assert_eq!(gpt2(""), Vec::<&str>::new());
        assert_eq!(gpt2("x \t!"), ["x", " ", "\t", "!"]);
    }

    #[test]
    fn smollm_isolates_digits_and_bounds_lookahead() {
        let smol = |t| PreTokenizer::SmolLm.split(t);
        assert_eq!(smol("x 12"), ["x", " ", "1", "2"]);
        assert_eq!(smol("a  1"), ["a", "  ", "1"], "the run ends its split");
        assert_eq!(smol("v2.0"), ["v", "2", ".", "0"]);
    }

    #[test]
    fn pieces_concatenate_back() {
        const POOL: &[char] = &[
            'a', 'Z', 'é', 'ß', '中', '7', '٣', 'Ⅻ', ' ', ' ', '\n', '\t', '\u{A0}', '\'', 's',
            '!', '-', '😀', '\u{301}', '\u{93E}', '\0',
        ];
        // A fixed LCG: the same strings on every run.
        let mut state = 0x2545_F491_4F6C_DD1Du64;
        let mut next = move |n: usize| {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1);
            (state >> 33) as usize % n
        };
        for _ in 0..2000 {
            let text: String = (0..next(24)).map(|_| POOL[next(POOL.len())]).collect();
            for pre in [PreTokenizer::Gpt2, PreTokenizer::SmolLm] {
                let pieces = pre.split(&text);
                assert_eq!(pieces.concat(), text);
                assert!(pieces.iter().all(|p| !p.is_empty()), "{text:?}: {pieces:?}");
            }
        }
    }
}
