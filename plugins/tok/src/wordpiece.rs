//! [`WordPiece`]: the BERT uncased tokenizer (all-MiniLM-L6-v2 and friends).

use std::collections::HashMap;

use unicode_normalization::UnicodeNormalization;

use crate::Error;
use crate::unicode::{
    is_bert_control, is_bert_punctuation, is_bert_whitespace, is_cjk, is_nonspacing_mark,
};

/// The most tokens [`WordPiece::encode`] returns when the caller has no better
/// limit: the sequence length sentence-transformers uses for MiniLM.
pub const DEFAULT_MAX_LEN: usize = 128;

/// Words longer than this many characters become one `[UNK]`, as in BERT.
const MAX_WORD_CHARS: usize = 100;

/// Tokens a text may contain verbatim (HF matches them before normalising).
const SPECIAL: [&str; 5] = ["[CLS]", "[SEP]", "[PAD]", "[MASK]", "[UNK]"];

/// A BERT uncased WordPiece tokenizer, matching HF `tokenizers`' `BertNormalizer`
/// (clean text, CJK padding, accent stripping, lowercasing), `BertPreTokenizer`
/// and `WordPiece` with `##` continuations.
///
/// # Example
///
/// ```
/// let vocab = "[PAD]\n[UNK]\n[CLS]\n[SEP]\nhello\n,\nworld\nwor\n##ld\n";
/// let wp = tok::WordPiece::from_vocab(vocab)?;
/// assert_eq!(wp.tokenize("Héllo, WORLD"), vec![4, 5, 6]);
/// let enc = wp.encode("hello worlds", tok::DEFAULT_MAX_LEN);
/// assert_eq!(enc.ids, vec![2, 4, 1, 3], "`worlds` has no `##s`: [UNK]");
/// assert_eq!(enc.attention_mask, vec![1; 4]);
/// # Ok::<(), tok::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct WordPiece {
    vocab: HashMap<String, u32>,
    unk: u32,
    cls: u32,
    sep: u32,
    pad: u32,
    /// The [`SPECIAL`] tokens this vocab has, with their ids.
    special: Vec<(&'static str, u32)>,
}

/// One encoded text: the three inputs a BERT model takes, all the same length.
///
/// # Example
///
/// ```
/// let wp = tok::WordPiece::from_vocab("[PAD]\n[UNK]\n[CLS]\n[SEP]\nhi\n")?;
/// let enc = wp.encode("hi", 8);
/// assert_eq!((enc.ids, enc.attention_mask, enc.type_ids), (vec![2, 4, 3], vec![1; 3], vec![0; 3]));
/// # Ok::<(), tok::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Encoding {
    /// Token ids, `[CLS] … [SEP]`.
    pub ids: Vec<u32>,
    /// 1 for every token (padding is the caller's, with 0).
    pub attention_mask: Vec<u32>,
    /// Segment ids: 0 for every token of a single sentence.
    pub type_ids: Vec<u32>,
    /// Tokens of the text past the length asked for, left out.
    pub dropped: usize,
}

