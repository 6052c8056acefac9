//! [`Bpe`]: GPT-2 style byte-level BPE, as llama.cpp runs it for SmolLM2, and
//! SentencePiece BPE vocabularies (Llama 2, Mistral, TinyLlama).

use std::collections::HashMap;

use serde::Deserialize;

use crate::bytes::ByteMap;
use crate::{Error, PreTokenizer, StreamDecoder, spm};

/// llama.cpp token types (GGUF `tokenizer.ggml.token_type`) that are matched
/// verbatim in text: unknown, control and user-defined.
const VERBATIM_TYPES: [i32; 3] = [2, 3, 4];

/// llama.cpp's token type of byte-fallback tokens (`<0x0A>`).
const BYTE_TYPE: i32 = 6;

/// The tokenizer file: GGUF's `tokenizer.ggml.*` metadata as JSON.
#[derive(Deserialize)]
struct Spec {
    /// `gpt2` (byte-level BPE, the default) or `llama` (SentencePiece).
    #[serde(default)]
    model: Option<String>,
    tokens: Vec<String>,
    #[serde(default)]
    merges: Option<Vec<Merge>>,
    /// SentencePiece: each token's score, the higher merged first.
    #[serde(default)]
    scores: Vec<f32>,
    #[serde(default)]
    token_types: Vec<i32>,
    #[serde(default, alias = "bos_token_id")]
    bos_id: Option<u32>,
    #[serde(default, alias = "eos_token_id")]
    eos_id: Option<u32>,
    /// The end of a turn and of a message, where the file names them
    /// (GGUF `tokenizer.ggml.eot_token_id`, `eom_token_id`: GLM-4's
    /// `<|user|>`).
    #[serde(default, alias = "eot_token_id")]
    eot_id: Option<u32>,
    #[serde(default, alias = "eom_token_id")]
    eom_id: Option<u32>,
    #[serde(default, alias = "add_bos_token")]
    add_bos: Option<bool>,
    #[serde(default)]
    pre: Option<String>,
    /// SentencePiece: whether text after BOS or a special token starts with
    /// a space (llama.cpp's default: yes).
    #[serde(default)]
    add_space_prefix: Option<bool>,
    #[serde(default)]
    chat_template: Option<String>,
    /// Special tokens that swallow the whitespace after them (Phi-3's:
    /// llama.cpp's `RSTRIP` attribute, HF's `rstrip`).
    #[serde(default)]
    rstrip: Vec<u32>,
}

/// A merge as GGUF and older `tokenizer.json` files write it (`"a b"`), or as
/// newer ones do (`["a", "b"]`).
#[derive(Deserialize)]
#[serde(untagged)]
enum Merge {
    Joined(String),
    Pair(String, String),
}

/// A BPE tokenizer as llama.cpp runs GGUF vocabularies: special tokens
/// matched verbatim, then either
///
/// - GPT-2 style byte-level BPE (`"model": "gpt2"`, the default): the
///   pre-tokenizer, then merges applied lowest rank first; or
/// - SentencePiece BPE (`"model": "llama"`: Llama 2, Mistral, TinyLlama):
///   spaces spelled `▁` (and one added before the text after BOS or a
///   special token), then the adjacent pair that is the best-scored token
///   merged first; characters that are no token become `<0xXX>` byte tokens.
///
/// Built from JSON with the GGUF tokenizer metadata:
/// `{"tokens": [...], "merges": ["a b", ...], "token_types": [...], "bos_id": n,
/// "eos_id": n, "add_bos": false, "pre": "smollm"}`; only `tokens` and
/// `merges` are required, `pre` (a GGUF `tokenizer.ggml.pre` name, see
/// [`PreTokenizer::from_name`]) defaults to `smollm` (digits split one by
/// one), and `add_bos` to what llama.cpp does for that `pre`. SentencePiece:
/// `{"model": "llama", "tokens": [...], "scores": [...], "token_types": [...],
/// "add_space_prefix": true, ...}`, no merges; `add_bos` defaults to true.
/// Either may list `"rstrip": [ids]`: special tokens that swallow the
/// whitespace after them (Phi-3's), and `"eot_id"`, `"eom_id"`: where a
/// turn or message ends besides EOS ([`Bpe::end_ids`]).
///
/// # Example
///
/// ```
/// let json = r#"{
///     "tokens": ["<|endoftext|>", "h", "i", "Ġ", "hi", "Ġhi"],
///     "merges": ["h i", "Ġ hi"],
///     "eos_id": 0
/// }"#;
/// let bpe = tok::Bpe::from_json(json.as_bytes())?;
/// let ids = bpe.encode("hi hi<|endoftext|>");
/// assert_eq!(ids, vec![4, 5, 0]);
/// assert_eq!(bpe.decode(&ids), "hi hi<|endoftext|>");
/// assert_eq!(bpe.eos_id(), Some(0));
/// # Ok::<(), tok::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct Bpe {
    tokens: Vec<String>,
    ids: HashMap<String, u32>,
    /// The id of each byte's token (byte-level: its one-character token;
    /// SentencePiece: its `<0xXX>` token), where the vocab has it.
    byte_ids: [Option<u32>; 256],
    /// Tokens matched verbatim, longest text first.
    special: Vec<u32>,
    is_special: Vec<bool>,
    bos: Option<u32>,
    eos: Option<u32>,
    /// [`Bpe::end_ids`].
    ends: Vec<u32>,
    add_bos: bool,
    chat_template: Option<String>,
    /// Special tokens after which whitespace is dropped.
    rstrip: Vec<u32>,
    model: Model,
}

