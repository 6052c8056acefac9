//! `generate`: chat completions with a decoder LLM (SmolLM2) through `wasi:nn`,
//! streaming each token as a partial result; with `session=true`, a chat
//! session that keeps the conversation in its state (meant to run as an actor).
//!
//! Config:
//!
//! | key              | default   | meaning                                                   |
//! |------------------|-----------|-----------------------------------------------------------|
//! | `model`          | `smollm2` | the model's name in the node's registry (a GGUF graph)    |
//! | `tokenizer`      | required  | object id of the model's tokenizer JSON ([`tok::Bpe`])    |
//! | `template`       | `auto`    | chat format: `chatml`, `llama3`, `phi3`, `phi4`, `zephyr`, `mistral`, `mistral-v1`, `mistral-v3`, `mistral-v3-tekken`, `mistral-v7`, `mistral-v7-tekken`, `llama2`, `llama2-sys-strip`, `gemma`, `deepseek3`, `deepseek2`, `deepseek`, `hunyuan-dense`, `granite`, `exaone3`, `exaone4`, `chatglm4`, `minicpm`, `ernie`, `auto` (from the model's file), or `none` (a base model continues the text) |
//! | `max_tokens`     | `128`     | most tokens to generate per request                       |
//! | `temperature`    | `0`       | 0 is greedy; above, softmax temperature                   |
//! | `top_p`          | `1.0`     | nucleus sampling: keep the likeliest tokens summing to it |
//! | `seed`           | `0`       | seed of the sampler; a seed replays a completion          |
//! | `session`        | `false`   | keep the conversation in state: each request is a turn    |
//! | `history_tokens` | `1024`    | session: token budget of a prompt plus `max_tokens`; older turns are dropped to fit |
//! | `system`         | none      | session: a system message sent first in every prompt      |
//!
//! Input, per item: JSON `{"prompt": "..."}` (one user message) or
//! `{"messages": [{"role": "system"|"user"|"assistant", "content": "..."}, ...]}`,
//! optionally with `max_tokens`, `temperature`, `top_p` and `seed` overriding the
//! config for that request:
//!
//! ```text
//! POST {"prompt": "What is the capital of France?", "max_tokens": 32}
//!   partial {"token": "The", "id": 504}
//!   partial {"token": " capital", "id": 3575}
//!   … five more …
//!   → {"text": "The capital of France is Paris.", "tokens": 7, "prompt_tokens": 16,
//!      "finish_reason": "stop"}
//! ```
//!
//! Chat sessions (`session=true`): the stage keeps the conversation in its
//! state under key `history` (`{"turns": n, "messages": [...]}`), so run it as
//! an actor (`POST /v1/actors {"name": "chat-1", "stage": "generate",
//! "config": {"session": "true"}}`), whose state is its own and whose calls are
//! serial; a plain stage in session mode has one conversation for all callers.
//! An item is `{"message": "..."}` (or `{"prompt": "..."}`), the next user
//! message, with the same optional settings; the prompt is the system message
//! (config `system`), the kept history and the new message, and the output is
//! the usual one plus `turn` (turns answered since the conversation began,
//! this one included) and `history_turns` (the turns the prompt carried, this
//! one included). `{"reset": true}` forgets the conversation (→ `{"reset":
//! true, "turn": 0}`); `{"reset": true, "message": "..."}` starts a new one.
//! `messages` is refused: the session sends its own history.
//!
//! ```text
//! POST {"message": "My name is Ada."}   → {"text": "…", …, "turn": 1, "history_turns": 1}
//! POST {"message": "What is my name?"}  → {"text": "…", …, "turn": 2, "history_turns": 2}
//! POST {"reset": true}                  → {"reset": true, "turn": 0}
//! ```
//!
//! The history is bounded by tokens: while the prompt plus the request's
//! `max_tokens` is over `history_tokens`, the oldest turn (a user message and
//! its reply) is dropped, from the prompt and from the stored history; the
//! system message and the new message are always sent. Keep `history_tokens`
//! within the model's context (SmolLM2: 8192); should the model still refuse
//! the prompt (`too-large`), older turns are dropped until it fits or only the
//! new message is left (then it is `bad-input`). A turn is saved only once the
//! reply is complete, and a batch's turns only once every item of it
//! succeeded: a failed request leaves the conversation as it was (a retry
//! sends the same message again).
//!
//! The prompt is ChatML, `<|im_start|>{role}\n{content}<|im_end|>\n` per message
//! then `<|im_start|>assistant\n` (SmolLM2, Qwen; `phi4`, Phi-4's, puts
//! `<|im_sep|>` after the role and no newlines), or Llama 3's,
//! `<|start_header_id|>{role}<|end_header_id|>\n\n{content}<|eot_id|>` per
//! message then `<|start_header_id|>assistant<|end_header_id|>\n\n`, or
//! Zephyr's (TinyLlama-Chat), `<|{role}|>\n{content}</s>\n` per message then
//! `<|assistant|>\n` (`phi3`: `<|end|>` for `</s>`), or
//! `[INST] {user} [/INST]{reply}</s>` (`mistral`; `llama2`
//! writes a system message in `<<SYS>>` tags, `llama2-sys-strip` trims
//! every message; Mistral's `mistral-v1`, `mistral-v3` (`[INST] {user}[/INST]`)
//! and `mistral-v7` (with `[SYSTEM_PROMPT]`); on a Tekken vocab,
//! `mistral-v3-tekken` and `mistral-v7-tekken` write them without spaces),
//! or DeepSeek R1's (`deepseek3`: `<｜User｜>{user}<｜Assistant｜>`), or
//! DeepSeek-V2's (`deepseek2`: `User: {user}\n\n` then `Assistant:`), or
//! DeepSeek Coder's (`deepseek`: `### Instruction:\n{user}\n` then
//! `### Response:\n`), or Hunyuan-Dense's (`hunyuan-dense`:
//! `<｜hy_User｜>{user}<｜hy_Assistant｜>`), or IBM
//! Granite's (`granite`:
//! `<|start_of_role|>{role}<|end_of_role|>{content}<|end_of_text|>\n`), or Gemma's,
//! `<start_of_turn>{role}\n{content}<end_of_turn>\n` per message (`model` for
//! the assistant) then `<start_of_turn>model\n`, as llama.cpp writes them: config
//! `template`, or `auto`, the default, which reads the format from the chat
//! template in the model's file (`tokenizer.chat_template`), else picks Llama
//! 3's when the vocab has its header tokens, else ChatML; a template whose
//! special tokens the vocab lacks is refused at deploy. `none` sends the
//! messages' contents alone, one per line, for base (non-chat) models to
//! continue. No system prompt is
//! added (but config `system` in a session). The prompt is tokenised with
//! byte-level BPE or SentencePiece, as the tokenizer is (a BOS is prepended
//! when the tokenizer adds one: its file's `add_bos`, else llama.cpp's
//! default). Each request gets a new
//! execution context (the host keeps the KV
//! cache in it): one `compute` on the whole prompt as `input_ids` (`int64 [n]`),
//! then one per generated token (`int64 [1]`), each giving `logits`
//! (`f32 [vocab]`, for the last position). Generation stops at an end token
//! (`eos_id`, the file's `eot_id` and `eom_id`, `<|im_end|>`,
//! `<|endoftext|>`, `<|eot_id|>`, `<|eom_id|>`, `<|end_of_text|>`,
//! `<end_of_turn>`, `<｜end▁of▁sentence｜>`; finish reason `stop`), or at
//! `max_tokens` or the end of the context window (`length`).
//!
//! Every generated token is emitted as a partial item
//! `{"token": "<text>", "id": n}` keyed by the request's key (or its index in the
//! batch); `token` holds whole UTF-8 characters only, so it is empty for a token
//! that ends inside a character, whose text comes with a later one. Progress is
//! reported every 8 tokens. The output item, keeping the request's key, is
//! `{"text", "tokens", "prompt_tokens", "finish_reason"}`.
//!
//! Errors: a malformed request, or a prompt longer than the model's context
//! (`wasi:nn` `too-large`), is `bad-input`; other `wasi:nn` failures carry their
//! code and message, as `retryable` for `timeout`, `runtime-error` and `unknown`,
//! and `fatal` otherwise; in a session, a stored history that does not decode is
//! `fatal` (send `{"reset": true}`, or delete the actor).

