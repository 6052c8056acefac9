//! `chunk`: splits documents into word chunks, streaming each one as it is made.
//!
//! Input, per item: JSON `{"text": "..."}`. For chunk `i` of `n` of a document it
//! emits a partial result, the item `{"index": i, "text": "..."}` keyed
//! `"<input key, or the item's index in the batch>:<i>"`, then progress
//! `(i + 1, Some(n), "chunk i+1/n")`; the batch's output is every chunk of every
//! document, in order.
//!
//! Words are whitespace-separated tokens, and a chunk's text is its words joined by
//! single spaces. Config `size` (default 64) is the most words per chunk and
//! `overlap` (default 0, less than `size`) how many words consecutive chunks share.
//! A document with no words has no chunks.

use serde::{Deserialize, Serialize};
use weft_sdk::{Config, Item, Stage, StageError, emit};

/// The stage, with its chunking settings.
#[derive(Debug)]
pub struct Chunk {
    size: usize,
    overlap: usize,
}

#[derive(Deserialize)]
struct Doc {
    text: String,
}

#[derive(Serialize)]
struct Piece<'a> {
    index: usize,
    text: &'a str,
}

impl Stage for Chunk {
    fn init(config: Config) -> Result<Self, String> {
        config.expect_keys("chunk", &["size", "overlap"])?;
        let size: usize = config
            .parse_or("size", 64)
            .map_err(|e| format!("chunk: {e}"))?;
        let overlap: usize = config
            .parse_or("overlap", 0)
            .map_err(|e| format!("chunk: {e}"))?;
        if size == 0 {
            return Err("chunk: `size` must be at least 1".into());
        }
        if overlap >= size {
            return Err(format!(
                "chunk: `overlap` ({overlap}) must be less than `size` ({size}), \
                 or chunking would never advance"
            ));
        }
        Ok(Chunk { size, overlap })
    }

    fn process(&mut self, batch: Vec<Item>) -> Result<Vec<Item>, StageError> {
        // Decode everything first, so a bad batch streams nothing.
        let docs = batch
            .iter()
            .enumerate()
            .map(|(index, item)| {
                item.parse_json::<Doc>().map_err(|e| {
                    StageError::bad_input(format!(
                        "chunk: item {index}: expected JSON {{\"text\": string}}: {}",
                        e.message()
                    ))
                })
            })
            .collect::<Result<Vec<_>, _>>()?;

        let mut out = Vec::new();
        for (index, (item, doc)) in batch.iter().zip(&docs).enumerate() {
            let base = item.key.clone().unwrap_or_else(|| index.to_string());
            let texts = self.split(&doc.text);
            let n = texts.len();
            for (i, text) in texts.iter().enumerate() {
                let chunk = Item::json(&Piece { index: i, text })?.with_key(format!("{base}:{i}"));
                emit::partial(chunk.clone());
                emit::progress(i as u64 + 1, Some(n as u64), format!("chunk {}/{n}", i + 1));
                out.push(chunk);
            }
        }
        Ok(out)
    }
}

weft_sdk::export_stage!(Chunk);

impl Chunk {
    /// The chunk texts of one document: windows of `size` words, `size - overlap`
    /// apart, the last one ending at the last word.
    fn split(&self, text: &str) -> Vec<String> {
        let words: Vec<&str> = text.split_whitespace().collect();
        let step = self.size - self.overlap;
        let mut chunks = Vec::new();
        let mut start = 0;
        while start < words.len() {
            let end = (start + self.size).min(words.len());
            chunks.push(words[start..end].join(" "));
            if end == words.len() {
                break;
            }
            start += step;
        }
        chunks
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};
    use weft_sdk::testing::{Harness, Progress};

    use super::*;

    fn doc(text: &str) -> Item {
        Item::json(&json!({ "text": text })).unwrap()
    }

    fn texts(items: &[Item]) -> Vec<String> {
        items
            .iter()
            .map(|i| {
                i.parse_json::<Value>().unwrap()["text"]
                    .as_str()
                    .unwrap()
                    .to_string()
            })
            .collect()
    }

    #[test]
    fn splits_streams_and_returns_chunks() {
        let mut h = Harness::<Chunk>::new(&[("size", "2")]);
        let out = h.process(vec![doc("a b  c\nd e").with_key("doc")]).unwrap();
        assert_eq!(texts(&out), ["a b", "c d", "e"]);
        assert_eq!(
            out[2].parse_json::<Value>().unwrap(),
            json!({"index": 2, "text": "e"})
        );
        let keys: Vec<_> = out.iter().map(|i| i.key.clone().unwrap()).collect();
        assert_eq!(keys, ["doc:0", "doc:1", "doc:2"]);
        assert_eq!(h.partials(), out);
        let last = Progress {
            done: 3,
            total: Some(3),
            message: "chunk 3/3".into(),
        };
        assert_eq!(h.progress().len(), 3);
        assert_eq!(h.progress()[2], last);
    }

    #[test]
    fn a_misspelt_config_key_is_refused() {
        let err = Harness::<Chunk>::try_new(&[("size", "4"), ("overlapp", "2")]).unwrap_err();
        assert_eq!(
            err,
            "chunk: unknown config key `overlapp`: did you mean `overlap`? (it reads: size, overlap)"
        );
    }

    #[test]
    fn overlap_shares_words_without_a_redundant_tail() {
        let mut h = Harness::<Chunk>::new(&[("size", "4"), ("overlap", "2")]);
        let out = h.process(vec![doc("1 2 3 4 5 6 7 8")]).unwrap();
        assert_eq!(texts(&out), ["1 2 3 4", "3 4 5 6", "5 6 7 8"]);
    }

    #[test]
    fn default_size_is_64_and_keys_fall_back_to_the_index() {
        let words: Vec<String> = (0..130).map(|i| i.to_string()).collect();
        let mut h = Harness::<Chunk>::new(&[]);
        let out = h.process(vec![doc("x"), doc(&words.join(" "))]).unwrap();
        assert_eq!(out.len(), 1 + 3);
        assert_eq!(out[0].key.as_deref(), Some("0:0"));
        assert_eq!(out[3].key.as_deref(), Some("1:2"));
        assert_eq!(texts(&out)[3], "128 129");
    }

    #[test]
    fn empty_document_has_no_chunks() {
        let mut h = Harness::<Chunk>::new(&[]);
        assert!(h.process(vec![doc("  \n ")]).unwrap().is_empty());
        assert!(h.partials().is_empty() && h.progress().is_empty());
    }

    #[test]
    fn overlap_must_be_less_than_size() {
        let err = Harness::<Chunk>::try_new(&[("size", "4"), ("overlap", "4")]).unwrap_err();
        assert!(
            err.contains("`overlap` (4) must be less than `size` (4)"),
            "{err}"
        );
        assert!(Harness::<Chunk>::try_new(&[("size", "0")]).is_err());
        assert!(
            Harness::<Chunk>::try_new(&[("size", "-1")])
                .unwrap_err()
                .contains("size")
        );
    }

    #[test]
    fn bad_item_streams_nothing() {
        let mut h = Harness::<Chunk>::new(&[]);
        let err = h.process(vec![doc("fine"), Item::text("x")]).unwrap_err();
        assert!(
            matches!(&err, StageError::BadInput(m) if m.contains("item 1")),
            "{err:?}"
        );
        assert!(h.partials().is_empty());
    }
}