/// How text between special tokens becomes tokens.
#[derive(Debug, Clone)]
enum Model {
    /// GPT-2 style byte-level BPE.
    ByteLevel {
        /// `(left, right)` → `(rank, merged)`.
        merges: HashMap<(u32, u32), (u32, u32)>,
        bytes: Box<ByteMap>,
        pre: PreTokenizer,
    },
    /// SentencePiece BPE.
    SentencePiece {
        scores: Vec<f32>,
        add_space_prefix: bool,
        /// Byte-fallback tokens → their byte.
        byte_of: HashMap<u32, u8>,
    },
}

impl Bpe {
    /// Builds the tokenizer from its JSON file (see [`Bpe`] for the format).
    ///
    /// # Example
    ///
    /// ```
    /// let err = tok::Bpe::from_json(br#"{"tokens": ["a"], "merges": ["a"]}"#).unwrap_err();
    /// assert!(err.to_string().contains("merge 0"), "{err}");
    /// ```
    pub fn from_json(json: &[u8]) -> Result<Self, Error> {
        let spec: Spec = serde_json::from_slice(json)?;
        let len = spec.tokens.len();
        u32::try_from(len).map_err(|_| Error::TooManyTokens)?;
        let mut ids = HashMap::with_capacity(len);
        for (id, token) in spec.tokens.iter().enumerate() {
            // The first of duplicate spellings wins, as in llama.cpp.
            ids.entry(token.clone()).or_insert(id as u32);
        }
        for (field, id) in [
            ("bos_id", spec.bos_id),
            ("eos_id", spec.eos_id),
            ("eot_id", spec.eot_id),
            ("eom_id", spec.eom_id),
        ] {
            if let Some(id) = id.filter(|&id| id as usize >= len) {
                return Err(Error::BadId { field, id, len });
            }
        }
        let is_special: Vec<bool> = spec
            .tokens
            .iter()
            .enumerate()
            .map(|(id, text)| {
                let ty = spec.token_types.get(id).copied().unwrap_or(1);
                VERBATIM_TYPES.contains(&ty)
                    || (text.len() > 4 && text.starts_with("<|") && text.ends_with("|>"))
            })
            .collect();
        let mut special: Vec<u32> = (0..len as u32)
            .filter(|&id| is_special[id as usize] && !spec.tokens[id as usize].is_empty())
            .collect();
        special.sort_by_key(|&id| std::cmp::Reverse(spec.tokens[id as usize].len()));

        let (model, byte_ids, add_bos) = match spec.model.as_deref().unwrap_or("gpt2") {
            "gpt2" => byte_level(
                &ids,
                spec.merges.ok_or(Error::NoMerges)?,
                spec.pre.as_deref(),
            )?,
            "llama" => sentence_piece(&spec, &ids)?,
            other => return Err(Error::UnsupportedModel(other.into())),
        };

        Ok(Bpe {
            tokens: spec.tokens,
            ids,
            byte_ids,
            special,
            is_special,
            bos: spec.bos_id,
            eos: spec.eos_id,
            ends: [spec.eos_id, spec.eot_id, spec.eom_id]
                .into_iter()
                .flatten()
                .collect(),
            add_bos: spec.add_bos.unwrap_or(add_bos),
            chat_template: spec.chat_template,
            rstrip: spec.rstrip,
            model,
        })
    }