mod chat;
mod request;
mod run;
mod sample;
mod template;

use std::fmt;

use tok::Bpe;
use weft_sdk::nn::errors::{Error as NnError, ErrorCode};
use weft_sdk::nn::graph::{self, Graph};
use weft_sdk::nn::inference::GraphExecutionContext;
use weft_sdk::nn::tensor::{Tensor, TensorType};
use weft_sdk::{Config, Item, Stage, StageError, emit, objects};

use crate::chat::Chat;
use crate::request::{Request, Settings, TurnRequest};
use crate::run::{Session, Sink, StepError};
use crate::template::{Template, encode_prompt};

/// The tokens that end a reply in the chat formats of common models, besides
/// the tokenizer's `eos_id`: ChatML's, GPT-2's, Llama 3's, Phi-3's,
/// Gemma's, DeepSeek's and ERNIE's.
const END_TOKENS: &[&str] = &[
    "<end_of_turn>",
    "<｜end▁of▁sentence｜>",
    "<|im_end|>",
    "<|end|>",
    "<|endoftext|>",
    "<|eot_id|>",
    "<|eom_id|>",
    "<|end_of_text|>",
    "<|end_of_sentence|>",
];

/// The stage: the tokenizer, the loaded graph and the default settings.
pub struct Generate {
    model: String,
    tokenizer: Bpe,
    /// The chat format prompts are written in.
    template: Template,
    /// Tokens that end a completion.
    stop: Vec<u32>,
    defaults: Settings,
    /// Config `session=true`: keep the conversation in state.
    session: Option<SessionConfig>,
    graph: Graph,
}

