//! `count`: word and character counts, with running totals across batches.
//!
//! Input, per item: JSON `{"text": "..."}`. Output, per item, keeping the key:
//! JSON `{"words": n, "chars": c, "total_words": W, "total_items": I}`.
//!
//! - `words` follows Unicode word segmentation (UAX #29, the
//!   `unicode-segmentation` crate's `unicode_words`): punctuation is not a word,
//!   `don't` is one word, and each CJK ideograph is a word. Config
//!   `words=whitespace` counts whitespace-separated tokens instead (what Python's
//!   `str.split()` gives, for like-for-like benchmarks).
//! - `chars` counts Unicode scalar values (not bytes, not graphemes).
//! - `total_words` and `total_items` are running totals kept in stage state under
//!   key `totals` (JSON `{"words": W, "items": I}`), updated once per batch: every
//!   item of a batch reports the totals after the whole batch.
//!
//! A bad item fails the whole batch with `bad-input` before totals change.

use serde::{Deserialize, Serialize};
use unicode_segmentation::UnicodeSegmentation;
use weft_sdk::{Config, Item, Stage, StageError, state};

/// The state key holding [`Totals`].
const TOTALS: &str = "totals";

/// The stage; its only setting is how to find words.
#[derive(Debug)]
pub struct Count {
    words: Words,
}

/// How words are counted (config `words`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Words {
    /// UAX #29 word boundaries (`words=unicode`, the default).
    Unicode,
    /// Whitespace-separated tokens (`words=whitespace`).
    Whitespace,
}

impl Words {
    /// Counts the words of `text`.
    pub fn count(self, text: &str) -> u64 {
        let n = match self {
            Words::Unicode => text.unicode_words().count(),
            Words::Whitespace => text.split_whitespace().count(),
        };
        n as u64
    }
}

/// Running totals across every batch this stage has seen.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Totals {
    words: u64,
    items: u64,
}

#[derive(Deserialize)]
struct Doc {
    text: String,
}

#[derive(Serialize)]
struct Counts {
    words: u64,
    chars: u64,
    total_words: u64,
    total_items: u64,
}

impl Stage for Count {
    fn init(config: Config) -> Result<Self, String> {
        config.expect_keys("count", &["words"])?;
        let words = match config.get_or("words", "unicode") {
            "unicode" => Words::Unicode,
            "whitespace" => Words::Whitespace,
            other => {
                return Err(format!(
                    "count: config `words` = {other:?} is not valid: use \"unicode\" or \"whitespace\""
                ));
            }
        };
        Ok(Count { words })
    }

    fn process(&mut self, batch: Vec<Item>) -> Result<Vec<Item>, StageError> {
        let mut counted = Vec::with_capacity(batch.len());
        for (index, item) in batch.iter().enumerate() {
            let doc: Doc = item.parse_json().map_err(|e| {
                StageError::bad_input(format!(
                    "count: item {index}: expected JSON {{\"text\": string}}: {}",
                    e.message()
                ))
            })?;
            let chars = doc.text.chars().count() as u64;
            counted.push((self.words.count(&doc.text), chars));
        }

        let mut totals: Totals = state::get_json(TOTALS)?.unwrap_or_default();
        totals.items += counted.len() as u64;
        totals.words += counted.iter().map(|(words, _)| words).sum::<u64>();
        state::set_json(TOTALS, &totals)?;

        batch
            .iter()
            .zip(counted)
            .map(|(item, (words, chars))| {
                let counts = Counts {
                    words,
                    chars,
                    total_words: totals.words,
                    total_items: totals.items,
                };
                Ok(Item::json(&counts)?.with_key_from(item))
            })
            .collect()
    }
}

weft_sdk::export_stage!(Count);

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};
    use weft_sdk::testing::Harness;

    use super::*;

    fn doc(text: &str) -> Item {
        Item::json(&json!({ "text": text })).unwrap()
    }

    fn values(items: &[Item]) -> Vec<Value> {
        items.iter().map(|i| i.parse_json().unwrap()).collect()
    }

    #[test]
    fn counts_unicode_words_and_scalar_values() {
        let mut h = Harness::<Count>::new(&[]);
        let out = values(&h.process(vec![doc("Don't panic, école! 東京")]).unwrap());
        // don't | panic | école | 東 | 京
        assert_eq!(out[0]["words"], 5);
        assert_eq!(out[0]["chars"], 22);
    }

    #[test]
    fn whitespace_mode_splits_on_whitespace_only() {
        let mut h = Harness::<Count>::new(&[("words", "whitespace")]);
        let out = values(&h.process(vec![doc("Don't panic , école! 東京")]).unwrap());
        assert_eq!(out[0]["words"], 5);
    }

    #[test]
    fn totals_run_across_batches_and_are_per_batch() {
        let mut h = Harness::<Count>::new(&[]);
        let first = values(&h.process(vec![doc("a b"), doc("c")]).unwrap());
        for v in &first {
            assert_eq!(
                (v["total_words"].clone(), v["total_items"].clone()),
                (json!(3), json!(2))
            );
        }
        let second = values(&h.process(vec![doc("d e f g").with_key("k")]).unwrap());
        assert_eq!(second[0]["words"], 4);
        assert_eq!(second[0]["total_words"], 7);
        assert_eq!(second[0]["total_items"], 3);
        assert_eq!(
            h.state_json::<Value>(TOTALS),
            Some(json!({"words": 7, "items": 3}))
        );
    }

    #[test]
    fn resumes_from_seeded_state() {
        let mut h = Harness::<Count>::builder()
            .state_json(TOTALS, &json!({"words": 100, "items": 10}))
            .build()
            .unwrap();
        let out = values(&h.process(vec![doc("one two")]).unwrap());
        assert_eq!(
            (out[0]["total_words"].clone(), out[0]["total_items"].clone()),
            (json!(102), json!(11))
        );
    }

    #[test]
    fn bad_item_leaves_totals_untouched() {
        let mut h = Harness::<Count>::new(&[]);
        let err = h.process(vec![doc("a"), Item::text("nope")]).unwrap_err();
        assert!(
            matches!(&err, StageError::BadInput(m) if m.contains("item 1")),
            "{err:?}"
        );
        assert_eq!(h.state(TOTALS), None);
    }

    #[test]
    fn corrupt_totals_are_fatal() {
        let mut h = Harness::<Count>::builder()
            .state(TOTALS, b"garbage")
            .build()
            .unwrap();
        let err = h.process(vec![doc("a")]).unwrap_err();
        assert!(matches!(err, StageError::Fatal(_)), "{err:?}");
    }

    #[test]
    fn unknown_word_mode_fails_init() {
        let err = Harness::<Count>::try_new(&[("words", "bytes")]).unwrap_err();
        assert!(err.contains("\"bytes\""), "{err}");
    }
}
