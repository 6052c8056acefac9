//! `tok`: the tokenizers the `embed` and `generate` stages need, in plain Rust.
//!
//! - [`WordPiece`]: BERT uncased WordPiece (all-MiniLM-L6-v2), matching HF
//!   `BertTokenizer` / `tokenizers`' `BertNormalizer` + `BertPreTokenizer` +
//!   `WordPiece`, built from `vocab.txt`.
//! - [`Bpe`]: GPT-2 style byte-level BPE as llama.cpp runs it for SmolLM2 (its
//!   `gpt2` tokenizer model with the `smollm` pre-tokenizer), built from the GGUF
//!   tokenizer metadata as JSON, with a [`StreamDecoder`] for generated text;
//!   also SentencePiece BPE vocabularies (GGUF `tokenizer.ggml.model` =
//!   `llama`: Llama 2, Mistral, TinyLlama) as llama.cpp runs them.
//!
//! It is a library, not a stage: no Wasm or weft specifics, no regex engine,
//! no model files of its own (the vocabularies come from the node's object
//! store). It does not train tokenizers, pad batches or handle sentence pairs.
//!
//! # Example
//!
//! ```
//! let wp = tok::WordPiece::from_vocab("[PAD]\n[UNK]\n[CLS]\n[SEP]\nhello\n!\n")?;
//! assert_eq!(wp.encode("Hello!", tok::DEFAULT_MAX_LEN).ids, vec![2, 4, 5, 3]);
//!
//! let bpe = tok::Bpe::from_json(
//!     br#"{"tokens": ["<|im_end|>", "o", "k", "ok"], "merges": ["o k"], "eos_id": 0}"#,
//! )?;
//! assert_eq!(bpe.encode("ok<|im_end|>"), vec![3, 0]);
//! assert_eq!(bpe.decode(&[3]), "ok");
//! # Ok::<(), tok::Error>(())
//! ```

mod bpe;
mod bytes;
mod pretokenize;
mod spm;
mod stream;
mod tables;
mod unicode;
mod wordpiece;

pub use bpe::Bpe;
pub use pretokenize::PreTokenizer;
pub use stream::StreamDecoder;
pub use wordpiece::{DEFAULT_MAX_LEN, Encoding, WordPiece};

/// Why a tokenizer file was refused.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The file is not UTF-8.
    #[error("{file} is not UTF-8 text: {source}")]
    NotUtf8 {
        /// Which file.
        file: &'static str,
        /// Where decoding stopped.
        source: std::str::Utf8Error,
    },
    /// A token the tokenizer cannot work without is missing.
    #[error("{file} has no `{token}` token")]
    MissingToken {
        /// Which file.
        file: &'static str,
        /// The token.
        token: &'static str,
    },
    /// More tokens than a `u32` id can number.
    #[error("the vocab has more than 2^32 tokens")]
    TooManyTokens,
    /// The BPE file is not the expected JSON.
    #[error(
        "tokenizer JSON is not valid: {0}; expected {{\"tokens\": [...], \"merges\": [...], ...}}"
    )]
    Json(#[from] serde_json::Error),
    /// A merge is not two tokens separated by a space.
    #[error("tokenizer JSON: merge {index} ({merge:?}) is not two tokens separated by a space")]
    BadMerge {
        /// Its index in `merges`.
        index: usize,
        /// Its text.
        merge: String,
    },
    /// A field names a token id outside the vocab.
    #[error("tokenizer JSON: `{field}` is {id}, but there are only {len} tokens")]
    BadId {
        /// The field.
        field: &'static str,
        /// Its value.
        id: u32,
        /// The vocab size.
        len: usize,
    },
    /// A pre-tokenizer [`PreTokenizer::from_name`] does not know.
    #[error(
        "tokenizer JSON: pre-tokenizer {0:?} is not supported; weft reads GPT-2's \
         (gpt2, ...), SmolLM's (smollm, starcoder, ...), Llama 3's (llama-bpe, ...), \
         Qwen2's (qwen2, ...), DBRX's (dbrx, smaug-bpe), GPT-4o's (gpt-4o, llama4, ...), Tekken \
         (tekken) and llama.cpp's default (default)"
    )]
    UnsupportedPre(String),
    /// A tokenizer model other than byte-level BPE or SentencePiece.
    #[error(
        "tokenizer JSON: model {0:?} is not supported; use `gpt2` (byte-level BPE) \
         or `llama` (SentencePiece)"
    )]
    UnsupportedModel(String),
    /// A byte-level BPE file without its merges.
    #[error("tokenizer JSON: a `gpt2` (byte-level BPE) tokenizer needs its `merges`")]
    NoMerges,
    /// A SentencePiece file whose scores do not match its tokens.
    #[error(
        "tokenizer JSON: a `llama` (SentencePiece) tokenizer needs one score per token: \
         {scores} scores for {tokens} tokens"
    )]
    Scores {
        /// How many scores.
        scores: usize,
        /// How many tokens.
        tokens: usize,
    },
}