impl WordPiece {
    /// Builds the tokenizer from `vocab.txt`: one token per line, the id being the
    /// line number from 0. The vocab must have `[UNK]`, `[CLS]`, `[SEP]` and
    /// `[PAD]`.
    ///
    /// # Example
    ///
    /// ```
    /// let err = tok::WordPiece::from_vocab("hello\n").unwrap_err();
    /// assert_eq!(err.to_string(), "vocab.txt has no `[UNK]` token");
    /// ```
    pub fn from_vocab(vocab: &str) -> Result<Self, Error> {
        let mut map = HashMap::new();
        for (id, line) in vocab.lines().enumerate() {
            let id = u32::try_from(id).map_err(|_| Error::TooManyTokens)?;
            map.insert(line.trim_end().to_string(), id);
        }
        let get = |token: &'static str| {
            map.get(token).copied().ok_or(Error::MissingToken {
                file: "vocab.txt",
                token,
            })
        };
        let (unk, cls, sep, pad) = (get("[UNK]")?, get("[CLS]")?, get("[SEP]")?, get("[PAD]")?);
        let special = SPECIAL
            .iter()
            .filter_map(|&s| map.get(s).map(|&id| (s, id)))
            .collect();
        Ok(WordPiece {
            vocab: map,
            unk,
            cls,
            sep,
            pad,
            special,
        })
    }

    /// [`WordPiece::from_vocab`] on raw file bytes, which must be UTF-8.
    ///
    /// # Example
    ///
    /// ```
    /// assert!(tok::WordPiece::from_bytes(b"\xff").is_err());
    /// ```
    pub fn from_bytes(vocab: &[u8]) -> Result<Self, Error> {
        let text = std::str::from_utf8(vocab).map_err(|e| Error::NotUtf8 {
            file: "vocab.txt",
            source: e,
        })?;
        Self::from_vocab(text)
    }

    /// The number of entries in the vocab.
    ///
    /// # Example
    ///
    /// ```
    /// let wp = tok::WordPiece::from_vocab("[PAD]\n[UNK]\n[CLS]\n[SEP]\n")?;
    /// assert_eq!(wp.len(), 4);
    /// # Ok::<(), tok::Error>(())
    /// ```
    pub fn len(&self) -> usize {
        self.vocab.len()
    }

    /// Whether the vocab is empty (never, once built).
    ///
    /// # Example
    ///
    /// ```
    /// let wp = tok::WordPiece::from_vocab("[PAD]\n[UNK]\n[CLS]\n[SEP]\n")?;
    /// assert!(!wp.is_empty());
    /// # Ok::<(), tok::Error>(())
    /// ```
    pub fn is_empty(&self) -> bool {
        self.vocab.is_empty()
    }

    /// The id of `[PAD]`, for padding a batch.
    ///
    /// # Example
    ///
    /// ```
    /// let wp = tok::WordPiece::from_vocab("[UNK]\n[CLS]\n[SEP]\n[PAD]\n")?;
    /// assert_eq!(wp.pad_id(), 3);
    /// # Ok::<(), tok::Error>(())
    /// ```
    pub fn pad_id(&self) -> u32 {
        self.pad
    }

    /// The id of `token`, if the vocab has it.
    ///
    /// # Example
    ///
    /// ```
    /// let wp = tok::WordPiece::from_vocab("[PAD]\n[UNK]\n[CLS]\n[SEP]\n##s\n")?;
    /// assert_eq!(wp.token_to_id("##s"), Some(4));
    /// # Ok::<(), tok::Error>(())
    /// ```
    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        self.vocab.get(token).copied()
    }

    /// The token ids of `text`, without `[CLS]`/`[SEP]` and without truncation.
    ///
    /// # Example
    ///
    /// ```
    /// let wp = tok::WordPiece::from_vocab("[PAD]\n[UNK]\n[CLS]\n[SEP]\nun\n##aff\n##able\n")?;
    /// assert_eq!(wp.tokenize("UNAFFABLE"), vec![4, 5, 6]);
    /// assert_eq!(wp.tokenize("[SEP]"), vec![3], "special tokens match verbatim");
    /// # Ok::<(), tok::Error>(())
    /// ```
    pub fn tokenize(&self, text: &str) -> Vec<u32> {
        let mut ids = Vec::new();
        let mut rest = text;
        while !rest.is_empty() {
            match self.next_special(rest) {
                Some((at, token, id)) => {
                    self.tokenize_plain(&rest[..at], &mut ids);
                    ids.push(id);
                    rest = &rest[at + token.len()..];
                }
                None => {
                    self.tokenize_plain(rest, &mut ids);
                    break;
                }
            }
        }
        ids
    }

    /// Encodes one sentence as `[CLS] tokens [SEP]`, keeping at most `max_len`
    /// ids in all (at least 2): like HF, the tokens are cut before `[SEP]` is
    /// added, so a truncated encoding still ends with `[SEP]`.
    ///
    /// # Example
    ///
    /// ```
    /// let wp = tok::WordPiece::from_vocab("[PAD]\n[UNK]\n[CLS]\n[SEP]\na\n")?;
    /// let cut = wp.encode("a a a a", 4);
    /// assert_eq!((cut.ids, cut.dropped), (vec![2, 4, 4, 3], 2));
    /// assert_eq!(wp.encode("a a", 4).dropped, 0);
    /// # Ok::<(), tok::Error>(())
    /// ```
    pub fn encode(&self, text: &str, max_len: usize) -> Encoding {
        let mut tokens = self.tokenize(text);
        let kept = max_len.max(2) - 2;
        let dropped = tokens.len().saturating_sub(kept);
        tokens.truncate(kept);
        let mut ids = Vec::with_capacity(tokens.len() + 2);
        ids.push(self.cls);
        ids.extend(tokens);
        ids.push(self.sep);
        Encoding {
            attention_mask: vec![1; ids.len()],
            type_ids: vec![0; ids.len()],
            ids,
            dropped,
        }
    }

    /// The first special token in `text`: its byte offset, text and id.
    fn next_special(&self, text: &str) -> Option<(usize, &'static str, u32)> {
        self.special
            .iter()
            .filter_map(|&(token, id)| text.find(token).map(|at| (at, token, id)))
            .min_by_key(|&(at, _, _)| at)
    }

    /// Normalises, splits and word-pieces text that holds no special token.
    fn tokenize_plain(&self, text: &str, ids: &mut Vec<u32>) {
        let normalized = normalize(text);
        let mut word = String::new();
        for c in normalized.chars() {
            if is_bert_whitespace(c) || is_bert_punctuation(c) {
                self.word_pieces(&word, ids);
                word.clear();
                if !is_bert_whitespace(c) {
                    self.word_pieces(c.encode_utf8(&mut [0; 4]), ids);
                }
            } else {
                word.push(c);
            }
        }
        self.word_pieces(&word, ids);
    }

    /// Greedy longest-match-first WordPiece of one word; a word with any part
    /// missing from the vocab is one `[UNK]`.
    fn word_pieces(&self, word: &str, ids: &mut Vec<u32>) {
        if word.is_empty() {
            return;
        }
        if word.chars().count() > MAX_WORD_CHARS {
            ids.push(self.unk);
            return;
        }
        let first = ids.len();
        let mut candidate = String::with_capacity(word.len() + 2);
        let mut start = 0;
        while start < word.len() {
            let mut end = word.len();
            let found = loop {
                candidate.clear();
                if start > 0 {
                    candidate.push_str("##");
                }
                candidate.push_str(&word[start..end]);
                if let Some(&id) = self.vocab.get(&candidate) {
                    break Some(id);
                }
                // Step back one character; a piece of no characters matches nothing.
                end = word[..end]
                    .char_indices()
                    .next_back()
                    .map_or(start, |(i, _)| i);
                if end <= start {
                    break None;
                }
            };
            match found {
                Some(id) => {
                    ids.push(id);
                    start = end;
                }
                None => {
                    ids.truncate(first);
                    ids.push(self.unk);
                    return;
                }
            }
        }
    }
}