/// The config keys the stage reads.
const CONFIG_KEYS: [&str; 10] = [
    "model",
    "tokenizer",
    "template",
    "system",
    "max_tokens",
    "temperature",
    "top_p",
    "seed",
    "session",
    "history_tokens",
];

/// A chat session's config.
#[derive(Debug, Clone, PartialEq, Eq)]
struct SessionConfig {
    /// Config `system`: a system message sent first in every prompt.
    system: Option<String>,
    /// Config `history_tokens`: the budget of a prompt plus its reply.
    history_tokens: usize,
}

impl SessionConfig {
    /// Config keys `session`, `system` and `history_tokens`; `None` unless
    /// `session` is true.
    fn from_config(config: &Config, defaults: Settings) -> Result<Option<Self>, String> {
        if !config.parse_or("session", false)? {
            return Ok(None);
        }
        let history_tokens: usize = config.parse_or("history_tokens", 1024)?;
        if history_tokens <= defaults.max_tokens {
            return Err(format!(
                "`history_tokens` ({history_tokens}) must be more than `max_tokens` ({}), \
                 to leave room for the conversation",
                defaults.max_tokens
            ));
        }
        Ok(Some(SessionConfig {
            system: config.get("system").map(str::to_string),
            history_tokens,
        }))
    }
}

