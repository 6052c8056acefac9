//! One generation request: its JSON, its settings, and its prompt (ChatML or
//! Llama 3's chat format).

use serde::{Deserialize, Serialize};
use tok::Bpe;
use weft_sdk::{Config, Item, StageError};

use crate::sample::Sampling;

/// Who said a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Role {
    System,
    User,
    Assistant,
}

impl Role {
    /// The ChatML role name.
    fn name(self) -> &'static str {
        match self {
            Role::System => "system",
            Role::User => "user",
            Role::Assistant => "assistant",
        }
    }
}

/// One message of a conversation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Message {
    pub(crate) role: Role,
    pub(crate) content: String,
}

/// The request JSON, as sent.
#[derive(Debug, Deserialize)]
struct Body {
    prompt: Option<String>,
    messages: Option<Vec<Message>>,
    /// Session mode only: the next user message (like `prompt`).
    message: Option<String>,
    /// Session mode only: forget the conversation first.
    reset: Option<bool>,
    max_tokens: Option<usize>,
    temperature: Option<f32>,
    top_p: Option<f32>,
    seed: Option<u64>,
}

/// How to generate: the stage's config, overridden per request.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Settings {
    /// The most tokens to generate.
    pub(crate) max_tokens: usize,
    /// Temperature and top-p.
    pub(crate) sampling: Sampling,
    /// The sampler's seed.
    pub(crate) seed: u64,
}

impl Settings {
    /// The defaults from config keys `max_tokens`, `temperature`, `top_p`, `seed`.
    pub(crate) fn from_config(config: &Config) -> Result<Self, String> {
        let settings = Settings {
            max_tokens: config.parse_or("max_tokens", 128)?,
            sampling: Sampling {
                temperature: config.parse_or("temperature", 0.0)?,
                top_p: config.parse_or("top_p", 1.0)?,
            },
            seed: config.parse_or("seed", 0)?,
        };
        settings.check()?;
        Ok(settings)
    }

    /// Rejects values that cannot generate anything sensible.
    fn check(&self) -> Result<(), String> {
        let Sampling { temperature, top_p } = self.sampling;
        if self.max_tokens == 0 {
            return Err("`max_tokens` must be at least 1".into());
        }
        if !(temperature.is_finite() && temperature >= 0.0) {
            return Err(format!(
                "`temperature` ({temperature}) must be 0 (greedy) or more"
            ));
        }
        if !(top_p > 0.0 && top_p <= 1.0) {
            return Err(format!("`top_p` ({top_p}) must be in (0, 1]"));
        }
        Ok(())
    }
}

/// A parsed request: the conversation and its settings.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Request {
    pub(crate) messages: Vec<Message>,
    pub(crate) settings: Settings,
}

impl Request {
    /// Parses item `index`, filling unset settings from `defaults`.
    pub(crate) fn parse(index: usize, item: &Item, defaults: Settings) -> Result<Self, StageError> {
        let bad = |what: &str| {
            StageError::bad_input(format!(
                "generate: item {index}: {what}; expected JSON {{\"prompt\": string}} or \
                 {{\"messages\": [{{\"role\": \"system\"|\"user\"|\"assistant\", \"content\": string}}, ...]}}"
            ))
        };
        let body: Body = item.parse_json().map_err(|e| bad(e.message()))?;
        if body.message.is_some() || body.reset.is_some() {
            return Err(bad(
                "`message` and `reset` are for chat sessions (config `session=true`)",
            ));
        }
        // Settings first (while `body` is whole); a bad prompt is reported first.
        let settings = body.settings(index, defaults);
        let messages = match (body.prompt, body.messages) {
            (Some(prompt), None) => vec![Message {
                role: Role::User,
                content: prompt,
            }],
            (None, Some(messages)) if !messages.is_empty() => messages,
            (None, Some(_)) => return Err(bad("`messages` is empty")),
            (Some(_), Some(_)) => return Err(bad("give `prompt` or `messages`, not both")),
            (None, None) => return Err(bad("missing `prompt` or `messages`")),
        };
        Ok(Request {
            messages,
            settings: settings?,
        })
    }
}