/// BERT's normaliser, in HF's order: drop control characters and turn whitespace
/// into spaces, pad CJK ideographs with spaces, strip accents (NFD, then drop
/// category Mn), lowercase character by character (so `Σ` is always `σ`).
fn normalize(text: &str) -> String {
    let mut cleaned = String::with_capacity(text.len());
    for c in text.chars() {
        if c == '\0' || c == '\u{FFFD}' || is_bert_control(c) {
            continue;
        }
        if is_bert_whitespace(c) {
            cleaned.push(' ');
        } else if is_cjk(c) {
            cleaned.extend([' ', c, ' ']);
        } else {
            cleaned.push(c);
        }
    }
    cleaned
        .nfd()
        .filter(|&c| !is_nonspacing_mark(c))
        .flat_map(char::to_lowercase)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const VOCAB: &str = "[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\nthe\nquick\nbrown\nfox\n.\n,\n!\n\
                         un\n##want\n##ed\nrun\n##ning\n$\n5\n中\n国\ncafe\nσας\n'\ns\n";

    fn wp() -> WordPiece {
        WordPiece::from_vocab(VOCAB).unwrap()
    }

    fn ids(words: &[&str]) -> Vec<u32> {
        let wp = wp();
        words.iter().map(|w| wp.token_to_id(w).unwrap()).collect()
    }

    #[test]
    fn splits_on_whitespace_and_punctuation() {
        let wp = wp();
        assert_eq!(
            wp.tokenize("The quick,brown  fox!"),
            ids(&["the", "quick", ",", "brown", "fox", "!"])
        );
        assert_eq!(wp.tokenize("$5"), ids(&["$", "5"]));
        assert_eq!(wp.tokenize("fox's"), ids(&["fox", "'", "s"]));
        assert_eq!(wp.tokenize(" \t\n "), Vec::<u32>::new());
    }

    #[test]
    fn word_pieces_are_greedy_longest_first() {
        let wp = wp();
        assert_eq!(
            wp.tokenize("unwanted running"),
            ids(&["un", "##want", "##ed", "run", "##ning"])
        );
        // One missing piece makes the whole word unknown.
        assert_eq!(wp.tokenize("unwantedx fox"), ids(&["[UNK]", "fox"]));
        let long = "a".repeat(101);
        assert_eq!(wp.tokenize(&long), ids(&["[UNK]"]));
    }

    #[test]
    fn normalises_like_bert() {
        let wp = wp();
        assert_eq!(wp.tokenize("CAFÉ"), ids(&["cafe"]), "accents stripped");
        assert_eq!(wp.tokenize("cafe\u{301}"), ids(&["cafe"]), "decomposed too");
        assert_eq!(wp.tokenize("ΣΑΣ"), ids(&["[UNK]"]), "σασ: no final sigma");
        assert_eq!(wp.tokenize("σας"), ids(&["σας"]));
        assert_eq!(
            wp.tokenize("中国"),
            ids(&["中", "国"]),
            "CJK split per char"
        );
        assert_eq!(
            wp.tokenize("fo\u{200D}x\u{7}"),
            ids(&["fox"]),
            "controls dropped"
        );
        assert_eq!(wp.tokenize("the\u{A0}fox"), ids(&["the", "fox"]));
    }

    #[test]
    fn special_tokens_match_verbatim_only() {
        let wp = wp();
        assert_eq!(
            wp.tokenize("the [MASK] fox"),
            ids(&["the", "[MASK]", "fox"])
        );
        // Lowercase, it is plain text: `[`, `mask`, `]`, none in this vocab.
        assert_eq!(wp.tokenize("[mask]"), ids(&["[UNK]"; 3]));
    }

    #[test]
    fn encode_adds_cls_sep_and_truncates_before_sep() {
        let wp = wp();
        let enc = wp.encode("the quick brown fox", 4);
        assert_eq!(enc.ids, ids(&["[CLS]", "the", "quick", "[SEP]"]));
        assert_eq!(enc.attention_mask, vec![1; 4]);
        assert_eq!(enc.type_ids, vec![0; 4]);
        assert_eq!(wp.encode("", 128).ids, ids(&["[CLS]", "[SEP]"]));
        assert_eq!(wp.encode("fox", 0).ids, ids(&["[CLS]", "[SEP]"]));
    }

    #[test]
    fn vocab_needs_the_special_tokens() {
        let err = WordPiece::from_vocab("[UNK]\n[CLS]\n[SEP]\n").unwrap_err();
        assert_eq!(err.to_string(), "vocab.txt has no `[PAD]` token");
        let wp = WordPiece::from_vocab("[PAD]\r\n[UNK]\r\n[CLS]\r\n[SEP]\r\n").unwrap();
        assert_eq!(wp.pad_id(), 0, "CRLF line ends are trimmed");
    }
}