    /// The number of tokens in the vocab.
    ///
    /// # Example
    ///
    /// ```
    /// let bpe = tok::Bpe::from_json(br#"{"tokens": ["a", "b"], "merges": []}"#)?;
    /// assert_eq!(bpe.len(), 2);
    /// # Ok::<(), tok::Error>(())
    /// ```
    pub fn len(&self) -> usize {
        self.tokens.len()
    }

    /// Whether the vocab is empty.
    ///
    /// # Example
    ///
    /// ```
    /// let bpe = tok::Bpe::from_json(br#"{"tokens": [], "merges": []}"#)?;
    /// assert!(bpe.is_empty());
    /// # Ok::<(), tok::Error>(())
    /// ```
    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }

    /// The beginning-of-sequence token, if the file names one.
    ///
    /// # Example
    ///
    /// ```
    /// let bpe = tok::Bpe::from_json(br#"{"tokens": ["<s>"], "merges": [], "bos_id": 0}"#)?;
    /// assert_eq!(bpe.bos_id(), Some(0));
    /// # Ok::<(), tok::Error>(())
    /// ```
    pub fn bos_id(&self) -> Option<u32> {
        self.bos
    }

    /// The end-of-sequence token, if the file names one.
    ///
    /// # Example
    ///
    /// ```
    /// let bpe = tok::Bpe::from_json(br#"{"tokens": ["<s>"], "merges": []}"#)?;
    /// assert_eq!(bpe.eos_id(), None);
    /// # Ok::<(), tok::Error>(())
    /// ```
    pub fn eos_id(&self) -> Option<u32> {
        self.eos
    }

    /// The tokens the file names as ends of a generation: EOS, and the end
    /// of a turn and of a message (`eot_id`, `eom_id`), as llama.cpp counts
    /// them among its end-of-generation tokens.
    ///
    /// # Example
    ///
    /// ```
    /// let json = br#"{"tokens": ["<eos>", "<|user|>"], "merges": [], "eos_id": 0, "eot_id": 1}"#;
    /// let bpe = tok::Bpe::from_json(json)?;
    /// assert_eq!(bpe.end_ids(), [0, 1]);
    /// # Ok::<(), tok::Error>(())
    /// ```
    pub fn end_ids(&self) -> &[u32] {
        &self.ends
    }

    /// Whether the model expects [`Bpe::bos_id`] before a prompt (GGUF
    /// `tokenizer.ggml.add_bos_token`); [`Bpe::encode`] never adds it.
    ///
    /// # Example
    ///
    /// ```
    /// let bpe = tok::Bpe::from_json(br#"{"tokens": ["<s>"], "merges": [], "add_bos": true}"#)?;
    /// assert!(bpe.add_bos());
    /// # Ok::<(), tok::Error>(())
    /// ```
    pub fn add_bos(&self) -> bool {
        self.add_bos
    }

    /// The id of the token spelled `text` (in the vocab's byte-level spelling).
    ///
    /// # Example
    ///
    /// ```
    /// let bpe = tok::Bpe::from_json(r#"{"tokens": ["<|im_end|>", "Ġa"], "merges": []}"#.as_bytes())?;
    /// assert_eq!(bpe.token_to_id("<|im_end|>"), Some(0));
    /// assert_eq!(bpe.token_to_id("Ġa"), Some(1));
    /// # Ok::<(), tok::Error>(())
    /// ```
    pub fn token_to_id(&self, text: &str) -> Option<u32> {
        self.ids.get(text).copied()
    }

    /// The vocab's spelling of token `id`.
    ///
    /// # Example
    ///
    /// ```
    /// let bpe = tok::Bpe::from_json(r#"{"tokens": ["Ġa"], "merges": []}"#.as_bytes())?;
    /// assert_eq!(bpe.id_to_token(0), Some("Ġa"));
    /// assert_eq!(bpe.id_to_token(1), None);
    /// # Ok::<(), tok::Error>(())
    /// ```
    pub fn id_to_token(&self, id: u32) -> Option<&str> {
        self.tokens.get(id as usize).map(String::as_str)
    }

    /// Whether token `id` is matched verbatim in text (a control or user-defined
    /// token such as `<|im_start|>`) rather than made by BPE.
    ///
    /// # Example
    ///
    /// ```
    /// let bpe = tok::Bpe::from_json(br#"{"tokens": ["<|im_start|>", "a"], "merges": []}"#)?;
    /// assert!(bpe.is_special(0) && !bpe.is_special(1) && !bpe.is_special(9));
    /// # Ok::<(), tok::Error>(())
    /// ```
    pub fn is_special(&self, id: u32) -> bool {
        self.is_special.get(id as usize).copied().unwrap_or(false)
    }

    /// The token ids of `text`: special tokens where their text appears verbatim,
    /// BPE elsewhere. No BOS is added (see [`Bpe::add_bos`]).
    ///
    /// # Example
    ///
    /// ```
    /// let json = r#"{"tokens": ["<|im_start|>", "u", "s", "e", "r", "us", "er", "user", "Ċ"],
    ///                 "merges": ["u s", "e r", "us er"]}"#;
    /// let bpe = tok::Bpe::from_json(json.as_bytes())?;
    /// assert_eq!(bpe.encode("<|im_start|>user\n"), vec![0, 7, 8]);
    /// # Ok::<(), tok::Error>(())
    /// ```
    pub fn encode(&self, text: &str) -> Vec<u32> {
        let mut ids = Vec::new();
        // SentencePiece: text at the start or after a special token gets a
        // leading space.
        let mut after_special = true;
        for fragment in self.partition(text) {
            match fragment {
                Fragment::Token(id) => {
                    ids.push(id);
                    after_special = true;
                }
                Fragment::Text(text) => {
                    match &self.model {
                        Model::ByteLevel { pre, .. } => {
                            for piece in pre.split(text) {
                                self.merge_piece(piece, &mut ids);
                            }
                        }
                        Model::SentencePiece {
                            scores,
                            add_space_prefix,
                            ..
                        } => {
                            let space = (*add_space_prefix && after_special).then_some(' ');
                            let spelled: String = space
                                .into_iter()
                                .chain(text.chars())
                                .map(|c| if c == ' ' { spm::SPACE } else { c })
                                .collect();
                            spm::merge(&spelled, &self.ids, scores, &self.byte_ids, &mut ids);
                        }
                    }
                    after_special = false;
                }
            }
        }
        ids
    }

    /// The text of `ids`; bytes that do not form UTF-8 (a sequence cut short)
    /// become U+FFFD. Special tokens decode to their text; unknown ids to nothing.
    ///
    /// # Example
    ///
    /// ```
    /// let bpe = tok::Bpe::from_json(r#"{"tokens": ["Ġh", "é"], "merges": []}"#.as_bytes())?;
    /// assert_eq!(bpe.decode(&[0]), " h");
    /// // `é` spells byte 0xE9, which alone is not UTF-8.
    /// assert_eq!(bpe.decode(&[1]), "\u{FFFD}");
    /// # Ok::<(), tok::Error>(())
    /// ```
    pub fn decode(&self, ids: &[u32]) -> String {
        let mut bytes = Vec::new();
        for (i, &id) in ids.iter().enumerate() {
            self.token_bytes(id, i == 0, &mut bytes);
        }
        String::from_utf8_lossy(&bytes).into_owned()
    }

    /// The chat template the model's file carries (GGUF
    /// `tokenizer.chat_template`, Jinja), if any.
    ///
    /// # Example
    ///
    /// ```
    /// let json = br#"{"tokens": [], "merges": [], "chat_template": "{{ messages }}"}"#;
    /// assert_eq!(tok::Bpe::from_json(json)?.chat_template(), Some("{{ messages }}"));
    /// # Ok::<(), tok::Error>(())
    /// ```
    pub fn chat_template(&self) -> Option<&str> {
        self.chat_template.as_deref()
    }

    /// The pre-tokenizer of a byte-level vocab (`None` for SentencePiece).
    ///
    /// # Example
    ///
    /// ```
    /// let json = br#"{"tokens": [], "merges": [], "pre": "tekken"}"#;
    /// let bpe = tok::Bpe::from_json(json)?;
    /// assert_eq!(bpe.pre_tokenizer(), Some(tok::PreTokenizer::Tekken));
    /// # Ok::<(), tok::Error>(())
    /// ```
    pub fn pre_tokenizer(&self) -> Option<PreTokenizer> {
        match &self.model {
            Model::ByteLevel { pre, .. } => Some(*pre),
            Model::SentencePiece { .. } => None,
        }
    }

    /// A decoder that turns ids into text one at a time, for streaming.
    ///
    /// # Example
    ///
    /// ```
    /// let bpe = tok::Bpe::from_json(r#"{"tokens": ["Ã", "©"], "merges": []}"#.as_bytes())?;
    /// let mut decoder = bpe.stream_decoder();
    /// assert_eq!(decoder.push(0), "", "0xC3 starts a two-byte character");
    /// assert_eq!(decoder.push(1), "é");
    /// # Ok::<(), tok::Error>(())
    /// ```
    pub fn stream_decoder(&self) -> StreamDecoder<'_> {
        StreamDecoder::new(self)
    }

    /// Appends the bytes token `id` stands for; `first`: it starts the text,
    /// where SentencePiece drops the space it adds before a text (as
    /// llama.cpp's detokenizer does).
    pub(crate) fn token_bytes(&self, id: u32, first: bool, out: &mut Vec<u8>) {
        let Some(text) = self.tokens.get(id as usize) else {
            return;
        };
        if self.is_special(id) {
            out.extend_from_slice(text.as_bytes());
            return;
        }
        let start = out.len();
        match &self.model {
            Model::ByteLevel { bytes, .. } => {
                for c in text.chars() {
                    match bytes.byte(c) {
                        Some(b) => out.push(b),
                        None => out.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes()),
                    }
                }
            }
            Model::SentencePiece {
                byte_of,
                add_space_prefix,
                ..
            } => {
                match byte_of.get(&id) {
                    Some(&b) => out.push(b),
                    None => out.extend(text.replace(spm::SPACE, " ").bytes()),
                }
                if first && *add_space_prefix && out.get(start) == Some(&b' ') {
                    out.remove(start);
                }
            }
        }
    }

    /// Splits `text` at special tokens, longest first, as llama.cpp does.
    fn partition<'t>(&self, text: &'t str) -> Vec<Fragment<'t>> {
        // No fragment for no text (SentencePiece would add its space).
        let mut fragments: Vec<_> = (!text.is_empty())
            .then_some(Fragment::Text(text))
            .into_iter()
            .collect();
        for &id in &self.special {
            let token = self.tokens[id as usize].as_str();
            if !text.contains(token) {
                continue;
            }
            let mut split = Vec::with_capacity(fragments.len() + 2);
            for fragment in fragments {
                let Fragment::Text(mut rest) = fragment else {
                    split.push(fragment);
                    continue;
                };
                while let Some(at) = rest.find(token) {
                    if at > 0 {
                        split.push(Fragment::Text(&rest[..at]));
                    }
                    split.push(Fragment::Token(id));
                    rest = &rest[at + token.len()..];
                    if self.rstrip.contains(&id) {
                        // C's `isspace`, as llama.cpp strips.
                        rest = rest.trim_start_matches([' ', '\t', '\n', '\x0B', '\x0C', '\r']);
                    }
                }
                if !rest.is_empty() {
                    split.push(Fragment::Text(rest));
                }
            }
            fragments = split;
        }
        fragments
    }

    /// BPE on one pre-tokenized piece: start from its bytes, then merge the
    /// lowest-ranked adjacent pair (leftmost on a tie) until none applies.
    fn merge_piece(&self, piece: &str, ids: &mut Vec<u32>) {
        let Model::ByteLevel { merges, bytes, pre } = &self.model else {
            return;
        };
        if pre.ignores_merges() {
            let spelled: String = piece.bytes().map(|b| bytes.char(b)).collect();
            if let Some(&id) = self.ids.get(&spelled) {
                ids.push(id);
                return;
            }
        }
        // A byte with no token of its own cannot be spelled: dropped (a byte-level
        // vocab has all 256).
        let mut symbols: Vec<u32> = piece
            .bytes()
            .filter_map(|b| self.byte_ids[usize::from(b)])
            .collect();
        loop {
            let best = symbols
                .windows(2)
                .enumerate()
                .filter_map(|(i, pair)| {
                    merges
                        .get(&(pair[0], pair[1]))
                        .map(|&(rank, merged)| (rank, i, merged))
                })
                .min();
            let Some((_, i, merged)) = best else { break };
            symbols[i] = merged;
            symbols.remove(i + 1);
        }
        ids.extend(symbols);
    }
}

