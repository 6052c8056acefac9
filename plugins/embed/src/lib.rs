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
//! `{"embedding": [f32; 384], "tokens": n}`, the mean of the token vectors under
//! the attention mask, L2-normalised (cosine similarity is a dot product), and
//! how many tokens the text became after truncation.
//!
//! ```text
//! POST {"text": "The cat sits on the mat."}
//!   → {"embedding": [0.1341771, -0.03290031, -0.02480374, …], "tokens": 9}
//! ```
//!
//! The whole batch is one inference: texts are tokenised with BERT uncased
//! WordPiece ([`tok::WordPiece`]), padded to a common length, and passed as
//! `int64` `input_ids`, `attention_mask` and `token_type_ids` of shape
//! `[batch, seq]`; the graph's `last_hidden_state` (`f32 [batch, seq, hidden]`)
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

mod batch;
mod pool;

use std::fmt;

use serde::Serialize;
use serde_json::Value;
use tok::WordPiece;
use weft_sdk::nn::errors::{Error as NnError, ErrorCode};
use weft_sdk::nn::graph::{self, Graph};
use weft_sdk::nn::inference::GraphExecutionContext;
use weft_sdk::nn::tensor::TensorType;
use weft_sdk::{Config, Item, Stage, StageError, objects};

use crate::batch::Padded;

/// The graph output this stage pools.
const OUTPUT: &str = "last_hidden_state";

/// The stage: the tokenizer and one execution context on the model.
pub struct Embed {
    model: String,
    tokenizer: WordPiece,
    max_tokens: usize,
    pad_to_multiple_of: usize,
    // Declared before the graph, so dropped before it.
    context: GraphExecutionContext,
    _graph: Graph,
}

/// One output item.
#[derive(Serialize)]
struct Embedding {
    embedding: Vec<f32>,
    tokens: usize,
}

impl Stage for Embed {
    fn init(config: Config) -> Result<Self, String> {
        let model = config.get_or("model", "minilm").to_string();
        let max_tokens: usize = config
            .parse_or("max_tokens", tok::DEFAULT_MAX_LEN)
            .map_err(|e| format!("embed: {e}"))?;
        if max_tokens < 2 {
            return Err(format!(
                "embed: `max_tokens` ({max_tokens}) must be at least 2, for [CLS] and [SEP]"
            ));
        }
        let pad_to_multiple_of: usize = config
            .parse_or("pad_to_multiple_of", 16)
            .map_err(|e| format!("embed: {e}"))?;
        if pad_to_multiple_of < 1 {
            return Err(
                "embed: `pad_to_multiple_of` must be at least 1 (1 pads to the longest text only)"
                    .to_string(),
            );
        }
        let tokenizer = load_vocab(&config)?;
        let graph = graph::load_by_name(&model)
            .map_err(|e| format!("embed: could not load model `{model}`: {e}"))?;
        let context = graph
            .init_execution_context()
            .map_err(|e| format!("embed: could not start a session on model `{model}`: {e}"))?;
        Ok(Embed {
            model,
            tokenizer,
            max_tokens,
            pad_to_multiple_of,
            context,
            _graph: graph,
        })
    }

    fn process(&mut self, batch: Vec<Item>) -> Result<Vec<Item>, StageError> {
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        let encodings = batch
            .iter()
            .enumerate()
            .map(|(index, item)| {
                Ok(self
                    .tokenizer
                    .encode(&text_of(index, item)?, self.max_tokens))
            })
            .collect::<Result<Vec<_>, StageError>>()?;
        let padded = Padded::new(
            &encodings,
            self.tokenizer.pad_id(),
            self.pad_to_multiple_of,
            self.max_tokens,
        );
        let outputs = self
            .context
            .compute(padded.tensors())
            .map_err(|e| self.nn_error(&padded, e))?;
        let (_, hidden) = outputs
            .into_iter()
            .find(|(name, _)| name == OUTPUT)
            .ok_or_else(|| self.bad_output("has no output `last_hidden_state`"))?;
        let dims = hidden.dimensions();
        let dim = match dims[..] {
            [b, s, d] if b as usize == padded.batch && s as usize == padded.seq && d > 0 => d,
            _ => return Err(self.bad_output(&format!("gave `{OUTPUT}` of shape {dims:?}"))),
        };
        if hidden.ty() != TensorType::Fp32 {
            return Err(self.bad_output(&format!("gave `{OUTPUT}` of type {:?}", hidden.ty())));
        }
        let data: Vec<f32> = hidden
            .data()
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        let dim = dim as usize;
        if data.len() != padded.batch * padded.seq * dim {
            return Err(
                self.bad_output(&format!("gave {} bytes for shape {dims:?}", data.len() * 4))
            );
        }
        pool::mean_pool(&data, &padded.attention_mask, padded.seq, dim)
            .into_iter()
            .zip(batch.iter().zip(&encodings))
            .map(|(mut embedding, (item, encoding))| {
                pool::l2_normalize(&mut embedding);
                let out = Embedding {
                    embedding,
                    tokens: encoding.ids.len(),
                };
                Ok(Item::json(&out)?.with_key_from(item))
            })
            .collect()
    }
}