impl Stage for Generate {
    fn init(config: Config) -> Result<Self, String> {
        config.expect_keys("generate", &CONFIG_KEYS)?;
        let model = config.get_or("model", "smollm2").to_string();
        let defaults = Settings::from_config(&config).map_err(|e| format!("generate: {e}"))?;
        let session =
            SessionConfig::from_config(&config, defaults).map_err(|e| format!("generate: {e}"))?;
        let tokenizer = load_tokenizer(&config)?;
        let stop = stop_tokens(&tokenizer);
        if stop.is_empty() {
            return Err(
                "generate: the tokenizer has no end token: set `eos_id` in its JSON".into(),
            );
        }
        let template =
            Template::from_config(&config, &tokenizer).map_err(|e| format!("generate: {e}"))?;
        let graph = graph::load_by_name(&model)
            .map_err(|e| format!("generate: could not load model `{model}`: {e}"))?;
        Ok(Generate {
            model,
            tokenizer,
            template,
            stop,
            defaults,
            session,
            graph,
        })
    }

    fn process(&mut self, batch: Vec<Item>) -> Result<Vec<Item>, StageError> {
        if let Some(config) = &self.session {
            return self.process_session(config, batch);
        }
        // Parse everything first, so a bad batch generates nothing.
        let requests = batch
            .iter()
            .enumerate()
            .map(|(index, item)| Request::parse(index, item, self.defaults))
            .collect::<Result<Vec<_>, _>>()?;
        let mut out = Vec::with_capacity(batch.len());
        for (index, (item, request)) in batch.iter().zip(requests).enumerate() {
            let key = item.key.clone().unwrap_or_else(|| index.to_string());
            let prompt = encode_prompt(&self.tokenizer, self.template, &request.messages);
            let mut session = self.new_session()?;
            let completion = run::generate(
                &mut session,
                &self.tokenizer,
                &self.stop,
                &prompt,
                request.settings,
                &mut Emitter { key: &key },
            )?;
            out.push(Item::json(&completion)?.with_key_from(item));
        }
        Ok(out)
    }
}

impl Generate {
    /// A new execution context, with an empty KV cache.
    fn new_session(&self) -> Result<NnSession<'_>, StageError> {
        let context = self
            .graph
            .init_execution_context()
            .map_err(|e| nn_error(&self.model, "could not start a session", e))?;
        Ok(NnSession {
            model: &self.model,
            context,
        })
    }

    /// Config `session=true`: each item is the next turn of the conversation in
    /// state (see [`chat`]).
    fn process_session(
        &self,
        config: &SessionConfig,
        batch: Vec<Item>,
    ) -> Result<Vec<Item>, StageError> {
        let chat = Chat {
            bpe: &self.tokenizer,
            template: self.template,
            stop: &self.stop,
            system: config.system.as_deref(),
            history_tokens: config.history_tokens,
        };
        let keys: Vec<String> = batch
            .iter()
            .enumerate()
            .map(|(index, item)| item.key.clone().unwrap_or_else(|| index.to_string()))
            .collect();
        let requests = batch
            .iter()
            .zip(&keys)
            .enumerate()
            .map(|(index, (item, key))| {
                let request = TurnRequest::parse(index, item, self.defaults)?;
                Ok((request, Emitter { key }))
            })
            .collect::<Result<Vec<_>, StageError>>()?;
        let replies = chat.run_batch(requests, || self.new_session())?;
        batch
            .iter()
            .zip(replies)
            .map(|(item, reply)| Ok(Item::json(&reply)?.with_key_from(item)))
            .collect()
    }
}

weft_sdk::export_stage!(Generate);

impl fmt::Debug for Generate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Generate")
            .field("model", &self.model)
            .field("vocab_size", &self.tokenizer.len())
            .field("stop", &self.stop)
            .field("defaults", &self.defaults)
            .field("session", &self.session)
            .finish_non_exhaustive()
    }
}

/// The tokens that end a reply: those the tokenizer's file names (EOS, end
/// of turn, end of message) and the [`END_TOKENS`] its vocab has.
fn stop_tokens(tokenizer: &Bpe) -> Vec<u32> {
    let mut stop: Vec<u32> = (tokenizer.end_ids().iter().copied())
        .chain(END_TOKENS.iter().filter_map(|t| tokenizer.token_to_id(t)))
        .collect();
    stop.sort_unstable();
    stop.dedup();
    stop
}

