//! `embed`: sentence embeddings with a BERT-style encoder (all-MiniLM-L6-v2)
//! through `wasi:nn`.
//!
//! Config:
//!
//! | key                  | default  | meaning                                                    |
//! |----------------------|----------|------------------------------------------------------------|
//! | `model`              | `minilm` | the model's name in the node's registry (an ONNX graph)    |
//! | `vocab`              | required | object id of the model's `vocab.txt` in the object store   |
//! | `max_tokens`         | `128`    | most tokens per text, `[CLS]` and `[SEP]` included (≥ 2)   |
//! | `pad_to_multiple_of` | `16`     | sequence-length bucket (≥ 1; `1` pads to the longest only) |
//!
//! Input, per item: JSON `{"text": "..."}`, or the text itself as a `text/*`
//! item. Output, per item and keeping its key: JSON
//! `{"embedding": [f32; 384], "tokens": n, "truncated": bool, ...}`, the mean of
//! the token vectors under the attention mask, L2-normalised (cosine similarity
//! is a dot product), how many tokens the text became after truncation, whether
//! it was cut (its tail, past `max_tokens`, is not in the vector), and the
//! input's other fields but `text` (a dataset row's `id` goes through).
//!
//! ```text
//! POST {"text": "The cat sits on the mat."}
//!   → {"embedding": [0.1341771, -0.03290031, -0.02480374, …], "tokens": 9, "truncated": false}
//! ```
//!
//! The whole batch is one inference: texts are tokenised with BERT uncased
//! WordPiece ([`tok::WordPiece`]), padded to a common length, and passed as
//! `int64` `input_ids`, `attention_mask` and `token_type_ids` of shape
//! `[batch, seq]`; the graph's `last_hidden_state` (`f32`, or `f16`/`bf16` from a
//! halved model, `[batch, seq, hidden]`)
//! is then pooled. The graph and its execution context are made once, in
//! `init`.
//!
//! `seq` is the longest text's token count rounded up to a multiple of
//! `pad_to_multiple_of` (at most `max_tokens`): 9 tokens run as 16, 17 as 32.
//! That is what lets the node batch across instances: it merges concurrent
//! `compute` calls only when their inputs agree in every dimension but the
//! batch one, so single-text calls of different lengths merge once they fall
//! in the same bucket. The padding has attention mask 0 and is left out of
//! the mean, so the embeddings are the same as unpadded ones (to float
//! rounding); it costs some compute on the padded positions when calls do
//! not merge. Set `pad_to_multiple_of=1` for one-off calls on a node that
//! serves few concurrent requests.
//!
//! Errors: an item that is not JSON or has no string `text` is `bad-input`
//! naming the item; a `wasi:nn` failure carries its code and message, as
//! `retryable` for `timeout`, `runtime-error` and `unknown`, `bad-input` for
//! `too-large` (send fewer or shorter texts) and `fatal` otherwise.

use encoder::{Embedding, Encoder};
use serde::Serialize;
use weft_sdk::{Config, Item, Stage, StageError};

/// The stage: an [`Encoder`] over each batch.
#[derive(Debug)]
pub struct Embed {
    encoder: Encoder,
}

#[derive(Serialize)]
struct Output {
    embedding: Vec<f32>,
    tokens: usize,
    truncated: bool,
    /// The input's other fields (an `id`), passed on.
    #[serde(flatten)]
    rest: serde_json::Map<String, serde_json::Value>,
}

/// What an answer has itself, and the input's text: not passed on.
const USED: [&str; 4] = ["text", "embedding", "tokens", "truncated"];

impl Stage for Embed {
    fn init(config: Config) -> Result<Self, String> {
        config.expect_keys("embed", &encoder::KEYS)?;
        Ok(Embed {
            encoder: Encoder::from_config(&config, "embed", "")?,
        })
    }

    fn process(&mut self, batch: Vec<Item>) -> Result<Vec<Item>, StageError> {
        let texts = batch
            .iter()
            .enumerate()
            .map(|(index, item)| encoder::text_of("embed", "text", index, item))
            .collect::<Result<Vec<_>, _>>()?;
        self.encoder
            .embed(&texts)?
            .into_iter()
            .zip(&batch)
            .map(
                |(
                    Embedding {
                        vector,
                        tokens,
                        truncated,
                    },
                    item,
                )| {
                    let out = Output {
                        embedding: vector,
                        tokens,
                        truncated,
                        rest: encoder::other_fields(item, &USED),
                    };
                    Ok(Item::json(&out)?.with_key_from(item))
                },
            )
            .collect()
    }
}

weft_sdk::export_stage!(Embed);

#[cfg(test)]
mod tests {
    use weft_sdk::objects;
    use weft_sdk::testing::Harness;

    use super::*;

    const VOCAB: &str = "[PAD]\n[UNK]\n[CLS]\n[SEP]\nhello\n";

    fn build(config: &[(&str, &str)], objects: &[&[u8]]) -> Result<Harness<Embed>, String> {
        objects
            .iter()
            .fold(Harness::<Embed>::builder(), |b, o| b.object(o))
            .config(config)
            .build()
    }

    #[test]
    fn vocab_is_required() {
        let err = build(&[], &[]).unwrap_err();
        assert!(err.contains("config `vocab` is required"), "{err}");
        assert!(err.contains("vocab.txt"), "{err}");
    }

    #[test]
    fn vocab_must_exist_and_be_a_vocab() {
        let err = build(&[("vocab", "nope")], &[]).unwrap_err();
        assert!(
            err.contains("could not read vocab object \"nope\""),
            "{err}"
        );
        let id = objects::put(b"just words\n");
        let err = build(&[("vocab", &id)], &[b"just words\n"]).unwrap_err();
        assert!(err.contains("has no `[UNK]` token"), "{err}");
    }

    #[test]
    fn loads_the_vocab_then_the_model() {
        let id = objects::put(VOCAB);
        let err = build(&[("vocab", &id), ("model", "mini")], &[VOCAB.as_bytes()]).unwrap_err();
        // Natively there is no inference backend: getting this far means the
        // vocab parsed.
        assert!(
            err.starts_with("embed: could not load model `mini`: unsupported-operation"),
            "{err}"
        );
    }

    #[test]
    fn max_tokens_must_fit_cls_and_sep() {
        let err = build(&[("max_tokens", "1")], &[]).unwrap_err();
        assert!(err.contains("at least 2"), "{err}");
        let err = build(&[("max_tokens", "many")], &[]).unwrap_err();
        assert!(err.contains("`max_tokens`"), "{err}");
    }

    #[test]
    fn pad_multiple_must_be_positive() {
        let err = build(&[("pad_to_multiple_of", "0")], &[]).unwrap_err();
        assert!(
            err.contains("`pad_to_multiple_of` must be at least 1"),
            "{err}"
        );
        let err = build(&[("pad_to_multiple_of", "x")], &[]).unwrap_err();
        assert!(err.contains("`pad_to_multiple_of`"), "{err}");
    }
}