impl Body {
    /// The request's settings: `defaults` overridden by what it sets.
    fn settings(&self, index: usize, defaults: Settings) -> Result<Settings, StageError> {
        let settings = Settings {
            max_tokens: self.max_tokens.unwrap_or(defaults.max_tokens),
            sampling: Sampling {
                temperature: self.temperature.unwrap_or(defaults.sampling.temperature),
                top_p: self.top_p.unwrap_or(defaults.sampling.top_p),
            },
            seed: self.seed.unwrap_or(defaults.seed),
        };
        settings
            .check()
            .map_err(|e| StageError::bad_input(format!("generate: item {index}: {e}")))?;
        Ok(settings)
    }
}

/// A parsed request to a chat session (config `session=true`): the next user
/// message, a reset, or both (a reset, then the message opens a new
/// conversation).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct TurnRequest {
    /// Forget the conversation before anything else.
    pub(crate) reset: bool,
    /// The user's next message; `None` only for a bare reset.
    pub(crate) message: Option<String>,
    pub(crate) settings: Settings,
}

impl TurnRequest {
    /// Parses item `index` of a session's batch, filling unset settings from
    /// `defaults`.
    pub(crate) fn parse(index: usize, item: &Item, defaults: Settings) -> Result<Self, StageError> {
        let bad = |what: &str| {
            StageError::bad_input(format!(
                "generate: item {index}: {what}; this stage keeps the conversation \
                 (config `session=true`): expected JSON {{\"message\": string}} \
                 (or {{\"prompt\": string}}) and/or {{\"reset\": true}}"
            ))
        };
        let body: Body = item.parse_json().map_err(|e| bad(e.message()))?;
        if body.messages.is_some() {
            return Err(bad(
                "`messages` is not accepted: the session sends its own history",
            ));
        }
        let settings = body.settings(index, defaults)?;
        let message = match (body.message, body.prompt) {
            (Some(_), Some(_)) => return Err(bad("give `message` or `prompt`, not both")),
            (message, prompt) => message.or(prompt),
        };
        let reset = body.reset.unwrap_or(false);
        if message.is_none() && !reset {
            return Err(bad("missing `message`"));
        }
        Ok(TurnRequest {
            reset,
            message,
            settings,
        })
    }
}

/// How messages become a prompt: the chat format the model was tuned on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Template {
    /// ChatML ([`chatml`]): SmolLM2, Qwen2, Qwen3 and many more.
    ChatMl,
    /// Llama 3's: `<|start_header_id|>{role}<|end_header_id|>\n\n{content}<|eot_id|>`
    /// per message (content trimmed), then
    /// `<|start_header_id|>assistant<|end_header_id|>\n\n`; the tokenizer
    /// adds `<|begin_of_text|>` as BOS.
    Llama3,
    /// Zephyr's (TinyLlama-1.1B-Chat): `<|{role}|>\n{content}</s>\n` per
    /// message, then `<|assistant|>\n`.
    Zephyr,
    /// Phi-3's: Zephyr's with `<|end|>` for `</s>`.
    Phi3,
    /// `[INST] {user} [/INST]{reply}</s>[INST] ...` (Mistral-7B-Instruct,
    /// llama.cpp's `llama2` format): a system message goes first in the
    /// first `[INST]`, followed by a newline; the tokenizer adds `<s>`.
    Mistral,
    /// Llama 2 chat's: Mistral's, with the system message as
    /// `<<SYS>>\n{system}\n<</SYS>>\n\n`.
    Llama2,
    /// No chat format (config `none`, for base models): the messages'
    /// contents, one per line, are the text the model goes on from.
    Plain,
}

/// The formats, by config name, with a text only their chat templates
/// (GGUF `tokenizer.chat_template`) hold, most specific first.
const TEMPLATES: [(&str, Template, &str); 6] = [
    ("chatml", Template::ChatMl, "<|im_start|>"),
    ("llama3", Template::Llama3, "<|start_header_id|>"),
    ("phi3", Template::Phi3, "<|end|>"),
    ("zephyr", Template::Zephyr, "<|assistant|>"),
    ("llama2", Template::Llama2, "<<SYS>>"),
    ("mistral", Template::Mistral, "[INST]"),
];