/// Reads the tokenizer JSON from the object store, by the id in config
/// `tokenizer`.
fn load_tokenizer(config: &Config) -> Result<Bpe, String> {
    let id: String = config.parse("tokenizer").map_err(|e| {
        format!("generate: {e}: the object id of the model's tokenizer JSON, from uploading it")
    })?;
    let bytes = objects::get(&id)
        .map_err(|e| format!("generate: could not read tokenizer object {id:?}: {e}"))?;
    Bpe::from_json(&bytes).map_err(|e| format!("generate: tokenizer object {id:?}: {e}"))
}

/// Classifies a `wasi:nn` failure other than a full context.
fn nn_error(model: &str, what: &str, e: NnError) -> StageError {
    let message = format!("generate: model `{model}`: {what}: {e}");
    match e.code() {
        ErrorCode::Timeout | ErrorCode::RuntimeError | ErrorCode::Unknown => {
            StageError::retryable(message)
        }
        _ => StageError::fatal(message),
    }
}

/// One request's execution context, which holds its KV cache.
struct NnSession<'m> {
    model: &'m str,
    context: GraphExecutionContext,
}

impl Session for NnSession<'_> {
    fn feed(&mut self, ids: &[u32]) -> Result<Vec<f32>, StepError> {
        let data: Vec<u8> = ids
            .iter()
            .flat_map(|&id| i64::from(id).to_le_bytes())
            .collect();
        let input = Tensor::new(&[ids.len() as u32], TensorType::I64, &data);
        let outputs = self
            .context
            .compute(vec![("input_ids".to_string(), input)])
            .map_err(|e| match e.code() {
                // A full context (not another too-large, such as a GPU
                // buffer past the device's limit). The host's advice to
                // start a new execution context is this stage's to follow,
                // not its caller's.
                ErrorCode::TooLarge if e.data().contains("the model's context") => {
                    StepError::ContextFull(
                        e.to_string()
                            .trim_end_matches("; start a new execution context")
                            .to_string(),
                    )
                }
                // A model that is not a decoder, or a tokenizer of another
                // model's vocabulary: a deploy mistake, said as one.
                ErrorCode::InvalidArgument => StepError::Failed(StageError::fatal(format!(
                    "generate: model `{}` refused the prompt's token ids ({e}); is it a decoder \
                     LLM (a GGUF), and is config `tokenizer` its tokenizer (the object its upload \
                     names)? `weft model list` shows the models",
                    self.model
                ))),
                _ => StepError::Failed(nn_error(self.model, "compute failed", e)),
            })?;
        let bad = |what: String| {
            StepError::Failed(StageError::fatal(format!(
                "generate: model `{}` {what}; expected `logits` f32 [vocab] (is it a causal LM?)",
                self.model
            )))
        };
        let (_, logits) = outputs
            .into_iter()
            .find(|(name, _)| name == "logits")
            .ok_or_else(|| bad("has no output `logits`".into()))?;
        let dims = logits.dimensions();
        let vocab = dims.last().copied().unwrap_or(0) as usize;
        if logits.ty() != TensorType::Fp32 || vocab == 0 {
            return Err(bad(format!("gave `logits` {:?} {dims:?}", logits.ty())));
        }
        let data = logits.data();
        // Should the host return every position, the last row is the next token's.
        let last = data
            .len()
            .checked_sub(vocab * 4)
            .ok_or_else(|| bad(format!("gave {} bytes for `logits` {dims:?}", data.len())))?;
        Ok(floats(&data[last..]))
    }
}

/// Little-endian f32 bytes (what `tensor-data` holds) as floats: on a
/// little-endian target (Wasm is) one copy, the size of the vocabulary
/// every token, not a loop of conversions.
fn floats(bytes: &[u8]) -> Vec<f32> {
    let mut out = vec![0f32; bytes.len() / 4];
    if cfg!(target_endian = "little") {
        // SAFETY: `out` holds `bytes.len() / 4` floats, any bits are an f32,
        // and the byte order is the target's.
        unsafe {
            std::ptr::copy_nonoverlapping(
                bytes.as_ptr(),
                out.as_mut_ptr().cast::<u8>(),
                out.len() * 4,
            )
        };
    } else {
        for (o, b) in out.iter_mut().zip(bytes.chunks_exact(4)) {
            *o = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
        }
    }
    out
}