weft_sdk::export_stage!(Embed);

impl Embed {
    /// Classifies a failed `compute`: the code says whether a retry can help.
    fn nn_error(&self, padded: &Padded, e: NnError) -> StageError {
        let message = format!(
            "embed: model `{}` failed on a batch of {} texts of {} tokens: {e}",
            self.model, padded.batch, padded.seq
        );
        match e.code() {
            ErrorCode::Timeout | ErrorCode::RuntimeError | ErrorCode::Unknown => {
                StageError::retryable(message)
            }
            ErrorCode::TooLarge => {
                StageError::bad_input(format!("{message}; send fewer or shorter texts"))
            }
            _ => StageError::fatal(message),
        }
    }

    /// The model is not the encoder this stage expects.
    fn bad_output(&self, what: &str) -> StageError {
        StageError::fatal(format!(
            "embed: model `{}` {what}; expected `{OUTPUT}` f32 [batch, seq, hidden] \
             (is it a BERT-style sentence encoder?)",
            self.model
        ))
    }
}

impl fmt::Debug for Embed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Embed")
            .field("model", &self.model)
            .field("vocab_size", &self.tokenizer.len())
            .field("max_tokens", &self.max_tokens)
            .field("pad_to_multiple_of", &self.pad_to_multiple_of)
            .finish_non_exhaustive()
    }
}

/// Reads `vocab.txt` from the object store, by the id in config `vocab`.
fn load_vocab(config: &Config) -> Result<WordPiece, String> {
    let id: String = config.parse("vocab").map_err(|e| {
        format!("embed: {e}: the object id of the model's vocab.txt, from uploading it")
    })?;
    let bytes =
        objects::get(&id).map_err(|e| format!("embed: could not read vocab object {id:?}: {e}"))?;
    WordPiece::from_bytes(&bytes).map_err(|e| format!("embed: vocab object {id:?}: {e}"))
}

/// The text of item `index`: the whole payload of a `text/*` item, else the
/// string `text` of a JSON object.
fn text_of(index: usize, item: &Item) -> Result<String, StageError> {
    let bad = |what: &str| {
        StageError::bad_input(format!(
            "embed: item {index}: {what}; expected JSON {{\"text\": string}} or a text/plain item"
        ))
    };
    if item.content_type.starts_with("text/") {
        return Ok(item.as_str().map_err(|e| bad(e.message()))?.to_string());
    }
    let value: Value = item.parse_json().map_err(|e| bad(e.message()))?;
    match value.get("text") {
        Some(Value::String(text)) => Ok(text.clone()),
        Some(other) => Err(bad(&format!("`text` is {other}, not a string"))),
        None => Err(bad("missing `text`")),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;
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

    #[test]
    fn reads_json_or_plain_text() {
        let json_item = Item::json(&json!({"text": "hi", "id": 3})).unwrap();
        assert_eq!(text_of(0, &json_item).unwrap(), "hi");
        assert_eq!(text_of(0, &Item::text("plain")).unwrap(), "plain");
    }

    #[test]
    fn missing_text_is_bad_input() {
        let err = text_of(4, &Item::json(&json!({"txt": "hi"})).unwrap()).unwrap_err();
        assert!(
            matches!(&err, StageError::BadInput(m) if m.contains("item 4: missing `text`")),
            "{err:?}"
        );
        let err = text_of(0, &Item::json(&json!({"text": 7})).unwrap()).unwrap_err();
        assert!(
            err.message().contains("`text` is 7, not a string"),
            "{err:?}"
        );
        let err = text_of(0, &Item::bytes("application/json", "{")).unwrap_err();
        assert!(matches!(err, StageError::BadInput(_)), "{err:?}");
    }
}