/// A model, each byte's token and whether the vocab adds BOS by default.
type Built = (Model, [Option<u32>; 256], bool);

/// A byte-level model from its merges and pre-tokenizer name (default
/// `smollm`): bytes are their one-character tokens.
fn byte_level(
    ids: &HashMap<String, u32>,
    spec_merges: Vec<Merge>,
    pre: Option<&str>,
) -> Result<Built, Error> {
    let pre = match pre {
        None => PreTokenizer::SmolLm,
        Some(name) => {
            PreTokenizer::from_name(name).ok_or_else(|| Error::UnsupportedPre(name.into()))?
        }
    };
    let mut merges = HashMap::with_capacity(spec_merges.len());
    for (index, merge) in spec_merges.into_iter().enumerate() {
        let (left, right) = match &merge {
            Merge::Pair(left, right) => (left.as_str(), right.as_str()),
            // Split at the first space after the first character, as
            // llama.cpp does: byte-level tokens spell space as `Ġ`.
            Merge::Joined(text) => text
                .char_indices()
                .skip(1)
                .find(|&(_, c)| c == ' ')
                .map(|(at, _)| (&text[..at], &text[at + 1..]))
                .ok_or_else(|| Error::BadMerge {
                    index,
                    merge: text.clone(),
                })?,
        };
        // A merge whose parts or result are not tokens can never apply.
        let (Some(&l), Some(&r), Some(&m)) = (
            ids.get(left),
            ids.get(right),
            ids.get(&format!("{left}{right}")),
        ) else {
            continue;
        };
        merges.entry((l, r)).or_insert((index as u32, m));
    }
    let bytes = ByteMap::new();
    let byte_ids = std::array::from_fn(|b| {
        let c = bytes.char(b as u8);
        ids.get(c.encode_utf8(&mut [0; 4]) as &str).copied()
    });
    let bytes = Box::new(bytes);
    Ok((
        Model::ByteLevel { merges, bytes, pre },
        byte_ids,
        pre.adds_bos(),
    ))
}