impl Template {
    /// Config `template`: a name of [`TEMPLATES`] or `auto` (the default:
    /// from the model's chat template, if its file has one, else Llama 3's
    /// when the vocab has its header tokens, else ChatML), checked against
    /// the vocab: a template whose special tokens it lacks would prompt the
    /// model with text it was never tuned on.
    pub(crate) fn from_config(config: &Config, bpe: &Bpe) -> Result<Self, String> {
        let has = |t: &str| bpe.token_to_id(t).is_some();
        let names = || {
            let names = TEMPLATES.map(|(name, ..)| format!("`{name}`")).join(", ");
            format!("{names}, or `none` for a base model")
        };
        let template = match config.get_or("template", "auto") {
            "none" => Template::Plain,
            "auto" => {
                let from_file = bpe.chat_template().and_then(|jinja| {
                    TEMPLATES
                        .iter()
                        .find(|(.., mark)| jinja.contains(mark))
                        .map(|&(_, t, _)| t)
                });
                match from_file {
                    Some(t) => t,
                    None if has("<|start_header_id|>") => Template::Llama3,
                    None => Template::ChatMl,
                }
            }
            other => match TEMPLATES.iter().find(|(name, ..)| *name == other) {
                Some(&(_, t, _)) => t,
                None => {
                    return Err(format!(
                        "`template` is `{other}`: use `auto` (the default: from the model's \
                         chat template or special tokens), {}",
                        names()
                    ));
                }
            },
        };
        let needs: &[&str] = match template {
            Template::ChatMl => &["<|im_start|>", "<|im_end|>"],
            Template::Llama3 => &["<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"],
            Template::Phi3 => &["<|user|>", "<|assistant|>", "<|end|>"],
            Template::Zephyr | Template::Mistral | Template::Llama2 => &["</s>"],
            Template::Plain => &[],
        };
        match needs.iter().find(|t| !has(t)) {
            Some(missing) => Err(format!(
                "the tokenizer has no `{missing}` token, which the {template:?} chat template needs: \
                 is this a chat (instruct) model? Set `template` to its format ({})",
                names()
            )),
            None => Ok(template),
        }
    }

    /// The prompt text for `messages`, ending where the assistant's reply
    /// starts.
    pub(crate) fn render(self, messages: &[Message]) -> String {
        let mut prompt = String::new();
        match self {
            Template::ChatMl => return chatml(messages),
            Template::Plain => {
                let lines: Vec<&str> = messages.iter().map(|m| m.content.as_str()).collect();
                return lines.join("\n");
            }
            Template::Llama3 => {
                for m in messages {
                    prompt.push_str("<|start_header_id|>");
                    prompt.push_str(m.role.name());
                    prompt.push_str("<|end_header_id|>\n\n");
                    prompt.push_str(m.content.trim());
                    prompt.push_str("<|eot_id|>");
                }
                prompt.push_str("<|start_header_id|>assistant<|end_header_id|>\n\n");
            }
            Template::Zephyr | Template::Phi3 => {
                let end = if self == Template::Zephyr {
                    "</s>"
                } else {
                    "<|end|>"
                };
                for m in messages {
                    prompt.push_str(&format!("<|{}|>\n{}{end}\n", m.role.name(), m.content));
                }
                prompt.push_str("<|assistant|>\n");
            }
            Template::Mistral | Template::Llama2 => {
                // As llama.cpp writes its `llama2` format.
                let mut in_turn = false;
                for m in messages {
                    if !in_turn {
                        prompt.push_str("[INST] ");
                        in_turn = true;
                    }
                    match (m.role, self) {
                        (Role::System, Template::Llama2) => {
                            prompt.push_str(&format!("<<SYS>>\n{}\n<</SYS>>\n\n", m.content));
                        }
                        (Role::System, _) => prompt.push_str(&format!("{}\n", m.content)),
                        (Role::User, _) => prompt.push_str(&format!("{} [/INST]", m.content)),
                        (Role::Assistant, _) => {
                            prompt.push_str(&format!("{}</s>", m.content));
                            in_turn = false;
                        }
                    }
                }
            }
        }
        prompt
    }
}

