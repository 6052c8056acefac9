//! SentencePiece vocabularies (GGUF `tokenizer.ggml.model` = `llama`: Llama 2,
//! Mistral v0.1-v0.3, TinyLlama, ...), tokenised as llama.cpp's `llm_tokenizer_spm`
//! does: text split into characters, then the adjacent pair whose joined text
//! is the best-scored token merged first (leftmost on a tie), until no pair
//! is a token; a character that is no token becomes its bytes' `<0xXX>` tokens.

use std::cmp::Ordering;
use std::collections::{BinaryHeap, HashMap};

/// SentencePiece's spelling of a space.
pub(crate) const SPACE: char = '\u{2581}';

/// The byte a byte-fallback token stands for: `<0x0A>` is 0x0A.
pub(crate) fn fallback_byte(text: &str) -> Option<u8> {
    let hex = text.strip_prefix("<0x")?.strip_suffix('>')?;
    (hex.len() == 2).then(|| u8::from_str_radix(hex, 16).ok())?
}

/// One symbol of the text being merged: a byte range, linked to its
/// neighbours (`usize::MAX`: none); a symbol merged into its left
/// neighbour is left empty.
#[derive(Clone, Copy)]
struct Symbol {
    start: usize,
    len: usize,
    prev: usize,
    next: usize,
}

const NONE: usize = usize::MAX;

/// A pair of adjacent symbols whose joined text is a token.
struct Bigram {
    score: f32,
    left: usize,
    right: usize,
    /// The joined length when queued: stale once either side changed.
    len: usize,
}

impl Ord for Bigram {
    /// The best score first, then the leftmost.
    fn cmp(&self, other: &Self) -> Ordering {
        self.score
            .total_cmp(&other.score)
            .then(other.left.cmp(&self.left))
    }
}

impl PartialOrd for Bigram {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Bigram {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Bigram {}

/// The tokens of `text` (spaces already spelled [`SPACE`]): `ids` maps
/// token text to id, `scores` is indexed by id, `byte_ids` gives each
/// byte's fallback token.
pub(crate) fn merge(
    text: &str,
    ids: &HashMap<String, u32>,
    scores: &[f32],
    byte_ids: &[Option<u32>; 256],
    out: &mut Vec<u32>,
) {
    let mut symbols: Vec<Symbol> = text
        .char_indices()
        .map(|(start, c)| Symbol {
            start,
            len: c.len_utf8(),
            prev: NONE,
            next: NONE,
        })
        .collect();
    let n = symbols.len();
    for (i, s) in symbols.iter_mut().enumerate() {
        s.prev = if i == 0 { NONE } else { i - 1 };
        s.next = if i + 1 == n { NONE } else { i + 1 };
    }
    let token = |s: &Symbol, len: usize| ids.get(&text[s.start..s.start + len]).copied();
    let mut queue = BinaryHeap::new();
    let try_pair = |symbols: &[Symbol], queue: &mut BinaryHeap<Bigram>, left: usize| {
        let Some(&l) = symbols.get(left) else { return };
        if l.next == NONE {
            return;
        }
        let len = l.len + symbols[l.next].len;
        if let Some(id) = token(&l, len) {
            queue.push(Bigram {
                score: scores.get(id as usize).copied().unwrap_or(0.0),
                left,
                right: l.next,
                len,
            });
        }
    };
    for left in 0..n.saturating_sub(1) {
        try_pair(&symbols, &mut queue, left);
    }
    while let Some(b) = queue.pop() {
        let (l, r) = (symbols[b.left], symbols[b.right]);
        if l.len == 0 || r.len == 0 || l.len + r.len != b.len {
            continue;
        }
        symbols[b.left].len = b.len;
        symbols[b.left].next = r.next;
        symbols[b.right].len = 0;
        if r.next != NONE {
            symbols[r.next].prev = b.left;
        }
        if l.prev != NONE {
            try_pair(&symbols, &mut queue, l.prev);
        }
        try_pair(&symbols, &mut queue, b.left);
    }
    // Every merged symbol is a token (only pairs that are get merged); a
    // character that is not is spelled by its bytes. (llama.cpp also keeps
    // the merges to undo for symbols that are no token, which never happens.)
    let mut at = if n == 0 { NONE } else { 0 };
    while at != NONE {
        let s = symbols[at];
        match token(&s, s.len) {
            Some(id) => out.push(id),
            None => out.extend(
                text.as_bytes()[s.start..s.start + s.len]
                    .iter()
                    .filter_map(|&b| byte_ids[usize::from(b)]),
            ),
        }
        at = s.next;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vocab(pieces: &[(&str, f32)]) -> (HashMap<String, u32>, Vec<f32>) {
        let ids = pieces
            .iter()
            .enumerate()
            .map(|(i, (t, _))| (t.to_string(), i as u32))
            .collect();
        (ids, pieces.iter().map(|&(_, s)| s).collect())
    }

    fn run(text: &str, pieces: &[(&str, f32)], byte_ids: &[Option<u32>; 256]) -> Vec<u32> {
        let (ids, scores) = vocab(pieces);
        let mut out = Vec::new();
        merge(text, &ids, &scores, byte_ids, &mut out);
        out
    }

    #[test]
    fn the_best_scored_pair_merges_first() {
        let none = [None; 256];
        let mut pieces = vec![
            ("a", 0.0),
            ("b", 0.0),
            ("c", 0.0),
            ("ab", -2.0),
            ("bc", -1.0),
        ];
        // `bc` outscores `ab`: a + bc.
        assert_eq!(run("abc", &pieces, &none), [0, 4]);
        // Then a + bc is a pair too.
        pieces.push(("abc", -3.0));
        assert_eq!(run("abc", &pieces, &none), [5]);
        let pieces = [("a", 0.0), ("b", 0.0), ("ab", -1.0), ("abab", -5.0)];
        assert_eq!(run("abab", &pieces, &none), [3]);
        // Equal scores: the leftmost pair first.
        let pieces = [("a", 0.0), ("aa", -1.0)];
        assert_eq!(run("aaa", &pieces, &none), [1, 0]);
        assert_eq!(run("", &pieces, &none), Vec::<u32>::new());
    }

    #[test]
    fn characters_without_a_token_fall_back_to_bytes() {
        let mut byte_ids = [None; 256];
        byte_ids[0xC3] = Some(7);
        byte_ids[0xA9] = Some(8);
        let pieces = [
            ("c", 0.0),
            ("a", 0.0),
            ("f", 0.0),
            ("caf", -1.0),
            ("ca", -2.0),
        ];
        assert_eq!(run("café", &pieces, &byte_ids), [3, 7, 8]);
    }

    #[test]
    fn byte_tokens_read_their_hex() {
        assert_eq!(fallback_byte("<0x0A>"), Some(10));
        assert_eq!(fallback_byte("<0xff>"), Some(255));
        assert_eq!(fallback_byte("<0x1>"), None);
        assert_eq!(fallback_byte("<s>"), None);
    }
}