/// A SentencePiece model from the tokens' scores: bytes are their `<0xXX>`
/// tokens (or, failing that, an ASCII byte's own token, as llama.cpp falls
/// back to); BOS added by default.
fn sentence_piece(spec: &Spec, ids: &HashMap<String, u32>) -> Result<Built, Error> {
    let (scores, tokens) = (spec.scores.len(), spec.tokens.len());
    if scores != tokens {
        return Err(Error::Scores { scores, tokens });
    }
    let mut byte_of = HashMap::new();
    let mut byte_ids = [None; 256];
    for (id, text) in spec.tokens.iter().enumerate() {
        let fallback = spec.token_types.get(id) == Some(&BYTE_TYPE);
        if let Some(b) = spm::fallback_byte(text).filter(|_| fallback) {
            byte_of.insert(id as u32, b);
            byte_ids[usize::from(b)].get_or_insert(id as u32);
        }
    }
    for (b, slot) in byte_ids.iter_mut().enumerate().take(0x80) {
        if slot.is_none() {
            *slot = ids.get(&char::from(b as u8).to_string()).copied();
        }
    }
    let model = Model::SentencePiece {
        scores: spec.scores.clone(),
        add_space_prefix: spec.add_space_prefix.unwrap_or(true),
        byte_of,
    };
    Ok((model, byte_ids, true))
}

/// Text between special tokens, or a special token.
enum Fragment<'t> {
    Text(&'t str),
    Token(u32),
}

#[cfg(test)]
mod tests;