/// The ChatML prompt: `<|im_start|>{role}\n{content}<|im_end|>\n` per message,
/// then `<|im_start|>assistant\n` for the model to go on from. No system prompt
/// is added.
pub(crate) fn chatml(messages: &[Message]) -> String {
    let mut prompt = String::new();
    for m in messages {
        prompt.push_str("<|im_start|>");
        prompt.push_str(m.role.name());
        prompt.push('\n');
        prompt.push_str(&m.content);
        prompt.push_str("<|im_end|>\n");
    }
    prompt.push_str("<|im_start|>assistant\n");
    prompt
}

/// The token ids of the prompt for `messages` in `template`: a BOS first
/// when the tokenizer adds one.
pub(crate) fn encode_prompt(bpe: &Bpe, template: Template, messages: &[Message]) -> Vec<u32> {
    let mut prompt = Vec::new();
    if let (true, Some(bos)) = (bpe.add_bos(), bpe.bos_id()) {
        prompt.push(bos);
    }
    prompt.extend(bpe.encode(&template.render(messages)));
    prompt
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const DEFAULTS: Settings = Settings {
        max_tokens: 128,
        sampling: Sampling {
            temperature: 0.0,
            top_p: 1.0,
        },
        seed: 0,
    };

    fn parse(value: serde_json::Value) -> Result<Request, StageError> {
        Request::parse(2, &Item::json(&value).unwrap(), DEFAULTS)
    }

    fn vocab(tokens: &[&str]) -> Bpe {
        let json = json!({"tokens": tokens, "merges": [], "pre": "llama-bpe", "bos_id": 0});
        Bpe::from_json(json.to_string().as_bytes()).unwrap()
    }

    /// Llama 3's format, as llama.cpp writes it (`llm_chat_apply_template`,
    /// LLAMA_3): contents trimmed, BOS from the tokenizer.
    #[test]
    fn llama3_prompts_have_headers_and_end_of_turn_tokens() {
        let messages = [
            Message {
                role: Role::System,
                content: "Be brief. ".into(),
            },
            Message {
                role: Role::User,
                content: "Hi".into(),
            },
        ];
        assert_eq!(
            Template::Llama3.render(&messages),
            "<|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|>\
             <|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>\
             <|start_header_id|>assistant<|end_header_id|>\n\n"
        );
        let bpe = vocab(&[
            "<|begin_of_text|>",
            "<|start_header_id|>",
            "<|end_header_id|>",
            "<|eot_id|>",
        ]);
        let ids = encode_prompt(&bpe, Template::Llama3, &messages[1..]);
        assert_eq!(ids[..2], [0, 1], "BOS, then the first header");
    }

    #[test]
    fn the_template_follows_the_vocab_or_the_config() {
        let llama3 = vocab(&["<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"]);
        let chatml = vocab(&["<|im_start|>", "<|im_end|>"]);
        let config = |t: &str| Config::from_iter([("template", t)]);
        let auto = Config::default();
        assert_eq!(
            Template::from_config(&auto, &llama3).unwrap(),
            Template::Llama3
        );
        assert_eq!(
            Template::from_config(&auto, &chatml).unwrap(),
            Template::ChatMl
        );
        assert_eq!(
            Template::from_config(&config("chatml"), &chatml).unwrap(),
            Template::ChatMl
        );
        let err = Template::from_config(&config("chatml"), &llama3).unwrap_err();
        assert!(err.contains("no `<|im_start|>` token"), "{err}");
        let err = Template::from_config(&config("llama3"), &chatml).unwrap_err();
        assert!(err.contains("no `<|start_header_id|>` token"), "{err}");
        let err = Template::from_config(&config("gemma"), &chatml).unwrap_err();
        assert!(
            err.contains("`template` is `gemma`") && err.contains("`zephyr`"),
            "{err}"
        );
        let err = Template::from_config(&config("mistral"), &chatml).unwrap_err();
        assert!(err.contains("no `</s>` token"), "{err}");
        // The file's chat template decides first.
        let with_template = |jinja: &str| {
            let json = json!({"tokens": ["</s>", "<|im_start|>", "<|im_end|>", "<|user|>", "<|assistant|>", "<|end|>"], "merges": [],
                              "chat_template": jinja});
            Bpe::from_json(json.to_string().as_bytes()).unwrap()
        };
        for (jinja, want) in [
            (
                "{{ '<|user|>\\n' + message['content'] + eos_token }}{{ '<|assistant|>' }}",
                Template::Zephyr,
            ),
            (
                "{{ bos_token + '[INST] ' + message['content'] + ' [/INST]' }}",
                Template::Mistral,
            ),
            (
                "{{'<|user|>\\n' + message['content'] + '<|end|>\\n'}}{{ '<|assistant|>\\n' }}",
                Template::Phi3,
            ),
            (
                "[INST] <<SYS>>\\n' + system_message + '\\n<</SYS>>",
                Template::Llama2,
            ),
            (
                "{{'<|im_start|>' + message['role'] + '\\n'}}",
                Template::ChatMl,
            ),
            ("{{ something else }}", Template::ChatMl),
        ] {
            let bpe = with_template(jinja);
            assert_eq!(Template::from_config(&auto, &bpe).unwrap(), want, "{jinja}");
        }
    }

    fn conversation() -> Vec<Message> {
        let m = |role, content: &str| Message {
            role,
            content: content.into(),
        };
        vec![
            m(Role::System, "Be brief."),
            m(Role::User, "Hi"),
            m(Role::Assistant, "Hello!"),
            m(Role::User, "Who are you?"),
        ]
    }

    /// The formats of SentencePiece chat models, as llama.cpp writes them
    /// (`llm_chat_apply_template`: ZEPHYR with TinyLlama's end token; LLAMA_2
    /// and its `<<SYS>>` variant).
    #[test]
    fn zephyr_mistral_and_llama2_prompts() {
        let messages = conversation();
        assert_eq!(
            Template::Zephyr.render(&messages),
            "<|system|>\nBe brief.</s>\n<|user|>\nHi</s>\n<|assistant|>\nHello!</s>\n\
             <|user|>\nWho are you?</s>\n<|assistant|>\n"
        );
        assert_eq!(
            Template::Mistral.render(&messages),
            "[INST] Be brief.\nHi [/INST]Hello!</s>[INST] Who are you? [/INST]"
        );
        assert_eq!(
            Template::Llama2.render(&messages),
            "[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\nHi [/INST]Hello!</s>[INST] Who are you? [/INST]"
        );
        assert_eq!(
            Template::Mistral.render(&messages[1..2]),
            "[INST] Hi [/INST]"
        );
        assert_eq!(
            Template::Phi3.render(&messages[1..2]),
            "<|user|>\nHi<|end|>\n<|assistant|>\n"
        );
    }

    /// `template=none`: a base model continues the text itself, whatever
    /// its vocab holds.
    #[test]
    fn no_template_sends_the_text_itself() {
        let messages = conversation();
        assert_eq!(
            Template::Plain.render(&messages[1..2]),
            "Hi",
            "a bare prompt as it is"
        );
        assert_eq!(
            Template::Plain.render(&messages),
            "Be brief.\nHi\nHello!\nWho are you?"
        );
        let base = vocab(&["a"]);
        let none = Config::from_iter([("template", "none")]);
        assert_eq!(
            Template::from_config(&none, &base).unwrap(),
            Template::Plain
        );
        let err = Template::from_config(&Config::default(), &base).unwrap_err();
        assert!(err.contains("`none` for a base model"), "{err}");
    }

    #[test]
    fn a_bare_prompt_is_one_user_message() {
        let request = parse(json!({"prompt": "Hi"})).unwrap();
        assert_eq!(
            chatml(&request.messages),
            "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
        );
        assert_eq!(request.settings, DEFAULTS);
    }

    #[test]
    fn the_prompt_is_the_one_llama_cpp_was_given() {
        // Made by scripts/reference.py; `prompt` is what the reference run fed.
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../host/nn/tests/data/smollm2_reference.json"
        );
        let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{path}: {e}"));
        let reference: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        let prompts = reference["prompts"].as_array().unwrap();
        assert!(!prompts.is_empty());
        for p in prompts {
            let request = parse(json!({"prompt": p["question"]})).unwrap();
            assert_eq!(chatml(&request.messages), p["prompt"].as_str().unwrap());
        }
    }

    #[test]
    fn messages_keep_their_order_and_roles() {
        let request = parse(json!({"messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "2+2?"},
            {"role": "assistant", "content": "4"},
            {"role": "user", "content": "And 3+3?"},
        ]}))
        .unwrap();
        assert_eq!(
            chatml(&request.messages),
            "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\n2+2?<|im_end|>\n\
             <|im_start|>assistant\n4<|im_end|>\n<|im_start|>user\nAnd 3+3?<|im_end|>\n\
             <|im_start|>assistant\n"
        );
    }

    #[test]
    fn per_request_settings_override_the_config() {
        let request = parse(
            json!({"prompt": "x", "max_tokens": 5, "temperature": 0.7, "top_p": 0.9, "seed": 42}),
        )
        .unwrap();
        assert_eq!(
            request.settings,
            Settings {
                max_tokens: 5,
                sampling: Sampling {
                    temperature: 0.7,
                    top_p: 0.9
                },
                seed: 42
            }
        );
    }

    #[test]
    fn bad_requests_say_what_is_wrong() {
        let message = |v| parse(v).unwrap_err().message().to_string();
        assert!(message(json!({})).contains("item 2: missing `prompt` or `messages`"));
        assert!(message(json!({"prompt": "a", "messages": []})).contains("not both"));
        assert!(message(json!({"messages": []})).contains("`messages` is empty"));
        assert!(
            message(json!({"messages": [{"role": "robot", "content": "x"}]})).contains("robot")
        );
        assert!(
            message(json!({"prompt": "a", "max_tokens": 0}))
                .contains("`max_tokens` must be at least 1")
        );
        assert!(message(json!({"prompt": "a", "temperature": -1})).contains("`temperature` (-1)"));
        assert!(message(json!({"prompt": "a", "top_p": 0})).contains("`top_p` (0)"));
        let err = Request::parse(0, &Item::text("hello"), DEFAULTS).unwrap_err();
        assert!(matches!(err, StageError::BadInput(_)));
    }

    #[test]
    fn session_requests_are_a_message_a_reset_or_both() {
        let turn = |v| TurnRequest::parse(1, &Item::json(&v).unwrap(), DEFAULTS);
        let message = |m: &str| Some(m.to_string());
        let t = turn(json!({"message": "Hi", "max_tokens": 8})).unwrap();
        assert_eq!((t.reset, t.message), (false, message("Hi")));
        assert_eq!(t.settings.max_tokens, 8);
        assert_eq!(
            turn(json!({"prompt": "Hi"})).unwrap().message,
            message("Hi")
        );
        let t = turn(json!({"reset": true})).unwrap();
        assert_eq!((t.reset, t.message), (true, None));
        let t = turn(json!({"reset": true, "message": "New"})).unwrap();
        assert_eq!((t.reset, t.message), (true, message("New")));

        let error = |v| turn(v).unwrap_err().message().to_string();
        assert!(error(json!({})).contains("item 1: missing `message`"));
        assert!(error(json!({"reset": false})).contains("missing `message`"));
        assert!(error(json!({"message": "a", "prompt": "b"})).contains("not both"));
        assert!(
            error(json!({"messages": [{"role": "user", "content": "x"}]}))
                .contains("the session sends its own history")
        );
        assert!(error(json!({"message": "a", "top_p": 2})).contains("`top_p` (2)"));
        // Without a session, the session's keys are explained.
        let err = parse(json!({"message": "Hi"})).unwrap_err();
        assert!(err.message().contains("config `session=true`"), "{err:?}");
    }

    #[test]
    fn config_defaults_and_checks() {
        assert_eq!(Settings::from_config(&Config::default()).unwrap(), DEFAULTS);
        let config = Config::from_iter([("top_p", "1.5")]);
        assert!(
            Settings::from_config(&config)
                .unwrap_err()
                .contains("`top_p` (1.5)")
        );
    }
}