/// Streams tokens to the caller as partial items, and progress.
struct Emitter<'k> {
    key: &'k str,
}

impl Sink for Emitter<'_> {
    fn token(&mut self, piece: &str, id: u32) {
        let value = serde_json::json!({ "token": piece, "id": id });
        // A JSON value always serialises.
        if let Ok(item) = Item::json(&value) {
            emit::partial(item.with_key(self.key));
        }
    }

    fn progress(&mut self, generated: usize, max_tokens: usize) {
        emit::progress(generated as u64, Some(max_tokens as u64), "generating");
    }
}

#[cfg(test)]
mod tests {
    use weft_sdk::testing::Harness;

    use super::*;

    const TOKENIZER: &str = r#"{"tokens": ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "a"],
                                "merges": [], "eos_id": 2}"#;

    fn build(config: &[(&str, &str)], objects: &[&[u8]]) -> Result<Harness<Generate>, String> {
        objects
            .iter()
            .fold(Harness::<Generate>::builder(), |b, o| b.object(o))
            .config(config)
            .build()
    }

    #[test]
    fn logits_bytes_read_as_floats() {
        let want = [1.5f32, -0.0, f32::INFINITY, 3e-40, -7.25];
        let bytes: Vec<u8> = want.iter().flat_map(|f| f.to_le_bytes()).collect();
        let got = floats(&bytes);
        assert_eq!(
            got.iter().map(|f| f.to_bits()).collect::<Vec<_>>(),
            want.iter().map(|f| f.to_bits()).collect::<Vec<_>>()
        );
        // (An odd slice, as a sub-slice of the tensor's bytes may be.)
        assert_eq!(floats(&bytes[4..12]), [-0.0, f32::INFINITY]);
    }

    /// `max_token=16` was ignored: every answer ran to 128 tokens.
    #[test]
    fn a_misspelt_config_key_is_refused_first() {
        let err = build(&[("max_token", "16")], &[]).unwrap_err();
        assert!(
            err.starts_with("generate: unknown config key `max_token`: did you mean `max_tokens`?"),
            "{err}"
        );
        let err = build(&[("vocab", "x")], &[]).unwrap_err();
        assert!(err.contains("(it reads: model, tokenizer,"), "{err}");
        // Every key it documents gets past the check.
        let all: Vec<(&str, &str)> = CONFIG_KEYS.iter().map(|k| (*k, "?")).collect();
        let err = build(&all, &[]).unwrap_err();
        assert!(!err.contains("unknown config key"), "{err}");
    }

    #[test]
    fn tokenizer_is_required() {
        let err = build(&[], &[]).unwrap_err();
        assert!(err.contains("config `tokenizer` is required"), "{err}");
    }

    #[test]
    fn tokenizer_must_exist_and_parse() {
        let err = build(&[("tokenizer", "nope")], &[]).unwrap_err();
        assert!(
            err.contains("could not read tokenizer object \"nope\""),
            "{err}"
        );
        let id = objects::put(b"{}");
        let err = build(&[("tokenizer", &id)], &[b"{}"]).unwrap_err();
        assert!(err.contains("tokenizer JSON is not valid"), "{err}");
    }

    #[test]
    fn needs_an_end_token() {
        let json = br#"{"tokens": ["a"], "merges": []}"#;
        let id = objects::put(json);
        let err = build(&[("tokenizer", &id)], &[json]).unwrap_err();
        assert!(err.contains("no end token"), "{err}");
    }

    #[test]
    fn loads_the_tokenizer_then_the_model() {
        let id = objects::put(TOKENIZER);
        let err = build(&[("tokenizer", &id)], &[TOKENIZER.as_bytes()]).unwrap_err();
        // Natively there is no inference backend: getting this far means the
        // tokenizer parsed.
        assert!(
            err.starts_with("generate: could not load model `smollm2`: unsupported-operation"),
            "{err}"
        );
    }

    #[test]
    fn bad_settings_are_refused_before_anything_loads() {
        let err = build(&[("temperature", "-0.5")], &[]).unwrap_err();
        assert!(err.contains("`temperature` (-0.5)"), "{err}");
        let err = build(&[("seed", "x")], &[]).unwrap_err();
        assert!(err.contains("config `seed`"), "{err}");
    }

    #[test]
    fn session_config_is_checked_before_anything_loads() {
        let err = build(&[("session", "yes")], &[]).unwrap_err();
        assert!(err.contains("config `session`"), "{err}");
        let err = build(&[("session", "true"), ("history_tokens", "x")], &[]).unwrap_err();
        assert!(err.contains("config `history_tokens`"), "{err}");
        let err = build(
            &[
                ("session", "true"),
                ("history_tokens", "64"),
                ("max_tokens", "64"),
            ],
            &[],
        )
        .unwrap_err();
        assert!(
            err.contains("`history_tokens` (64) must be more than `max_tokens` (64)"),
            "{err}"
        );
        let defaults = Settings::from_config(&Config::default()).unwrap();
        let config = Config::from_iter([("session", "true"), ("system", "Be brief.")]);
        assert_eq!(
            SessionConfig::from_config(&config, defaults).unwrap(),
            Some(SessionConfig {
                system: Some("Be brief.".into()),
                history_tokens: 1024
            })
        );
        // Off by default, and then `history_tokens` is not looked at.
        let config = Config::from_iter([("history_tokens", "1")]);
        assert_eq!(SessionConfig::from_config(&config, defaults).unwrap(), None);
    }

    /// EOS and the end-of-turn tokens of ChatML, Llama 3, Phi-3 and Gemma,
    /// and those the file names (GLM-4's `<|user|>`, its `eot_id`).
    #[test]
    fn replies_stop_at_eos_and_the_end_of_turn_tokens() {
        let json = r#"{"tokens": ["<|endoftext|>", "<|user|>", "<|observation|>", "a"],
                       "merges": [], "eos_id": 0, "eot_id": 1}"#;
        let glm4 = Bpe::from_json(json.as_bytes()).unwrap();
        assert_eq!(stop_tokens(&glm4), [0, 1]);
        let json = r#"{"model": "llama", "tokens": ["<unk>", "<|endoftext|>", "<|end|>", "a"],
                       "scores": [0, 0, 0, -1], "token_types": [2, 3, 4, 1], "eos_id": 1}"#;
        let phi3 = Bpe::from_json(json.as_bytes()).unwrap();
        assert_eq!(stop_tokens(&phi3), [1, 2]);
        let chatml = Bpe::from_json(TOKENIZER.as_bytes()).unwrap();
        assert!(stop_tokens(&chatml).contains(&2), "<|im_end|>");
        let json = r#"{"model": "llama", "tokens": ["<pad>", "<eos>", "<end_of_turn>", "a"],
                       "scores": [0, 0, 0, -1], "token_types": [3, 3, 3, 1], "eos_id": 1}"#;
        let gemma = Bpe::from_json(json.as_bytes()).unwrap();
        assert_eq!(stop_tokens(&gemma), [1, 2]);
    }

    #[test]
    fn the_chatml_prompt_tokenises_with_special_tokens() {
        let bpe = Bpe::from_json(TOKENIZER.as_bytes()).unwrap();
        let ids = encode_prompt(
            &bpe,
            Template::ChatMl,
            &[request::Message {
                role: request::Role::User,
                content: "a".into(),
            }],
        );
        assert_eq!(ids[0], 1, "<|im_start|>");
        assert!(ids.contains(&2), "<|im_end|>");
    }
}
