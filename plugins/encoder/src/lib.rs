//! Sentence embeddings with a BERT-style encoder (all-MiniLM-L6-v2) through
//! `wasi:nn`, for stages: [`Encoder`] tokenises texts with BERT uncased
//! WordPiece ([`tok::WordPiece`]), runs the whole batch as one inference, and
//! mean-pools and L2-normalises the token vectors the way
//! sentence-transformers does. The `embed`, `finetune` and `classify` stages
//! are built on it.
//!
//! Config keys it reads (the stage chooses the prefix, `""` for `embed`):
//!
//! | key                  | default  | meaning                                                    |
//! |----------------------|----------|------------------------------------------------------------|
//! | `model`              | `minilm` | the model's name in the node's registry (an ONNX graph)    |
//! | `vocab`              | required | object id of the model's `vocab.txt` in the object store   |
//! | `max_tokens`         | `128`    | most tokens per text, `[CLS]` and `[SEP]` included (≥ 2)   |
//! | `pad_to_multiple_of` | `16`     | sequence-length bucket (≥ 1; `1` pads to the longest only) |
//!
//! A batch is passed as `int64` `input_ids`, `attention_mask` and
//! `token_type_ids` of shape `[batch, seq]`; the graph's `last_hidden_state`
//! (`f32`, or `f16`/`bf16` from a halved model, `[batch, seq, hidden]`) is
//! then pooled. `seq` is the longest text's
//! token count rounded up to a multiple of `pad_to_multiple_of` (at most
//! `max_tokens`), which lets the node merge concurrent calls from different
//! instances; padding is masked out of the mean.

mod batch;
mod pool;

use std::fmt;

use serde_json::Value;
use tok::WordPiece;
use weft_sdk::nn::errors::{Error as NnError, ErrorCode};
use weft_sdk::nn::graph::{self, Graph};
use weft_sdk::nn::inference::GraphExecutionContext;
use weft_sdk::{Config, Item, StageError, objects};

use crate::batch::Padded;

/// The graph output that is pooled.
pub const OUTPUT: &str = "last_hidden_state";

/// One text's embedding.
#[derive(Debug, Clone, PartialEq)]
pub struct Embedding {
    /// Unit-length vector (cosine similarity is a dot product).
    pub vector: Vec<f32>,
    /// Tokens the text became after truncation, `[CLS]` and `[SEP]` included.
    pub tokens: usize,
    /// Whether the text had more tokens than `max_tokens` (its tail is not in
    /// the vector).
    pub truncated: bool,
}

/// A loaded encoder: tokenizer, graph and execution context, made once per
/// instance.
pub struct Encoder {
    who: String,
    model: String,
    tokenizer: WordPiece,
    max_tokens: usize,
    pad_to_multiple_of: usize,
    // Declared before the graph, so dropped before it.
    context: GraphExecutionContext,
    _graph: Graph,
}

/// The config keys [`Encoder::from_config`] reads (with no prefix).
pub const KEYS: [&str; 4] = ["model", "vocab", "max_tokens", "pad_to_multiple_of"];

impl Encoder {
    /// Loads the vocabulary and the model named by `config`'s keys, each
    /// looked up as `prefix` + key (`model`, `vocab`, `max_tokens`,
    /// `pad_to_multiple_of`). `who` (the stage name) starts every error.
    pub fn from_config(config: &Config, who: &str, prefix: &str) -> Result<Self, String> {
        let key = |k: &str| format!("{prefix}{k}");
        let model = config.get_or(&key("model"), "minilm").to_string();
        let max_tokens: usize = config
            .parse_or(&key("max_tokens"), tok::DEFAULT_MAX_LEN)
            .map_err(|e| format!("{who}: {e}"))?;
        if max_tokens < 2 {
            return Err(format!(
                "{who}: `{}` ({max_tokens}) must be at least 2, for [CLS] and [SEP]",
                key("max_tokens")
            ));
        }
        let pad_to_multiple_of: usize = config
            .parse_or(&key("pad_to_multiple_of"), 16)
            .map_err(|e| format!("{who}: {e}"))?;
        if pad_to_multiple_of < 1 {
            return Err(format!(
                "{who}: `{}` must be at least 1 (1 pads to the longest text only)",
                key("pad_to_multiple_of")
            ));
        }
        let tokenizer = load_vocab(config, who, &key("vocab"))?;
        let graph = graph::load_by_name(&model)
            .map_err(|e| format!("{who}: could not load model `{model}`: {e}"))?;
        let context = graph
            .init_execution_context()
            .map_err(|e| format!("{who}: could not start a session on model `{model}`: {e}"))?;
        Ok(Encoder {
            who: who.to_string(),
            model,
            tokenizer,
            max_tokens,
            pad_to_multiple_of,
            context,
            _graph: graph,
        })
    }

    /// Embeds `texts` in one inference, in order.
    pub fn embed<S: AsRef<str>>(&self, texts: &[S]) -> Result<Vec<Embedding>, StageError> {
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        let encodings: Vec<_> = texts
            .iter()
            .map(|t| self.tokenizer.encode(t.as_ref(), self.max_tokens))
            .collect();
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
        // (An fp16 or bf16 model gives its own type: widened exactly.)
        let data = weft_sdk::nn::to_f32(&hidden).ok_or_else(|| {
            self.bad_output(&format!("gave `{OUTPUT}` of type {:?}", hidden.ty()))
        })?;
        let dim = dim as usize;
        if data.len() != padded.batch * padded.seq * dim {
            return Err(self.bad_output(&format!("gave {} values for shape {dims:?}", data.len())));
        }
        Ok(
            pool::mean_pool(&data, &padded.attention_mask, padded.seq, dim)
                .into_iter()
                .zip(&encodings)
                .map(|(mut vector, encoding)| {
                    pool::l2_normalize(&mut vector);
                    Embedding {
                        vector,
                        tokens: encoding.ids.len(),
                        truncated: encoding.dropped > 0,
                    }
                })
                .collect(),
        )
    }

    fn nn_error(&self, padded: &Padded, e: NnError) -> StageError {
        let message = format!(
            "{}: model `{}` failed on a batch of {} texts of {} tokens: {e}",
            self.who, self.model, padded.batch, padded.seq
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

    fn bad_output(&self, what: &str) -> StageError {
        StageError::fatal(format!(
            "{}: model `{}` {what}; expected `{OUTPUT}` f32 (or f16, bf16) [batch, seq, hidden] \
             (is it a BERT-style sentence encoder?)",
            self.who, self.model
        ))
    }
}

impl fmt::Debug for Encoder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Encoder")
            .field("model", &self.model)
            .field("vocab_size", &self.tokenizer.len())
            .field("max_tokens", &self.max_tokens)
            .field("pad_to_multiple_of", &self.pad_to_multiple_of)
            .finish_non_exhaustive()
    }
}

fn load_vocab(config: &Config, who: &str, key: &str) -> Result<WordPiece, String> {
    let id: String = config.parse(key).map_err(|e| {
        format!("{who}: {e}: the object id of the model's vocab.txt, from uploading it")
    })?;
    let bytes =
        objects::get(&id).map_err(|e| format!("{who}: could not read vocab object {id:?}: {e}"))?;
    WordPiece::from_bytes(&bytes).map_err(|e| format!("{who}: vocab object {id:?}: {e}"))
}

/// The text of item `index`: JSON `{"<field>": "..."}`, or the item itself
/// when it is `text/*`. Anything else is `bad-input` that says what to send.
pub fn text_of(who: &str, field: &str, index: usize, item: &Item) -> Result<String, StageError> {
    let bad = |what: &str| {
        StageError::bad_input(format!(
            "{who}: item {index}: {what}; expected JSON {{\"{field}\": string}} or a text/plain item"
        ))
    };
    if item.content_type.starts_with("text/") {
        return Ok(item.as_str().map_err(|e| bad(e.message()))?.to_string());
    }
    let value: Value = item.parse_json().map_err(|e| bad(e.message()))?;
    match value.get(field) {
        Some(Value::String(text)) => Ok(text.clone()),
        Some(other) => Err(bad(&format!("`{field}` is {other}, not a string"))),
        None => Err(bad(&format!("missing `{field}`"))),
    }
}

/// The fields of JSON object item `item` but those named in `used` (its
/// text, and those the answer has itself): what an answer passes on, so a
/// row's `id` goes through a batch job with it. Empty for other items.
pub fn other_fields(item: &Item, used: &[&str]) -> serde_json::Map<String, Value> {
    // A text item is its text, whatever it looks like (as [`text_of`] reads it).
    if item.content_type.starts_with("text/") {
        return serde_json::Map::new();
    }
    match item.parse_json::<Value>() {
        Ok(Value::Object(mut fields)) => {
            fields.retain(|key, _| !used.contains(&key.as_str()));
            fields
        }
        _ => serde_json::Map::new(),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn other_fields_leave_out_the_used_ones() {
        let item = Item::json(&json!({"text": "hi", "id": 3, "tokens": 9})).unwrap();
        let rest = other_fields(&item, &["text", "tokens"]);
        assert_eq!(Value::Object(rest), json!({"id": 3}));
        assert!(other_fields(&Item::text("plain"), &["text"]).is_empty());
        assert!(other_fields(&Item::text(r#"{"id": 1}"#), &["text"]).is_empty());
    }

    #[test]
    fn reads_json_or_plain_text() {
        let json_item = Item::json(&json!({"text": "hi", "id": 3})).unwrap();
        assert_eq!(text_of("embed", "text", 0, &json_item).unwrap(), "hi");
        assert_eq!(
            text_of("embed", "text", 0, &Item::text("plain")).unwrap(),
            "plain"
        );
    }

    #[test]
    fn missing_text_is_bad_input() {
        let err = text_of(
            "embed",
            "text",
            4,
            &Item::json(&json!({"txt": "hi"})).unwrap(),
        )
        .unwrap_err();
        assert!(
            matches!(&err, StageError::BadInput(m) if m.contains("embed: item 4: missing `text`")),
            "{err:?}"
        );
        let err = text_of(
            "embed",
            "text",
            0,
            &Item::json(&json!({"text": 7})).unwrap(),
        )
        .unwrap_err();
        assert!(
            err.message().contains("`text` is 7, not a string"),
            "{err:?}"
        );
        let err = text_of("embed", "text", 0, &Item::bytes("application/json", "{")).unwrap_err();
        assert!(matches!(err, StageError::BadInput(_)), "{err:?}");
    }
}
